"""Text Herald posts to Slack, escaped by construction: the :class:`Mrkdwn` type.

Slack reads ``<...>`` in message text as a mention, a channel, a date or a link (``<!channel>``,
``<@U123>``, ``<https://x|y>``), and ``&`` starts an entity; so user and alert data must have
``&``, ``<`` and ``>`` escaped in every text Herald posts: blocks and the fallback ``text``.

A :class:`Mrkdwn` is text whose data is escaped. It is made by :func:`mrkdwn` (a literal template
whose arguments are escaped unless they are already :class:`Mrkdwn`), by :func:`join`, and by the
few helpers here that emit Slack's own syntax from values Herald checks (:func:`mention`,
:func:`channel_link`, :func:`slack_date`). The Block Kit builders and every Slack call take
:class:`Mrkdwn` only (mypy checks it), so a string from outside cannot reach Slack unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import LiteralString

_SLACK_ID = re.compile(r"[A-Z0-9]{2,32}")


class Mrkdwn(str):
    """Slack mrkdwn whose data is escaped (see the module docstring for how one is made)."""

    __slots__ = ()


def escape(text: str) -> str:
    """Slack's three escapes: ``&`` → ``&amp;``, ``<`` → ``&lt;``, ``>`` → ``&gt;``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _safe(value: object) -> object:
    if isinstance(value, Mrkdwn | int | float):
        return value  # numbers keep their format specs (``{:.1f}``)
    return escape(str(value))


def mrkdwn(template: LiteralString, /, *args: object, **fields: object) -> Mrkdwn:
    """``template.format(*args, **fields)`` with each value escaped unless already :class:`Mrkdwn`."""
    return Mrkdwn(template.format(*map(_safe, args), **{name: _safe(v) for name, v in fields.items()}))


def text(value: str) -> Mrkdwn:
    """Any text, escaped whole."""
    return value if isinstance(value, Mrkdwn) else Mrkdwn(escape(value))


def join(separator: LiteralString, parts: Iterable[Mrkdwn | str]) -> Mrkdwn:
    """The parts (plain strings escaped) joined by a literal separator."""
    return Mrkdwn(separator.join(text(part) for part in parts))


def mention(user_id: str) -> Mrkdwn:
    """``<@U123>`` for a Slack user id; anything that is not one is shown as escaped text."""
    return Mrkdwn(f"<@{user_id}>") if _SLACK_ID.fullmatch(user_id) else text(user_id)


def channel_link(channel_id: str) -> Mrkdwn:
    """``<#C123>`` for a Slack channel id; anything else as escaped text."""
    return Mrkdwn(f"<#{channel_id}>") if _SLACK_ID.fullmatch(channel_id) else text(channel_id)


def slack_date(epoch: float, pattern: LiteralString = "{date_short_pretty} {time}") -> Mrkdwn:
    """A time every reader sees in their own timezone; UTC text for clients that cannot."""
    fallback = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Mrkdwn(f"<!date^{int(epoch)}^{pattern}|{fallback}>")
