"""The ledger's hot-path records: claim rows into :class:`Claimed`, outcomes into driver parameters."""

from __future__ import annotations

import random

import pytest

from bot.engine import ledger
from bot.engine.ledger import Claimed, Outcome
from channels.base import Recipient

NOW = 1_767_225_600.0


def test_claim_rows_become_claims_earliest_deadline_then_id_first() -> None:
    rows = [
        (id_, "n1", f"p{id_}", f"p{id_}@example.com", NOW + deadline, 1, NOW - 5, NOW - 4, name, language)
        for id_, deadline, name, language in [
            (5, 60, "Eve", "de"),
            (3, 60, None, None),
            (9, 30, "Ann", ""),
            (1, 90, "", None),
            (4, 30, "Bob", "pt-BR"),
        ]
    ]
    random.Random(7).shuffle(rows)
    batch = ledger.claimed_batch("email", rows, NOW)
    assert [item.id for item in batch] == [4, 9, 3, 5, 1]
    assert batch[0] == Claimed(
        4, "n1", "p4", "email", "p4@example.com", NOW + 30, 1, NOW - 5, "Bob", "pt-BR", NOW - 4, NOW
    )
    assert (batch[2].name, batch[2].language) == ("", "")  # no person row: empty, never None
    assert ledger.claimed_batch("email", [], NOW) == []


OUTCOMES = [
    Outcome(1, "email", "a@example.com", "sent", NOW, "sent", None, "250 ok", "<m@x>", notification_id="n1"),
    Outcome(2, "sms", "+49151", "delivered", NOW, "sent", detail="", waits=(0.5, 0.0, 0.25, 1.0)),
    Outcome(
        3, "email", "b@example.com", "deferred", NOW, "transient", "timeout", "x" * 1500, due_at=NOW + 30
    ),
    Outcome(
        4, "email", "c@example.com", "failed", NOW, "permanent", "rejected_recipient", None, suppress=True
    ),
    Outcome(5, "email", "d@example.com", "queued", NOW, "released"),
]


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: o.state)
def test_sqlite_rows_carry_the_recorded_values(outcome: Outcome) -> None:
    """SQLite's parameters are PostgreSQL's row (:func:`ledger._record_row`) in _RECORD_SQL's order."""
    [(statement, [row]), *attempts] = ledger.sqlite_outcomes([outcome], "w1")
    id_, state, why, note, pid, sent_at, due_at, at, attempt, throttle, retry, down, took = (
        ledger._record_row(outcome)
    )
    sent_by = "w1" if sent_at is not None else None
    assert statement == ledger._RECORD_SQL
    assert row == (
        state,
        why,
        note,
        pid,
        sent_at,
        due_at,
        at,
        sent_by,
        throttle,
        retry,
        down,
        took,
        id_,
        "w1",
    )
    assert note is None or len(note) <= 1000
    expected = (
        []
        if attempt in ("sent", "released")
        else [(ledger._ATTEMPT_SQL, [(id_, at, attempt, why, note, pid, "w1")])]
    )
    assert attempts == expected


@pytest.mark.parametrize(
    "record",
    [
        Claimed(1, "n1", "p1", "email", "a@example.com", NOW, 1),
        OUTCOMES[0],
        Recipient("a@example.com", "Ann"),
    ],
)
def test_per_send_records_are_immutable(record: object) -> None:
    field = type(record)._fields[0]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        setattr(record, field, "changed")
