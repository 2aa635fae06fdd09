"""One scheduler per cluster: leadership through a PostgreSQL advisory lock.

Every ``serve`` process asks, at each scheduler tick, whether it leads. The leader holds a session-level
``pg_try_advisory_lock`` on a connection of its own; when that process dies, PostgreSQL ends the session
and frees the lock, and another process takes it at its next tick (within seconds). On SQLite there is
one dispatching process (a second one is refused), so that process leads. Every scheduled job is
idempotent anyway: a double run does no harm, leadership only avoids the waste.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from bot.store import LOCK_SPACE, Store, discard

log = logging.getLogger("herald.leader")

LEADER = {"purpose": "leader"}


class Leadership:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._connection: Connection | None = None
        self._lock = threading.Lock()

    def check(self) -> bool:
        """True when this process leads now (taking the lead when it is free). Blocking: run in a thread."""
        if self.store.is_sqlite:
            return True
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.execute(text("SELECT 1"))
                    return True
                except SQLAlchemyError:
                    log.warning("lost the leader's database session; will try to lead again")
                    self._drop()
            try:
                connection = self.store.engine.connect()
            except SQLAlchemyError:
                return False
            got = bool(
                connection.execute(text(f"SELECT pg_try_advisory_lock({LOCK_SPACE}, 0)"), LEADER).scalar()
            )
            connection.commit()
            if not got:
                connection.close()
                return False
            log.info("this process now leads the scheduler")
            self._connection = connection
            return True

    def _drop(self) -> None:
        if self._connection is not None:
            discard(self._connection)
            self._connection = None

    def release(self) -> None:
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.execute(text(f"SELECT pg_advisory_unlock({LOCK_SPACE}, 0)"), LEADER)
                    self._connection.commit()
                except SQLAlchemyError:
                    pass
                self._connection.close()
                self._connection = None
