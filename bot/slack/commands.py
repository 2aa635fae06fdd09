"""The typed form of ``/announce``, parsed by one pure function.

::

    /announce                                   open the modal
    /announce <severity> to <audience> via <channels> [confirm]: <title> | <body>
    /announce list | cancel ID | status ID | help
    /announce update ID: <text>                 a threaded follow-up to the same people
    /announce done ID: <text>                   the all-clear (also ends a maintenance window)

Slack escapes mentions in a command's text when the command has ``should_escape`` on (the manifest
sets it): ``<@U123|alice>`` and ``<!subteam^S123|@oncall>``. In the audience the label after ``|`` is
dropped, so it reads ``<@U123>`` and ``<!subteam^S123>``; a ``|`` inside ``<...>`` never splits the
title from the body; ``&amp;``, ``&lt;``, ``&gt;`` in the title and body are turned back into text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.alerts import maintenance
from bot.config import CHANNEL_NAMES, SEVERITIES

COMMAND = "/announce"  # the default name; ``[slack] command`` renames it
USAGE = "/announce <severity> to <audience> via <channels>: <title> | <body>"
EXAMPLE = "/announce maintenance to site:berlin via email,sms: Patch Tuesday | Servers reboot at 22:00 CET"
HELP = (
    f"*Usage:* `{USAGE}`\n"
    f"*Example:* `{EXAMPLE}`\n"
    "`/announce` alone opens a form. Also: `/announce list`, `/announce status ID`, "
    "`/announce cancel ID`, `/announce update ID: text`, `/announce done ID: text`, `/announce help`.\n"
    f"Severities: {', '.join(SEVERITIES)}. Channels: {', '.join(CHANNEL_NAMES)}.\n"
    "Maintenance window: `via email window 22:00-23:30 silence service=db:` (UTC; alerts matching every "
    "label page nobody until it ends).\n"
    "Audience: `everyone`, `dept:Finance`, `site:Berlin`, `group:oncall`, `title:Manager`, "
    "`person:alice@example.com`, `manager:alice@example.com` (direct reports), `@user`, `@usergroup`; "
    "space = and, comma = or, leading `-` = not, `OR` between terms, `( )` to group."
)


def named(text: str, command: str) -> str:
    """Herald's own help or usage ``text`` with ``command`` in place of ``/announce``."""
    return text if command == COMMAND else text.replace(COMMAND, command)


class ParseError(ValueError):
    """The text is not a valid ``/announce`` command; the message ends with the usage line."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}\nusage: {USAGE}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AnnounceCommand:
    severity: str
    audience: str
    channels: tuple[str, ...]
    title: str
    body: str
    window: str | None = None  # maintenance: "22:00-23:30" (UTC) or START..END (bot.alerts.maintenance)
    silence: str | None = None  # maintenance: key=value[,key=value]
    confirm: bool = False  # the word ``confirm`` before the colon: ask recipients to confirm
    rungs: tuple[tuple[str, ...], ...] = ()  # ``via slack,email>sms``: every rung; () for one


@dataclass(frozen=True, slots=True)
class ModalCommand:
    """``/announce`` with no text: open the form."""


@dataclass(frozen=True, slots=True)
class ListCommand:
    """Scheduled and recent announcements."""


@dataclass(frozen=True, slots=True)
class CancelCommand:
    notification_id: str


@dataclass(frozen=True, slots=True)
class StatusCommand:
    notification_id: str


@dataclass(frozen=True, slots=True)
class HelpCommand:
    pass


@dataclass(frozen=True, slots=True)
class FollowupCommand:
    """``update ID: text`` or ``done ID: text`` (the all-clear)."""

    notification_id: str
    body: str
    done: bool


Command = (
    AnnounceCommand
    | ModalCommand
    | ListCommand
    | CancelCommand
    | StatusCommand
    | HelpCommand
    | FollowupCommand
)

_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_MENTION_LABEL = re.compile(r"<([@#!][^<>|]*)\|[^<>]*>")
_FORM = re.compile(
    r"^(?P<severity>\S+)\s+to\s+(?P<audience>.+?)\s+via\s+(?P<channels>[^:]+?)"
    r"(?:\s+window\s+(?P<window>\S+))?(?:\s+silence\s+(?P<silence>\S+?))?\s*:\s*(?P<rest>.*)$",
    re.DOTALL | re.IGNORECASE,
)
_CHANNEL_SPLIT = re.compile(r"\s*(?:,|\s+and\s+|\+|\s)\s*", re.IGNORECASE)


def parse_announce_command(text: str) -> Command:
    """Read the text after ``/announce``. Raises :class:`ParseError` naming what is wrong."""
    text = text.strip()
    if not text:
        return ModalCommand()
    word, _, argument = text.partition(" ")
    keyword = word.lower()
    argument = argument.strip()
    if keyword in ("help", "-h", "--help", "?"):
        return HelpCommand()
    if keyword == "list" and not argument:
        return ListCommand()
    if keyword in ("cancel", "status"):
        if not _ID.fullmatch(argument):
            raise ParseError(f"'{keyword}' needs a notification id, e.g. /announce {keyword} n_abc123")
        return CancelCommand(argument) if keyword == "cancel" else StatusCommand(argument)
    if keyword in ("update", "done"):
        return _parse_followup(keyword, argument)
    return _parse_form(text)


def _parse_followup(keyword: str, argument: str) -> FollowupCommand:
    notification_id, colon, body = argument.partition(":")
    if not colon or not _ID.fullmatch(notification_id.strip()):
        raise ParseError(f"'{keyword}' needs an id and a text, e.g. /announce {keyword} n_abc123: text")
    if not body.strip():
        raise ParseError(f"'{keyword}' needs a text after the colon")
    return FollowupCommand(notification_id.strip(), unescape(body.strip()), keyword == "done")


def _parse_form(text: str) -> AnnounceCommand:
    match = _FORM.match(text)
    if match is None:
        raise ParseError(_what_is_missing(text))
    severity = match["severity"].lower()
    if severity not in SEVERITIES:
        raise ParseError(f"unknown severity '{match['severity']}' (one of {', '.join(SEVERITIES)})")
    channels_text, confirm = _confirm_word(match["channels"])
    rungs = tuple(parse_channels(part) for part in channels_text.split(">"))
    channels = tuple(dict.fromkeys(name for rung in rungs for name in rung))
    title, body = split_title_body(match["rest"])
    if not title:
        raise ParseError("the title is empty: write it after the colon")
    audience = strip_mention_labels(match["audience"].strip())
    window, silence = match["window"], match["silence"]
    ladder = rungs if len(rungs) > 1 else ()
    return AnnounceCommand(
        severity,
        audience,
        channels,
        unescape(title),
        unescape(body),
        window=window,
        silence=silence,
        confirm=confirm,
        rungs=ladder,
    )


def _confirm_word(text: str) -> tuple[str, bool]:
    """``"email,sms confirm"`` → ``("email,sms", True)``: the channels and whether to confirm."""
    head, _, last = text.strip().rpartition(" ")
    if head and last.lower() == "confirm":
        return head, True
    return text, False


def _what_is_missing(text: str) -> str:
    lowered = f" {text.lower()} "
    if " to " not in lowered:
        return "missing 'to <audience>'"
    if " via " not in lowered:
        return "missing 'via <channels>'"
    return "missing ':' before the title"


def parse_channels(text: str) -> tuple[str, ...]:
    """``"email,sms"`` / ``"email and sms"`` / ``"SMS"`` → ``("email", "sms")``, in order, once each."""
    names = [name.lower() for name in _CHANNEL_SPLIT.split(text.strip()) if name]
    if not names:
        raise ParseError("no channels after 'via'")
    unknown = [name for name in names if name not in CHANNEL_NAMES]
    if unknown:
        raise ParseError(f"unknown channel '{unknown[0]}' (one of {', '.join(CHANNEL_NAMES)})")
    return tuple(dict.fromkeys(names))


def split_title_body(text: str) -> tuple[str, str]:
    """Split at the first ``|`` outside ``<...>``; no ``|`` means no body."""
    depth = 0
    for index, char in enumerate(text):
        if char == "<":
            depth += 1
        elif char == ">":
            depth = max(0, depth - 1)
        elif char == "|" and depth == 0:
            return text[:index].strip(), text[index + 1 :].strip()
    return text.strip(), ""


def unescape(text: str) -> str:
    """Undo Slack's escaping of ``&``, ``<`` and ``>`` in message text."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def strip_mention_labels(text: str) -> str:
    """``<@U1|alice>`` → ``<@U1>``; ``<!subteam^S1|@ops>`` → ``<!subteam^S1>``; other text unchanged."""
    return _MENTION_LABEL.sub(r"<\1>", text)


@dataclass(frozen=True, slots=True)
class ModalSubmission:
    """The modal's fields, checked; ``start_at`` is None for "send now"."""

    command: AnnounceCommand
    start_at: float | None


class ModalErrors(ValueError):
    """Fields the user must fix, by block id, shown under each field (``response_action: errors``)."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{block}: {message}" for block, message in errors.items()))
        self.errors = errors


def parse_modal_submission(
    values: Mapping[str, Mapping[str, Mapping[str, Any]]], now: float
) -> ModalSubmission:
    """Read ``view.state.values`` of the ``/announce`` modal. Raises :class:`ModalErrors`.

    A schedule time in the past (a minute of slack for the time spent filling the form) is an error;
    within that minute it means "now".
    """
    errors: dict[str, str] = {}

    def field(block: str) -> Mapping[str, Any]:
        found = values.get(block)
        found = found.get("value") if isinstance(found, Mapping) else None
        return found if isinstance(found, Mapping) else {}

    audience = strip_mention_labels(_typed(field("audience")))
    if not audience:
        errors["audience"] = "who should hear this? e.g. site:berlin or everyone"
    channels = _modal_channels(field("channels"), errors)
    chosen = field("severity").get("selected_option")
    severity = str(chosen.get("value", "")) if isinstance(chosen, dict) else ""
    if severity not in SEVERITIES:
        errors["severity"] = "pick a severity"
    title = _typed(field("title"))
    if not title:
        errors["title"] = "a title is needed"
    start_at = _modal_start(field("start_at"), now, errors)
    window, silence = _typed(field("window")) or None, _typed(field("silence")) or None
    _check_window(severity, window, silence, now, errors)
    if errors:
        raise ModalErrors(errors)
    confirm = any(o.get("value") == "confirm" for o in field("confirm").get("selected_options") or ())
    command = AnnounceCommand(
        severity,
        audience,
        channels,
        title,
        _typed(field("body")),
        window=window,
        silence=silence,
        confirm=confirm,
    )
    return ModalSubmission(command, start_at)


def _check_window(
    severity: str, window: str | None, silence: str | None, now: float, errors: dict[str, str]
) -> None:
    """The modal's maintenance window fields (as the typed form's ``window``/``silence``)."""
    try:
        start_end = maintenance.day_window(window, now) if window else None
        maintenance.window_from_options(severity, start_end, silence, now, ("window", "silence"))
    except maintenance.WindowError as exc:
        errors["silence" if str(exc).startswith("silence") else "window"] = str(exc)


def _typed(field: Mapping[str, Any]) -> str:
    return str(field.get("value") or "").strip()


def _modal_channels(field: Mapping[str, Any], errors: dict[str, str]) -> tuple[str, ...]:
    selected = field.get("selected_options") or []
    channels = tuple(
        str(option["value"]) for option in selected if isinstance(option, dict) and "value" in option
    )
    if not channels:
        errors["channels"] = "pick at least one channel"
    elif unknown := [name for name in channels if name not in CHANNEL_NAMES]:
        errors["channels"] = f"unknown channel '{unknown[0]}'"
    return channels


def _modal_start(field: Mapping[str, Any], now: float, errors: dict[str, str]) -> float | None:
    """The schedule time; None for "send now" (none picked, or within the last minute)."""
    raw_start = field.get("selected_date_time")
    start_at = float(raw_start) if isinstance(raw_start, int | float) else None
    if start_at is None or start_at > now:
        return start_at
    if start_at < now - maintenance.PAST_SLACK:
        errors["start_at"] = "this time has passed; pick a later one or clear it to send now"
    return None
