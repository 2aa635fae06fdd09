"""Block Kit after Send: the live progress message, ``/announce status`` and ``list``, the Home tab.

Pure builders over a status document (:func:`bot.service.status`): per-channel state counts are
summed into a :class:`Tally`, and the stored SLA verdict (``sla.met``: True, False, None while
open) is shown as met / missed / open.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.slack.blocks import (
    CANCEL_ACTION,
    DONE_ACTION,
    Block,
    Message,
    button,
    confirm_dialog,
    context,
    format_duration,
    headline,
    people,
    plain,
    progress_bar,
    section,
)
from bot.slack.mrkdwn import Mrkdwn, join, mrkdwn, slack_date

SENT_STATES = ("sent", "delivered")
FAILED_STATES = ("failed", "bounced", "expired")  # bounced: failed later by a bounce
LEFT_STATES = ("queued", "deferred", "sending")
_SLA_MARK = {
    True: Mrkdwn(":white_check_mark: met"),
    False: Mrkdwn(":x: missed"),
    None: Mrkdwn(":hourglass_flowing_sand: open"),
}


# -- counts ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """Deliveries of one notification, summed over channels."""

    total: int
    sent: int
    failed: int
    suppressed: int
    cancelled: int
    left: int

    @property
    def done(self) -> int:
        return self.total - self.left


def tally(channels: Mapping[str, Mapping[str, int]]) -> Tally:
    """Sum the per-channel state counts of a status document."""
    counts: dict[str, int] = {}
    for states in channels.values():
        for state, count in states.items():
            counts[state] = counts.get(state, 0) + int(count)
    return Tally(
        total=sum(counts.values()),
        sent=sum(counts.get(s, 0) for s in SENT_STATES),
        failed=sum(counts.get(s, 0) for s in FAILED_STATES),
        suppressed=counts.get("suppressed", 0),
        cancelled=counts.get("cancelled", 0),
        left=sum(counts.get(s, 0) for s in LEFT_STATES),
    )


def estimate_eta(done: int, left: int, elapsed: float) -> float | None:
    """Seconds until ``left`` more are done at the rate so far; None before anything is done."""
    if left <= 0:
        return 0.0
    if done <= 0 or elapsed <= 0:
        return None
    return left * elapsed / done


def sla_mark(met: bool | None) -> Mrkdwn:
    """The SLA verdict as shown: met, missed, or open (not judged yet)."""
    return _SLA_MARK.get(met, _SLA_MARK[None])


# -- progress and status -----------------------------------------------------------------------------


def progress_message(
    status: Mapping[str, Any], now: float, eta: float | None = None, final: bool | None = None
) -> Message:
    """The live message after Send: bar, counts, ETA; when final, counts, slowest delivery, SLA.

    ``final`` defaults to "done or cancelled with nothing left in flight".
    """
    counts = tally(status.get("channels") or {})
    ident, title = str(status.get("id", "")), headline(str(status["severity"]), str(status["title"]))
    state = str(status.get("state", ""))
    if final is None:
        final = state in ("done", "cancelled") and counts.left == 0
    blocks: list[Block] = [section(mrkdwn("*{}*  `{}`", title, ident))]
    blocks.append(section(_progress_line(status, counts, now, eta, final)))
    per_channel = _per_channel_line(status.get("channels") or {})
    if per_channel:
        blocks.append(context(per_channel))
    blocks.extend(_held_lines(status, final))
    if not final and state != "cancelled":
        blocks.append({"type": "actions", "block_id": "announce_progress", "elements": [_stop_button(ident)]})
    if window_open(status.get("window"), now):
        blocks.append({"type": "actions", "block_id": "announce_window", "elements": [_done_button(ident)]})
    verb = _progress_verb(state, counts, final)
    return mrkdwn("{}: {} ({})", title, verb, _counts_line(counts)), blocks


def _held_lines(status: Mapping[str, Any], final: bool) -> list[Block]:
    """``held: the email channel is down (auth: 535 …)``, one per outage holding what is left."""
    if final:
        return []
    outages = (status.get("channels_down") or {}).values()
    return [context(mrkdwn(":pause_button: held: {}", str(outage))) for outage in outages]


def _percent(counts: Tally) -> int:
    return 100 if counts.total == 0 else (100 * counts.done) // counts.total


def _progress_line(
    status: Mapping[str, Any], counts: Tally, now: float, eta: float | None, final: bool
) -> Mrkdwn:
    """The main line: the final verdict, the scheduled time, or the bar with counts and ETA."""
    state = str(status.get("state", ""))
    start_at = float(status.get("start_at") or 0.0)
    summary = _counts_line(counts)
    if final:
        return _final_line(status, counts)
    if state == "scheduled" and start_at > now:
        return mrkdwn(":calendar: Scheduled for {}. {}", slack_date(start_at), summary)
    eta_text = mrkdwn(" · ETA {}", format_duration(eta)) if eta is not None and state != "cancelled" else ""
    lead = ":no_entry_sign: Cancelling; sends already under way finish.\n" if state == "cancelled" else ""
    bar = mrkdwn("`{}` {}%", progress_bar(counts.done, counts.total), _percent(counts))
    return mrkdwn("{}{}\n{}{}", lead, bar, summary, eta_text)


def _progress_verb(state: str, counts: Tally, final: bool) -> str:
    if final:
        return "cancelled" if state == "cancelled" else "finished"
    return "cancelling" if state == "cancelled" else f"{_percent(counts)}%"


def _stop_button(notification_id: str) -> Block:
    stop = button("Cancel the rest", CANCEL_ACTION, notification_id, "danger")
    stop["confirm"] = confirm_dialog(
        "Cancel this announcement?",
        "Messages not yet sent will not be sent.",
        "Cancel the rest",
        "Keep sending",
    )
    return stop


def window_open(window: Mapping[str, Any] | None, now: float) -> bool:
    """A maintenance window that has not ended (nor been ended early)."""
    if not window or window.get("ended_early"):
        return False
    return datetime.fromisoformat(str(window["end"])).timestamp() > now


def _done_button(notification_id: str) -> Block:
    done = button("Done: send the all-clear", DONE_ACTION, notification_id, "primary")
    done["confirm"] = confirm_dialog(
        "End the maintenance?",
        "Everyone it went to gets the all-clear; the window ends now.",
        "Send the all-clear",
        "Not yet",
    )
    return done


def _counts_line(counts: Tally) -> Mrkdwn:
    parts = [f"sent {counts.sent}", f"failed {counts.failed}", f"suppressed {counts.suppressed}"]
    if counts.cancelled:
        parts.append(f"cancelled {counts.cancelled}")
    parts.append(f"left {counts.left}")
    return join(" · ", parts)


def _final_line(status: Mapping[str, Any], counts: Tally) -> Mrkdwn:
    state = str(status.get("state"))
    sla = status.get("sla") or {}
    finished = status.get("finished_at")
    started = status.get("start_at") or status.get("created_at")
    took = (
        f" in {format_duration(float(finished) - float(started))}"
        if finished is not None and started is not None
        else ""
    )
    head = mrkdwn(
        ":no_entry_sign: *Cancelled*" if state == "cancelled" else ":checkered_flag: *Finished*{}", took
    )
    slowest = sla.get("last_delivery_s")
    slowest_text = f" · slowest delivery {format_duration(float(slowest))}" if slowest is not None else ""
    within = sla.get("deliver_within_s")
    sla_text = f"SLA (within {format_duration(float(within))}): " if within is not None else "SLA: "
    mark = sla_mark(sla.get("met"))
    if sla.get("met") is None and state == "cancelled":
        mark = Mrkdwn(":no_entry_sign: not judged (cancelled)")
    return mrkdwn(
        "{}. {}{}\n{}{}{}", head, _counts_line(counts), slowest_text, sla_text, mark, _reach(status)
    )


def _reach(status: Mapping[str, Any]) -> str:
    """`` · reached 5 of 6 people (83.3%, target 100%)``; empty for a document without people."""
    people, sla = status.get("people"), status.get("sla") or {}
    if not people or sla.get("reach") is None:
        return ""
    judged = int(people["reached"]) + int(people["unreached"])
    if not judged:  # 0 of 0 reached is no 100%
        cancelled, unreachable = people.get("cancelled", 0), people["unreachable"]
        return f" · nobody to reach ({cancelled} cancelled, {unreachable} unreachable)"
    target = sla.get("reach_target")
    goal = f", target {_pct(float(target))}" if target is not None else ""
    reached = f" · reached {people['reached']} of {judged} people ({_pct(float(sla['reach']))}{goal})"
    return reached + _confirmed(status)


def _confirmed(status: Mapping[str, Any]) -> str:
    """`` · confirmed 3, not confirmed 2, unreachable 1`` when the notification asks to confirm."""
    people = status.get("people") or {}
    if not (status.get("meta") or {}).get("confirm"):
        return ""
    confirmed = int(people.get("confirmed", 0))
    waiting = max(0, int(people["reached"]) + int(people["unreached"]) - confirmed)
    return f" · confirmed {confirmed}, not confirmed {waiting}, unreachable {people['unreachable']}"


def _pct(share: float) -> str:
    """A share as a percentage rounded down (short of everyone never shows as 100%)."""
    return f"{math.floor(share * 1000) / 10:g}%"


def _per_channel_line(channels: Mapping[str, Mapping[str, int]]) -> Mrkdwn:
    parts = []
    for channel, states in channels.items():
        shown = ", ".join(f"{state} {n}" for state, n in sorted(states.items()) if n)
        parts.append(mrkdwn("*{}*: {}", channel, shown or "nothing"))
    return join(" | ", parts)


def status_message(status: Mapping[str, Any], now: float) -> Message:
    """``/announce status ID``: the same summary as the progress message, without buttons."""
    text, blocks = progress_message(status, now)
    blocks = [block for block in blocks if block.get("type") != "actions"]
    recipients = int(status.get("recipients") or 0)
    created = status.get("created_at")
    when = mrkdwn(" · created {}", slack_date(float(created))) if created else ""
    blocks.append(
        context(mrkdwn("{} {} · state {}{}", recipients, people(recipients), status.get("state"), when))
    )
    if status.get("window"):
        blocks.append(context(_window_line(status["window"])))
    return text, blocks


def _window_line(window: Mapping[str, Any]) -> Mrkdwn:
    """A maintenance notification's window: when, what it silences, and how it went."""
    silence = ",".join(f"{k}={v}" for k, v in window["silence"].items()) or "nothing"
    line = mrkdwn(
        ":wrench: window {} to {} · silences `{}` · {} alert(s) silenced",
        window["start"],
        window["end"],
        silence,
        window["silenced_alerts"],
    )
    if window.get("ended_early"):
        line = mrkdwn("{} · ended early at {}", line, window["ended_early"])
    if window.get("overran"):
        line = mrkdwn("{} · :warning: overran", line)
    return line


# -- list and Home -----------------------------------------------------------------------------------


def list_message(
    scheduled: Sequence[Mapping[str, Any]], recent: Sequence[Mapping[str, Any]], command: str = "/announce"
) -> Message:
    """``/announce list``: what is scheduled (cancel with ``/announce cancel ID``), then recent ones."""
    blocks: list[Block] = [section(mrkdwn("*Scheduled*"))]
    if scheduled:
        for item in scheduled:
            start = item.get("start_at")
            when = mrkdwn(" starts {}", slack_date(float(start))) if start else ""
            line = mrkdwn("`{}` {}{}{}", item.get("id"), _item_title(item), when, _item_route(item))
            blocks.append(section(line))
        blocks.append(context(mrkdwn("Cancel one with `{} cancel ID`.", command)))
    else:
        blocks.append(context(mrkdwn("Nothing scheduled.")))
    blocks.append(section(mrkdwn("*Recent*")))
    blocks.extend(_recent_lines(recent))
    return mrkdwn("{} scheduled, {} recent", len(scheduled), len(recent)), blocks


def _item_title(item: Mapping[str, Any]) -> Mrkdwn:
    title = mrkdwn("{}", headline(str(item.get("severity", "")), str(item.get("title", ""))))
    window = item.get("window")
    if not window:
        return title
    overran = " (overran)" if window.get("overran") else ""
    return mrkdwn("{} · :wrench: window {} to {}{}", title, window["start"], window["end"], overran)


def _item_route(item: Mapping[str, Any]) -> Mrkdwn:
    audience = item.get("audience")
    channels = item.get("channels")
    via = ",".join(channels) if isinstance(channels, list | tuple) else (channels or "")
    route = mrkdwn(" to `{}`", audience) if audience else ""
    return mrkdwn("{}{}", route, mrkdwn(" via {}", via) if via and isinstance(via, str) else "")


def _recent_lines(recent: Iterable[Mapping[str, Any]]) -> list[Block]:
    lines = []
    for item in recent:
        counts = tally(item.get("channels") or {})
        mark = sla_mark((item.get("sla") or {}).get("met"))
        lines.append(
            mrkdwn(
                "`{}` {} · {} · sent {}/{} · SLA {}",
                item.get("id"),
                _item_title(item),
                item.get("state"),
                counts.sent,
                counts.total,
                mark,
            )
        )
    if not lines:
        return [context(mrkdwn("No notifications yet."))]
    return [section(join("\n", lines))]


def home_view(
    recent: Sequence[Mapping[str, Any]], may_announce: bool, command: str = "/announce"
) -> dict[str, Any]:
    """The App Home tab: the last notifications (an announcer's: all; a member's: their own)."""
    intro = (
        mrkdwn("Type `{0}` in any channel to send an announcement, or `{0} help`.", command)
        if may_announce
        else mrkdwn("You are not an announcer; ask an admin to add you to `slack.announcers`.")
    )
    blocks: list[Block] = [
        {"type": "header", "text": plain("Herald")},
        section(intro),
        {"type": "divider"},
        section(mrkdwn("*Last notifications*" if may_announce else "*Your last notifications*")),
        *_recent_lines(recent),
    ]
    return {"type": "home", "blocks": blocks}
