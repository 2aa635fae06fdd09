"""Maintenance windows: parsing ``--window``/``--silence``, storing a window, and which alerts it silences.

A maintenance notification may carry a window (``START..END``) and silence matchers (``key=value``,
all must be equal). From its start until it ends (at ``END``, or earlier by ``herald followup --done``)
an alert group whose firing alerts all match the matchers of an open window opens *silenced*: it is
stored, grouped and shown in Slack, but owes no page and starts no escalation clock
(:mod:`bot.alerts.lifecycle`). When the window ends, :mod:`bot.alerts.window_end` pages what still fires.

Windows are read at every alert intake with one indexed query (:func:`open_windows`); with none open
the intake does no more work than before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from bot.alerts.tables import AlertGroup, AlertInstance, MaintenanceWindow
from bot.config import parse_duration
from bot.store import Store
from bot.tables import table_of

WINDOW = table_of(MaintenanceWindow)
GROUP = table_of(AlertGroup)
INSTANCE = table_of(AlertInstance)

MAX_MATCHERS = 20
MAX_WINDOW = 7 * 86400.0  # a longer silence hides real outages: refuse it


class WindowError(ValueError):
    """A bad ``--window``, ``--silence`` or ``--at``; the message names the option."""


@dataclass(frozen=True, slots=True)
class Window:
    """A window to be stored: its times (epoch seconds) and silence matchers (label -> value)."""

    starts_at: float
    ends_at: float
    matchers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class OpenWindow:
    """A stored window that silences now."""

    id: str  # the maintenance notification's id
    matchers: Mapping[str, str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return bool(self.matchers) and all(labels.get(k) == v for k, v in self.matchers.items())


PAST_SLACK = 60.0  # a schedule time this little in the past means "now" (the time spent typing it)


def parse_moment(text: str, now: float, option: str = "--window") -> float:
    """An ISO 8601 time (UTC unless it carries an offset) or a delay such as ``+30m``: one end of
    ``--window``, or ``announce --at``."""
    text = text.strip()
    if text.startswith("+"):
        try:
            return now + parse_duration(text[1:])
        except ValueError as exc:
            raise WindowError(f"{option}: {exc}") from exc
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise WindowError(f"{option}: expected an ISO time (2026-12-05T22:00) or +30m, not {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_window(text: str, now: float, option: str = "--window") -> tuple[float, float]:
    """``START..END`` → (start, end); START before END, END in the future, at most 7 days long."""
    start_text, dots, end_text = text.partition("..")
    if not dots or not start_text.strip() or not end_text.strip():
        raise WindowError(f"{option}: expected START..END, e.g. 2026-12-05T22:00..2026-12-05T23:30")
    start, end = parse_moment(start_text, now, option), parse_moment(end_text, now, option)
    if start >= end:
        raise WindowError(f"{option}: the start must be before the end")
    if end <= now:
        raise WindowError(f"{option}: the window has already ended")
    if end - start > MAX_WINDOW:
        raise WindowError(f"{option}: a window is at most 7 days long")
    return start, end


_DAY_TIMES = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")


def day_window(text: str, now: float) -> str:
    """``22:00-23:30`` (UTC) → ``START..END`` of its next occurrence: today's, or tomorrow's once
    today's has ended; an end before the start is on the next day. Other text is returned as is."""
    match = _DAY_TIMES.fullmatch(text.strip())
    if match is None:
        return text
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    if start_h > 23 or end_h > 23 or start_m > 59 or end_m > 59:
        raise WindowError(f"window: not a time of day: {text!r}")
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day.replace(hour=start_h, minute=start_m)
    end = day.replace(hour=end_h, minute=end_m)
    if end <= start:
        end += timedelta(days=1)
    if end.timestamp() <= now:
        start, end = start + timedelta(days=1), end + timedelta(days=1)
    return f"{start.isoformat()}..{end.isoformat()}"


def parse_silence(text: str, option: str = "--silence") -> dict[str, str]:
    """``key=value[,key=value]`` → matchers; every key once, no empty key or value."""
    matchers: dict[str, str] = {}
    for part in text.split(","):
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key or not value:
            raise WindowError(f"{option}: expected key=value[,key=value], not {part.strip()!r}")
        if key in matchers:
            raise WindowError(f"{option}: the label {key!r} is given twice")
        matchers[key] = value
    if len(matchers) > MAX_MATCHERS:
        raise WindowError(f"{option}: at most {MAX_MATCHERS} matchers")
    return matchers


def window_from_options(
    severity: str, window: str | None, silence: str | None, now: float, names: tuple[str, str]
) -> Window | None:
    """The window asked for by the ``--window``/``--silence`` options named ``names``, or None."""
    window_name, silence_name = names
    if window is None and silence is None:
        return None
    if severity != "maintenance":
        given = window_name if window is not None else silence_name
        raise WindowError(f"{given}: only for the maintenance severity (not {severity!r})")
    if window is None:
        raise WindowError(f"{silence_name}: needs {window_name} START..END")
    start, end = parse_window(window, now, window_name)
    return Window(start, end, parse_silence(silence, silence_name) if silence is not None else {})


# -- store ------------------------------------------------------------------------------------------


def store_window(
    store: Store, notification_id: str, title: str, created_by: str, window: Window, alertmanager: bool
) -> None:
    """Write ``window`` for the notification; an Alertmanager silence is owed when one is configured
    and there is something to silence."""
    with store.begin() as connection:
        connection.execute(
            WINDOW.insert().values(
                notification_id=notification_id,
                title=title[:500],
                created_by=created_by[:200],
                starts_at=window.starts_at,
                ends_at=window.ends_at,
                matchers=json.dumps(dict(window.matchers), sort_keys=True),
                overran=False,
                overrun_notice="",
                am_state="create" if alertmanager and window.matchers else "",
            )
        )


def open_windows(connection: Connection, now: float) -> list[OpenWindow]:
    """Windows silencing at ``now``: started, not ended (nor ended early), with matchers."""
    rows = connection.execute(
        select(WINDOW.c.notification_id, WINDOW.c.matchers).where(
            WINDOW.c.starts_at <= now,
            WINDOW.c.ends_at > now,
            WINDOW.c.ended_early_at.is_(None),
            WINDOW.c.closed_at.is_(None),
        )
    ).all()
    found = [OpenWindow(str(nid), json.loads(matchers or "{}")) for nid, matchers in rows]
    return [window for window in found if window.matchers]


def silencing(windows: Sequence[OpenWindow], alerts: Sequence[Mapping[str, str]]) -> str | None:
    """The first window whose matchers every one of the firing alerts' ``alerts`` labels match."""
    if not alerts:
        return None
    for window in windows:
        if all(window.matches(labels) for labels in alerts):
            return window.id
    return None


def is_silent(row: Mapping[str, Any]) -> bool:
    """The alert group ``row`` opened in a maintenance window and has paged nobody yet."""
    return bool(row["silenced_by"]) and row["last_notified_at"] is None and row["pending"] is None


def window_row(connection: Connection, notification_id: str) -> dict[str, Any] | None:
    found = (
        connection.execute(select(WINDOW).where(WINDOW.c.notification_id == notification_id))
        .mappings()
        .first()
    )
    return dict(found) if found is not None else None


def end_early(store: Store, notification_id: str, now: float) -> bool:
    """End the window now (``followup --done``): True when it was open; its Alertmanager silence is
    then owed an expiry."""
    with store.begin() as connection:
        row = window_row(connection, notification_id)
        if row is None or row["ended_early_at"] is not None or row["closed_at"] is not None:
            return False
        if row["ends_at"] <= now:
            return False
        am_state = {"created": "expire", "create": ""}.get(row["am_state"], row["am_state"])
        connection.execute(
            update(WINDOW)
            .where(WINDOW.c.notification_id == notification_id)
            .values(ended_early_at=max(now, row["starts_at"]), am_state=am_state, am_retry_at=None)
        )
    return True


def effective_end(row: Mapping[str, Any]) -> float:
    early = row["ended_early_at"]
    return float(early) if early is not None else float(row["ends_at"])


def window_status(store: Store, notification_id: str) -> dict[str, Any] | None:
    """The ``window`` part of a maintenance notification's status, or None when it has none."""
    with store.begin() as connection:
        row = window_row(connection, notification_id)
        if row is None:
            return None
        groups, alerts = _silenced(connection, notification_id)
    return {
        "start": iso(row["starts_at"]),
        "end": iso(row["ends_at"]),
        "silence": json.loads(row["matchers"] or "{}"),
        "ended_early": iso(row["ended_early_at"]) if row["ended_early_at"] is not None else None,
        "overran": bool(row["overran"]),
        "silenced_alerts": alerts,
        "silenced_groups": groups,
        "alertmanager": _alertmanager_status(row),
    }


def _silenced(connection: Connection, notification_id: str) -> tuple[list[str], int]:
    """The groups the window silenced, and how many alerts they hold."""
    query = select(GROUP.c.id).where(GROUP.c.silenced_by == notification_id)
    groups = [str(group) for group in connection.execute(query).scalars()]
    if not groups:
        return groups, 0
    count = select(func.count()).select_from(INSTANCE).where(INSTANCE.c.group_id.in_(groups))
    return groups, int(connection.execute(count).scalar_one())


def _alertmanager_status(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if not row["am_state"]:
        return None
    return {"state": row["am_state"], "silence_id": row["am_silence_id"], "error": row["am_error"]}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_lines(window: Mapping[str, Any]) -> list[str]:
    """The window for people: two or three lines of text (preview and ``status``)."""
    silence = ",".join(f"{k}={v}" for k, v in window["silence"].items()) or "nothing"
    lines = [f"window: {window['start']} .. {window['end']}", f"silences: {silence}"]
    if "silenced_alerts" in window:
        state = []
        if window["ended_early"]:
            state.append(f"ended early at {window['ended_early']}")
        if window["overran"]:
            state.append("overran (alerts still firing at its end)")
        state.append(f"{window['silenced_alerts']} alert(s) silenced")
        lines.append("; ".join(state))
    return lines
