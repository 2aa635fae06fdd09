"""Previews waiting for Send, kept in the audit log.

A preview is an announcement attempt, so it is audited anyway (action ``slack.preview``, subject
``p_<token>``, the request in ``detail``). The Send button carries only the token; Send reads the
request back from that row. So Send works after a restart and on another ``herald serve`` replica,
for :data:`PENDING_TTL` seconds. A token is spent once in effect: the announcement is stored with
idempotency key ``slack:<token>``, so a second click or a Slack retry yields the same notification.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bot import service
from bot.alerts.maintenance import Window
from bot.app import Herald
from bot.service import AnnounceRequest
from bot.tables import AuditEntry, table_of

AUDIT = table_of(AuditEntry)
PREVIEW_ACTION = "slack.preview"
PENDING_TTL = 900.0
TOKEN_PREFIX = "p_"  # noqa: S105 - marks a pending-preview key, not a secret


@dataclass(frozen=True, slots=True)
class Pending:
    """A previewed request, who asked for it, where, and the forecast they were shown."""

    token: str
    user_id: str
    channel_id: str
    request: AnnounceRequest
    recipients: int
    forecast_seconds: float
    created_at: float


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(12)


def is_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)


def save(herald: Herald, pending: Pending) -> None:
    """Audit the preview; the row is what Send reads back."""
    request = pending.request
    detail: dict[str, Any] = {
        "channel": pending.channel_id,
        "audience": request.audience,
        "channels": list(request.channels),
        "severity": request.severity,
        "title": request.title,
        "body": request.body,
        "start_at": request.start_at,
        "recipients": pending.recipients,
        "forecast_s": pending.forecast_seconds,
        "meta": request.meta,
        "rungs": [list(rung) for rung in request.rungs],
    }
    if request.window is not None:  # a maintenance window (bot.alerts.maintenance)
        window = request.window
        detail["window"] = [window.starts_at, window.ends_at, dict(window.matchers)]
    service.audit(herald, pending.user_id, PREVIEW_ACTION, pending.token, True, detail)


def load(herald: Herald, token: str) -> Pending | None:
    """The preview behind ``token``; None when unknown or older than :data:`PENDING_TTL`."""
    if not is_token(token):
        return None
    with herald.store.begin() as connection:
        row = connection.execute(
            select(AUDIT.c.at, AUDIT.c.actor, AUDIT.c.detail)
            .where(AUDIT.c.action == PREVIEW_ACTION, AUDIT.c.subject == token)
            .order_by(AUDIT.c.id.desc())
            .limit(1)
        ).first()
    if row is None or herald.clock.now() - float(row.at) > PENDING_TTL:
        return None
    detail = json.loads(row.detail or "{}")
    request = AnnounceRequest(
        audience=str(detail["audience"]),
        channels=tuple(detail["channels"]),
        severity=str(detail["severity"]),
        title=str(detail["title"]),
        body=str(detail.get("body") or ""),
        created_by=f"slack:{row.actor}",
        start_at=detail.get("start_at"),
        idempotency_key=f"slack:{token}",
        window=Window(*detail["window"]) if detail.get("window") else None,
        meta=dict(detail.get("meta") or {}),
        rungs=tuple(tuple(str(c) for c in rung) for rung in detail.get("rungs") or ()),
    )
    return Pending(
        token=token,
        user_id=str(row.actor),
        channel_id=str(detail.get("channel") or ""),
        request=request,
        recipients=int(detail.get("recipients") or 0),
        forecast_seconds=float(detail.get("forecast_s") or 0.0),
        created_at=float(row.at),
    )
