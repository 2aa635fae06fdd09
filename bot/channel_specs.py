"""Everything Herald knows about each delivery channel, in one :class:`ChannelSpec` per channel.

A spec names the channel's settings section, the directory column that holds a person's address for
it, the reason a person without one is unreachable, how its adapter is built from settings (and so
what ``prepare`` returns: ``Channel[PreparedEmail]``, ``Channel[PreparedSms]``), its cost unit (what a
throttle slot counts), its concurrency, its retry window and its error classifier. The dispatcher,
forecast, preview, metrics and report iterate over :data:`CHANNELS`; a new channel is its adapter in
``channels/`` plus one spec registered here (and its name in :data:`bot.config.CHANNEL_NAMES`).

A channel's adapter module (and its provider's SDK: twilio, slack_sdk, aiohttp) is imported when the
channel is first built or one of its failures classified, so a command that only sends email never
loads the others (``tests/test_import_discipline.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.config import CHANNEL_NAMES, Settings
from channels.base import Channel, DeliveryError
from channels.verp import derive_key

if TYPE_CHECKING:
    from channels.email import EmailChannel, EmailSettings
    from channels.slack import SlackDmChannel, SlackDmSettings
    from channels.sms import SmsChannel, SmsSettings
    from channels.templating import Templates


class ChannelSection(Protocol):
    """The keys every channel's settings section has (``[smtp]``, ``[twilio]``)."""

    @property
    def rate_per_second(self) -> float: ...
    @property
    def burst(self) -> int: ...
    @property
    def daily_cap(self) -> int: ...
    @property
    def retry_for(self) -> float: ...
    @property
    def timeout(self) -> float: ...
    @property
    def warmup(self) -> list[int]: ...


@dataclass(frozen=True)
class ChannelSpec:
    """One channel as Herald sees it; see the module docstring."""

    name: str
    label: str  # how people read the name: Email, SMS, Slack
    section: str  # the settings section: [smtp], [twilio], [slack_dm]
    address_column: str  # the Person column with the address: email, phone, slack_user_id
    unreachable: str  # why a person without that address is not reached: no_email, no_phone...
    fold_case: bool  # addresses compare case-insensitively (email), else as given (E.164 numbers)
    cost_unit: str  # what one throttle slot pays for: a message, an SMS segment
    concurrency_of: Callable[[Settings], int]  # the section's key for sends in flight
    cluster_connections: bool  # the concurrency is one budget for the whole cluster (SMTP)
    preferences_link: bool  # non-mandatory messages carry the person's signed preferences link
    latency: float  # assumed seconds per send before any is measured (the forecast's start)
    enabled: Callable[[Settings], bool]  # the settings turn the channel on
    adapter: Callable[[Settings], Channel[Any]]  # built once per process, on first use
    classify: Callable[[BaseException], DeliveryError]  # the provider's failures, as delivery errors

    def settings(self, settings: Settings) -> ChannelSection:
        section: ChannelSection = getattr(settings, self.section)
        return section

    def concurrency(self, settings: Settings) -> int:
        """Sends in flight at once: per worker, or for the cluster when ``cluster_connections``."""
        return self.concurrency_of(settings)

    def normalise(self, address: str) -> str:
        """The address as stored and compared (suppression list, directory)."""
        return address.strip().lower() if self.fold_case else address.strip()

    def retry_for(self, settings: Settings) -> float:
        """How long a transient failure is retried after the delivery was created."""
        return self.settings(settings).retry_for


def email_settings(settings: Settings) -> EmailSettings:
    from channels.email import EmailSettings

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
        pipelining=smtp.pipelining,
        return_path=settings.bounces.return_path,
        verp_key=verp_key(settings),
    )


def verp_key(settings: Settings) -> bytes | None:
    """The key VERP tokens are signed with (from ``server.secret_key``), or None without one."""
    secret = settings.server.secret_key
    return derive_key(secret.get_secret_value()) if secret is not None else None


def receipts_on(settings: Settings) -> bool:
    """Twilio status callbacks: as ``twilio.status_callbacks`` says, else on when ``public_url`` is https
    (Twilio can reach it, and only a receipt tells ``delivered`` from ``sent``)."""
    configured = settings.twilio.status_callbacks
    return configured if configured is not None else settings.server.public_url.lower().startswith("https://")


def sms_settings(settings: Settings) -> SmsSettings | None:
    """The SMS channel's settings, or None when no Twilio account is configured (the channel is off)."""
    tw = settings.twilio
    if not tw.account_sid or tw.auth_token is None:
        return None
    from channels.sms import SmsSettings

    callback = f"{settings.server.public_url}/hooks/twilio/status" if receipts_on(settings) else None
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


def _email(settings: Settings) -> EmailChannel:
    from channels.email import EmailChannel

    return EmailChannel(email_settings(settings), templates=templates(settings))


def _classify_email(exc: BaseException) -> DeliveryError:
    from channels.smtp_classify import classify_smtp_exception

    return classify_smtp_exception(exc)


def _sms(settings: Settings) -> SmsChannel:
    from channels.sms import SmsChannel

    sms = sms_settings(settings)
    if sms is None:
        raise LookupError("the sms channel is not configured (twilio.account_sid)")
    return SmsChannel(sms, templates=templates(settings))


def _classify_sms(exc: BaseException) -> DeliveryError:
    from channels.sms import classify_transport_error

    return classify_transport_error(exc)


def templates(settings: Settings) -> Templates:
    """The built-in templates overridden by ``[templates] dir``'s."""
    from channels.templating import Templates

    return Templates(settings.templates.dir)


def slack_dm_settings(settings: Settings) -> SlackDmSettings | None:
    """The slack channel's settings, or None when no bot token is configured (the channel is off)."""
    token = settings.slack.bot_token
    if token is None:
        return None
    from channels.slack import SlackDmSettings

    dm = settings.slack_dm
    return SlackDmSettings(
        bot_token=token.get_secret_value(),
        api_url=settings.slack.api_url,
        max_concurrency=dm.max_concurrency,
        timeout=dm.timeout,
        dm_cache=dm.dm_cache,
    )


def _slack(settings: Settings) -> SlackDmChannel:
    from bot.slack.dm_blocks import preferences_block, render_dm
    from channels.slack import SlackDmChannel

    dm = slack_dm_settings(settings)
    if dm is None:
        raise LookupError("the slack channel is not configured (slack.bot_token)")
    chosen = templates(settings)
    return SlackDmChannel(dm, render=lambda notice: render_dm(notice, chosen), preferences=preferences_block)


def _classify_slack(exc: BaseException) -> DeliveryError:
    from channels.slack import classify_transport_error

    return classify_transport_error(exc)


EMAIL = ChannelSpec(
    name="email",
    label="Email",
    section="smtp",
    address_column="email",
    unreachable="no_email",
    fold_case=True,
    cost_unit="message",
    concurrency_of=lambda settings: settings.smtp.max_connections,
    cluster_connections=True,
    preferences_link=True,
    latency=0.01,
    enabled=lambda settings: True,
    adapter=_email,
    classify=_classify_email,
)
SMS = ChannelSpec(
    name="sms",
    label="SMS",
    section="twilio",
    address_column="phone",
    unreachable="no_phone",
    fold_case=False,
    cost_unit="segment",
    concurrency_of=lambda settings: settings.twilio.max_concurrency,
    cluster_connections=False,
    preferences_link=False,  # SMS opts out by a STOP reply
    latency=0.1,
    enabled=lambda settings: sms_settings(settings) is not None,
    adapter=_sms,
    classify=_classify_sms,
)

SLACK = ChannelSpec(
    name="slack",
    label="Slack",
    section="slack_dm",
    address_column="slack_user_id",
    unreachable="no_slack_user",
    fold_case=False,  # Slack user ids are upper case as Slack issues them
    cost_unit="message",
    concurrency_of=lambda settings: settings.slack_dm.max_concurrency,
    cluster_connections=False,
    preferences_link=True,
    latency=0.2,  # conversations.open and chat.postMessage
    enabled=lambda settings: slack_dm_settings(settings) is not None,
    adapter=_slack,
    classify=_classify_slack,
)

CHANNELS: dict[str, ChannelSpec] = {spec.name: spec for spec in (EMAIL, SMS, SLACK)}
assert tuple(CHANNELS) == CHANNEL_NAMES, "register a ChannelSpec for every name in CHANNEL_NAMES"


def spec(name: str) -> ChannelSpec:
    """The registered channel ``name``; LookupError names the known ones."""
    found = CHANNELS.get(name)
    if found is None:
        raise LookupError(f"unknown channel {name!r} (expected one of {', '.join(CHANNELS)})")
    return found


def configured(settings: Settings, among: Sequence[str] = CHANNEL_NAMES) -> tuple[str, ...]:
    """The channels of ``among`` that ``settings`` turns on, in registration order."""
    return tuple(name for name in CHANNELS if name in among and CHANNELS[name].enabled(settings))
