"""Bounces that arrive after the relay said 250: what one delivery report does to the ledger.

A :class:`BounceReport` comes from the bounce mailbox (:mod:`.bounce_mail`) or ``POST /hooks/bounces``
(:mod:`.bounce_web`). It is matched to a delivery by its VERP token (:mod:`channels.verp`), else by
recipient and Message-ID (the email channel's ``provider_id``). A token that is there but not signed
by this installation makes the whole report count for nothing (``forged``): a forged bounce must not
fail a delivery nor suppress an address. A report that names no delivery (no token, no Message-ID of
ours) is ``unmatched`` and changes nothing.

- ``failed`` with ``5.x.x``: a ``sent`` delivery becomes ``failed``, reason ``bounced: 5.1.1 …``; a
  hard code (``5.1.x``, ``5.2.1``, ``5.4.1``: the address does not exist or is disabled) also puts the
  address on the suppression list (source ``bounce``). Other 5.x.x codes (policy, mailbox full)
  count toward the soft-failure rule, like a synchronous ``rejected_recipient``.
- ``failed`` with ``4.x.x`` (the relay gave up retrying): ``failed`` too, and soft.
- ``delayed``: no state changes; nor does any other action (``delivered``, ``relayed``: ``ignored``).
- a complaint (ARF): the person stops getting non-mandatory email (one-click unsubscribe's effect).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, update
from sqlmodel import SQLModel

from bot.config import Settings
from bot.recipients import preferences, suppressions
from bot.recipients.rules import delivery_rules
from bot.store import Store
from bot.tables import Delivery
from channels.verp import Verp

log = logging.getLogger("herald.bounces")

DELIVERY = SQLModel.metadata.tables[Delivery.__tablename__]
STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
HARD = re.compile(r"5\.1\.\d+|5\.2\.1|5\.4\.1")
SOURCE = "bounce"
Outcome = Literal["failed", "suppressed", "soft", "delayed", "complaint", "unmatched", "forged", "ignored"]


@dataclass(frozen=True, slots=True)
class BounceReport:
    """One recipient's fate as a relay reports it. ``kind`` is ``complaint`` for an ARF report."""

    recipient: str
    status: str = ""
    action: str = "failed"
    token: str | None = None
    message_id: str | None = None
    diagnostic: str = ""
    kind: Literal["bounce", "complaint"] = "bounce"

    @property
    def reason(self) -> str:
        return f"bounced: {self.status} {' '.join(self.diagnostic.split())}".strip()


@dataclass(frozen=True, slots=True)
class Applied:
    outcome: Outcome
    delivery_id: int | None = None


def is_hard(status: str) -> bool:
    return HARD.fullmatch(status) is not None


def verp_of(settings: Settings) -> Verp | None:
    from bot.channel_specs import verp_key

    key = verp_key(settings)
    if settings.bounces.return_path and key:
        return Verp(settings.bounces.return_path, key)
    return None


def apply(store: Store, settings: Settings, report: BounceReport, now: float) -> Applied:
    """Match ``report`` to a delivery and act on it (see the module docstring)."""
    match = _match(store, verp_of(settings), report)
    if match is None:
        return Applied("forged")
    delivery_id, address, person_id = match
    if report.kind == "complaint":
        return _complaint(store, settings, report, person_id, delivery_id, now)
    if delivery_id is None:
        return Applied("unmatched")
    if report.action.lower() != "failed" or not report.status.startswith(("4.", "5.")):
        return Applied("delayed" if report.action.lower() == "delayed" else "ignored", delivery_id)
    _fail(store, delivery_id, report, now)
    if is_hard(report.status):
        suppressions.add(store, "email", address, report.reason, SOURCE, now)
        return Applied("suppressed", delivery_id)
    return Applied("failed" if report.status.startswith("5.") else "soft", delivery_id)


def _match(
    store: Store, verp: Verp | None, report: BounceReport
) -> tuple[int | None, str, str | None] | None:
    """(delivery id, address, person id); the id None when nothing matches; None when forged."""
    d = DELIVERY.c
    query = select(d.id, d.address, d.person_id).where(d.channel == "email")
    if report.token:
        delivery_id = verp.read(report.token) if verp is not None else None
        if delivery_id is None:
            return None
        query = query.where(d.id == delivery_id)
    elif report.message_id:
        message_id = f"<{report.message_id.strip().strip('<>')}>"
        address = report.recipient.strip().lower()
        query = query.where(d.provider_id == message_id, d.address == address)
    else:
        return None, "", None  # an address alone proves nothing: anyone can write a bounce
    with store.begin() as connection:
        row = connection.execute(query.limit(1)).first()
    return (row[0], row[1], row[2]) if row is not None else (None, "", None)


def _fail(store: Store, delivery_id: int, report: BounceReport, now: float) -> None:
    with store.begin() as connection:  # a final state to another: the notification stays done
        connection.execute(
            update(DELIVERY)
            .where(DELIVERY.c.id == delivery_id, DELIVERY.c.state == "sent")
            .values(state="failed", reason=report.reason[:64], detail=report.reason[:1000], updated_at=now)
        )


def _complaint(
    store: Store,
    settings: Settings,
    report: BounceReport,
    person: str | None,
    delivery: int | None,
    now: float,
) -> Applied:
    if person is None:
        return Applied("unmatched", delivery)
    preferences.unsubscribe_email(store, delivery_rules(settings), person, now)
    log.info("abuse complaint: person %s no longer gets non-mandatory email", person)
    return Applied("complaint", delivery)
