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
from typing import Any

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

    def out(state: DeliveryState, attempt: str, **fields: Any) -> Outcome:
        if before is not None:
            fields["waits"] = attempt_waits(state, attempt, now, fields.get("due_at"), before)
        return Outcome(
            item.id,
            item.channel,
            item.address,
            str(state),
            now,
            attempt,
            notification_id=item.notification_id,
            **fields,
        )

    if isinstance(result, Receipt):
        return out(DeliveryState.SENT, "sent", provider_id=result.provider_id, detail=result.detail)
    if isinstance(result, PermanentError):
        failed = {"reason": result.reason, "detail": result.detail, "suppress": result.suppress}
        return out(DeliveryState.FAILED, "permanent", **failed)
    assert isinstance(result, TransientError)
    if isinstance(result, ChannelDownError):
        return out(
            DeliveryState.DEFERRED, "channel_down", reason=CHANNEL_DOWN, detail=str(result), due_at=now
        )
    if isinstance(result, UncertainError) and not urgent:
        return out(DeliveryState.SENT, "uncertain", reason="uncertain", detail=result.detail)
    attempt = "uncertain" if isinstance(result, UncertainError) else "transient"
    why = {"reason": str(result.reason), "detail": result.detail}
    if result.reason == Reason.UNKNOWN and item.attempts >= policy.max_unknown:
        return out(DeliveryState.FAILED, attempt, **why)
    wait = result.retry_after if result.retry_after is not None else backoff(item.attempts, policy, rng)
    if now + wait > item.created_at + policy.retry_for:
        return out(DeliveryState.EXPIRED, attempt, **why)
    return out(DeliveryState.DEFERRED, attempt, due_at=now + wait, **why)
