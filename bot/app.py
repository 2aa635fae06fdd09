"""The composition root: builds Herald's parts from settings. No import-time singletons.

Tests build their own ``Herald`` with settings pointing at stand-ins on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.channel_specs import configured, spec
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.recipients.confirmations import make_confirm_token
from bot.store import Store, open_store
from bot.tokens import make_token, signing_key
from channels.base import Channel, Prepared


@dataclass
class Herald:
    settings: Settings
    store: Store
    clock: Clock
    _channels: dict[str, Channel[Prepared]] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None, store: Store | None = None) -> Herald:
        return cls(
            settings=settings,
            store=store or open_store(settings.database.url),
            clock=clock or SystemClock(),
        )

    def token_key(self) -> bytes:
        configured = self.settings.server.secret_key
        return signing_key(self.store, configured.get_secret_value() if configured else None)

    def unsubscribe_url(self, person_id: str) -> str:
        """The person's signed preferences link (RFC 8058 one-click target)."""
        token = make_token(self.token_key(), person_id, self.clock.now())
        return f"{self.settings.server.public_url}/u/{token}"

    def confirm_url(self, notification_id: str, person_id: str) -> str:
        """The person's signed link to confirm ``notification_id`` (``/c/{token}``)."""
        token = make_confirm_token(self.token_key(), notification_id, person_id, self.clock.now())
        return f"{self.settings.server.public_url}/c/{token}"

    def configured_channels(self) -> tuple[str, ...]:
        """The registered channels the settings turn on (see :mod:`bot.channel_specs`)."""
        return configured(self.settings)

    def channel(self, name: str) -> Channel[Prepared]:
        """The channel adapter, opened on first use (connections are made lazily by the adapter)."""
        existing = self._channels.get(name)
        if existing is None:
            existing = self._channels[name] = spec(name).adapter(self.settings)
        return existing

    def concurrency(self, name: str) -> int:
        return spec(name).concurrency(self.settings)

    async def aclose_channels(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.aclose()

    async def aclose(self) -> None:
        await self.aclose_channels()
        self.store.dispose()
