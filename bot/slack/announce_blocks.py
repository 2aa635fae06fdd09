"""Block Kit before Send: the ``/announce`` form, the preview with Send / Cancel, and the help.

Pure builders over the primitives of :mod:`bot.slack.blocks`; the form's block ids are the ones
:func:`bot.slack.commands.parse_modal_submission` reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.channel_specs import CHANNELS
from bot.config import CHANNEL_NAMES, SEVERITIES
from bot.slack.blocks import (
    CANCEL_ACTION,
    MODAL_CALLBACK,
    SEND_ACTION,
    Block,
    Message,
    button,
    confirm_dialog,
    context,
    format_duration,
    headline,
    people,
    plain,
    plural,
    section,
)
from bot.slack.commands import COMMAND, HELP, USAGE, named
from bot.slack.mrkdwn import Mrkdwn, join, mrkdwn, slack_date

_REASONS = {
    "no_address": "no address",
    "no_email": "no email",
    "no_phone": "no phone",
    "no_slack_user": "no Slack user",
    "suppressed": "suppressed or opted out",
    "opted_out": "opted out",
    "bounced": "bounced",
    "quiet_hours": "quiet hours (deferred)",
}


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
    window: tuple[float, float, Mapping[str, str]] | None = None  # maintenance: start, end, silence
    ladder: tuple[str, ...] = ()  # the channel ladder's lines (bot.render.format_ladder), if any


def needs_confirmation(audience: str, recipients: int, confirm_above: int) -> bool:
    """``everyone`` and audiences above ``confirm_above`` people need a second confirmation."""
    return recipients > confirm_above or any(word.lower() == "everyone" for word in audience.split())


def preview_message(facts: PreviewFacts, token: str, confirm: bool) -> Message:
    """The ephemeral preview with Send / Cancel; ``token`` names the stored pending request."""
    title = headline(facts.severity, facts.title)
    blocks = [
        section(mrkdwn("*Preview: {}*", title)),  # a section, not a header: user text goes in mrkdwn
        section(join("\n", _reach_lines(facts))),
    ]
    if facts.body:
        blocks.append(section(_quote(facts.body)))
    if facts.window is not None:
        blocks.append(section(window_line(*facts.window)))
    blocks.append(section(_forecast_line(facts)))
    if facts.ladder:
        blocks.append(section(join("\n", [mrkdwn("{}", line) for line in facts.ladder])))
    if not facts.meets_sla:
        blocks.append(section(_sla_warning(facts)))
    send = _send_button(facts, token, confirm)
    blocks.append(
        {"type": "actions", "block_id": "announce_preview", "elements": [send, _cancel_button(token)]}
    )
    text = mrkdwn("Preview: {} to {} {}", title, facts.recipients, people(facts.recipients))
    return text, blocks


def window_line(start: float, end: float, silence: Mapping[str, str]) -> Mrkdwn:
    """A maintenance window and the alerts it silences."""
    matchers = ",".join(f"{key}={value}" for key, value in silence.items())
    if not matchers:
        return mrkdwn(":wrench: *Maintenance window* {} to {}", slack_date(start), slack_date(end))
    return mrkdwn(
        ":wrench: *Maintenance window* {} to {}: alerts with `{}` page nobody until it ends",
        slack_date(start),
        slack_date(end),
        matchers,
    )


def _reach_lines(facts: PreviewFacts) -> list[Mrkdwn]:
    lines = [mrkdwn("*To* `{}`: *{}* {}", facts.audience, facts.recipients, people(facts.recipients))]
    for channel in facts.channels:
        reachable = facts.reachable.get(channel, 0)
        lines.append(mrkdwn("• *{}*: {} reachable{}", channel, reachable, _why(facts, channel)))
    if "sms" in facts.channels:
        segments = facts.sms_segments
        lines.append(mrkdwn("• SMS length: {} {} per message", segments, plural(segments, "segment")))
    return lines


def _sla_warning(facts: PreviewFacts) -> Mrkdwn:
    return mrkdwn(
        ":warning: *This will miss the {severity} SLA*: the last message is projected "
        "{took} after start, but {severity} must be delivered within {within}. Narrow the audience, "
        "drop a channel, or send anyway.",
        severity=facts.severity,
        took=format_duration(facts.forecast_seconds),
        within=format_duration(facts.deliver_within),
    )


def _send_button(facts: PreviewFacts, token: str, confirm: bool) -> Block:
    send = button("Schedule" if facts.start_at else "Send", SEND_ACTION, token, "primary")
    if confirm:
        send["confirm"] = confirm_dialog(
            "Send to everyone?" if "everyone" in facts.audience.lower() else "Large audience",
            mrkdwn("This goes to *{}* {}. Are you sure?", facts.recipients, people(facts.recipients)),
            f"Yes, send to {facts.recipients}",
            "Go back",
            style="danger",
        )
    return send


def _cancel_button(value: str) -> Block:
    return button("Cancel", CANCEL_ACTION, value)


def _why(facts: PreviewFacts, channel: str) -> str:
    reasons = {reason: n for reason, n in facts.unreachable.get(channel, {}).items() if n}
    if not reasons:
        return ""
    total = sum(reasons.values())
    parts = ", ".join(
        f"{n} {_REASONS.get(reason, reason.replace('_', ' '))}" for reason, n in reasons.items()
    )
    return f", {total} unreachable ({parts})"


def _forecast_line(facts: PreviewFacts) -> Mrkdwn:
    start = mrkdwn("Starts {}. ", slack_date(facts.start_at)) if facts.start_at else ""
    mark = ":white_check_mark: meets" if facts.meets_sla else ":x: misses"
    pattern = "{time}" if facts.forecast_seconds < 12 * 3600 else "{date_short_pretty} {time}"
    return mrkdwn(
        "{start}Projected completion {finish} ({took} after start); SLA {severity}: within {within}, {mark}.",
        start=start,
        finish=slack_date(facts.finish_at, pattern),
        took=format_duration(facts.forecast_seconds),
        severity=facts.severity,
        within=format_duration(facts.deliver_within),
        mark=mark,
    )


def _quote(body: str, limit: int = 600) -> Mrkdwn:
    clipped = body if len(body) <= limit else body[:limit].rstrip() + "…"
    return join("\n", (mrkdwn("> {}", line) for line in clipped.splitlines() or [""]))


# -- the form ----------------------------------------------------------------------------------------


def announce_modal(
    channel_id: str,
    channels: Sequence[str] = CHANNEL_NAMES,
    initial_audience: str = "",
    command: str = COMMAND,
) -> dict[str, Any]:
    """The ``/announce`` form; ``private_metadata`` remembers where the command was typed."""
    offered = [name for name in CHANNEL_NAMES if name in channels] or ["email"]
    blocks: list[Block] = [
        _text_input("audience", "Audience", "dept:Finance site:Berlin -group:contractors", initial_audience),
        _channels_input(offered),
        _severity_input(),
        _text_input("title", "Title", "Patch Tuesday"),
        _text_input("body", "Message", "Servers reboot at 22:00 CET.", multiline=True),
        {
            "type": "input",
            "block_id": "start_at",
            "optional": True,
            "label": plain("Send later (optional)"),
            "element": {"type": "datetimepicker", "action_id": "value"},
        },
        _optional(_text_input("window", "Maintenance window (optional)", "22:00-23:30 (UTC) or START..END")),
        _optional(_text_input("silence", "Silence alerts in the window (optional)", "service=db,env=prod")),
        _confirm_input(),
        context(mrkdwn("Or type it: `{}`", named(USAGE, command))),
    ]
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "title": plain("Announce"),
        "submit": plain("Preview"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps({"channel_id": channel_id}),
        "blocks": blocks,
    }


def _optional(block: Block) -> Block:
    return {**block, "optional": True}


def _option(value: str, label: str | None = None) -> dict[str, Any]:
    return {"text": plain(label or value), "value": value}


def _text_input(
    block_id: str, label: str, placeholder: str, initial: str = "", multiline: bool = False
) -> Block:
    element: Block = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": multiline,
        "placeholder": plain(placeholder),
    }
    if initial:
        element["initial_value"] = initial
    return {"type": "input", "block_id": block_id, "label": plain(label), "element": element}


def _channels_input(offered: Sequence[str]) -> Block:
    return {
        "type": "input",
        "block_id": "channels",
        "label": plain("Channels"),
        "element": {
            "type": "checkboxes",
            "action_id": "value",
            "options": [_option(name, CHANNELS[name].label) for name in offered],
            "initial_options": [_option("email", "Email")],
        },
    }


def _confirm_input() -> Block:
    """Ask every recipient to confirm (as ``--confirm``; the value is read by ``parse_modal_submission``)."""
    option = _option("confirm", "Ask recipients to confirm they got it")
    return {
        "type": "input",
        "block_id": "confirm",
        "optional": True,
        "label": plain("Confirmation"),
        "element": {"type": "checkboxes", "action_id": "value", "options": [option]},
    }


def _severity_input() -> Block:
    return {
        "type": "input",
        "block_id": "severity",
        "label": plain("Severity"),
        "element": {
            "type": "static_select",
            "action_id": "value",
            "placeholder": plain("Pick a severity"),
            "options": [_option(name, name.capitalize()) for name in SEVERITIES],
        },
    }


def help_message(command: str = COMMAND) -> Message:
    return mrkdwn("usage: {}", named(USAGE, command)), [section(mrkdwn("{}", named(HELP, command)))]
