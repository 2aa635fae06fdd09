"""The alert lifecycle: store a batch, route, group and deduplicate it, and note what is owed.

``ingest`` is what every source (Alertmanager, Grafana, the generic webhook, ``herald alert``) calls
with a parsed batch. For each alert it picks the route (:mod:`bot.alerts.routing`), the open group of
that route with the same group labels (or opens one, freezing its :class:`~bot.alerts.models.Policy`),
and the alert's row in the group by fingerprint. What is owed is written to the group in the same
transaction, compare-and-set on ``version``:

- a new group owes a page (``pending = "opened"``) to the route's audience;
- new alerts joining an unacknowledged group owe an update, at most one per :data:`UPDATE_INTERVAL`;
- a re-sent firing alert owes nothing until the policy's ``repeat_interval`` has passed since the
  group's last notification (then a ``repeat``); a re-sent identical webhook never notifies twice;
- a group that was acknowledged owes no updates nor repeats;
- when no alert of a group is firing any more, the group resolves and owes a resolution notice to
  everyone who was notified about it (every tier).

Then :func:`bot.alerts.outbox.flush` creates what is owed (a failure there is logged, not raised:
the alerts are stored, and the scheduler's tick flushes again). Functions here are synchronous (database
work); async callers use a thread.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import bindparam, exists, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.alerts import maintenance
from bot.alerts.models import Alert, AlertBatch, IntakeResult, Policy
from bot.alerts.notify import (
    GROUP,
    INSTANCE,
    NOTICE,
    Unrouted,
    count_unrouted,
    log_unrouted,
    resolution,
    selects_reachable,
)
from bot.alerts.outbox import Flushed, flush, one_line
from bot.alerts.routing import (
    RouteChoice,
    choose_route,
    default_choice,
    group_key,
    group_labels,
    group_title,
    policy_for,
    severity_for,
)
from bot.app import Herald
from bot.config import Settings
from bot.recipients.rules import delivery_rules

log = logging.getLogger("herald.alerts")

UPDATE_INTERVAL = 60.0
MAX_CAS_TRIES = 8
CHUNK = 500
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


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
    fallback: RouteChoice  # the default route: paged instead when the route selects nobody reachable
    alerts: dict[str, Alert] = field(default_factory=dict)  # by fingerprint; the last one wins
    silence: str | None = None  # the open maintenance window all its firing alerts match
    windows: tuple[str, ...] = ()  # every maintenance window open at intake


def plan_batch(settings: Settings, configured: Sequence[str], batch: AlertBatch) -> list[GroupPlan]:
    """Route each alert and gather the batch by group key (pure)."""
    known = tuple(settings.sla)
    fallback = default_choice(settings.routes, configured)
    plans: dict[str, GroupPlan] = {}
    for alert in batch.alerts:
        choice = choose_route(settings.routes, alert.labels, configured)
        severity = severity_for(choice, alert.labels, known)
        grouped = group_labels(choice.group_by, alert.labels)
        key = group_key(choice, severity, grouped)
        plan = plans.setdefault(key, GroupPlan(key, choice, severity, grouped, fallback))
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
    unrouted: Unrouted | None = None


def ingest(herald: Herald, batch: AlertBatch) -> IntakeResult:
    """Store ``batch`` (the caller may answer 2xx once this returns), then create what is owed."""
    plans = plan_batch(herald.settings, herald.configured_channels(), batch)
    _mark_silenced(herald, plans)
    applied = [_apply(herald, batch, plan) for plan in plans]
    for done in applied:
        if done.unrouted is not None and done.group_id:
            log_unrouted(herald.settings, done.group_id, done.unrouted)
    try:
        flushed = flush(herald)
    except Exception as exc:  # the alerts are stored: answer so, the scheduler's tick flushes again
        log.error("alerts stored, their notifications wait for the next tick: %s", one_line(exc))
        flushed = Flushed()
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


def _mark_silenced(herald: Herald, plans: list[GroupPlan]) -> None:
    """Note on each plan the maintenance window that silences it (:mod:`bot.alerts.maintenance`)."""
    with herald.store.one_statement() as connection:
        windows = maintenance.open_windows(connection, herald.clock.now())
    if not windows:
        return
    ids = tuple(window.id for window in windows)
    for plan in plans:
        firing = [alert.labels for alert in plan.alerts.values() if alert.status == "firing"]
        plan.silence = maintenance.silencing(windows, firing)
        plan.windows = ids


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
        choice, unrouted = _reachable_route(settings, connection, plan)
        group_id = _open_group(settings, connection, batch, replace(plan, choice=choice), now)
        applied = _Applied(group_id, opened=True, unrouted=unrouted)
        _upsert_alerts(connection, group_id, plan.alerts, {}, now, applied)
        return applied
    group_id = row["id"]
    applied = _Applied(group_id)
    existing = _existing(connection, group_id, list(plan.alerts))
    _upsert_alerts(connection, group_id, plan.alerts, existing, now, applied)
    changes = _group_changes(row, applied, _firing_left(connection, group_id), batch, now, connection)
    changes.update(_silence_changes(row, plan, applied, now))
    visible = applied.new_firing > 0 or applied.resolved
    result = connection.execute(
        update(GROUP)
        .where(GROUP.c.id == group_id, GROUP.c.version == row["version"])
        .values(version=row["version"] + 1, revision=GROUP.c.revision + (1 if visible else 0), **changes)
    )
    if result.rowcount != 1:
        raise _Conflict
    return applied


def _existing(connection: Connection, group_id: str, fingerprints: list[str]) -> dict[str, tuple[int, str]]:
    """The group's stored alerts among ``fingerprints``: fingerprint -> (row id, status)."""
    existing: dict[str, tuple[int, str]] = {}
    for start in range(0, len(fingerprints), CHUNK):
        for instance_id, fingerprint, status in connection.execute(
            select(INSTANCE.c.id, INSTANCE.c.fingerprint, INSTANCE.c.status).where(
                INSTANCE.c.group_id == group_id,
                INSTANCE.c.fingerprint.in_(fingerprints[start : start + CHUNK]),
            )
        ):
            existing[fingerprint] = (instance_id, status)
    return existing


def _firing_left(connection: Connection, group_id: str) -> int:
    return int(
        connection.execute(
            select(func.count())
            .select_from(INSTANCE)
            .where(INSTANCE.c.group_id == group_id, INSTANCE.c.status == "firing")
        ).scalar_one()
    )


def _reachable_route(
    settings: Settings, connection: Connection, plan: GroupPlan
) -> tuple[RouteChoice, Unrouted | None]:
    """The plan's route, or, when its audience selects no reachable person, the route with the
    default route's audience and channels (counted in ``herald_alerts_unrouted_total``)."""
    rules = delivery_rules(settings)
    choice, fallback = plan.choice, plan.fallback
    if selects_reachable(connection, choice.audience, choice.channels, rules, plan.severity):
        return choice, None
    count_unrouted(connection)
    reachable = selects_reachable(connection, fallback.audience, fallback.channels, rules, plan.severity)
    unrouted = Unrouted(choice.name, choice.audience, fallback.audience, reachable)
    return replace(choice, audience=fallback.audience, channels=fallback.channels), unrouted


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
            next_escalation_at=None if plan.silence else policy.next_escalation(0, now),
            notify_seq=0,
            pending=None if plan.silence else "opened",
            pending_at=None if plan.silence else now,
            silenced_by=plan.silence,
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
    _write_alerts(connection, inserts, updates)


def _write_alerts(
    connection: Connection, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]
) -> None:
    """New alert rows in one insert, changed ones in one executemany update (keyed ``b_id``)."""
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
        changes.update(resolution(now, batch.source, bool(notified)))
        return changes
    if row["acked_at"] is not None or maintenance.is_silent(row):
        return changes  # a silenced group owes nothing until its window ends (bot.alerts.window_end)
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


def _silence_changes(
    row: Mapping[str, Any], plan: GroupPlan, applied: _Applied, now: float
) -> dict[str, Any]:
    """A silenced group joined, while its window is open, by a firing alert the window does not
    match pages as usual from now on (and is no longer silenced)."""
    if not maintenance.is_silent(row) or not applied.new_firing or row["silenced_by"] not in plan.windows:
        return {}
    if plan.silence == row["silenced_by"] or not any(a.status == "firing" for a in plan.alerts.values()):
        return {}
    policy = Policy.from_json(row["policy"])
    return {
        "silenced_by": None,
        "pending": "opened",
        "pending_at": now,
        "next_escalation_at": policy.next_escalation(0, now),
    }
