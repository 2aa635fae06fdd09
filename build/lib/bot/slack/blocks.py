"""Pure Block Kit builders: data in, Slack message and view payloads out. No IO, no clock.

Every builder returns plain dicts (or ``(text, blocks)`` for messages: ``text`` is the notification
fallback Slack shows in alerts and screen readers). Times are rendered with Slack's ``<!date^...>``
so each reader sees their own timezone; the fallback after ``|`` is UTC.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.config import CHANNEL_NAMES, SEVERITIES
from bot.slack.commands import HELP, USAGE

Block = dict[str, Any]
Message = tuple[str, list[Block]]

MODAL_CALLBACK = "announce_modal"
SEND_ACTION = "announce_send"
CANCEL_ACTION = "announce_cancel"
REFRESH_ACTION = "announce_refresh"
MODAL_BLOCKS = ("audience", "channels", "severity", "title", "body", "start_at")
SENT_STATES = ("sent", "delivered")
FAILED_STATES = ("failed", "expired")
LEFT_STATES = ("queued", "deferred", "sending")
_REASONS = {
    "no_address": "no address",
    "no_email": "no email",
    "no_phone": "no phone",
    "suppressed": "suppressed or opted out",
    "opted_out": "opted out",
    "bounced": "bounced",
    "quiet_hours": "quiet hours (deferred)",
}
_SLA_MARK = {True: ":white_check_mark: met", False: ":x: missed", None: ":hourglass_flowing_sand: open"}


# -- small formatters ------------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``0.4`` → ``"0s"``, ``75`` → ``"1m 15s"``, ``7260`` → ``"2h 1m"``, ``90000`` → ``"1d 1h"``."""
    total = max(0, round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def slack_date(epoch: float, pattern: str = "{date_short_pretty} {time}") -> str:
    """A time every reader sees in their own timezone; UTC text for clients that cannot."""
    fallback = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(epoch)}^{pattern}|{fallback}>"


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """``progress_bar(5, 10, 10)`` → ``"█████░░░░░"``; an empty total is a full bar."""
    filled = width if total <= 0 else min(width, (done * width) // total)
    return "█" * filled + "░" * (width - filled)


def headline(severity: str, title: str) -> str:
    """``("maintenance", "Patch")`` → ``"[MAINTENANCE] Patch"``, as the email subject reads."""
    return f"[{severity.upper()}] {title}"


def escape(text: str) -> str:
    """Slack's three escapes, for user text placed in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:150], "emoji": True}


def _button(text: str, action_id: str, value: str, style: str | None = None) -> Block:
    button: Block = {"type": "button", "text": _plain(text), "action_id": action_id, "value": value}
    if style:
        button["style"] = style
    return button


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


# -- preview -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewFacts:
    """What a preview shows, gathered from the request and the engine's preview."""

    severity: str
    title: str
    body: str
    audience: str
    channels: tuple[str, ...]
    recipients: int
    reachable: Mapping[str, int]
    unreachable: Mapping[str, Mapping[str, int]]
    sms_segments: int
    finish_at: float
    forecast_seconds: float
    meets_sla: bool
    deliver_within: float
    start_at: float | None = None


def needs_confirmation(audience: str, recipients: int, confirm_above: int) -> bool:
    """``everyone`` and audiences above ``confirm_above`` people need a second confirmation."""
    return recipients > confirm_above or any(word.lower() == "everyone" for word in audience.split())


def preview_message(facts: PreviewFacts, token: str, confirm: bool) -> Message:
    """The ephemeral preview with Send / Cancel; ``token`` names the stored pending request."""
    lines = [f"*To* `{escape(facts.audience)}`: *{facts.recipients}* {_people(facts.recipients)}"]
    for channel in facts.channels:
        lines.append(f"• *{channel}*: {facts.reachable.get(channel, 0)} reachable" + _why(facts, channel))
    if "sms" in facts.channels:
        lines.append(
            f"• SMS length: {facts.sms_segments} {_plural(facts.sms_segments, 'segment')} per message"
        )
    blocks = [
        {"type": "header", "text": _plain("Preview: " + headline(facts.severity, facts.title))},
        _section("\n".join(lines)),
    ]
    if facts.body:
        blocks.append(_section(_quote(facts.body)))
    blocks.append(_section(_forecast_line(facts)))
    if not facts.meets_sla:
        blocks.append(
            _section(
                f":warning: *This will miss the {facts.severity} SLA*: the last message is projected "
                f"{format_duration(facts.forecast_seconds)} after start, but {facts.severity} must be "
                f"delivered within {format_duration(facts.deliver_within)}. Narrow the audience, "
                "drop a channel, or send anyway."
            )
        )
    send = _button("Schedule" if facts.start_at else "Send", SEND_ACTION, token, "primary")
    if confirm:
        send["confirm"] = {
            "title": _plain(
                "Send to everyone?" if "everyone" in facts.audience.lower() else "Large audience"
            ),
            "text": {
                "type": "mrkdwn",
                "text": f"This goes to *{facts.recipients}* {_people(facts.recipients)}. Are you sure?",
            },
            "confirm": _plain(f"Yes, send to {facts.recipients}"),
            "deny": _plain("Go back"),
            "style": "danger",
        }
    blocks.append(
        {"type": "actions", "block_id": "announce_preview", "elements": [send, _cancel_button(token)]}
    )
    text = (
        f"Preview: {headline(facts.severity, facts.title)} to {facts.recipients} {_people(facts.recipients)}"
    )
    return text, blocks


def _cancel_button(value: str) -> Block:
    return _button("Cancel", CANCEL_ACTION, value)


def _why(facts: PreviewFacts, channel: str) -> str:
    reasons = {reason: n for reason, n in facts.unreachable.get(channel, {}).items() if n}
    if not reasons:
        return ""
    total = sum(reasons.values())
    parts = ", ".join(
        f"{n} {_REASONS.get(reason, reason.replace('_', ' '))}" for reason, n in reasons.items()
    )
    return f", {total} unreachable ({parts})"


def _forecast_line(facts: PreviewFacts) -> str:
    start = f"Starts {slack_date(facts.start_at)}. " if facts.start_at else ""
    mark = ":white_check_mark: meets" if facts.meets_sla else ":x: misses"
    pattern = "{time}" if facts.forecast_seconds < 12 * 3600 else "{date_short_pretty} {time}"
    return (
        f"{start}Projected completion {slack_date(facts.finish_at, pattern)} "
        f"({format_duration(facts.forecast_seconds)} after start); SLA {facts.severity}: "
        f"within {format_duration(facts.deliver_within)}, {mark}."
    )


def _quote(body: str, limit: int = 600) -> str:
    clipped = body if len(body) <= limit else body[:limit].rstrip() + "…"
    return "\n".join("> " + escape(line) for line in clipped.splitlines() or [""])


def _people(n: int) -> str:
    return "person" if n == 1 else "people"


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def resolved_message(text: str) -> dict[str, Any]:
    """Replace an ephemeral preview (through its response_url) with one line."""
    return {"replace_original": True, "text": text, "blocks": [_section(text)]}


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
    percent = 100 if counts.total == 0 else (100 * counts.done) // counts.total
    summary = _counts_line(counts)
    blocks: list[Block] = [_section(f"*{escape(title)}*  `{ident}`")]
    start_at = float(status.get("start_at") or 0.0)
    if final:
        blocks.append(_section(_final_line(status, counts, now)))
    elif state == "scheduled" and start_at > now:
        blocks.append(_section(f":calendar: Scheduled for {slack_date(start_at)}. {summary}"))
    else:
        eta_text = f" · ETA {format_duration(eta)}" if eta is not None and state != "cancelled" else ""
        lead = ":no_entry_sign: Cancelling; sends already under way finish.\n" if state == "cancelled" else ""
        bar = f"`{progress_bar(counts.done, counts.total)}` {percent}%"
        blocks.append(_section(f"{lead}{bar}\n{summary}{eta_text}"))
    per_channel = _per_channel_line(status.get("channels") or {})
    if per_channel:
        blocks.append(_context(per_channel))
    if not final and state != "cancelled":
        blocks.append({"type": "actions", "block_id": "announce_progress", "elements": [_stop_button(ident)]})
    if final:
        verb = "cancelled" if state == "cancelled" else "finished"
    else:
        verb = "cancelling" if state == "cancelled" else f"{percent}%"
    return f"{title}: {verb} ({summary})", blocks


def _stop_button(notification_id: str) -> Block:
    button = _button("Cancel the rest", CANCEL_ACTION, notification_id, "danger")
    button["confirm"] = {
        "title": _plain("Cancel this announcement?"),
        "text": {"type": "mrkdwn", "text": "Messages not yet sent will not be sent."},
        "confirm": _plain("Cancel the rest"),
        "deny": _plain("Keep sending"),
    }
    return button


def _counts_line(counts: Tally) -> str:
    parts = [f"sent {counts.sent}", f"failed {counts.failed}", f"suppressed {counts.suppressed}"]
    if counts.cancelled:
        parts.append(f"cancelled {counts.cancelled}")
    parts.append(f"left {counts.left}")
    return " · ".join(parts)


def _final_line(status: Mapping[str, Any], counts: Tally, now: float) -> str:
    state = str(status.get("state"))
    sla = status.get("sla") or {}
    finished = status.get("finished_at")
    started = status.get("start_at") or status.get("created_at")
    took = (
        f" in {format_duration(float(finished) - float(started))}"
        if finished is not None and started is not None
        else ""
    )
    head = ":no_entry_sign: *Cancelled*" if state == "cancelled" else f":checkered_flag: *Finished*{took}"
    slowest = sla.get("last_delivery_s")
    slowest_text = f" · slowest delivery {format_duration(float(slowest))}" if slowest is not None else ""
    met = sla.get("met")
    within = sla.get("deliver_within_s")
    sla_text = f"SLA (within {format_duration(float(within))}): " if within is not None else "SLA: "
    return f"{head}. {_counts_line(counts)}{slowest_text}\n{sla_text}{_SLA_MARK.get(met, _SLA_MARK[None])}"


def _per_channel_line(channels: Mapping[str, Mapping[str, int]]) -> str:
    parts = []
    for channel, states in channels.items():
        shown = ", ".join(f"{state} {n}" for state, n in sorted(states.items()) if n)
        parts.append(f"*{channel}*: {shown or 'nothing'}")
    return " | ".join(parts)


def status_message(status: Mapping[str, Any], now: float) -> Message:
    """``/announce status ID``: the same summary as the progress message, without buttons."""
    text, blocks = progress_message(status, now)
    blocks = [block for block in blocks if block.get("type") != "actions"]
    recipients = int(status.get("recipients") or 0)
    created = status.get("created_at")
    when = f" · created {slack_date(float(created))}" if created else ""
    blocks.append(_context(f"{recipients} {_people(recipients)} · state {status.get('state')}{when}"))
    return text, blocks


def list_message(scheduled: Sequence[Mapping[str, Any]], recent: Sequence[Mapping[str, Any]]) -> Message:
    """``/announce list``: what is scheduled (cancel with ``/announce cancel ID``), then recent ones."""
    blocks: list[Block] = [_section("*Scheduled*")]
    if scheduled:
        for item in scheduled:
            start = item.get("start_at")
            when = f" starts {slack_date(float(start))}" if start else ""
            blocks.append(_section(f"`{item.get('id')}` {_item_title(item)}{when}{_item_route(item)}"))
        blocks.append(_context("Cancel one with `/announce cancel ID`."))
    else:
        blocks.append(_context("Nothing scheduled."))
    blocks.append(_section("*Recent*"))
    blocks.extend(_recent_lines(recent))
    return f"{len(scheduled)} scheduled, {len(recent)} recent", blocks


def _item_title(item: Mapping[str, Any]) -> str:
    return escape(headline(str(item.get("severity", "")), str(item.get("title", ""))))


def _item_route(item: Mapping[str, Any]) -> str:
    audience = item.get("audience")
    channels = item.get("channels")
    via = ",".join(channels) if isinstance(channels, list | tuple) else (channels or "")
    route = f" to `{escape(str(audience))}`" if audience else ""
    return route + (f" via {via}" if via and isinstance(via, str) else "")


def _recent_lines(recent: Iterable[Mapping[str, Any]]) -> list[Block]:
    lines = []
    for item in recent:
        counts = tally(item.get("channels") or {})
        sla = item.get("sla") or {}
        mark = _SLA_MARK.get(sla.get("met"), _SLA_MARK[None])
        lines.append(
            f"`{item.get('id')}` {_item_title(item)} · {item.get('state')} · "
            f"sent {counts.sent}/{counts.total} · SLA {mark}"
        )
    if not lines:
        return [_context("No notifications yet.")]
    return [_section("\n".join(lines))]


def home_view(recent: Sequence[Mapping[str, Any]], may_announce: bool) -> dict[str, Any]:
    """The App Home tab: the last notifications and their SLA state."""
    intro = (
        "Type `/announce` in any channel to send an announcement, or `/announce help`."
        if may_announce
        else "You are not an announcer; ask an admin to add you to `slack.announcers`."
    )
    blocks: list[Block] = [
        {"type": "header", "text": _plain("Herald")},
        _section(intro),
        {"type": "divider"},
        _section("*Last notifications*"),
        *_recent_lines(recent),
    ]
    return {"type": "home", "blocks": blocks}


# -- modal -------------------------------------------------------------------------------------------


def announce_modal(
    channel_id: str,
    channels: Sequence[str] = CHANNEL_NAMES,
    initial_audience: str = "",
) -> dict[str, Any]:
    """The ``/announce`` form; ``private_metadata`` remembers where the command was typed."""

    def option(value: str, label: str | None = None) -> dict[str, Any]:
        return {"text": _plain(label or value), "value": value}

    def text_input(block_id: str, label: str, placeholder: str, multiline: bool = False) -> Block:
        element: Block = {
            "type": "plain_text_input",
            "action_id": "value",
            "multiline": multiline,
            "placeholder": _plain(placeholder),
        }
        if block_id == "audience" and initial_audience:
            element["initial_value"] = initial_audience
        return {"type": "input", "block_id": block_id, "label": _plain(label), "element": element}

    offered = [name for name in CHANNEL_NAMES if name in channels] or ["email"]
    blocks: list[Block] = [
        text_input("audience", "Audience", "dept:Finance site:Berlin -group:contractors"),
        {
            "type": "input",
            "block_id": "channels",
            "label": _plain("Channels"),
            "element": {
                "type": "checkboxes",
                "action_id": "value",
                "options": [
                    option(name, name.upper() if name == "sms" else name.capitalize()) for name in offered
                ],
                "initial_options": [option("email", "Email")],
            },
        },
        {
            "type": "input",
            "block_id": "severity",
            "label": _plain("Severity"),
            "element": {
                "type": "static_select",
                "action_id": "value",
                "placeholder": _plain("Pick a severity"),
                "options": [option(name, name.capitalize()) for name in SEVERITIES],
            },
        },
        text_input("title", "Title", "Patch Tuesday"),
        text_input("body", "Message", "Servers reboot at 22:00 CET.", multiline=True),
        {
            "type": "input",
            "block_id": "start_at",
            "optional": True,
            "label": _plain("Send later (optional)"),
            "element": {"type": "datetimepicker", "action_id": "value"},
        },
        _context(f"Or type it: `{USAGE}`"),
    ]
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "title": _plain("Announce"),
        "submit": _plain("Preview"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"channel_id": channel_id}),
        "blocks": blocks,
    }


def help_message() -> Message:
    return f"usage: {USAGE}", [_section(HELP)]


def error_message(text: str) -> Message:
    """A user-facing problem, as one ephemeral line (``text`` already says what to do)."""
    return text, [_section(f":warning: {escape(text)}")]
