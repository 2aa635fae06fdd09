"""Plain-text renderings of previews, statuses and reports for the terminal. Pure functions.

Titles and other text from users or alerts are shown with control characters, line separators and
bidi overrides escaped (``\\x1b``, ``\\u202e``), so a title cannot move the cursor, recolour or clear
the operator's terminal, ring its bell or reorder what it shows.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from bot.engine.ladder_preview import LadderPreview
from bot.service import AnnounceRequest, Preview

SHOWN_STATES = (
    "sent",
    "delivered",
    "failed",
    "bounced",
    "suppressed",
    "expired",
    "cancelled",
    "queued",
    "deferred",
    "sending",
)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str) -> str:
    """``text`` with control characters, line separators and bidi overrides written as escapes."""
    return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def _lines(lines: list[str]) -> str:
    return "\n".join(terminal_text(line) for line in lines)


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def time_text(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def reach_text(reach: float | None) -> str:
    """``97.5%``: rounded down, so a reach short of everyone never shows as 100%."""
    if reach is None:
        return "-"
    return f"{math.floor(reach * 1000) / 10:g}%"


def people_line(people: dict[str, int], sla: dict[str, Any]) -> str:
    """``people: reached 5, unreached 1, unreachable 2; reach 83.3% (target 100%)``."""
    parts = [f"reached {people['reached']}", f"unreached {people['unreached']}"]
    parts.append(f"unreachable {people['unreachable']}")
    if people.get("cancelled"):
        parts.append(f"cancelled {people['cancelled']}")
    target = sla.get("reach_target")
    goal = f" (target {reach_text(target)})" if target is not None else ""
    return f"people: {', '.join(parts)}; reach {reach_text(judged_reach(people, sla.get('reach')))}{goal}"


def judged_reach(people: dict[str, int], reach: float | None) -> float | None:
    """``reach``, or None (shown ``-``) when nobody was judged: 0 of 0 reached is no 100%."""
    return reach if people.get("reached", 0) + people.get("unreached", 0) else None


def verdict(status: dict[str, Any]) -> str:
    """The SLA verdict as shown: met, MISSED, pending, or not judged for a cancelled notification."""
    met = status["sla"]["met"]
    if met is None and status.get("state") == "cancelled":
        return "not judged (cancelled)"
    return {True: "met", False: "MISSED", None: "pending"}[met]


def confirmations_line(people: dict[str, int]) -> str:
    """``confirmations: confirmed 3, not confirmed 2, unreachable 1`` (unreachable: no address)."""
    confirmed, unreachable = people.get("confirmed", 0), people["unreachable"]
    waiting = max(0, people["reached"] + people["unreached"] - confirmed)
    return f"confirmations: confirmed {confirmed}, not confirmed {waiting}, unreachable {unreachable}"


def channel_lines(channels: dict[str, dict[str, int]]) -> list[str]:
    """``  email: sent 12, failed 1`` per channel, states in a fixed order, zeros left out."""
    lines = []
    for channel, states in channels.items():
        parts = [f"{state} {states[state]}" for state in SHOWN_STATES if states.get(state)]
        lines.append(f"  {channel}: " + (", ".join(parts) or "nothing"))
    return lines


def format_preview(preview: Preview, request: AnnounceRequest) -> str:
    lines = [
        f"[{request.severity.upper()}] {request.title}",
        f"audience {request.audience!r}: {preview.recipients} people",
    ]
    for name, channel in preview.channels.items():
        why = ", ".join(f"{reason} {count}" for reason, count in sorted(channel.unreachable.items()) if count)
        extra = (
            f" ({preview.sms_segments} segment{'s' if preview.sms_segments != 1 else ''} each)"
            if (name == "sms")
            else ""
        )
        lines.append(
            f"  {name}: {channel.reachable} reachable{extra}" + (f"; unreachable: {why}" if why else "")
        )
    fc = preview.forecast
    verdict = "meets" if fc.meets else "WILL MISS"
    lines.append(
        f"forecast: last message out in {seconds_text(fc.seconds)}; "
        f"deadline {seconds_text(preview.deliver_within)} ({verdict} the SLA)"
    )
    return _lines(lines)


def format_ladder(ladder: LadderPreview) -> str:
    """``rungs:`` then one line per rung: its channels, when it starts, the most people it reaches."""
    lines = ["rungs (later ones only to whoever has not confirmed or been reached by then):"]
    for rung in ladder.rungs:
        when = (
            "at once"
            if rung.starts_at <= ladder.start
            else f"after {seconds_text(rung.starts_at - ladder.start)}"
        )
        sms = "sms" in rung.channels and ladder.sms_cost is not None
        cost = f", SMS at most {ladder.sms_cost:.2f}" if sms else ""
        lines.append(
            f"  {rung.index + 1}. {','.join(rung.channels)}: starts {when}, "
            f"at most {rung.people} people{cost}"
        )
    if ladder.sms_cost is not None:
        each = f"{ladder.sms_segments} segment{'s' if ladder.sms_segments != 1 else ''} each"
        lines.append(f"  (SMS to everyone at once: {ladder.sms_cost:.2f}, {each})")
    return _lines(lines)


def format_status(status: dict[str, Any]) -> str:
    sla = status["sla"]
    met = verdict(status)
    lines = [
        f"{status['id']}  [{status['severity'].upper()}] {status['title']}",
        f"state {status['state']}; {status['recipients']} recipients; {status['left']} left",
    ]
    lines.extend(channel_lines(status["channels"]))
    lines.extend(f"held: {outage}" for outage in status.get("channels_down", {}).values())
    lines.append(people_line(status["people"], sla))
    if (status.get("meta") or {}).get("confirm"):
        lines.append(confirmations_line(status["people"]))
    for rung in status.get("rungs") or ():
        started = rung["started_at"]
        when = f"started {time_text(started)} for {rung['people']} people" if started else "not started yet"
        lines.append(f"rung {rung['rung'] + 1} ({','.join(rung['channels'])}): {when}")
    lines.append(
        f"SLA {met}: last delivery after {seconds_text(sla['last_delivery_s'])} "
        f"(deadline {seconds_text(sla['deliver_within_s'])})"
    )
    return _lines(lines)


def format_report(report: dict[str, Any]) -> str:
    sla = report["sla"]
    pct = f"{sla['met_pct']}%" if sla["met_pct"] is not None else "-"
    causes = ", ".join(f"{cause} {n}" for cause, n in sorted((sla.get("causes") or {}).items()))
    lines = [
        f"{report['notifications']} notifications since {time_text(report['since'])}",
        f"SLA: {sla['met']} met, {sla['missed']} missed of {sla['judged']} finished ({pct})"
        + (f"; missed for: {causes}" if causes else ""),
    ]
    lines.extend(channel_lines(report["channels"]))
    lines.extend(f"down now: {outage}" for outage in (report.get("channels_down") or {}).values())
    lines.append(people_line(report["people"], {"reach": report["people"]["reach"]}))
    bounces = report.get("bounces") or {}
    if bounces.get("count"):
        median, longest = seconds_text(bounces["median_delay_s"]), seconds_text(bounces["max_delay_s"])
        lines.append(f"bounced later: {bounces['count']}, median {median} after the send (longest {longest})")
    asked = [item["people"] for item in report["items"] if (item.get("meta") or {}).get("confirm")]
    if asked:
        totals = {
            key: sum(p.get(key, 0) for p in asked)
            for key in ("reached", "unreached", "unreachable", "confirmed")
        }
        lines.append(confirmations_line(totals))
    alerts = report.get("alerts")
    if alerts and alerts["groups"]:
        ack = alerts["ack_sla"]
        ack_pct = f"{ack['met_pct']}%" if ack["met_pct"] is not None else "-"
        lines.append(
            f"alerts: {alerts['groups']} groups, {alerts['firing']} firing, "
            f"{alerts['acknowledged']} acknowledged; "
            f"ack SLA {ack['met']} met, {ack['missed']} missed ({ack_pct}); "
            f"paged people reach {reach_text(alerts['people']['reach'])}"
        )
    for worker, outcomes in sorted((report.get("workers") or {}).items()):
        parts = ", ".join(f"{outcome} {count}" for outcome, count in sorted(outcomes.items()))
        lines.append(f"  by {worker}: {parts}")
    for item in report["items"][:20]:
        met, reach = verdict(item), judged_reach(item["people"], item["sla"]["reach"])
        lines.append(
            f"  {item['id']} {time_text(item['created_at'])} [{item['severity']}] {item['title'][:40]}"
            f" - {item['recipients']} people, reach {reach_text(reach)},"
            f" SLA {met}, last {seconds_text(item['sla']['last_delivery_s'])}"
            + (f", late: {item['sla']['cause']}" if item["sla"].get("cause") else "")
        )
    return _lines(lines)
