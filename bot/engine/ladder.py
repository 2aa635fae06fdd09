"""The channel ladder, pure: rungs from ``--channels`` and when each later rung starts.

``slack,email>sms``: ``>`` separates rungs, ``,`` the channels of one rung. The first rung goes at
once; each later rung goes only to the people left (not confirmed, or without ``--confirm`` not yet
reached) and starts at the latest safe time (SPEC "Confirmations and the channel ladder")::

    start = deadline - forecast(time to send the rung to everyone left) - deliver_within / 10

where ``deadline`` is ``confirm_within`` after the start with ``--confirm``, else the notification's
deadline. A rung never starts before the notification does, nor before the rung before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MARGIN_SHARE = 0.1  # of deliver_within


class LadderError(ValueError):
    """``--channels`` cannot be read as rungs; the message names the problem."""


def parse_rungs(text: str) -> tuple[tuple[str, ...], ...]:
    """``"slack,email>sms"`` → ``(("slack", "email"), ("sms",))``; a channel appears once."""
    rungs: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for part in text.split(">"):
        names = tuple(dict.fromkeys(n.strip().lower() for n in part.split(",") if n.strip()))
        if not names:
            raise LadderError(f"channels: an empty rung in {text!r} (write e.g. slack,email>sms)")
        again = seen.intersection(names)
        if again:
            raise LadderError(f"channels: {sorted(again)[0]!r} is on two rungs")
        seen.update(names)
        rungs.append(names)
    return tuple(rungs)


def latest_start(deadline: float, send_seconds: float, deliver_within: float) -> float:
    """The latest time a rung can start and still reach everyone left by ``deadline``."""
    return deadline - send_seconds - MARGIN_SHARE * deliver_within


@dataclass(frozen=True, slots=True)
class RungPlan:
    index: int
    channels: tuple[str, ...]
    people: int  # the most it goes to
    starts_at: float


def plan(
    rungs: Sequence[tuple[tuple[str, ...], int, float]],
    start: float,
    deadline: float,
    deliver_within: float,
) -> list[RungPlan]:
    """When each rung starts: ``rungs`` are (channels, people left, seconds to send to them);
    the first rung starts at ``start``, each later one at its latest safe time, never earlier than
    the rung before it and never before ``start``."""
    plans: list[RungPlan] = []
    previous = start
    for index, (channels, people, seconds) in enumerate(rungs):
        at = start if index == 0 else max(previous, latest_start(deadline, seconds, deliver_within))
        plans.append(RungPlan(index, channels, people, at))
        previous = at
    return plans
