"""Which dispatchers are running: a row per process, kept alive by a heartbeat.

``announce`` without ``--wait`` warns when none is alive; SQLite refuses a second long-running
dispatcher (``serve``/``worker``) with a clear message instead of two processes fighting over one file.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import delete, select, update

from bot.store import Store
from bot.tables import WorkerLock, table_of

WORKER = table_of(WorkerLock)
STALE_AFTER = 30.0
HEARTBEAT_EVERY = 10.0


class SecondDispatcherError(Exception):
    """SQLite already has a live dispatcher."""


def new_worker_id(prefix: str = "w") -> str:
    return f"{prefix}-{socket.gethostname()[:40]}-{os.getpid()}"


def live_workers(store: Store, now: float) -> list[str]:
    with store.begin() as connection:
        return [
            str(row[0])
            for row in connection.execute(
                select(WORKER.c.id).where(WORKER.c.heartbeat_at >= now - STALE_AFTER)
            ).all()
        ]


def register(store: Store, worker_id: str, now: float, exclusive: bool) -> None:
    """Record this dispatcher; with ``exclusive`` (SQLite) refuse when another one is alive."""
    with store.begin() as connection:
        connection.execute(delete(WORKER).where(WORKER.c.heartbeat_at < now - STALE_AFTER))
        here = socket.gethostname()[:200]
        for other_id, pid in connection.execute(
            select(WORKER.c.id, WORKER.c.pid).where(WORKER.c.host == here)
        ):
            if other_id != worker_id and not _alive(pid):
                # Killed without a chance to unregister (kill -9, power loss): not running any more.
                connection.execute(delete(WORKER).where(WORKER.c.id == other_id))
        if exclusive:
            others = connection.execute(select(WORKER.c.id).where(WORKER.c.id != worker_id)).all()
            if others:
                raise SecondDispatcherError(
                    f"another dispatcher ({others[0][0]}) is running on this SQLite database; "
                    "SQLite runs one dispatcher (use PostgreSQL for many workers)"
                )
        connection.execute(delete(WORKER).where(WORKER.c.id == worker_id))
        connection.execute(
            WORKER.insert().values(
                id=worker_id,
                host=socket.gethostname()[:200],
                pid=os.getpid(),
                started_at=now,
                heartbeat_at=now,
            )
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def heartbeat(store: Store, worker_id: str, now: float) -> None:
    with store.begin() as connection:
        connection.execute(update(WORKER).where(WORKER.c.id == worker_id).values(heartbeat_at=now))


def unregister(store: Store, worker_id: str) -> None:
    with store.begin() as connection:
        connection.execute(delete(WORKER).where(WORKER.c.id == worker_id))
