"""The alert lifecycle: store a batch, group and deduplicate, notify under flood control, resolve, ack.

``ingest`` is what every source (Alertmanager, Grafana, the generic webhook, ``herald alert``) calls
with a parsed batch. For each alert it picks the route (:mod:`bot.alerts.routing`), the open group of
that route with the same group labels (or opens one, freezing its :class:`~bot.alerts.models.Policy`),
and the alert's row in the group by fingerprint. What is owed is written to the group in the same
transaction, compare-and-set on ``version``:

- a new group owes a page (``pending = "opened"``) to the route's audience;
- new alerts joining an unacknowledged group owe an update, at most one per :data:`UPDATE_INTERVAL`;
- a re-sent firing alert owes nothing until the policy's ``repeat_interval`` has passed since the
  group's last notification (then a ``repeat``); a re-sent identical webhook never notifies twice;
- when no alert of a group is firing any more, the group resolves and owes a resolution notice to
  everyone who was notified about it (every tier).

Then :func:`flush` creates what is owed, exactly once (:mod:`bot.alerts.notify`), under per-route
flood control (:mod:`bot.alerts.flood`). The dispatcher delivers; nothing is sent inline. The
scheduler's tick calls :func:`flush` too, so a crash between the two steps, or a notification held
by flood control, goes out on the next tick.

Acknowledging (:func:`acknowledge`, from Slack or :func:`ack_by_phone`) stops the escalation chain at
once and cancels escalation messages not yet sent; a group that was acknowledged is not paged again
for updates or repeats. Functions here are synchronous (database work); async callers use a thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot import ledger, service
from bot.alerts import messages
from bot.alerts.flood import FLOOD_LIMIT, FLOOD_WINDOW, Owed, plan_flood
from bot.alerts.models import AckOutcome, Alert, AlertBatch, IntakeResult, Policy
from bot.alerts.notify import (
    CHAIN_KINDS,
    DELIVERY,
    FIRING_KINDS,
    GROUP,
    INSTANCE,
    NOTICE,
    PERSON,
    alert_links,
    ensure_notification,
    first_notification,
    group_facts,
    group_row,
    link,
    notified_people,
    people_for,
)
from bot.alerts.routing import (
    RouteChoice,
    choose_route,
    group_key,
    group_labels,
    group_title,
    policy_for,
    severity_for,
)
from bot.app import Herald
from bot.config import SEVERITIES, Settings
from bot.ledger import NewNotification

log = logging.getLogger("herald.alerts")

UPDATE_INTERVAL = 60.0
MAX_CAS_TRIES = 8
CHUNK = 500
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# One flush at a time in this process (webhook threads and the tick); other processes are kept
# from sending twice by the notifications' idempotency keys.
_FLUSH_LOCK = threading.Lock()


class _Conflict(Exception):
    """Someone else changed the group meanwhile: read again and redo."""


def new_group_id() -> str:
    """``a`` + 9 base-32 characters: short enough to type in an SMS (``ACK a1b2c3d4e``)."""
    return "a" + "".join(secrets.choice(_ALPHABET) for _ in range(9))


# -- planning (pure) --------------------------------------------------------------------------------


@dataclass
class GroupPlan:
    """The alerts of one batch that belong to one group."""

    key: str
    choice: RouteChoice
    severity: str
    grouped: dict[str, str]
    alerts: dict[str, Alert] = field(default_factory=dict)  # by fingerprint; the last one wins


def plan_batch(settings: Settings, configured: Sequence[str], batch: AlertBatch) -> list[GroupPlan]:
    """Route each alert and gather the batch by group key (pure)."""
    known = tuple(settings.sla)
    plans: dict[str, GroupPlan] = {}
    for alert in batch.alerts:
        choice = choose_route(settings.routes, alert.labels, configured)
        severity = severity_for(choice, alert.labels, known)
        grouped = group_labels(choice.group_by, alert.labels)
        key = group_key(choice, severity, grouped)
        plan = plans.setdefault(key, GroupPlan(key, choice, severity, grouped))
        plan.alerts[alert.fingerprint] = alert
    return list(plans.values())


# -- ingest -----------------------------------------------------------------------------------------


@dataclass
class _Applied:
    group_id: str | None
    opened: bool = False
    new_firing: int = 0
    resent: int = 0
    resolved: bool = False


def ingest(herald: Herald, batch: AlertBatch) -> IntakeResult:
    """Store ``batch`` (the caller may answer 2xx once this returns), then create what is owed."""
    plans = plan_batch(herald.settings, herald.configured_channels(), batch)
    applied = [_apply(herald, batch, plan) for plan in plans]
    flushed = flush(herald)
    groups = tuple(a.group_id for a in applied if a.group_id)
    touched = set(groups)
    return IntakeResult(
        accepted=len(batch.alerts),
        groups=groups,
        notifications=tuple(nid for nid, gids in flushed.sent if touched.intersection(gids)),
        deduplicated=sum(a.resent for a in applied),
        resolved_groups=tuple(a.group_id for a in applied if a.resolved and a.group_id),
        held_back=tuple(g for g in flushed.held if g in touched),
    )


def _apply(herald: Herald, batch: AlertBatch, plan: GroupPlan) -> _Applied:
    for _ in range(MAX_CAS_TRIES):
        now = herald.clock.now()
        try:
            with herald.store.begin() as connection:
                return _apply_once(herald.settings, connection, batch, plan, now)
        except (_Conflict, IntegrityError):
            continue
    raise RuntimeError("alert group kept changing while storing an alert; try again")


def _apply_once(
    settings: Settings, connection: Connection, batch: AlertBatch, plan: GroupPlan, now: float
) -> _Applied:
    found = connection.execute(select(GROUP).where(GROUP.c.open_key == plan.key)).mappings().first()
    row = dict(found) if found is not None else None
    if row is None:
        if not any(alert.status == "firing" for alert in plan.alerts.values()):
            return _Applied(None)  # resolved alerts of a group that is not open: nothing to do
        group_id = _open_group(settings, connection, batch, plan, now)
        applied = _Applied(group_id, opened=True)
        _upsert_alerts(connection, group_id, plan.alerts, {}, now, applied)
        return applied
    group_id = row["id"]
    applied = _Applied(group_id)
    existing: dict[str, tuple[int, str]] = {}
    fingerprints = list(plan.alerts)
    for start in range(0, len(fingerprints), CHUNK):
        for instance_id, fingerprint, status in connection.execute(
            select(INSTANCE.c.id, INSTANCE.c.fingerprint, INSTANCE.c.status).where(
                INSTANCE.c.group_id == group_id,
                INSTANCE.c.fingerprint.in_(fingerprints[start : start + CHUNK]),
            )
        ):
            existing[fingerprint] = (instance_id, status)
    _upsert_alerts(connection, group_id, plan.alerts, existing, now, applied)
    firing_left = connection.execute(
        select(func.count())
        .select_from(INSTANCE)
        .where(INSTANCE.c.group_id == group_id, INSTANCE.c.status == "firing")
    ).scalar_one()
    changes = _group_changes(row, applied, int(firing_left), batch, now, connection)
    visible = applied.new_firing > 0 or applied.resolved
    result = connection.execute(
        update(GROUP)
        .where(GROUP.c.id == group_id, GROUP.c.version == row["version"])
        .values(version=row["version"] + 1, revision=GROUP.c.revision + (1 if visible else 0), **changes)
    )
    if result.rowcount != 1:
        raise _Conflict
    return applied


def _open_group(
    settings: Settings, connection: Connection, batch: AlertBatch, plan: GroupPlan, now: float
) -> str:
    group_id = new_group_id()
    policy = policy_for(settings, plan.choice, plan.severity)
    first = next(alert for alert in plan.alerts.values() if alert.status == "firing")
    connection.execute(
        insert(GROUP).values(
            id=group_id,
            group_key=plan.key,
            open_key=plan.key,
            route=plan.choice.name,
            route_key=plan.choice.key,
            source=batch.source,
            severity=plan.severity,
            title=group_title(plan.grouped, first.summary),
            group_labels=json.dumps(plan.grouped, sort_keys=True),
            policy=policy.to_json(),
            external_url=batch.external_url,
            state="firing",
            opened_at=now,
            step=0,
            next_escalation_at=policy.next_escalation(0, now),
            notify_seq=0,
            pending="opened",
            pending_at=now,
            held_back=0,
            resolution_pending=False,
            truncated=batch.truncated,
            version=1,
            revision=1,
            slack_revision=0,
        )
    )
    return group_id


def _alert_values(alert: Alert, now: float) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": json.dumps(dict(alert.labels), sort_keys=True),
        "annotations": json.dumps(dict(alert.annotations), sort_keys=True),
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "generator_url": (alert.generator_url or None) and alert.generator_url[:2000],
        "last_seen_at": now,
    }


def _upsert_alerts(
    connection: Connection,
    group_id: str,
    alerts: Mapping[str, Alert],
    existing: Mapping[str, tuple[int, str]],
    now: float,
    applied: _Applied,
) -> None:
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for fingerprint, alert in alerts.items():
        values = _alert_values(alert, now)
        found = existing.get(fingerprint)
        if found is None:
            if alert.status == "resolved":
                continue  # never seen firing: nothing to resolve
            inserts.append({**values, "group_id": group_id, "fingerprint": fingerprint, "first_seen_at": now})
            applied.new_firing += 1
            continue
        instance_id, status = found
        if status == "resolved" and alert.status == "resolved":
            continue
        if alert.status == "firing":
            applied.new_firing += status == "resolved"
            applied.resent += status == "firing"
        updates.append(
            {**values, "b_id": instance_id, "resolved_at": now if alert.status == "resolved" else None}
        )
    if inserts:
        connection.execute(insert(INSTANCE), inserts)
    if updates:
        statement = (
            update(INSTANCE)
            .where(INSTANCE.c.id == bindparam("b_id"))
            .values({name: bindparam(name) for name in updates[0] if name != "b_id"})
        )
        connection.execute(statement, updates)


def _group_changes(
    row: Mapping[str, Any],
    applied: _Applied,
    firing_left: int,
    batch: AlertBatch,
    now: float,
    connection: Connection,
) -> dict[str, Any]:
    changes: dict[str, Any] = {"truncated": batch.truncated}
    if firing_left == 0:
        applied.resolved = True
        notified = connection.execute(select(exists().where(NOTICE.c.group_id == row["id"]))).scalar_one()
        changes.update(
            state="resolved",
            open_key=None,
            resolved_at=now,
            resolved_by=batch.source,
            next_escalation_at=None,
            pending=None,
            pending_at=None,
            held_since=None,
            resolution_pending=bool(notified),
        )
        return changes
    if row["acked_at"] is not None:
        return changes
    if applied.new_firing:
        earliest = max(now, (row["last_notified_at"] or now) + UPDATE_INTERVAL)
        if row["pending"] is None:
            changes.update(pending="update", pending_at=earliest)
        return changes
    policy = Policy.from_json(row["policy"])
    last = row["last_notified_at"]
    if (
        applied.resent
        and row["pending"] is None
        and last is not None
        and now - last >= policy.repeat_interval
    ):
        changes.update(pending="repeat", pending_at=now)
    return changes


# -- flush: create what is owed ---------------------------------------------------------------------


@dataclass
class Flushed:
    sent: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (notification, groups)
    held: list[str] = field(default_factory=list)


def flush(herald: Herald) -> Flushed:
    """Create every owed firing notification (flood control permitting) and resolution notice."""
    with _FLUSH_LOCK:
        flushed = Flushed()
        now = herald.clock.now()
        rows = _owed(herald, now)
        if rows:
            _flush_firing(herald, rows, now, flushed)
        for row in _resolutions_owed(herald):
            nid = _send_resolution(herald, row, now)
            if nid is not None:
                flushed.sent.append((nid, (row["id"],)))
        return flushed


def _owed(herald: Herald, now: float) -> list[dict[str, Any]]:
    with herald.store.begin() as connection:
        rows = connection.execute(
            select(GROUP)
            .where(GROUP.c.state == "firing", GROUP.c.pending.is_not(None), GROUP.c.pending_at <= now)
            .order_by(GROUP.c.pending_at)
            .limit(2000)
        ).mappings()
        return [dict(row) for row in rows]


def _recent(herald: Herald, route_keys: set[str], now: float) -> dict[str, int]:
    with herald.store.begin() as connection:
        counts = connection.execute(
            select(GROUP.c.route_key, func.count(func.distinct(NOTICE.c.notification_id)))
            .select_from(NOTICE.join(GROUP, GROUP.c.id == NOTICE.c.group_id))
            .where(
                GROUP.c.route_key.in_(route_keys),
                NOTICE.c.kind.in_(FIRING_KINDS),
                NOTICE.c.at > now - FLOOD_WINDOW,
            )
            .group_by(GROUP.c.route_key)
        ).all()
    return {str(key): int(count) for key, count in counts}


def _flush_firing(herald: Herald, rows: list[dict[str, Any]], now: float, flushed: Flushed) -> None:
    by_id = {row["id"]: row for row in rows}
    owed = []
    for row in rows:
        policy = Policy.from_json(row["policy"])
        owed.append(
            Owed(
                group_id=row["id"],
                route_key=row["route_key"],
                urgent=herald.settings.is_mandatory(row["severity"]),
                since=row["pending_at"],
                bucket=(policy.audience, *policy.channels),
            )
        )
    plan = plan_flood(owed, _recent(herald, {row["route_key"] for row in rows}, now))
    for group_id in plan.singles:
        nid = _send_firing(herald, by_id[group_id], now)
        if nid is not None:
            flushed.sent.append((nid, (group_id,)))
    for group_ids in plan.summaries:
        nid = _send_summary(herald, [by_id[g] for g in group_ids], now)
        if nid is not None:
            flushed.sent.append((nid, tuple(group_ids)))
    if plan.held:
        _mark_held(herald, plan.held, now)
        flushed.held.extend(plan.held)


def _mark_held(herald: Herald, group_ids: list[str], now: float) -> None:
    with herald.store.begin() as connection:
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id.in_(group_ids), GROUP.c.held_since.is_(None), GROUP.c.pending.is_not(None))
            .values(held_since=now, held_back=GROUP.c.held_back + 1, version=GROUP.c.version + 1)
        )
    log.warning("flood control is holding back %d alert notification(s)", len(group_ids))


def _notification(
    row: Mapping[str, Any],
    policy: Policy,
    key: str,
    kind: str,
    title: str,
    body: str,
    now: float,
    **extra: Any,
) -> NewNotification:
    return NewNotification(
        id=ledger.new_notification_id(),
        kind=kind,
        severity=row["severity"],
        title=title[:500],
        body=body,
        audience=extra.pop("audience", policy.audience)[:2000],
        channels=policy.channels,
        created_by=f"alert:{row['source']}",
        created_at=now,
        start_at=now,
        deadline=now + policy.deliver_within,
        parent_id=extra.pop("parent_id", None),
        idempotency_key=key,
        meta={"alert_group": row["id"], **extra},
    )


def _send_firing(herald: Herald, row: Mapping[str, Any], now: float) -> str | None:
    """The group's owed page, update or repeat, to the route's audience."""
    policy = Policy.from_json(row["policy"])
    seq = int(row["notify_seq"]) + 1
    reason = str(row["pending"])
    with herald.store.begin() as connection:
        facts = group_facts(connection, row)
        parent = first_notification(connection, row["id"])
        links = alert_links(connection, row["id"], row["external_url"])
    new = _notification(
        row,
        policy,
        f"alert:{row['id']}:fire:{seq}",
        "alert",
        messages.firing_title(facts),
        messages.firing_body(facts, reason, now, FLOOD_LIMIT),
        now,
        parent_id=parent,
        alert_reason=reason,
        links=links,
    )
    nid, _ = ensure_notification(herald.store, new, people_for(policy.audience))
    link(herald.store, [row["id"]], nid, reason, 0, policy.audience, now)
    _notified(herald, [row], now)
    return nid


def _send_summary(herald: Herald, rows: list[Mapping[str, Any]], now: float) -> str | None:
    """One notification standing for several groups of one route (flood control)."""
    first = rows[0]
    policy = Policy.from_json(first["policy"])
    with herald.store.begin() as connection:
        facts = [group_facts(connection, row) for row in rows]
    identity = json.dumps(sorted((row["id"], row["notify_seq"]) for row in rows))
    key = "alert:summary:" + hashlib.sha256(identity.encode()).hexdigest()[:32]
    order = {name: index for index, name in enumerate(SEVERITIES)}
    worst = min(rows, key=lambda row: order.get(row["severity"], len(order)))
    deliver_within = min(Policy.from_json(row["policy"]).deliver_within for row in rows)
    new = _notification(
        worst,
        policy,
        key,
        "alert",
        messages.summary_title(facts),
        messages.summary_body(facts, first["route"], FLOOD_LIMIT),
        now,
        alert_reason="summary",
        alert_groups=[row["id"] for row in rows],
    )
    new = replace(new, deadline=now + deliver_within)
    nid, _ = ensure_notification(herald.store, new, people_for(policy.audience))
    link(herald.store, [row["id"] for row in rows], nid, "summary", 0, policy.audience, now)
    _notified(herald, rows, now, folded=True)
    log.warning("flood control folded %d alert groups into notification %s", len(rows), nid)
    return nid


def _notified(herald: Herald, rows: Sequence[Mapping[str, Any]], now: float, folded: bool = False) -> None:
    """Move each group's counter past the notification just written (compare-and-set)."""
    with herald.store.begin() as connection:
        for row in rows:
            connection.execute(
                update(GROUP)
                .where(GROUP.c.id == row["id"], GROUP.c.notify_seq == row["notify_seq"])
                .values(
                    notify_seq=row["notify_seq"] + 1,
                    pending=None,
                    pending_at=None,
                    held_since=None,
                    held_back=GROUP.c.held_back + (1 if folded else 0),
                    last_notified_at=now,
                    version=GROUP.c.version + 1,
                    revision=GROUP.c.revision + 1,
                )
            )


def _resolutions_owed(herald: Herald) -> list[dict[str, Any]]:
    with herald.store.begin() as connection:
        rows = connection.execute(
            select(GROUP).where(GROUP.c.resolution_pending.is_(True)).order_by(GROUP.c.resolved_at).limit(500)
        ).mappings()
        return [dict(row) for row in rows]


def _send_resolution(herald: Herald, row: Mapping[str, Any], now: float) -> str | None:
    """The resolution notice, to everyone who was notified about the group (every tier)."""
    policy = Policy.from_json(row["policy"])
    with herald.store.begin() as connection:
        facts = group_facts(connection, row)
        parent = first_notification(connection, row["id"])
    resolved_at = row["resolved_at"] or now
    new = _notification(
        row,
        policy,
        f"alert:{row['id']}:resolved",
        "resolution",
        messages.resolution_title(facts),
        messages.resolution_body(facts, resolved_at, display_actor(row["resolved_by"])),
        now,
        audience=f"everyone notified about alert {row['id']}",
        parent_id=parent,
    )
    nid, _ = ensure_notification(herald.store, new, notified_people(row["id"]))
    link(herald.store, [row["id"]], nid, "resolution", 0, new.audience, now)
    with herald.store.begin() as connection:
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id == row["id"])
            .values(resolution_pending=False, version=GROUP.c.version + 1, revision=GROUP.c.revision + 1)
        )
    return nid


# -- acknowledge and resolve ------------------------------------------------------------------------


def display_actor(actor: str | None) -> str | None:
    """``slack:U123`` → ``<@U123>`` (Slack renders the name); ``sms:+49… (Alice)`` → ``Alice (SMS)``."""
    if not actor:
        return None
    if actor.startswith("slack:"):
        return f"<@{actor.removeprefix('slack:')}>"
    if actor.startswith("sms:"):
        rest = actor.removeprefix("sms:")
        if "(" in rest and rest.endswith(")"):
            return f"{rest[rest.index('(') + 1 : -1]} (SMS)"
        return f"{rest} (SMS)"
    return actor


def _explain(row: Mapping[str, Any] | None, group_id: str) -> AckOutcome:
    if row is None:
        return AckOutcome(group_id, False, f"There is no alert {group_id}.")
    if row["state"] == "resolved":
        return AckOutcome(
            group_id, False, f"Alert {group_id} ({row['title']}) is already resolved.", row["title"]
        )
    return AckOutcome(
        group_id,
        False,
        f"Alert {group_id} ({row['title']}) was already acknowledged by {display_actor(row['acked_by'])}.",
        row["title"],
    )


def _cancel_chain(herald: Herald, group_id: str, now: float) -> int:
    """Cancel escalation and reminder messages of the group not yet handed to a provider."""
    with herald.store.begin() as connection:
        ids = [
            str(value)
            for value in connection.execute(
                select(NOTICE.c.notification_id).where(
                    NOTICE.c.group_id == group_id, NOTICE.c.kind.in_(CHAIN_KINDS)
                )
            ).scalars()
        ]
    return sum(ledger.cancel(herald.store, nid, now) for nid in ids)


def acknowledge(herald: Herald, group_id: str, actor: str) -> AckOutcome:
    """Acknowledge an open group: the chain stops now and owed updates are dropped. Audited."""
    now = herald.clock.now()
    with herald.store.begin() as connection:
        changed = connection.execute(
            update(GROUP)
            .where(GROUP.c.id == group_id, GROUP.c.state == "firing", GROUP.c.acked_at.is_(None))
            .values(
                acked_at=now,
                acked_by=actor[:200],
                next_escalation_at=None,
                pending=None,
                pending_at=None,
                held_since=None,
                version=GROUP.c.version + 1,
                revision=GROUP.c.revision + 1,
            )
        ).rowcount
        row = group_row(connection, group_id)
    if not changed:
        return _explain(row, group_id)
    assert row is not None
    cancelled = _cancel_chain(herald, group_id, now)
    service.audit(herald, actor, "alert.ack", group_id, True, {"title": row["title"], "cancelled": cancelled})
    return AckOutcome(
        group_id,
        True,
        f"Acknowledged {row['title']} (alert {group_id}); escalation stopped.",
        row["title"],
        cancelled,
    )


def resolve(herald: Herald, group_id: str, actor: str) -> AckOutcome:
    """Resolve an open group by hand; everyone notified gets the resolution notice. Audited."""
    now = herald.clock.now()
    with herald.store.begin() as connection:
        notified = exists().where(NOTICE.c.group_id == group_id)
        changed = connection.execute(
            update(GROUP)
            .where(GROUP.c.id == group_id, GROUP.c.state == "firing")
            .values(
                state="resolved",
                open_key=None,
                resolved_at=now,
                resolved_by=actor[:200],
                next_escalation_at=None,
                pending=None,
                pending_at=None,
                held_since=None,
                resolution_pending=notified,
                version=GROUP.c.version + 1,
                revision=GROUP.c.revision + 1,
            )
        ).rowcount
        if changed:
            connection.execute(
                update(INSTANCE)
                .where(INSTANCE.c.group_id == group_id, INSTANCE.c.status == "firing")
                .values(status="resolved", resolved_at=now)
            )
        row = group_row(connection, group_id)
    if not changed:
        return _explain(row, group_id)
    assert row is not None
    cancelled = _cancel_chain(herald, group_id, now)
    service.audit(herald, actor, "alert.resolve", group_id, True, {"title": row["title"]})
    flush(herald)
    return AckOutcome(group_id, True, f"Resolved {row['title']} (alert {group_id}).", row["title"], cancelled)


# -- acknowledging by SMS ---------------------------------------------------------------------------

ACK_WORDS = ("ACK", "ACKNOWLEDGE", "ACKNOWLEDGED")


def ack_by_phone(herald: Herald, phone: str, text: str) -> str | None:
    """An inbound SMS ``ACK`` (optionally ``ACK <alert id>``) from ``phone``: acknowledge the most
    recent open, unacknowledged alert group that paged that number. Returns the reply to text back,
    or None when the message is not an ACK (so the caller handles STOP, HELP...)."""
    words = text.strip().split()
    if not words or words[0].upper().rstrip(".!") not in ACK_WORDS:
        return None
    wanted = words[1].lower() if len(words) > 1 else None
    group_id, name = _paged(herald, phone, wanted)
    if group_id is None:
        target = f"alert {wanted}" if wanted else "open alert"
        return f"Herald: no {target} waiting for an acknowledgement paged this number."
    actor = f"sms:{phone}" + (f" ({name})" if name else "")
    outcome = acknowledge(herald, group_id, actor)
    return f"Herald: {outcome.message}"


def _paged(herald: Herald, phone: str, wanted: str | None) -> tuple[str | None, str | None]:
    conditions = [
        DELIVERY.c.channel == "sms",
        DELIVERY.c.address == phone,
        GROUP.c.state == "firing",
        GROUP.c.acked_at.is_(None),
    ]
    if wanted:
        conditions.append(GROUP.c.id == wanted)
    with herald.store.begin() as connection:
        group_id = connection.execute(
            select(GROUP.c.id)
            .select_from(
                DELIVERY.join(NOTICE, NOTICE.c.notification_id == DELIVERY.c.notification_id).join(
                    GROUP, GROUP.c.id == NOTICE.c.group_id
                )
            )
            .where(and_(*conditions))
            .order_by(DELIVERY.c.created_at.desc(), GROUP.c.opened_at.desc())
            .limit(1)
        ).scalar_one_or_none()
        name = connection.execute(
            select(PERSON.c.name).where(PERSON.c.phone == phone).limit(1)
        ).scalar_one_or_none()
    return (str(group_id) if group_id else None), (str(name) if name else None)


def forget_notice(herald: Herald, group_id: str, notification_id: str) -> None:
    """Unlink a notification that was cancelled before it counted (an ack won the race)."""
    with herald.store.begin() as connection:
        connection.execute(
            delete(NOTICE).where(NOTICE.c.group_id == group_id, NOTICE.c.notification_id == notification_id)
        )
