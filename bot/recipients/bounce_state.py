"""How reports tell a bounce apart: a delivery ``failed`` by a later bounce (reason ``bounced: …``,
:mod:`.bounces`) counts as ``bounced`` in ``status`` and ``report``, not as a synchronous ``failed``."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, and_, case

BOUNCED = "bounced"
BOUNCED_REASON = "bounced:"


def bounced_or_state(delivery: Table) -> ColumnElement[str]:
    """The delivery's state, or ``bounced`` for one a bounce failed."""
    c = delivery.c
    bounced = and_(c.state == "failed", c.reason.like(f"{BOUNCED_REASON}%"))
    return case((bounced, BOUNCED), else_=c.state).label("state")
