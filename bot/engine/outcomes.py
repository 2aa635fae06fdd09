"""What a send's result means for its delivery: one pure function, tested as a table.

- a receipt → ``sent``;
- a permanent error → ``failed`` (and the address suppressed when the error says so);
- a transient error → ``deferred`` with exponential backoff and jitter (or the peer's
  ``retry_after``) until ``retry_for`` has passed since the delivery was created, then ``expired``;
  errors no classifier knows (reason ``unknown``) get only ``max_unknown`` attempts;
- a channel-down error (the channel cannot send to anyone: see :mod:`bot.engine.health`) →
  ``deferred`` with reason ``channel_down``, due at once and never expiring: held, not failed;
- an uncertain send (SMS timeout after the request went out; Twilio has no idempotency key):
  urgent notices (the mandatory kinds of ``[kinds] mandatory``) are retried, since a duplicate page
  beats a missed one; other kinds are recorded as ``sent`` with reason ``uncertain`` and never sent
  twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bot.engine.health import CHANNEL_DOWN
from bot.engine.ledger import Claimed, Outcome
from bot.engine.timings import Before, attempt_waits
from bot.tables import DeliveryState
from channels.base import (
    ChannelDownError,
    DeliveryError,
    PermanentError,
    Reason,
    Receipt,
    TransientError,
    UncertainError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retry_for: float
    base: float = 10.0
    cap: float = 900.0
    max_unknown: int = 3
    jitter: float = 0.2


def backoff(attempts: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failed try: base·2ⁿ⁻¹, capped, ±jitter."""
    delay: float = min(policy.cap, policy.base * 2.0 ** max(0, attempts - 1))
    return delay * (1 + rng.uniform(-policy.jitter, policy.jitter))


def decide(
    item: Claimed,
    result: Receipt | DeliveryError,
    now: float,
    urgent: bool,
    policy: RetryPolicy,
    rng: random.Random,
    before: Before | None = None,
) -> Outcome:
    """The outcome of one send of ``item``; ``urgent`` for a mandatory kind (see the module docstring).
    With ``before`` (what it waited before the send), the outcome carries the attempt's waits."""
    if isinstance(result, Receipt):
        sent = DeliveryState.SENT
        return _out(item, now, before, sent, "sent", result.detail, provider_id=result.provider_id)
    if isinstance(result, PermanentError):
        failed, suppress = DeliveryState.FAILED, result.suppress
        return _out(item, now, before, failed, "permanent", result.detail, result.reason, suppress=suppress)
    assert isinstance(result, TransientError)
    if isinstance(result, ChannelDownError):
        deferred = DeliveryState.DEFERRED
        return _out(item, now, before, deferred, "channel_down", str(result), CHANNEL_DOWN, due_at=now)
    if isinstance(result, UncertainError) and not urgent:
        return _out(item, now, before, DeliveryState.SENT, "uncertain", result.detail, "uncertain")
    attempt = "uncertain" if isinstance(result, UncertainError) else "transient"
    reason, detail = str(result.reason), result.detail
    if result.reason == Reason.UNKNOWN and item.attempts >= policy.max_unknown:
        return _out(item, now, before, DeliveryState.FAILED, attempt, detail, reason)
    wait = result.retry_after if result.retry_after is not None else backoff(item.attempts, policy, rng)
    if now + wait > item.created_at + policy.retry_for:
        return _out(item, now, before, DeliveryState.EXPIRED, attempt, detail, reason)
    return _out(item, now, before, DeliveryState.DEFERRED, attempt, detail, reason, due_at=now + wait)


def _out(
    item: Claimed,
    now: float,
    before: Before | None,
    state: DeliveryState,
    attempt: str,
    detail: str,
    reason: str | None = None,
    *,
    provider_id: str | None = None,
    due_at: float | None = None,
    suppress: bool = False,
) -> Outcome:
    """``item``'s outcome, with the attempt's waits when ``before`` is known (one per send: no
    keyword dict, the fields in order)."""
    waits = _NO_WAITS if before is None else attempt_waits(state, attempt, now, due_at, before)
    return Outcome(
        item.id,
        item.channel,
        item.address,
        str(state),
        now,
        attempt,
        reason,
        detail,
        provider_id,
        due_at,
        suppress,
        item.notification_id,
        waits,
    )


_NO_WAITS = (0.0, 0.0, 0.0, 0.0)
