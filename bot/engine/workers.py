"""Which dispatchers are running: a row per process, kept alive by a heartbeat.

``serve``, ``worker`` and a command's own dispatching (``announce --wait``, ``alert --wait``: ids
starting with :data:`COMMAND`) each register. ``announce`` without ``--wait`` warns when no lasting
one (``serve``/``worker``) is alive; SQLite refuses a second lasting dispatcher with a clear message
instead of two processes fighting over one file (a command's dispatching runs beside it).

A dispatcher is dead when its heartbeat is older than :data:`STALE_AFTER`, or at once when it ran on
this host and its pid is gone (kill -9, a crash). :func:`reap` gives a dead dispatcher's claims back to
the queue and forgets it: a restart does so before it starts (so it takes over its killed
predecessor's claims at once) and every live dispatcher every :data:`HEARTBEAT_EVERY`, so claims never
wait for their lease to run out. A dispatcher whose own heartbeat has not been written for
:data:`CLAIMS_VALID_FOR` starts no more sends (:func:`claims_valid_until`), so it never sends what the
others may already have taken over; what was in flight then may go twice, within the usual bound.
"""

from __future__ import annotations

import logging
import os
import socket

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from bot.engine import ledger
from bot.store import Store
from bot.tables import WorkerLock, table_of

log = logging.getLogger("herald.workers")

WORKER = table_of(WorkerLock)
STALE_AFTER = 10.0  # then another dispatcher takes the claims over: within 15 s of a kill
HEARTBEAT_EVERY = 3.0
CLAIMS_VALID_FOR = STALE_AFTER - 2.0  # a margin before the others may reap: start no send after it


COMMAND = "cli"  # the id prefix of a command's own dispatching (--wait): it ends with the command


class SecondDispatcherError(Exception):
    """SQLite already has a live dispatcher."""


def new_worker_id(prefix: str = "w") -> str:
    return f"{prefix}-{socket.gethostname()[:40]}-{os.getpid()}"


def is_command(worker_id: str) -> bool:
    """The id is that of a command's own dispatching (``--wait``), not of a ``serve`` or ``worker``."""
    return worker_id.startswith(COMMAND + "-")


def live_workers(store: Store, now: float, lasting: bool = False) -> list[str]:
    """The ids of the dispatchers alive at ``now``; with ``lasting``, only ``serve``s and ``worker``s."""
    with store.begin() as connection:
        found = [
            str(row[0])
            for row in connection.execute(
                select(WORKER.c.id).where(WORKER.c.heartbeat_at >= now - STALE_AFTER)
            ).all()
        ]
    return [worker_id for worker_id in found if not (lasting and is_command(worker_id))]


def claims_valid_until(last_beat: float) -> float:
    """Until when a dispatcher whose heartbeat was last written at ``last_beat`` may start sends."""
    return last_beat + CLAIMS_VALID_FOR


def reap(store: Store, now: float, keep: str = "") -> list[str]:
    """Forget dead dispatchers (not ``keep``) and put their claims back in the queue; their ids."""
    with store.begin() as connection:
        return _reap(store, connection, now, keep)


def _reap(store: Store, connection: Connection, now: float, keep: str) -> list[str]:
    here = socket.gethostname()[:200]
    dead = []
    for other_id, host, pid, beat in connection.execute(
        select(WORKER.c.id, WORKER.c.host, WORKER.c.pid, WORKER.c.heartbeat_at).where(WORKER.c.id != keep)
    ):
        # Killed without a chance to unregister (kill -9, power loss): not running any more.
        if beat < now - STALE_AFTER or (host == here and pid != os.getpid() and not _alive(pid)):
            dead.append(str(other_id))
    if dead:
        connection.execute(delete(WORKER).where(WORKER.c.id.in_(dead)))
        taken = ledger.requeue(store, connection, ledger.DELIVERY.c.lease_owner.in_(dead), now)
        log.warning(
            "dispatcher(s) %s stopped beating; took over %d claimed deliveries", ", ".join(dead), taken
        )
    return dead


def _take_over_own_id(store: Store, connection: Connection, worker_id: str, now: float) -> None:
    """A row under this very id before it registers is a predecessor that did not unregister: a
    restart reusing its id (``--id``, or pid 1 in a container on the same host name). Its claims
    are ours to take back, unless it still runs elsewhere (another host, heartbeat fresh)."""
    row = connection.execute(
        select(WORKER.c.host, WORKER.c.pid, WORKER.c.heartbeat_at).where(WORKER.c.id == worker_id)
    ).first()
    if row is None:
        return
    host, pid, beat = row
    here = host == socket.gethostname()[:200]
    if (here and (pid == os.getpid() or not _alive(pid))) or beat < now - STALE_AFTER:
        taken = ledger.requeue(store, connection, ledger.DELIVERY.c.lease_owner == worker_id, now)
        log.warning("took over %d deliveries claimed by this dispatcher's predecessor", taken)


def register(store: Store, worker_id: str, now: float, exclusive: bool) -> None:
    """Record this dispatcher (taking over dead ones' claims); with ``exclusive`` (SQLite) refuse
    when another lasting one (not a command's ``--wait``) is alive."""
    with store.begin() as connection:
        _reap(store, connection, now, worker_id)
        _take_over_own_id(store, connection, worker_id, now)
        if exclusive:
            others = [
                row
                for row in connection.execute(select(WORKER.c.id).where(WORKER.c.id != worker_id)).all()
                if not is_command(str(row[0]))
            ]
            if others:
                raise SecondDispatcherError(
                    f"another dispatcher ({others[0][0]}) is running on this SQLite database; "
                    "SQLite runs one dispatcher (use PostgreSQL for many workers)"
                )
        connection.execute(delete(WORKER).where(WORKER.c.id == worker_id))
        _insert_self(connection, worker_id, now)


def _insert_self(connection: Connection, worker_id: str, now: float) -> None:
    """The row of this process's dispatcher: its host and pid, started and beating now."""
    connection.execute(
        WORKER.insert().values(
            id=worker_id, host=socket.gethostname()[:200], pid=os.getpid(), started_at=now, heartbeat_at=now
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


def heartbeat(store: Store, worker_id: str, now: float) -> bool:
    """Beat; False when this dispatcher had been reaped meanwhile (it is registered again)."""
    with store.begin() as connection:
        beat = connection.execute(update(WORKER).where(WORKER.c.id == worker_id).values(heartbeat_at=now))
        if beat.rowcount:
            return True
        _insert_self(connection, worker_id, now)
        return False


def unregister(store: Store, worker_id: str) -> None:
    with store.begin() as connection:
        connection.execute(delete(WORKER).where(WORKER.c.id == worker_id))
