"""Block Kit primitives every Slack builder shares: types, action ids, formatters, element helpers.

Builders live in :mod:`bot.slack.announce_blocks` (the form and the preview before Send) and
:mod:`bot.slack.status_blocks` (progress, status, list and the Home tab); alert messages in
:mod:`bot.alerts.slack_message`. All are pure: data in, plain dicts out, no IO, no clock.

Messages are ``(text, blocks)``: ``text`` is the notification fallback Slack shows in alerts and
screen readers. Both are :class:`~bot.slack.mrkdwn.Mrkdwn` (user and alert data escaped); the
element helpers take nothing else, and :func:`plain` escapes what it is given. Times are rendered
with Slack's ``<!date^...>`` so each reader sees their own timezone; the fallback after ``|`` is UTC.
"""

from __future__ import annotations

from typing import Any

from bot.slack.mrkdwn import Mrkdwn, escape, mrkdwn, slack_date, text

__all__ = ["Block", "Message", "Mrkdwn", "escape", "mrkdwn", "slack_date", "text"]

Block = dict[str, Any]
Message = tuple[Mrkdwn, list[Block]]

MODAL_CALLBACK = "announce_modal"
SEND_ACTION = "announce_send"
CANCEL_ACTION = "announce_cancel"
DONE_ACTION = "announce_done"  # a maintenance window's all-clear, on its progress message


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


def progress_bar(done: int, total: int, width: int = 20) -> str:
    """``progress_bar(5, 10, 10)`` → ``"█████░░░░░"``; an empty total is a full bar."""
    filled = width if total <= 0 else min(width, (done * width) // total)
    return "█" * filled + "░" * (width - filled)


def headline(severity: str, title: str) -> str:
    """``("maintenance", "Patch")`` → ``"[MAINTENANCE] Patch"``, as the email subject reads."""
    return f"[{severity.upper()}] {title}"


def people(n: int) -> str:
    """``"person"`` for one, else ``"people"``."""
    return "person" if n == 1 else "people"


def plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


# -- elements --------------------------------------------------------------------------------------


def section(content: Mrkdwn) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": content[:3000]}}


def context(content: Mrkdwn) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": content[:3000]}]}


def field(content: Mrkdwn) -> Block:
    """One of a section's ``fields``."""
    return {"type": "mrkdwn", "text": content[:2000]}


def plain(label: str) -> dict[str, Any]:
    """A ``plain_text`` object (labels, buttons), escaped like every other text Herald posts."""
    return {"type": "plain_text", "text": text(label)[:150], "emoji": True}


def button(text: str, action_id: str, value: str, style: str | None = None) -> Block:
    made: Block = {"type": "button", "text": plain(text), "action_id": action_id, "value": value}
    if style:
        made["style"] = style
    return made


def confirm_dialog(title: str, question: str, yes: str, no: str, style: str | None = None) -> dict[str, Any]:
    """A button's ``confirm`` dialog; ``question`` is mrkdwn as given (build it with ``mrkdwn()``)."""
    dialog: dict[str, Any] = {
        "title": plain(title),
        "text": {"type": "mrkdwn", "text": question},
        "confirm": plain(yes),
        "deny": plain(no),
    }
    if style:
        dialog["style"] = style
    return dialog


def error_message(problem: str) -> Message:
    """A user-facing problem, as one ephemeral line (``problem`` already says what to do).

    A plain string is escaped whole; a :class:`Mrkdwn` (a mention in a refusal) is kept.
    """
    shown = text(problem)
    return shown, [section(mrkdwn(":warning: {}", shown))]
