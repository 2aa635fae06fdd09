"""Shared fixtures: a fresh database per test (SQLite, and PostgreSQL when HERALD_TEST_DATABASE_URL
is set), the CLI driven as a user drives it, the rule that turns skips into failures in CI, and the
dispatcher driven in steps (run until a condition, then one claim at the clock's time)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ldap_server import LdapServer
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from bot.app import Herald
from bot.cli.app import app
from bot.engine import caps, ledger, workers
from bot.engine.dispatcher import Dispatcher
from bot.engine.ledger import Claimed
from bot.store import Store, normalise_url, open_store

PG_URL = os.environ.get("HERALD_TEST_DATABASE_URL")
REQUIRE_ALL = os.environ.get("HERALD_REQUIRE_ALL") == "1"


def require_program(name: str) -> str:
    """Path of a system program; skip (or, in CI, fail) when it is missing."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/usr/local/bin/{name}") if os.path.exists(p)),
        None,
    )
    if path is None:
        reason = f"{name} is not installed"
        if REQUIRE_ALL:
            pytest.fail(f"{reason} (HERALD_REQUIRE_ALL=1 turns this skip into a failure)")
        pytest.skip(reason)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and call.when in ("setup", "call"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (HERALD_REQUIRE_ALL=1): {report.longrepr}"


def _pg_schema_url(base: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


DB_PARAMS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL: SQLite in tmp_path, or a throwaway PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'herald.db'}"
        return
    if not PG_URL:
        pytest.skip("HERALD_TEST_DATABASE_URL is not set (PostgreSQL tests)")
    yield from _pg_schema_url(PG_URL)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL schema, for what only PostgreSQL does (many workers, leader election)."""
    if not PG_URL:
        pytest.skip("HERALD_TEST_DATABASE_URL is not set (PostgreSQL tests)")
    yield from _pg_schema_url(PG_URL)


@pytest.fixture
def other_pg_url() -> Iterator[str]:
    """A second throwaway PostgreSQL schema in the same database (a second deployment)."""
    if not PG_URL:
        pytest.skip("HERALD_TEST_DATABASE_URL is not set (PostgreSQL tests)")
    yield from _pg_schema_url(PG_URL)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    try:
        yield opened
    finally:
        opened.dispose()


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Run ``herald ARGS`` in-process, as the console script would, and capture its streams."""
    monkeypatch.delenv("HERALD_CONFIG", raising=False)
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
        result = runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    yield run


def run_herald(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
    """Run ``herald`` as a separate process (for kill/restart and multi-process tests)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def write_config(path: Path, text_: str) -> Path:
    path.write_text(text_, encoding="utf-8")
    return path


class Peers:
    """The SMTP server and the Twilio stand-in, running on their own event loop in a thread, so that
    synchronous tests can drive the CLI (which runs its own loop) against them."""

    def __init__(self, *, smtp_pipelining: bool = False) -> None:
        import asyncio
        import threading

        from bot.standins.smtp import SmtpStandIn
        from bot.standins.twilio import TwilioStandIn

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.arrivals: list[float] = []  # when each message reached the SMTP server (wall clock)
        self.smtp = SmtpStandIn(
            on_message=lambda _message: self.arrivals.append(time.time()), pipelining=smtp_pipelining
        )
        self.twilio = TwilioStandIn(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN)
        self.call(self.smtp.start())
        self.call(self.twilio.start())

    def call(self, coroutine):  # type: ignore[no-untyped-def]
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self.call(self.twilio.close())
        self.call(self.smtp.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    def config(self, db_url: str, extra: str = "") -> str:
        """A TOML document pointing Herald at these peers and ``db_url``."""
        return (
            f'[database]\nurl = "{db_url}"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {self.smtp.port}\nsecurity = "none"\n'
            'from_address = "Herald <herald@example.com>"\nrate_per_second = 0\ntimeout = "2s"\n'
            f'[twilio]\naccount_sid = "{TWILIO_SID}"\nauth_token = "{TWILIO_TOKEN}"\n'
            f'from_number = "+15005550006"\napi_url = "{self.twilio.url}"\n'
            'rate_per_second = 0\ntimeout = "2s"\n'
            "[quiet_hours]\nkinds = []\n" + extra
        )


TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "test-auth-token"


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    """One private slapd for the session (tests/ldap_server.py), skipped where slapd is missing."""
    require_program("slapd")
    server = LdapServer(tmp_path_factory.mktemp("slapd"))
    server.configure()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def peers() -> Iterator[Peers]:
    running = Peers()
    try:
        yield running
    finally:
        running.close()


async def dispatch_until(herald: Herald, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Run a dispatcher until ``done()`` holds, then stop it. A stopped dispatcher has finished what it
    started and given back its unstarted claims: the database and the peers show all it did."""
    stop = asyncio.Event()
    task = asyncio.create_task(Dispatcher(herald, workers.new_worker_id("test"), registered=False).run(stop))
    try:
        async with asyncio.timeout(timeout):
            while not done() and not task.done():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def claim_due(herald: Herald, channel: str = "email") -> list[Claimed]:
    """A dispatcher's claim step, taken once at the clock's time under today's cap: what it would send
    next (leased to a ``probe`` worker; a test expecting ``[]`` leaves the ledger as it was)."""
    settings, now = herald.settings, herald.clock.now()
    daily_cap = (settings.smtp if channel == "email" else settings.twilio).daily_cap
    cap = caps.cap_today(herald.store, channel, now, daily_cap, caps.schedule(settings, channel))
    lease, limit = settings.dispatcher.lease, settings.dispatcher.batch_size
    return ledger.claim(herald.store, channel, "probe", now, lease, limit, cap)
