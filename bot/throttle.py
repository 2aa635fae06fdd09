"""Per-channel throttles: a token bucket whose achieved rate never exceeds ``rate_per_second``.

With ``burst`` 0 or 1 sends are evenly spaced, so no 1-second window holds more than ``rate``
sends. A larger ``burst`` lets that many go at once after an idle spell. ``pause`` is how
back-pressure (SMTP 421/451, Twilio 429, ``Retry-After``) slows the whole channel down.
"""

from __future__ import annotations

from bot.clock import Clock


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self.clock = clock
        self._tokens = self.capacity
        self._last = clock.now()
        self._paused_until = 0.0
        self.waited = 0.0  # seconds spent waiting for tokens (a metric)

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def try_take(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens and return 0, or return how long to wait before trying again."""
        now = self.clock.now()
        if now < self._paused_until:
            return self._paused_until - now
        if self.unlimited:
            return 0.0
        self._refill(now)
        need = min(cost, self.capacity)
        if self._tokens >= need - 1e-9:
            # A cost above capacity (a long SMS) goes into debt: the average rate still holds.
            self._tokens -= cost
            return 0.0
        # Never less than a microsecond: a wait below the clock's resolution would spin.
        return max(1e-6, (need - self._tokens) / self.rate)

    async def take(self, cost: float = 1.0) -> None:
        while True:
            wait = self.try_take(cost)
            if wait <= 0:
                return
            self.waited += wait
            await self.clock.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every send on this channel for ``seconds`` (the peer asked us to slow down)."""
        self._paused_until = max(self._paused_until, self.clock.now() + seconds)
        self._tokens = min(self._tokens, 0.0)

    def per_second(self) -> float:
        return self.rate
