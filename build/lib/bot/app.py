"""The composition root: builds Herald's parts from settings. No import-time singletons.

Tests build their own ``Herald`` with settings pointing at stand-ins on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.store import Store, open_store
from bot.tokens import make_token, signing_key
from channels.base import Channel
from channels.email import EmailChannel, EmailSettings
from channels.sms import SmsChannel, SmsSettings


def email_settings(settings: Settings) -> EmailSettings:
    smtp = settings.smtp
    return EmailSettings(
        host=smtp.host,
        port=smtp.port,
        security=smtp.security,
        username=smtp.username,
        password=smtp.password.get_secret_value() if smtp.password else None,
        from_address=smtp.from_address,
        reply_to=smtp.reply_to,
        max_connections=smtp.max_connections,
        timeout=smtp.timeout,
    )


def sms_settings(settings: Settings) -> SmsSettings | None:
    tw = settings.twilio
    if not tw.account_sid or tw.auth_token is None:
        return None
    callback = f"{settings.server.public_url}/hooks/twilio/status" if tw.status_callbacks else None
    return SmsSettings(
        account_sid=tw.account_sid,
        auth_token=tw.auth_token.get_secret_value(),
        from_number=tw.from_number,
        messaging_service_sid=tw.messaging_service_sid,
        api_url=tw.api_url,
        max_segments=tw.max_segments,
        max_concurrency=tw.max_concurrency,
        status_callback_url=callback,
        timeout=tw.timeout,
    )


@dataclass
class Herald:
    settings: Settings
    store: Store
    clock: Clock
    _channels: dict[str, Channel] = field(default_factory=dict)

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

    def configured_channels(self) -> tuple[str, ...]:
        names = ["email"]
        if sms_settings(self.settings) is not None:
            names.append("sms")
        return tuple(names)

    def channel(self, name: str) -> Channel:
        """The channel adapter, opened on first use (connections are made lazily by the adapter)."""
        existing = self._channels.get(name)
        if existing is not None:
            return existing
        built: Channel
        if name == "email":
            built = EmailChannel(email_settings(self.settings))
        elif name == "sms":
            sms = sms_settings(self.settings)
            if sms is None:
                raise LookupError("the sms channel is not configured (twilio.account_sid)")
            built = SmsChannel(sms)
        else:
            raise LookupError(f"unknown channel {name!r}")
        self._channels[name] = built
        return built

    def concurrency(self, name: str) -> int:
        if name == "email":
            return self.settings.smtp.max_connections
        return self.settings.twilio.max_concurrency

    async def aclose_channels(self) -> None:
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.aclose()

    async def aclose(self) -> None:
        await self.aclose_channels()
        self.store.dispose()
