"""Quiet hours: when may a notice reach a person? Pure functions of the time, the person's timezone,
the window and the notice; tested as tables.

A window is a local start and end time (``22:00``-``07:00`` crosses midnight; ``09:00``-``17:00``
does not; equal start and end is an empty window). A notice of a quiet kind created inside the
person's window waits until the window ends in the person's timezone, unless that is after the
notice's deadline: then it goes at once (late at night beats late for the SLA). Urgent kinds never
wait. Across a DST change the end is the wall-clock time of that morning (a gap moves it forward).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True, slots=True)
class QuietWindow:
    """Local wall-clock start and end; ``start > end`` crosses midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, start: str, end: str) -> QuietWindow:
        """``QuietWindow.parse("22:00", "07:00")``; raises ValueError naming the bad value."""
        return cls(parse_clock(start), parse_clock(end))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_clock(text: str) -> time:
    """``"07:30"`` → ``time(7, 30)``; raises ValueError for anything but 24-hour ``HH:MM``."""
    match = _CLOCK.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected a time of day as HH:MM, not {text!r}")
    return time(int(match.group(1)), int(match.group(2)))


def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The person's timezone; a missing or unknown name falls back to ``fallback`` (then UTC)."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def quiet_until(at: float, tz: ZoneInfo, window: QuietWindow) -> float | None:
    """When the window that ``at`` falls in ends (epoch seconds), or None when ``at`` is not quiet."""
    if window.start == window.end:
        return None
    local = datetime.fromtimestamp(at, tz)
    now = local.time().replace(tzinfo=None)
    if window.start < window.end:
        if not window.start <= now < window.end:
            return None
        end_day = local.date()
    else:
        if window.end <= now < window.start:
            return None
        end_day = local.date() + timedelta(days=1) if now >= window.start else local.date()
    return datetime.combine(end_day, window.end, tzinfo=tz).timestamp()


def due_at(
    start_at: float,
    deadline: float,
    kind: str,
    quiet_kinds: Collection[str],
    tz: ZoneInfo,
    window: QuietWindow | None,
) -> float:
    """When a notice of ``kind`` that may go from ``start_at`` should reach this person.

    ``window`` None means quiet hours are off for the person. The answer is ``start_at`` unless the
    kind is quiet, ``start_at`` falls in the window, and the window ends by ``deadline``.
    """
    if window is None or kind not in quiet_kinds:
        return start_at
    until = quiet_until(start_at, tz, window)
    if until is None or until > deadline:
        return start_at
    return until
