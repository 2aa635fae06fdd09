"""The one module that opens database connections and sessions.

SQLite (WAL, synchronous=NORMAL) is the embedded default; PostgreSQL (psycopg 3) is the scale-out
engine. ``open_store`` applies pending migrations (alembic) before handing the store out; a database
already at the scripts' heads is told by one query, without loading alembic or running its
environment (about 0.1 s of every command on the loaded 2-core machine).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

MIGRATIONS = Path(__file__).parent / "migrations"
# A pooled PostgreSQL connection idle longer than this is pinged before use (the server may have
# restarted, a firewall may have dropped it); one in steady use is not, as a ping is a round trip on
# the dispatcher's hot path. A connection broken while in use fails that one operation: SQLAlchemy
# then invalidates the pool and the caller retries on a fresh connection.
PING_AFTER_IDLE = 10.0


class StoreError(Exception):
    """The database cannot be reached or migrated."""


def normalise_url(url: str) -> str:
    """``postgresql://`` → the psycopg 3 driver; other URLs unchanged."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparseable database url)"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    full = normalise_url(url)
    parsed = make_url(full)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            full,
            connect_args={"check_same_thread": False, "timeout": 10},
            poolclass=NullPool if database in ("", ":memory:") else None,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(full, pool_size=10, max_overflow=10)
    event.listen(engine, "checkin", _stamp_checkin)
    event.listen(engine, "checkout", _ping_if_idle(engine))
    return engine


def _stamp_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Any:
    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("checked_in_at")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and checks out another (SQLAlchemy's contract).
            raise DisconnectionError("stale database connection") from exc

    return checkout


@dataclass
class Store:
    """Owns the engine; hands out sessions and connections."""

    engine: Engine
    url: str

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def libpq_url(self) -> str:
        """The PostgreSQL URL as libpq takes it (psycopg's own connections, such as LISTEN's)."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside one transaction (core statements, batched writes)."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def one_statement(self) -> Iterator[Connection]:
        """A connection for a single statement that is its own transaction.

        On PostgreSQL it runs in autocommit: one round trip instead of BEGIN, the statement and
        COMMIT (the hot claims and outcome writes are one statement each). On SQLite, as ``begin``.
        """
        if self.is_sqlite:
            with self.engine.begin() as connection:
                yield connection
            return
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


# The first key of every two-key advisory lock Herald takes: a hash of the schema it works in and the
# lock's purpose (bound as ``:purpose``). Two deployments in one PostgreSQL database, each in its own
# schema (``search_path``), never take each other's leader, connection budget or migration lock.
LOCK_SPACE = "hashtext(coalesce(current_schema(), '') || ':' || :purpose)"


def discard(connection: Connection) -> None:
    """Close a connection held for its session (advisory locks) without returning it to the pool:
    whatever the session held ends with it. Never raises."""
    try:
        connection.invalidate()
        connection.close()
    except SQLAlchemyError:
        pass


_upgrade_lock = threading.Lock()


_REVISION_LINE = re.compile(r"^(revision|down_revision|depends_on)\b[^=\n]*=(.*)$", re.MULTILINE)


@functools.cache
def script_heads() -> frozenset[str]:
    """The ``alembic_version`` rows of a database migrated to the heads: the revisions no migration
    script builds on (``down_revision``) or depends on (``depends_on``, which alembic then leaves out),
    read from the scripts' own lines. ``tests/test_migrations.py`` holds them equal to a migrated
    database's; were they ever not, ``upgrade`` would only run alembic as before."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for key, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            names = re.findall(r"[\"']([^\"']+)[\"']", value.split("#")[0])
            (revisions if key == "revision" else parents).update(names)
    return frozenset(revisions - parents)


def is_current(store: Store) -> bool:
    """The database's ``alembic_version`` rows are exactly the scripts' heads (False when unreadable:
    a new database, or one alembic has never stamped)."""
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:
        return False
    return frozenset(rows) == script_heads()


def upgrade(store: Store, revision: str = "heads") -> None:
    """Apply schema migrations up to ``revision``."""
    if revision == "heads" and is_current(store):
        return  # schemas only move forward: nothing another process does can make this stale
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", store.url.replace("%", "%%"))
    with _upgrade_lock, _sqlite_file_lock(store), store.engine.begin() as connection:
        if store.engine.dialect.name == "postgresql":
            # Two processes starting at once must not both create the schema.
            connection.execute(text(f"SELECT pg_advisory_xact_lock({LOCK_SPACE}, 0)"), {"purpose": "migrate"})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def _sqlite_file_lock(store: Store) -> Iterator[None]:
    """Two processes migrating one SQLite file (serve starting while a CLI command runs) take turns."""
    database = make_url(store.url).database if store.is_sqlite else None
    if not database or database == ":memory:":
        yield
        return
    import fcntl

    with open(f"{database}.migrate-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_store(url: str, migrate: bool = True) -> Store:
    """Connect (and by default migrate); raise :class:`StoreError` with the masked URL on failure."""
    store = Store(engine=make_engine(url), url=normalise_url(url))
    try:
        if migrate:
            upgrade(store)
        else:
            with store.engine.connect():
                pass
    except SQLAlchemyError as exc:
        store.dispose()
        raise StoreError(f"database {safe_url(url)}: {database_reason(exc)}") from exc
    return store


def database_reason(exc: SQLAlchemyError) -> str:
    """The driver's first line for a failed database call (never the SQL or its parameters)."""
    orig = getattr(exc, "orig", None)
    reason = str(orig if orig is not None else exc).strip()
    return reason.splitlines()[0] if reason else type(exc).__name__
