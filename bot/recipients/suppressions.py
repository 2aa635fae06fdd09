"""The suppression list (addresses Herald never sends to, on one channel) and what changes it.

Entries come from: hard failures when sending (``ledger.record``, source ``delivery``; Twilio's 21610
for a number that replied STOP is one, reason ``opted_out: …``), repeated soft failures
(:mod:`.soft_failures`, source ``soft-failures``), an SMS STOP (source ``sms-stop``), a failed or
undelivered status callback with Twilio error 30005/30006 (source ``twilio-status``). START
removes the number's entry, whatever put it there (a number that texts us works); so does
``herald suppressions remove``.

Adding an entry also suppresses that address's waiting deliveries (``queued``/``deferred``) on the
channel, so a STOP holds for notices already in the queue too. Suppressed deliveries count as
``suppressed`` in previews and reports, never as ``failed``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bot.channel_specs import spec
from bot.engine import notice_state
from bot.recipients.sms import StatusReport, ledger_state, predecessors
from bot.store import Store
from bot.tables import Delivery, Suppression

SUPPRESSION = SQLModel.metadata.tables[Suppression.__tablename__]
DELIVERY = SQLModel.metadata.tables[Delivery.__tablename__]
WAITING = ("queued", "deferred")


@dataclass(frozen=True, slots=True)
class Entry:
    channel: str
    address: str
    reason: str
    source: str
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalise(channel: str, address: str) -> str:
    """Emails are kept lower-case (as the directory stores them); numbers as given (E.164)."""
    return spec(channel).normalise(address)


def entries(store: Store, channel: str | None = None) -> list[Entry]:
    query = select(SUPPRESSION).order_by(SUPPRESSION.c.created_at.desc(), SUPPRESSION.c.address)
    if channel is not None:
        query = query.where(SUPPRESSION.c.channel == channel)
    with store.begin() as connection:
        return [Entry(**row._mapping) for row in connection.execute(query).all()]


def remove(store: Store, channel: str, address: str) -> bool:
    """Take an address off the list; False when it was not on it."""
    with store.begin() as connection:
        result = connection.execute(
            delete(SUPPRESSION).where(
                SUPPRESSION.c.channel == channel, SUPPRESSION.c.address == normalise(channel, address)
            )
        )
    return bool(result.rowcount)


def add(store: Store, channel: str, address: str, reason: str, source: str, now: float) -> int:
    """Put an address on the list (an existing entry is kept as it was) and suppress its waiting
    deliveries; returns how many deliveries that suppressed."""
    address = normalise(channel, address)
    with store.begin() as connection:
        _insert(store, connection, channel, address, reason, source, now)
        touched = _suppress_waiting(
            connection, channel, address, "opted_out" if source == "sms-stop" else "suppressed", now
        )
    notice_state.finish_notifications(store, now, touched)
    return len(touched)


def _insert(
    store: Store, connection: Connection, channel: str, address: str, reason: str, source: str, now: float
) -> None:
    dialect_insert = sqlite.insert if store.is_sqlite else postgresql.insert
    connection.execute(
        dialect_insert(SUPPRESSION)
        .values(channel=channel, address=address, reason=reason[:200], source=source, created_at=now)
        .on_conflict_do_nothing(index_elements=["channel", "address"])
    )


def _suppress_waiting(
    connection: Connection, channel: str, address: str, reason: str, now: float
) -> set[str]:
    rows = connection.execute(
        update(DELIVERY)
        .where(DELIVERY.c.channel == channel, DELIVERY.c.address == address, DELIVERY.c.state.in_(WAITING))
        .values(state="suppressed", reason=reason, updated_at=now)
        .returning(DELIVERY.c.notification_id)
    ).all()
    return {row[0] for row in rows}


def opt_out_sms(store: Store, phone: str, now: float) -> int:
    """An SMS STOP from ``phone``."""
    return add(store, "sms", phone, "opted out by SMS (STOP)", "sms-stop", now)


def opt_in_sms(store: Store, phone: str) -> bool:
    """An SMS START from ``phone``: it may be sent to again."""
    return remove(store, "sms", phone)


def record_status(store: Store, report: StatusReport, now: float) -> bool:
    """Apply one Twilio status callback to the delivery with that MessageSid; True when it changed.

    The update is conditional on the current state (:func:`bot.recipients.sms.predecessors`), so
    repeated and out-of-order callbacks never move a delivery backwards, even when two arrive at once.
    A failure with error 30005/30006 also suppresses the number (30003 is a soft failure).
    """
    state = ledger_state(report.status)
    changed = False
    if state is not None and report.message_sid:
        allowed = [s for s in predecessors(state) if s == "sent"]  # the ledger's state for a handed-over SMS
        if allowed:
            values: dict[str, Any] = {"state": state, "updated_at": now}
            if state == "failed":
                values["reason"] = "undelivered"
                values["detail"] = f"twilio {report.status}" + (
                    f" {report.error_code}" if report.error_code else ""
                )
            changed = _apply_status(store, report, allowed, values)
    if report.suppresses and report.to:
        add(store, "sms", report.to, f"twilio {report.status} {report.error_code}", "twilio-status", now)
    return changed


def _apply_status(store: Store, report: StatusReport, allowed: list[str], values: dict[str, Any]) -> bool:
    """The conditional UPDATE of the delivery with ``report``'s MessageSid. Found by its address (the
    callback's ``To``: the indexed way); only a callback without one, or whose ``To`` is no number that
    message went to, is matched by the SID alone, which reads the whole table. A late or repeated
    callback for a known message (its state already past ``allowed``) changes nothing and reads no more."""
    d = DELIVERY.c
    message = (d.provider_id == report.message_sid, d.channel == "sms")
    advance = update(DELIVERY).where(*message, d.state.in_(allowed)).values(**values)
    with store.begin() as connection:
        if report.to:
            to = d.address == report.to
            if connection.execute(advance.where(to)).rowcount:
                return True
            if connection.execute(select(d.id).where(*message, to).limit(1)).first():
                return False  # a known message already past this report
        return bool(connection.execute(advance).rowcount)
