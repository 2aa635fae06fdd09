"""Pure text of alert notifications (email and SMS share it): facts in, title and body out.

Titles follow Alertmanager's habit, ``[FIRING:37] HighLatency``; the channel adds the severity
(``[CRITICAL] [FIRING:37] HighLatency``). Bodies start with how to acknowledge, so an SMS cut at
``max_segments`` still says it, then list at most :data:`MAX_LISTED` alerts and ``and N more``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

MAX_LISTED = 10
HIDDEN_LABELS = ("alertname", "severity")


@dataclass(frozen=True, slots=True)
class AlertLine:
    """One alert as listed in a message."""

    summary: str
    labels: Mapping[str, str]
    description: str = ""


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """What a message says about one alert group (read from the store just before sending)."""

    id: str
    title: str
    severity: str
    route: str
    audience: str
    opened_at: float
    firing: int
    resolved: int = 0
    group_labels: Mapping[str, str] = field(default_factory=dict)
    sample: Sequence[AlertLine] = ()
    truncated: int = 0
    external_url: str | None = None
    held_since: float | None = None


@dataclass(frozen=True, slots=True)
class StormFacts:
    """A flood-control summary: the groups it folded (the first :data:`MAX_LISTED` listed) and
    totals. ``lead`` is the group whose escalation chain and Slack message stand for all of them."""

    lead: str
    route: str
    listed: Sequence[GroupFacts]
    groups: int
    alerts: int


def utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    """``45`` → ``45s``, ``600`` → ``10m``, ``5400`` → ``1h 30m``."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def ack_hint(group_id: str) -> str:
    return f"Reply ACK to acknowledge (alert {group_id}), or use Acknowledge in Slack."


def firing_title(facts: GroupFacts) -> str:
    return f"[FIRING:{facts.firing + facts.truncated}] {facts.title}"


def _label_text(labels: Mapping[str, str], skip: Mapping[str, str]) -> str:
    shown = [f"{k}={v}" for k, v in sorted(labels.items()) if k not in HIDDEN_LABELS and k not in skip]
    text = ", ".join(shown)
    return text if len(text) <= 160 else text[:157] + "..."


def alert_lines(facts: GroupFacts) -> list[str]:
    """``- summary (labels): description`` for the listed alerts, then ``and N more.``"""
    lines = []
    for alert in facts.sample[:MAX_LISTED]:
        labels = _label_text(alert.labels, facts.group_labels)
        line = f"- {alert.summary}" + (f" ({labels})" if labels else "")
        if alert.description:
            line += f": {alert.description.splitlines()[0][:300]}"
        lines.append(line)
    more = facts.firing + facts.truncated - min(len(facts.sample), MAX_LISTED)
    if more > 0:
        lines.append(f"and {more} more.")
    return lines


def _footer(facts: GroupFacts) -> list[str]:
    return [f"Source: {facts.external_url}"] if facts.external_url else []


def firing_body(facts: GroupFacts, reason: str, now: float, flood_limit: int) -> str:
    """The page (``reason`` opened), a group that grew (update) or a still-firing one (repeat)."""
    lead = {
        "update": "More alerts joined this group.",
        "repeat": "Still firing.",
    }.get(reason, "")
    head = f"{facts.firing} firing since {utc(facts.opened_at)}; route {facts.route}, to {facts.audience}."
    lines = [ack_hint(facts.id), *([lead] if lead else []), head, *alert_lines(facts)]
    if facts.held_since is not None:
        lines.append(
            f"Held back {duration(now - facts.held_since)} by flood control "
            f"(route {facts.route} reached {flood_limit} notifications a minute)."
        )
    return "\n".join([*lines, *_footer(facts)])


def summary_title(storm: StormFacts) -> str:
    names = ", ".join(g.title for g in storm.listed[:3]) + (", ..." if storm.groups > 3 else "")
    return f"[FIRING:{storm.alerts}] {storm.groups} alert groups: {names}"


def storm_ack_hint(storm: StormFacts) -> str:
    return (
        f"Reply ACK to acknowledge this summary (alert {storm.lead}), or use Acknowledge in Slack; "
        "escalation follows this summary, not each alert."
    )


def storm_lines(storm: StormFacts) -> list[str]:
    """``- title (N firing, alert id): first alert`` for the listed groups, then ``and N more groups.``"""
    lines = []
    for facts in storm.listed[:MAX_LISTED]:
        first = facts.sample[0].summary if facts.sample else facts.title
        lines.append(f"- {facts.title} ({facts.firing + facts.truncated} firing, alert {facts.id}): {first}")
    more = storm.groups - min(len(storm.listed), MAX_LISTED)
    if more > 0:
        lines.append(f"and {more} more groups.")
    return lines


def summary_body(storm: StormFacts, flood_limit: int) -> str:
    """One notification standing for many groups that flood control folded (urgent ones included)."""
    lines = [
        storm_ack_hint(storm),
        f"Flood control: route {storm.route} reached {flood_limit} notifications a minute, so these "
        f"{storm.groups} alert groups ({storm.alerts} alerts) come in one message.",
    ]
    return "\n".join([*lines, *storm_lines(storm)])


def _tag(kind: str, step: int, tier: int) -> str:
    return f"ESCALATED tier {tier}" if kind == "escalation" else f"REMINDER {step - tier}"


def _why(kind: str, waited: float, audience: str) -> str:
    if kind == "escalation":
        return (
            f"Not acknowledged {duration(waited)} after it was received; you are the next tier ({audience})."
        )
    return f"Still not acknowledged {duration(waited)} after it was received."


def escalation_title(facts: GroupFacts, kind: str, step: int, tier: int) -> str:
    return f"[{_tag(kind, step, tier)}] {firing_title(facts)}"


def escalation_body(facts: GroupFacts, kind: str, waited: float, audience: str) -> str:
    head = f"{facts.firing} firing since {utc(facts.opened_at)}; first paged: {facts.audience}."
    lines = [ack_hint(facts.id), _why(kind, waited, audience), head, *alert_lines(facts)]
    return "\n".join([*lines, *_footer(facts)])


def storm_escalation_title(storm: StormFacts, kind: str, step: int, tier: int) -> str:
    """A step of a summary's chain: one per tier for the whole summary, never one per alert."""
    return f"[{_tag(kind, step, tier)}] {summary_title(storm)}"


def storm_escalation_body(storm: StormFacts, kind: str, waited: float, audience: str) -> str:
    first = storm.listed[0] if storm.listed else None
    head = f"{storm.groups} alert groups ({storm.alerts} alerts) firing" + (
        f" since {utc(first.opened_at)}; first paged: {first.audience}." if first else "."
    )
    return "\n".join([storm_ack_hint(storm), _why(kind, waited, audience), head, *storm_lines(storm)])


def resolution_title(facts: GroupFacts) -> str:
    return f"[RESOLVED] {facts.title}"


def resolution_body(facts: GroupFacts, resolved_at: float, resolved_by: str | None) -> str:
    by = f" by {resolved_by}" if resolved_by else ""
    return "\n".join(
        [
            f"Resolved{by} at {utc(resolved_at)}, {duration(resolved_at - facts.opened_at)} after it opened "
            f"(alert {facts.id}). No action needed.",
            *_footer(facts),
        ]
    )


def storm_resolution_title(titles: Sequence[str], groups: int) -> str:
    names = ", ".join(titles[:3]) + (", ..." if groups > 3 else "")
    return f"[RESOLVED] {groups} alert groups: {names}"


def storm_resolution_body(listed: Sequence[tuple[str, str]], groups: int, resolved_at: float) -> str:
    """One resolution notice for groups a flood-control summary paged together: (title, id) listed."""
    lines = [
        f"These {groups} alert groups, paged together by flood control, resolved "
        f"(the last at {utc(resolved_at)}). No action needed."
    ]
    lines += [f"- {title} (alert {group_id})" for title, group_id in listed[:MAX_LISTED]]
    if groups > MAX_LISTED:
        lines.append(f"and {groups - MAX_LISTED} more groups.")
    return "\n".join(lines)
