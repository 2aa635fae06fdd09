"""When will the last delivery of a notification go out? A pure function of the load and throttles.

Per channel, the notification's messages queue behind the work already due ahead of it (earlier
deadlines); they drain at the slower of the throttle (tokens per second; an SMS costs one token per
segment) and the concurrency limit (``concurrency / latency`` sends per second). A daily cap pushes
what does not fit today to the next UTC day. The notification is done when its slowest channel is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class ChannelLoad:
    channel: str
    messages: int  # this notification's sendable deliveries on the channel
    cost: float = 1.0  # throttle tokens per message (SMS segments)
    ahead: int = 0  # open deliveries of other notifications that go first
    rate: float = 0.0  # tokens per second; 0 = unthrottled
    burst: int = 0
    concurrency: int = 1
    latency: float = 0.02  # seconds one send takes
    cap_room: int | None = None  # messages left under today's daily cap; None = no cap
    daily_cap: int = 0


@dataclass(frozen=True, slots=True)
class Forecast:
    finish_at: float
    deadline: float
    seconds: float
    meets: bool
    per_channel: dict[str, float]


def drain_seconds(load: ChannelLoad) -> float:
    """Seconds until the last of ``load.messages`` is handed to the provider, from now."""
    if load.messages <= 0:
        return 0.0
    total = load.ahead + load.messages
    by_concurrency = total * load.latency / max(1, load.concurrency)
    if load.rate > 0:
        tokens = load.ahead + load.messages * load.cost
        by_rate = max(0.0, tokens - max(1, load.burst)) / load.rate
    else:
        by_rate = 0.0
    seconds = max(by_rate, by_concurrency)
    if load.cap_room is not None and total > load.cap_room and load.daily_cap > 0:
        overflow = total - load.cap_room
        days = math.ceil(overflow / load.daily_cap)
        # The overflow starts at the next midnight(s); approximate as whole days ahead.
        seconds = max(seconds, days * DAY)
    return seconds


def forecast(loads: Sequence[ChannelLoad], now: float, deadline: float) -> Forecast:
    per_channel = {load.channel: drain_seconds(load) for load in loads}
    seconds = max(per_channel.values(), default=0.0)
    finish_at = now + seconds
    return Forecast(
        finish_at=finish_at,
        deadline=deadline,
        seconds=seconds,
        meets=finish_at <= deadline,
        per_channel=per_channel,
    )
