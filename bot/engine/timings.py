"""Why a delivery was late, as its dispatcher saw it: the seconds each attempt waited, by cause.

A delivery keeps (``bot.tables.Delivery``) when it was created, became due (``due_at``), was claimed
(``claimed_at``, written by the claim) and handed over (``sent_at``), and the seconds it waited:

- ``wait_quiet``: deferred for the person's quiet hours (written when the delivery is created);
- ``wait_throttle``: held back by the channel's rate (``rate_per_second``) or the provider's
  back-pressure: what its dispatcher waited for throttle slots (for this delivery or those before
  it) from when the delivery became due to when its send began;
- ``wait_retry``: failed attempts and the backoff after each;
- ``wait_down``: a channel outage: the time in the queue while the channel was down, and the failed
  send that found it down;
- ``wait_provider``: the provider's time to take the message that was handed over.

Whatever is left of the time from the notification's start to the hand-over is ``queue``: the
deliveries ahead of it, the send slots (connections), the dispatcher's polls. :class:`Waits` works the
numbers out per attempt from what the runner already knows, so they are written with the outcome, in
the same statement: no extra round trip per delivery.
"""

from __future__ import annotations

import bisect
from typing import NamedTuple

from bot.engine.ledger import Claimed
from bot.tables import DeliveryState

HISTORY_KEPT = 10_000  # throttle wait samples (one per claim that follows a wait): hours of claims
OUTAGES_KEPT = 100


class Waits:
    """One channel runner's record of what held the channel back, and the waits of each attempt.

    ``note_claim`` samples the pacer's cumulative wait at each claim; ``follow`` tracks the channel's
    outages; ``before`` says what a delivery waited before its send began (its outcome's waits are
    worked out from it by :func:`bot.engine.outcomes.decide`).
    """

    def __init__(self, now: float) -> None:
        self._times = [now]  # claim times at which the throttle wait had grown, ascending
        self._waited = [0.0]  # the pacer's cumulative wait at those times
        self._outages: list[tuple[float, float]] = []  # (down since, up again) that this runner saw
        self._down_since: float | None = None

    def note_claim(self, now: float, waited: float) -> None:
        """A claim at ``now``; ``waited`` is the pacer's cumulative wait so far."""
        if waited > self._waited[-1] and now >= self._times[-1]:
            self._times.append(now)
            self._waited.append(waited)
            if len(self._times) > HISTORY_KEPT:
                del self._times[: HISTORY_KEPT // 2], self._waited[: HISTORY_KEPT // 2]

    def follow(self, down_since: float | None, now: float) -> None:
        """The channel's outage as the runner sees it now (None: the channel is up)."""
        if down_since is not None:
            self._down_since = down_since
        elif self._down_since is not None:
            self._outages.append((self._down_since, now))
            self._down_since = None
            del self._outages[:-OUTAGES_KEPT]

    def queued(self, due_at: float, started: float, waited: float) -> tuple[float, float]:
        """(throttle, outage) seconds of the wait from ``due_at`` to the send at ``started``, when
        the pacer's cumulative wait had reached ``waited``."""
        wait = started - due_at
        if wait <= 0:
            return 0.0, 0.0
        down = 0.0
        if self._outages or self._down_since is not None:
            down = min(wait, self._down_between(due_at, started))
        throttle = waited - self._waited_at(due_at) if waited > 0 else 0.0
        return max(0.0, min(wait - down, throttle)), down

    def before(self, item: Claimed, started: float, waited: float) -> Before:
        """What ``item`` waited before its send began at ``started``, when the pacer's cumulative
        wait had reached ``waited``."""
        throttle, down = self.queued(item.due_at, started, waited)
        return Before(started, throttle, down)

    def _waited_at(self, moment: float) -> float:
        index = bisect.bisect_right(self._times, moment) - 1
        return self._waited[max(0, index)]

    def _down_between(self, start: float, end: float) -> float:
        spans = [*self._outages, (self._down_since, end)] if self._down_since is not None else self._outages
        return sum(max(0.0, min(end, up) - max(start, since)) for since, up in spans)


class Before(NamedTuple):
    """What one attempt waited before its send began at ``started``."""

    started: float
    throttle: float
    down: float


def attempt_waits(
    state: str, attempt: str, at: float, due_at: float | None, before: Before
) -> tuple[float, float, float, float]:
    """(throttle, retry, outage, provider) seconds one attempt that ended at ``at`` in ``state``
    adds: a send handed over is the provider's time; one that found the channel down is the
    outage's; any other failure is the retry's, with its backoff until ``due_at``."""
    started, throttle, down = before
    spent = max(0.0, at - started)
    if state in (DeliveryState.SENT, DeliveryState.DELIVERED):
        return throttle, 0.0, down, spent
    if attempt == "channel_down":
        return throttle, 0.0, down + spent, 0.0
    retry_until = due_at if state == DeliveryState.DEFERRED and due_at else at
    return throttle, max(0.0, retry_until - started), down, 0.0
