"""The delivery ledger: the writes that work the queue of deliveries, in batches.

Deliveries are claimed in deadline order under a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
SQLite has one writer, so its ``UPDATE … RETURNING`` is atomic anyway); a claim under a cap reserves
its sends on the day's counter (:mod:`bot.engine.caps`) in the same transaction. Outcomes are recorded
in batches: one transaction per batch, never one per message (see PERF-FACTS). Claimed-but-unsent
deliveries are given back (release), expired leases reclaimed, notifications without open deliveries
finished, and not-yet-sent deliveries cancelled. Notifications and their deliveries are written by
:mod:`bot.engine.create`.

Functions here are synchronous; the dispatcher runs them in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, case, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.engine.caps import bump_counter, day_of, lock_counter
from bot.store import Store
from bot.tables import Delivery, Notification, Rung, Suppression, table_of

# The PostgreSQL NOTIFY channel on which work is announced; the payload names the delivery channels.
WORK_CHANNEL = "herald_work"

DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
RUNG = table_of(Rung)
SUPPRESSION = table_of(Suppression)

OPEN_STATES = ("queued", "deferred", "sending")


def announce_work(store: Store, connection: Any, channels: Iterable[str]) -> None:
    """PostgreSQL: tell every listening dispatcher that ``channels`` have new work (``NOTIFY``, sent
    when the transaction commits), so idle workers start at once instead of at their next poll."""
    if not store.is_sqlite:
        connection.execute(select(func.pg_notify(WORK_CHANNEL, ",".join(sorted(set(channels))))))


class Claimed(NamedTuple):
    """One leased delivery as its claim returned it (a tuple: claims make hundreds a second)."""

    id: int
    notification_id: str
    person_id: str
    channel: str
    address: str
    deadline: float
    attempts: int
    created_at: float = 0.0
    name: str = ""
    language: str = ""
    due_at: float = 0.0  # when it became due this time (the queue wait runs from here)
    claimed_at: float = 0.0


def claim(
    store: Store, channel: str, worker: str, now: float, lease: float, limit: int, cap: int | None = None
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries of ``channel``, earliest deadline first.

    With ``cap`` (today's most sends on the channel), the claim also reserves its sends on the
    channel's counter in the same transaction, so the cap holds across workers and restarts.
    """
    with store.begin() if cap is not None else store.one_statement() as connection:
        return claim_on(store, connection, channel, worker, now, lease, limit, cap)


def claim_on(
    store: Store,
    connection: Connection,
    channel: str,
    worker: str,
    now: float,
    lease: float,
    limit: int,
    cap: int | None = None,
) -> list[Claimed]:
    """:func:`claim`'s statements on ``connection``, inside the caller's transaction (one is needed
    with ``cap``: the counter is locked and bumped in the same commit as the claim)."""
    day = day_of(now)
    if cap is not None:
        limit = min(limit, cap - lock_counter(store, connection, channel, day))
    if limit <= 0:
        return []
    if store.is_sqlite:
        rows = sqlite_claim(connection.exec_driver_sql, channel, worker, now, lease, limit)
    else:
        statement = pg_claim(channel, worker, now, lease, limit)
        rows = [tuple(row) for row in connection.exec_driver_sql(*statement)]
    return claimed_batch(channel, rows, now)


def pg_claim(channel: str, worker: str, now: float, lease: float, limit: int) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: the one statement that claims (and counts, without a cap) and its parameters."""
    return _PG_CLAIM_SQL, (worker, now + lease, now, now, channel, now, limit, channel, day_of(now))


def claimed_batch(channel: str, rows: Iterable[Sequence[Any]], now: float) -> list[Claimed]:
    """Claim rows (id, notification, person, address, deadline, attempts, created_at, due_at, name,
    language) as :class:`Claimed`, earliest deadline first."""
    ordered = sorted(rows, key=_BY_DEADLINE)
    return [
        Claimed(id_, notice, person, channel, to, deadline, tries, created, name or "", lang or "", due, now)
        for id_, notice, person, to, deadline, tries, created, due, name, lang in ordered
    ]


_BY_DEADLINE = itemgetter(4, 0)  # a claim row's (deadline, id)


# PostgreSQL: lease, count towards the day's counter and fetch the names in one statement, one round
# trip (claims run several times a second per worker). SKIP LOCKED: concurrent claimers take
# disjoint rows instead of queueing on each other's locks.
_PG_CLAIM_SQL = """
WITH claimed AS (
    UPDATE delivery SET state = 'sending', lease_owner = %s, lease_until = %s,
        attempts = attempts + 1, updated_at = %s, claimed_at = %s
    WHERE id IN (
        SELECT id FROM delivery
        WHERE state IN ('queued', 'deferred') AND channel = %s AND due_at <= %s
        ORDER BY deadline, id LIMIT %s FOR UPDATE SKIP LOCKED
    )
    RETURNING id, notification_id, person_id, address, deadline, attempts, created_at, due_at
), counted AS (
    INSERT INTO channel_counter (channel, day, sent)
    SELECT %s, %s, count(*) FROM claimed HAVING count(*) > 0
    ON CONFLICT (channel, day) DO UPDATE SET sent = channel_counter.sent + excluded.sent
)
SELECT claimed.*, person.name, person.language FROM claimed LEFT JOIN person ON person.id = claimed.person_id
"""


# SQLite has one writer at a time, so the ``UPDATE … RETURNING`` alone is atomic. Driver-level SQL
# with qmark parameters: the same text from a SQLAlchemy connection (a thread) and from the driver's
# own connection (the loop, :mod:`bot.engine.loop_claims`), and no per-claim statement compilation.
_SQLITE_CLAIM_SQL = (
    "UPDATE delivery SET state = 'sending', lease_owner = ?, lease_until = ?, attempts = attempts + 1, "
    "updated_at = ?, claimed_at = ? WHERE id IN (SELECT id FROM delivery WHERE state IN ('queued', "
    "'deferred') AND channel = ? AND due_at <= ? ORDER BY deadline, id LIMIT ?) "
    "RETURNING id, notification_id, person_id, address, deadline, attempts, created_at, due_at"
)
_SQLITE_COUNT_SQL = (
    "INSERT INTO channel_counter (channel, day, sent) VALUES (?, ?, ?) "
    "ON CONFLICT (channel, day) DO UPDATE SET sent = channel_counter.sent + excluded.sent"
)
# The claimed people's names and languages, the ids as one JSON array (one statement text for any size).
_SQLITE_NAMES_SQL = "SELECT id, name, language FROM person WHERE id IN (SELECT value FROM json_each(?))"


def sqlite_claim(
    execute: Callable[[str, tuple[Any, ...]], Iterable[Sequence[Any]]],
    channel: str,
    worker: str,
    now: float,
    lease: float,
    limit: int,
) -> list[tuple[Any, ...]]:
    """SQLite: claim rows with the person's name and language appended; ``execute`` runs one
    statement and returns its rows (inside the caller's transaction)."""
    parameters = (worker, now + lease, now, now, channel, now, limit)
    claimed = list(execute(_SQLITE_CLAIM_SQL, parameters))
    if not claimed:
        return []
    execute(_SQLITE_COUNT_SQL, (channel, day_of(now), len(claimed)))
    ids = json.dumps(list({row[2] for row in claimed}))
    people = {person: (name, language) for person, name, language in execute(_SQLITE_NAMES_SQL, (ids,))}
    nobody = (None, None)
    return [(*row, *people.get(row[2], nobody)) for row in claimed]


class Outcome(NamedTuple):
    """What became of one claimed delivery; ``state`` is its new state (a tuple: one per send)."""

    delivery_id: int
    channel: str
    address: str
    state: str
    at: float
    attempt: str  # sent | transient | uncertain | permanent | released
    reason: str | None = None
    detail: str | None = None
    provider_id: str | None = None
    due_at: float | None = None
    suppress: bool = False
    notification_id: str = ""
    # Seconds this attempt adds to the waits throttle, retry, down, provider (bot.engine.timings).
    waits: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


# SQLite (qmark): the delivery rows and the attempts, one executemany each.
_RECORD_SQL = (
    "UPDATE delivery SET state = ?, reason = ?, detail = ?, "
    "provider_id = COALESCE(?, provider_id), sent_at = COALESCE(?, sent_at), due_at = ?, "
    "updated_at = ?, sent_by = COALESCE(?, sent_by), lease_owner = NULL, lease_until = NULL, "
    "wait_throttle = wait_throttle + ?, "
    "wait_retry = wait_retry + ?, wait_down = wait_down + ?, wait_provider = wait_provider + ? "
    "WHERE id = ? AND lease_owner = ?"
)
_ATTEMPT_SQL = (
    "INSERT INTO attempt (delivery_id, at, outcome, reason, detail, provider_id, worker) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# A send is recorded on the delivery row only (sent_at, sent_by); attempt rows are for failures and
# retries, the sent ones cost a second statement per group commit (bench/README.md, "announce").
# PostgreSQL: the same two writes as one statement and one round trip, the rows passed as one array
# per column, so the text never changes and the server keeps it prepared. The UPDATE in the WITH runs
# to completion although nothing reads it (PostgreSQL's rule for data-modifying CTEs); attempts are
# kept even when the lease was lost meanwhile, as on SQLite.
_PG_RECORD_SQL = (
    "WITH v AS (SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[], %s::varchar[], "
    "%s::varchar[], %s::float8[], %s::float8[], %s::float8[], %s::varchar[], %s::float8[], %s::float8[], "
    "%s::float8[], %s::float8[]) AS v (id, state, reason, detail, provider_id, sent_at, due_at, at, "
    "attempt, throttle, retry, down, provider)), "
    "u AS (UPDATE delivery AS d SET state = v.state, reason = v.reason, detail = v.detail, "
    "provider_id = COALESCE(v.provider_id, d.provider_id), sent_at = COALESCE(v.sent_at, d.sent_at), "
    "due_at = v.due_at, updated_at = v.at, lease_owner = NULL, lease_until = NULL, "
    "sent_by = CASE WHEN v.sent_at IS NULL THEN d.sent_by ELSE %s END, "
    "wait_throttle = d.wait_throttle + v.throttle, wait_retry = d.wait_retry + v.retry, "
    "wait_down = d.wait_down + v.down, wait_provider = d.wait_provider + v.provider "
    "FROM v WHERE d.id = v.id AND d.lease_owner = %s) "
    "INSERT INTO attempt (delivery_id, at, outcome, reason, detail, provider_id, worker) "
    "SELECT id, at, attempt, reason, detail, provider_id, %s FROM v WHERE attempt NOT IN ('released', 'sent')"
)


def record(store: Store, outcomes: Sequence[Outcome], worker: str) -> None:
    """Apply outcomes in one transaction: delivery rows, attempts, suppressions.

    This runs once per group of finished sends, often for a single outcome, so its fixed cost is what
    counts: SQLAlchemy's per-row bind processing is bypassed (plain tuples to the driver), and on
    PostgreSQL the update and the attempt rows go as one statement in one round trip.
    """
    if not outcomes:
        return
    suppressions = _suppressions(outcomes)
    # Driver-level SQL (no per-row bind processing) that still goes through SQLAlchemy's error
    # handling: a lost connection raises a DBAPIError and is dropped from the pool.
    with store.begin() if suppressions else store.one_statement() as connection:
        write_outcomes(connection, store.is_sqlite, outcomes, worker)


def write_outcomes(connection: Connection, on_sqlite: bool, outcomes: Sequence[Outcome], worker: str) -> None:
    """:func:`record`'s statements on ``connection``, inside the caller's transaction (one is needed
    when an outcome suppresses an address: the suppression rows go in the same commit)."""
    if on_sqlite:
        for statement, rows in sqlite_outcomes(outcomes, worker):
            connection.exec_driver_sql(statement, rows)
    else:
        connection.exec_driver_sql(*pg_record(outcomes, worker))
    suppressions = _suppressions(outcomes)
    if suppressions:
        connection.execute(_insert_ignore(on_sqlite, SUPPRESSION, ["channel", "address"]), suppressions)


def pg_record(outcomes: Sequence[Outcome], worker: str) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: the one statement that records ``outcomes`` (no suppressions) and its parameters."""
    rows = [_record_row(o) for o in outcomes]
    # A tuple: one execution whose parameters are arrays (a list would mean executemany).
    columns = tuple(list(column) for column in zip(*rows, strict=True))
    return _PG_RECORD_SQL, (*columns, worker, worker, worker)


def _record_row(o: Outcome) -> tuple[Any, ...]:
    """(id, state, reason, detail, provider_id, sent_at, due_at, at, attempt, *waits) for the driver."""
    sent_at = o.at if o.state in _SENT_STATES else None
    due_at = o.due_at if o.due_at is not None else o.at
    row = (o.delivery_id, o.state, o.reason, _detail(o), o.provider_id, sent_at, due_at, o.at, o.attempt)
    return row + o.waits


_SENT_STATES = ("sent", "delivered")  # a send: its row gets sent_at (and sent_by)


def _detail(o: Outcome) -> str | None:
    return (o.detail or "")[:1000] or None


def _suppressions(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """One suppression row per (channel, address) a hard failure asked to suppress."""
    rows = {
        (o.channel, o.address): {
            "channel": o.channel,
            "address": o.address,
            "reason": f"{o.reason}: {o.detail or ''}"[:200],
            "source": "delivery",
            "created_at": o.at,
        }
        for o in outcomes
        if o.suppress and o.address
    }
    return list(rows.values())


def sqlite_outcomes(outcomes: Sequence[Outcome], worker: str) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """SQLite: the executemany statements (text, rows) that record ``outcomes`` (no suppressions):
    the delivery rows, and the attempts (failures and retries)."""
    statements = [(_RECORD_SQL, [_sqlite_row(o, worker) for o in outcomes])]
    attempts = [
        (o.delivery_id, o.at, o.attempt, o.reason, _detail(o), o.provider_id, worker)
        for o in outcomes
        if o.attempt not in ("released", "sent")
    ]
    if attempts:
        statements.append((_ATTEMPT_SQL, attempts))
    return statements


def _sqlite_row(o: Outcome, worker: str) -> tuple[Any, ...]:
    """_RECORD_SQL's parameters for ``o`` (:func:`_record_row`'s values, unpacked in one step: one row
    per send); ``sent_by`` is ``worker`` for a send."""
    id_, _, _, state, at, _, why, note, pid, due, _, _, (throttle, retry, down, took) = o
    sent_at, sent_by = (at, worker) if state in _SENT_STATES else (None, None)
    note, due = (note or "")[:1000] or None, at if due is None else due
    return state, why, note, pid, sent_at, due, at, sent_by, throttle, retry, down, took, id_, worker


def _insert_ignore(on_sqlite: bool, table: Any, keys: list[str]) -> Any:
    dialect_insert = sqlite.insert if on_sqlite else postgresql.insert
    return dialect_insert(table).on_conflict_do_nothing(index_elements=keys)


def release(store: Store, worker: str, now: float, ids: Iterable[int] | None = None) -> int:
    """Give back claimed-but-unsent deliveries (graceful shutdown) without counting an attempt."""
    condition = and_(DELIVERY.c.lease_owner == worker, DELIVERY.c.state == "sending")
    id_list = list(ids) if ids is not None else None
    if id_list is not None:
        if not id_list:
            return 0
        condition = and_(condition, DELIVERY.c.id.in_(id_list))
    with store.begin() as connection:
        released = connection.execute(
            update(DELIVERY)
            .where(condition)
            .values(
                state=_queued_unless_cancelled(),
                lease_owner=None,
                lease_until=None,
                attempts=DELIVERY.c.attempts - 1,
                updated_at=now,
            )
            .returning(DELIVERY.c.channel)
        ).all()
        per_channel: dict[str, int] = {}
        for (channel,) in released:
            per_channel[channel] = per_channel.get(channel, 0) + 1
        for channel, count in per_channel.items():
            bump_counter(store, connection, channel, day_of(now), -count)
        if per_channel:
            announce_work(store, connection, per_channel)
    return len(released)


def _queued_unless_cancelled() -> Any:
    """A delivery given back goes to ``queued``, or to ``cancelled`` if its notification was cancelled."""
    cancelled = exists().where(
        NOTIFICATION.c.id == DELIVERY.c.notification_id, NOTIFICATION.c.state == "cancelled"
    )
    return case((cancelled, "cancelled"), else_="queued")


def reclaim_expired(store: Store, now: float) -> int:
    """Deliveries whose lease ran out (their worker died) become claimable again."""
    with store.begin() as connection:
        return requeue(store, connection, DELIVERY.c.lease_until < now, now)


def requeue(store: Store, connection: Any, condition: Any, now: float) -> int:
    """Claimed deliveries matching ``condition`` become claimable again (dead owners, lapsed leases)."""
    channels = (
        connection.execute(
            update(DELIVERY)
            .where(DELIVERY.c.state == "sending", condition)
            .values(state=_queued_unless_cancelled(), lease_owner=None, lease_until=None, updated_at=now)
            .returning(DELIVERY.c.channel)
        )
        .scalars()
        .all()
    )
    if channels:
        announce_work(store, connection, channels)
    return len(channels)
