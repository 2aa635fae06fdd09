"""The scheduled sync: due only when the last successful sync (in audit_log) is ``sync_every`` old,
one process at a time (a lease in key_value), failures stored and retried at the next tick."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.store import Store
from bot.sync.runner import last_successful_sync
from bot.sync.schedule import LEASE_FOR, check_every, claim_lease, release_lease, scheduled_sync
from bot.tables import AuditEntry, Person

CSV = "id,email\nalice,alice@example.com\nbob,bob@example.com\n"


def herald_for(store: Store, db_url: str, path: Path | None, clock: ManualClock) -> Herald:
    directory = {"source": "file", "sync_every": "1h"} | ({"path": str(path)} if path else {})
    settings = load_settings(None, database={"url": db_url}, directory=directory)
    return Herald.build(settings, clock=clock, store=store)


def actions(store: Store) -> list[tuple[str, float]]:
    with store.session() as session:
        rows = session.exec(select(AuditEntry).order_by(AuditEntry.id)).scalars()  # type: ignore[call-overload, arg-type]
        return [(entry.action, entry.at) for entry in rows]


async def test_syncs_when_due_and_not_more_often(store: Store, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    clock = ManualClock()
    herald = herald_for(store, db_url, path, clock)
    await scheduled_sync(herald)
    start = clock.now()
    assert actions(store) == [("directory.sync", start)]
    assert last_successful_sync(store) == start

    clock.advance(3599)  # a restart, or a second serve process, ticking within the hour
    await scheduled_sync(herald)
    await scheduled_sync(herald_for(store, db_url, path, clock))
    assert len(actions(store)) == 1

    path.write_text(CSV.replace("bob,bob@example.com\n", ""))
    clock.advance(1)
    await scheduled_sync(herald)
    assert actions(store)[-1] == ("directory.sync", start + 3600)
    with store.session() as session:
        bob = session.get(Person, "bob")
        assert bob is not None and bob.active is False


async def test_a_failed_sync_is_stored_and_retried(store: Store, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    clock = ManualClock()
    herald = herald_for(store, db_url, path, clock)
    await scheduled_sync(herald)  # logged and stored, not raised
    assert [action for action, _ in actions(store)] == ["directory.sync_failed"]
    path.write_text(CSV)
    clock.advance(60)
    await scheduled_sync(herald)
    assert [action for action, _ in actions(store)] == ["directory.sync_failed", "directory.sync"]


async def test_nothing_to_sync_without_a_path(store: Store, db_url: str) -> None:
    await scheduled_sync(herald_for(store, db_url, None, ManualClock()))
    assert actions(store) == []


async def test_a_held_lease_makes_others_skip(store: Store, db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    clock = ManualClock()
    assert claim_lease(store, "other-process", clock.now())
    assert not claim_lease(store, "third-process", clock.now() + 1)
    await scheduled_sync(herald_for(store, db_url, path, clock))
    assert actions(store) == []  # the other process is syncing

    clock.advance(LEASE_FOR + 1)  # it died without giving the lease back
    await scheduled_sync(herald_for(store, db_url, path, clock))
    assert [action for action, _ in actions(store)] == ["directory.sync"]
    assert claim_lease(store, "next", clock.now())  # released after the sync
    release_lease(store, "someone-else")
    assert not claim_lease(store, "again", clock.now())
    release_lease(store, "next")
    assert claim_lease(store, "again", clock.now())


def test_check_every() -> None:
    assert (check_every(3600), check_every(10), check_every(0)) == (60.0, 10.0, 1.0)
