"""Announcement use cases shared by the CLI and Slack: preview, announce, cancel, status, report.

Front ends parse their input into an :class:`AnnounceRequest`, call one function here, and render
the result. Errors meant for the user are :class:`AnnounceError` with a one-line message.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection

from bot.alerts import maintenance
from bot.app import Herald
from bot.channel_specs import CHANNELS, spec
from bot.config import SEVERITIES
from bot.directory.audience import AudienceError, parse_audience
from bot.directory.audience_sql import audience_condition
from bot.directory.reach import anyone, reach
from bot.engine import caps, ledger, notice_state, rungs
from bot.engine.create import NewNotification, ensure_notification, find_by_key, new_notification_id
from bot.engine.delays import notification_delays
from bot.engine.forecast import ChannelLoad, Forecast, forecast
from bot.engine.health import outages
from bot.people import CANCELLED_LATE, People, people_counts, sla_document
from bot.recipients.bounce_state import BOUNCED, bounced_or_state
from bot.recipients.confirmations import confirmed_count
from bot.recipients.rules import delivery_rules, opt_out_conditions
from bot.tables import DELIVERY_STATES, AuditEntry, Delivery, Notification, table_of

DELIVERY = table_of(Delivery)
NOTIFICATION = table_of(Notification)
AUDIT = table_of(AuditEntry)


class AnnounceError(ValueError):
    """The request cannot be sent as asked; the message is for the user."""


@dataclass(frozen=True)
class AnnounceRequest:
    audience: str
    channels: tuple[str, ...]
    severity: str
    title: str
    body: str
    created_by: str = "cli"
    start_at: float | None = None
    idempotency_key: str | None = None
    slack_groups: Mapping[str, Collection[str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str = "announcement"
    window: maintenance.Window | None = None  # maintenance only (bot.alerts.maintenance)
    # A channel ladder (``slack,email>sms``): every rung, the first included; () for one rung.
    rungs: tuple[tuple[str, ...], ...] = ()


@dataclass
class ChannelPreview:
    reachable: int
    unreachable: dict[str, int]


@dataclass
class Preview:
    recipients: int
    channels: dict[str, ChannelPreview]
    sms_segments: int
    forecast: Forecast
    deliver_within: float


def _validate(herald: Herald, request: AnnounceRequest) -> None:
    if request.severity not in herald.settings.sla and request.severity not in SEVERITIES:
        known = ", ".join(herald.settings.sla)
        raise AnnounceError(f"unknown severity {request.severity!r} (expected one of {known})")
    if not request.channels:
        raise AnnounceError(f"no channels given (expected one or more of {', '.join(CHANNELS)})")
    configured = herald.configured_channels()
    for channel in request.channels:
        if channel not in CHANNELS:
            raise AnnounceError(f"unknown channel {channel!r} (expected one of {', '.join(CHANNELS)})")
        if channel not in configured:
            raise AnnounceError(f"the {channel} channel is not configured")
    if not request.title.strip():
        raise AnnounceError("the title is empty")
    if request.window is not None and request.severity != "maintenance":
        raise AnnounceError("a maintenance window is only for the maintenance severity")


def _audience(request: AnnounceRequest) -> Any:
    try:
        return parse_audience(request.audience)
    except AudienceError as exc:
        raise AnnounceError(f"audience: {exc}") from exc


def message_cost(herald: Herald, request: AnnounceRequest, channel: str) -> int:
    """Throttle units one copy of the message costs on ``channel`` (SMS segments; 1 for email)."""
    from channels.base import Notice

    notice = Notice(
        notification_id="preview",
        severity=request.severity,
        title=request.title,
        body=request.body,
        mandatory=herald.settings.is_mandatory(request.severity),
    )
    return herald.channel(channel).prepare(notice).cost


def check(herald: Herald, request: AnnounceRequest) -> dict[str, int]:
    """Refuse what cannot be announced (bad fields, no one matches, a channel or its templates that
    do not open), without counting the reach (``--json`` shows none); one message's cost per channel."""
    _validate(herald, request)
    if not anyone(herald.store, _audience(request), request.slack_groups):
        raise AnnounceError(f"no one matches {request.audience!r}")
    return {name: message_cost(herald, request, name) for name in request.channels}


def preview(herald: Herald, request: AnnounceRequest) -> Preview:
    """Who would be reached on which channel, and when the last message would go out."""
    costs = check(herald, request)
    audience = _audience(request)
    rules = delivery_rules(herald.settings)
    found = reach(
        herald.store,
        audience,
        request.channels,
        slack_groups=request.slack_groups,
        sample=0,
        opted_out=opt_out_conditions(rules, request.severity, request.channels),
    )
    if found.count == 0:  # everyone matching left between the two reads
        raise AnnounceError(f"no one matches {request.audience!r}")
    now = herald.clock.now()
    start = max(now, request.start_at or now)
    within = herald.settings.sla_for(request.severity).deliver_within
    deadline = start + within
    channels = {
        name: ChannelPreview(found.reachable.get(name, 0), dict(found.unreachable.get(name, {})))
        for name in request.channels
    }
    loads = [
        channel_load(herald, name, channels[name].reachable, costs[name], deadline, now)
        for name in request.channels
    ]
    return Preview(
        recipients=found.count,
        channels=channels,
        sms_segments=costs.get("sms", 0),
        forecast=forecast(loads, start, deadline),
        deliver_within=within,
    )


def channel_load(
    herald: Herald, name: str, messages: int, cost: float, deadline: float, now: float
) -> ChannelLoad:
    section = spec(name).settings(herald.settings)
    cap = caps.cap_today(herald.store, name, now, section.daily_cap, caps.schedule(herald.settings, name))
    cap_room = None if cap is None else max(0, cap - caps.sent_today(herald.store, name, now))
    return ChannelLoad(
        channel=name,
        messages=messages,
        cost=cost,
        ahead=_queued_ahead(herald, name, deadline),
        rate=section.rate_per_second,
        burst=section.burst,
        concurrency=herald.concurrency(name),
        latency=spec(name).latency,
        cap_room=cap_room,
        daily_cap=cap or 0,
    )


def _queued_ahead(herald: Herald, channel: str, deadline: float) -> int:
    """Open deliveries of ``channel`` that would go before a delivery due by ``deadline``."""
    with herald.store.begin() as connection:
        value = connection.execute(
            select(func.count())
            .select_from(DELIVERY)
            .where(
                DELIVERY.c.channel == channel,
                DELIVERY.c.state.in_(ledger.OPEN_STATES),
                DELIVERY.c.deadline <= deadline,
            )
        ).scalar_one()
    return int(value)


def announce(herald: Herald, request: AnnounceRequest) -> str:
    """Store the notification and all its deliveries; return its id (the same one on a retry, also
    when a retry or a second click on Send runs at the same time as the first)."""
    if request.idempotency_key:
        existing = find_by_key(herald.store, request.idempotency_key)
        if existing:
            return existing
    _validate(herald, request)
    condition = audience_condition(_audience(request), request.slack_groups)
    new = _new_notification(herald, request)
    then = rungs.storer(herald.settings, new, request.rungs[1:])
    rules = delivery_rules(herald.settings)
    notification_id, recipients = ensure_notification(herald.store, new, condition, rules, then)
    if recipients is None:  # a concurrent request with the same key stored it first
        return notification_id
    if recipients == 0:
        notice_state.cancel(herald.store, new.id, new.created_at)
        raise AnnounceError(f"no one matches {request.audience!r}")
    detail = {
        "audience": request.audience,
        "channels": list(new.channels),
        "severity": request.severity,
        "title": new.title,
        "recipients": recipients,
    }
    if request.window is not None:
        am = bool(herald.settings.alertmanager.url)
        maintenance.store_window(herald.store, new.id, new.title, request.created_by, request.window, am)
    audit(herald, request.created_by, "announce", new.id, True, detail)
    return new.id


def _new_notification(herald: Herald, request: AnnounceRequest) -> NewNotification:
    """The notification ``request`` asks for, starting now or at its ``start_at``, due by its SLA."""
    now = herald.clock.now()
    start = max(now, request.start_at or now)
    within = herald.settings.sla_for(request.severity).deliver_within
    return NewNotification(
        id=new_notification_id(),
        kind=request.kind,
        severity=request.severity,
        title=request.title.strip(),
        body=request.body,
        audience=request.audience,
        channels=tuple(dict.fromkeys(request.rungs[0] if request.rungs else request.channels)),
        created_by=request.created_by,
        created_at=now,
        start_at=start,
        deadline=start + within,
        state="scheduled" if start > now + 1 else "queued",
        idempotency_key=request.idempotency_key,
        meta=rungs.with_confirm(herald.settings, request.severity, _meta(request)),
    )


def _meta(request: AnnounceRequest) -> dict[str, Any]:
    """The notification's meta; a maintenance window rides along for the templates' ``window``."""
    if request.window is None:
        return dict(request.meta)
    return {**request.meta, "window": {"start": request.window.starts_at, "end": request.window.ends_at}}


def cancel(herald: Herald, notification_id: str, actor: str) -> int:
    count = notice_state.cancel(herald.store, notification_id, herald.clock.now())
    audit(herald, actor, "cancel", notification_id, True, {"cancelled": count})
    return count


def audit(
    herald: Herald, actor: str, action: str, subject: str, allowed: bool, detail: dict[str, Any]
) -> None:
    with herald.store.begin() as connection:
        connection.execute(
            AUDIT.insert().values(
                at=herald.clock.now(),
                actor=actor,
                action=action,
                subject=subject,
                allowed=allowed,
                detail=json.dumps(detail, default=str),
            )
        )


def status(herald: Herald, notification_id: str) -> dict[str, Any] | None:
    """SPEC's status JSON for one notification, or None when there is no such id."""
    with herald.store.begin() as connection:
        row = connection.execute(select(NOTIFICATION).where(NOTIFICATION.c.id == notification_id)).first()
        if row is None:
            return None
        counts, (first_sent, last_sent), cancelled_late = _delivery_counts(connection, notification_id)
        people = replace(
            people_counts(connection, notification_id), confirmed=confirmed_count(connection, notification_id)
        )
        delays = notification_delays(connection, dict(row._mapping))
        ladder = rungs.rungs_of(connection, notification_id)
    # A later rung not started yet may still reach who is left: no verdict before the deadline.
    waiting = bool(cancelled_late), any(r["started_at"] is None for r in ladder)
    found = _status_dict(herald, dict(row._mapping), counts, (first_sent, last_sent), people, waiting)
    found["sla"].update(delays)  # why it was late (bot.engine.delays)
    if ladder:
        found["rungs"] = ladder
    if found["left"]:  # name the outages holding what is left (bot.engine.health)
        down = outages(herald.store)
        found["channels_down"] = {c: down[c].describe() for c in found["channels"] if c in down}
    if found["severity"] == "maintenance" and (
        window := maintenance.window_status(herald.store, found["id"])
    ):
        found["window"] = window
    return found


def _delivery_counts(connection: Connection, notification_id: str) -> tuple[Any, tuple[Any, Any], int]:
    """(channel, state, count) rows, first and last ``sent_at``, deliveries cancelled late: one pass."""
    state = bounced_or_state(DELIVERY)  # failed later by a bounce counts as bounced, apart
    late = func.sum(case((CANCELLED_LATE, 1), else_=0))
    sent_at = DELIVERY.c.sent_at
    groups = connection.execute(
        select(DELIVERY.c.channel, state, func.count(), func.min(sent_at), func.max(sent_at), late)
        .where(DELIVERY.c.notification_id == notification_id)
        .group_by(DELIVERY.c.channel, state)
    ).all()
    sent = [(first, last) for *_, first, last, _ in groups if first is not None]
    span = (min(first for first, _ in sent), max(last for _, last in sent)) if sent else (None, None)
    return [row[:3] for row in groups], span, sum(int(row[5] or 0) for row in groups)


def _status_dict(
    herald: Herald,
    row: Mapping[str, Any],
    counts: Any,
    sent: tuple[float | None, float | None],
    people: People,
    waiting: tuple[bool, bool] = (False, False),
) -> dict[str, Any]:
    """SPEC's status JSON from the notification ``row``, its (channel, state, count) rows, its first
    and last ``sent`` times and its :class:`~bot.people.People`. ``waiting``: whether a delivery was
    cancelled after the deadline (it was open past it, a miss a cancel does not undo), and whether a
    later rung of its ladder has not started yet."""
    channels: dict[str, dict[str, int]] = {
        name: dict.fromkeys((*DELIVERY_STATES, BOUNCED), 0)
        for name in (row["channels"] or "").split(",")
        if name
    }
    left = 0
    for channel, state, count in counts:
        channels.setdefault(channel, {})[state] = int(count)
        if state in ledger.OPEN_STATES:
            left += int(count)
    now = herald.clock.now()
    expired = any(c.get("expired", 0) for c in channels.values())
    target = herald.settings.sla_for(row["severity"]).reach
    cancelled_late, rung_pending = waiting
    rung_pending = rung_pending and row["state"] != "cancelled"
    running = bool(left or rung_pending) and now <= row["deadline"]
    missed = expired or left > 0 or cancelled_late
    sla = sla_document(row, sent, people, target, running=running, missed=missed)
    state = row["state"]
    if state == "scheduled" and row["start_at"] <= now:
        state = "queued"
    if state == "queued" and sent[1] is not None:
        state = "sending"
    return {
        "id": row["id"],
        "kind": row["kind"],
        "state": state,
        "severity": row["severity"],
        "title": row["title"],
        "audience": row["audience"],
        "created_by": row["created_by"],
        "recipients": row["recipients"],
        "created_at": row["created_at"],
        "start_at": row["start_at"],
        "deadline": row["deadline"],
        "finished_at": row["finished_at"],
        "left": left,
        "channels": channels,
        "people": people.as_json(),
        "sla": sla,
        "meta": json.loads(row["meta"] or "{}"),
    }


def recent(herald: Herald, limit: int = 10, since: float | None = None) -> list[dict[str, Any]]:
    query = select(NOTIFICATION.c.id).order_by(NOTIFICATION.c.created_at.desc())
    if since is not None:
        query = query.where(NOTIFICATION.c.created_at >= since)
    if limit:
        query = query.limit(limit)
    with herald.store.begin() as connection:
        ids = [row[0] for row in connection.execute(query).all()]
    return [s for s in (status(herald, i) for i in ids) if s is not None]


def scheduled(herald: Herald) -> list[dict[str, Any]]:
    now = herald.clock.now()
    waiting = NOTIFICATION.c.state == "scheduled", NOTIFICATION.c.start_at > now
    query = select(NOTIFICATION.c.id).where(*waiting).order_by(NOTIFICATION.c.start_at)
    with herald.store.begin() as connection:
        ids = connection.execute(query).scalars().all()
    return [s for s in (status(herald, i) for i in ids) if s is not None]
