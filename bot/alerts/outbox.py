"""The outbox: create every notification alert groups are owed, exactly once, under flood control.

Groups owe a firing notification while ``pending`` is set (see :mod:`bot.alerts.lifecycle`) and a
resolution notice while ``resolution_pending`` is. :func:`flush` writes them (each keyed, see
:mod:`bot.alerts.notify`), then clears what it paid, compare-and-set on ``notify_seq``. Firing
notifications go through per-route flood control (:mod:`bot.alerts.flood`): urgent kinds at once,
others while the route's budget lasts, then folded into one summary, then held until there is room.
Both the webhooks (right after storing) and the scheduler's tick flush, so a crash between storing
and flushing, or a held notification, goes out on the next tick. The dispatcher delivers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import select, update

from bot.alerts import messages, storm
from bot.alerts.flood import FLOOD_LIMIT, FLOOD_WINDOW, FloodPlan, Owed, lane_of, plan_flood
from bot.alerts.models import Policy
from bot.alerts.notify import (
    FIRING_KINDS,
    GROUP,
    NOTICE,
    NOTIFICATION,
    alert_links,
    display_actor,
    first_notification,
    group_facts,
    link,
    notified_people,
    people_for,
)
from bot.app import Herald
from bot.config import SEVERITIES
from bot.engine.create import NewNotification, ensure_notification, new_notification_id
from bot.recipients.rules import delivery_rules

log = logging.getLogger("herald.alerts")

# One flush at a time in this process (webhook threads and the tick); other processes are kept
# from sending twice by the notifications' idempotency keys (and ``herald serve`` ticks on the leader).
_FLUSH_LOCK = threading.Lock()
_SEVERITY_ORDER = {name: index for index, name in enumerate(SEVERITIES)}
MAX_OWED = 10_000  # owed notifications planned at once (a storm in one webhook is folded at once)


_T = TypeVar("_T")


def one_line(exc: BaseException) -> str:
    """``Class: first line of the message``, shortened, any unpaired surrogate escaped (loggable)."""
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300].encode("utf-8", "backslashreplace").decode("utf-8")


def guarded(what: str, group_id: str, work: Callable[[], _T]) -> _T | None:
    """``work()`` for one alert group; a failure is one ERROR line and None (the tick tries again),
    so one stored row that cannot be processed never holds up the others."""
    try:
        return work()
    except Exception as exc:  # any failure of this one row: the other rows go on
        log.error("alert group %s: %s failed, skipped for now: %s", group_id, what, one_line(exc))
        return None


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
        _flush_resolutions(herald, now, flushed)
        return flushed


def _owed(herald: Herald, now: float) -> list[dict[str, Any]]:
    with herald.store.begin() as connection:
        rows = connection.execute(
            select(GROUP)
            .where(GROUP.c.state == "firing", GROUP.c.pending.is_not(None), GROUP.c.pending_at <= now)
            .order_by(GROUP.c.pending_at)
            .limit(MAX_OWED)
        ).mappings()
        return [dict(row) for row in rows]


def _recent(herald: Herald, route_keys: set[str], now: float) -> dict[str, int]:
    """Firing notifications sent in the window, per flood-control lane (route and urgency)."""
    with herald.store.begin() as connection:
        sent = connection.execute(
            select(GROUP.c.route_key, NOTICE.c.notification_id, NOTIFICATION.c.severity)
            .distinct()
            .select_from(
                NOTICE.join(GROUP, GROUP.c.id == NOTICE.c.group_id).join(
                    NOTIFICATION, NOTIFICATION.c.id == NOTICE.c.notification_id
                )
            )
            .where(
                GROUP.c.route_key.in_(route_keys),
                NOTICE.c.kind.in_(FIRING_KINDS),
                NOTICE.c.at > now - FLOOD_WINDOW,
            )
        ).all()
    counts: Counter[str] = Counter()
    for route_key, _nid, severity in sent:
        counts[lane_of(str(route_key), herald.settings.is_mandatory(severity))] += 1
    return dict(counts)


def _flush_firing(herald: Herald, rows: list[dict[str, Any]], now: float, flushed: Flushed) -> None:
    by_id = {row["id"]: row for row in rows}
    owed = [_owed_of(herald, row) for row in rows]
    plan = plan_flood(owed, _recent(herald, {row["route_key"] for row in rows}, now))
    for group_id in plan.singles:
        nid = guarded("notification", group_id, partial(_send_firing, herald, by_id[group_id], now))
        if nid is not None:
            flushed.sent.append((nid, (group_id,)))
    for group_ids in plan.summaries:
        folded: list[Mapping[str, Any]] = [by_id[g] for g in group_ids]
        nid = guarded("summary", ",".join(group_ids), partial(_send_summary, herald, folded, now))
        if nid is not None:
            flushed.sent.append((nid, tuple(group_ids)))
    if plan.held:
        _mark_held(herald, plan.held, now)
        _show_held(herald, plan, {o.group_id: o.lane for o in owed}, by_id)
        flushed.held.extend(plan.held)


def _owed_of(herald: Herald, row: Mapping[str, Any]) -> Owed:
    policy = Policy.from_json(row["policy"])
    return Owed(
        group_id=row["id"],
        route_key=row["route_key"],
        urgent=herald.settings.is_mandatory(row["severity"]),
        since=row["pending_at"],
        bucket=(policy.audience, *policy.channels),
    )


def _show_held(
    herald: Herald, plan: FloodPlan, lanes: Mapping[str, str], by_id: Mapping[str, Mapping[str, Any]]
) -> None:
    """Held groups are shown in Slack in one message per lane: the summary's, else the first's."""
    leads = {lanes[ids[0]]: _lead([by_id[g] for g in ids]) for ids in plan.summaries}
    held: dict[str, list[str]] = {}
    for group_id in plan.held:
        held.setdefault(lanes[group_id], []).append(group_id)
    with herald.store.begin() as connection:
        for lane, ids in held.items():
            lead = leads.get(lane) or ids[0]
            storm.show_in(connection, lead, [g for g in ids if g != lead])


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
        id=new_notification_id(),
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
    nid, _ = ensure_notification(
        herald.store, new, people_for(policy.audience), delivery_rules(herald.settings)
    )
    link(herald.store, [row["id"]], nid, reason, 0, policy.audience, now)
    _notified(herald, [row], now)
    return nid


def _lead(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The group leading a summary of ``rows``: the first it pages of the worst severity (its policy's
    chain speaks for the summary); None when it pages none."""
    paged = [row for row in rows if row["pending"] == "opened"]
    return min(paged, key=lambda row: _SEVERITY_ORDER.get(row["severity"], 99))["id"] if paged else None


def _send_summary(herald: Herald, rows: list[Mapping[str, Any]], now: float) -> str | None:
    """One notification standing for several groups of one lane (flood control), sent at once. The
    first group it pages leads it: its chain and Slack message stand for the others it pages."""
    lead = _lead(rows)
    paged = [row["id"] for row in rows if row["pending"] == "opened" and row["id"] != lead]
    rows = sorted(rows, key=lambda row: row["id"] != lead)  # the lead first
    first = rows[0]
    policy = Policy.from_json(first["policy"])
    ids = [row["id"] for row in rows]
    with herald.store.begin() as connection:
        facts = storm.storm_facts(connection, lead or "", first["route"], GROUP.c.id.in_(ids))
    identity = json.dumps(sorted((row["id"], row["notify_seq"]) for row in rows))
    key = "alert:summary:" + hashlib.sha256(identity.encode()).hexdigest()[:32]
    worst = min(rows, key=lambda row: _SEVERITY_ORDER.get(row["severity"], 99))
    deliver_within = min(Policy.from_json(row["policy"]).deliver_within for row in rows)
    new = _notification(
        worst,
        policy,
        key,
        "alert",
        messages.summary_title(facts),
        messages.summary_body(facts, FLOOD_LIMIT),
        now,
        alert_reason="summary",
        alert_lead=lead,
        alert_groups=ids,
    )
    new = replace(new, deadline=now + deliver_within)
    nid, _ = ensure_notification(
        herald.store, new, people_for(policy.audience), delivery_rules(herald.settings)
    )
    link(herald.store, ids, nid, "summary", 0, policy.audience, now)
    if lead is not None:
        with herald.store.begin() as connection:
            storm.fold(connection, lead, paged)
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
            select(GROUP)
            .where(GROUP.c.resolution_pending.is_(True))
            .order_by(GROUP.c.resolved_at)
            .limit(MAX_OWED)
        ).mappings()
        return [dict(row) for row in rows]


def _flush_resolutions(herald: Herald, now: float, flushed: Flushed) -> None:
    """A resolution notice per group; groups one summary paged share one (a storm resolving)."""
    rows = _resolutions_owed(herald)
    with herald.store.begin() as connection:
        summaries = storm.paged_by_summary(connection, [row["id"] for row in rows])
    together: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        together.setdefault(summaries.get(row["id"], row["id"]), []).append(row)
    for group in together.values():
        if len(group) == 1:
            send = partial(_send_resolution, herald, group[0], now)
        else:
            send = partial(_send_storm_resolution, herald, group, now)
        nid = guarded("resolution notice", group[0]["id"], send)
        if nid is not None:
            flushed.sent.append((nid, tuple(row["id"] for row in group)))


def _send_storm_resolution(herald: Herald, rows: list[dict[str, Any]], now: float) -> str | None:
    ids = [row["id"] for row in rows]
    first = rows[0]
    with herald.store.begin() as connection:
        parent = first_notification(connection, first["id"])
    identity = json.dumps(sorted(ids))
    new = _notification(
        first,
        Policy.from_json(first["policy"]),
        "alert:resolved:" + hashlib.sha256(identity.encode()).hexdigest()[:32],
        "resolution",
        messages.storm_resolution_title([row["title"] for row in rows], len(rows)),
        messages.storm_resolution_body(
            [(row["title"], row["id"]) for row in rows],
            len(rows),
            max(row["resolved_at"] or now for row in rows),
        ),
        now,
        audience=f"everyone notified about {len(rows)} alert groups",
        parent_id=parent,
        alert_groups=ids,
    )
    nid, _ = ensure_notification(
        herald.store, new, storm.notified_about(ids), delivery_rules(herald.settings)
    )
    link(herald.store, ids, nid, "resolution", 0, new.audience, now)
    _resolution_sent(herald, ids)
    return nid


def _resolution_sent(herald: Herald, group_ids: Sequence[str]) -> None:
    with herald.store.begin() as connection:
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id.in_(group_ids))
            .values(resolution_pending=False, version=GROUP.c.version + 1, revision=GROUP.c.revision + 1)
        )


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
    nid, _ = ensure_notification(
        herald.store, new, notified_people(row["id"]), delivery_rules(herald.settings)
    )
    link(herald.store, [row["id"]], nid, "resolution", 0, new.audience, now)
    _resolution_sent(herald, [row["id"]])
    return nid
