"""Inbound SMS are acted on once: Twilio names each message by ``MessageSid``, and its signature
covers it, so a captured request replayed (by anyone, or by Twilio retrying) carries the same one.
:func:`first_sight` records it; a replay gets the reply stored the first time and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.recipients.tables import InboundSms
from bot.store import Store
from bot.tables import table_of

INBOUND = table_of(InboundSms)
_SID = re.compile(r"[A-Za-z0-9]{2,64}")  # Twilio's: two letters and 32 hex digits


def message_sid(fields: Mapping[str, str]) -> str | None:
    """The inbound message's Twilio SID, when it has one of SID form."""
    sid = (fields.get("MessageSid") or fields.get("SmsSid") or "").strip()
    return sid if _SID.fullmatch(sid) else None


@dataclass(frozen=True)
class Seen:
    """An inbound message met before; ``reply`` is what it was answered (None: no reply)."""

    reply: str | None


def first_sight(store: Store, message_sid: str, phone: str, now: float) -> Seen | None:
    """Record ``message_sid``; None the first time, else what was answered then."""
    insert = (sqlite.insert if store.is_sqlite else postgresql.insert)(INBOUND)
    row = {"message_sid": message_sid, "phone": phone.replace("\x00", "")[:32], "received_at": now}
    with store.begin() as connection:
        fresh = insert.values(**row).on_conflict_do_nothing(index_elements=["message_sid"])
        if connection.execute(fresh.returning(INBOUND.c.message_sid)).first() is not None:
            return None  # (rowcount is not reliable here across drivers; RETURNING is)
        reply = connection.execute(
            select(INBOUND.c.reply).where(INBOUND.c.message_sid == message_sid)
        ).scalar_one_or_none()
    return Seen(reply)


def remember_reply(store: Store, message_sid: str, reply: str | None) -> None:
    with store.begin() as connection:
        connection.execute(update(INBOUND).where(INBOUND.c.message_sid == message_sid).values(reply=reply))
