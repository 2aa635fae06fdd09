"""The sections of Herald's settings, one pydantic model each (``[smtp]``, ``[twilio]``, ...).

:class:`bot.config.Settings` puts them together; every name here is also importable from
:mod:`bot.config`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config.types import BaseUrl, Duration, PriceTable, Secret, SlashedBaseUrl

SEVERITIES = ("critical", "outage", "security", "maintenance", "info")
Severity = Literal["critical", "outage", "security", "maintenance", "info"]
CHANNEL_NAMES = ("email", "sms", "slack")
ChannelName = Literal["email", "sms", "slack"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    url: str = "sqlite:///herald.db"


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: BaseUrl = "http://127.0.0.1:8080"
    api_token: Secret | None = None
    secret_key: Secret | None = None
    read_timeout: Duration = Field(30.0, gt=0)
    keep_alive: Duration = Field(75.0, gt=0)


class SlackSettings(Section):
    bot_token: Secret | None = None
    signing_secret: Secret | None = None
    app_token: Secret | None = None
    api_url: SlashedBaseUrl = "https://slack.com/api/"
    announcers: list[str] = Field(default_factory=list)
    alert_channel: str | None = None
    confirm_above: int = Field(500, ge=1)
    # The slash command's name as created in the Slack app (Slack: "/", lower case, at most 32).
    command: str = Field("/announce", pattern=r"^/[a-z0-9][a-z0-9_.-]{0,30}$")


class SmtpSettings(Section):
    host: str = "localhost"
    port: int = Field(25, ge=0, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: Secret | None = None
    from_address: str = "herald@localhost"
    reply_to: str | None = None
    max_connections: int = Field(4, ge=1, le=64)
    rate_per_second: float = Field(50.0, ge=0)
    burst: int = Field(0, ge=0)
    daily_cap: int = Field(0, ge=0)
    retry_for: Duration = 5 * 86400.0
    timeout: Duration = 30.0
    warmup: list[int] = Field(default_factory=list)
    pipelining: bool = True  # RFC 2920, when the server offers it


class TwilioSettings(Section):
    account_sid: str | None = None
    auth_token: Secret | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    rate_per_second: float = Field(10.0, ge=0)
    burst: int = Field(0, ge=0)
    daily_cap: int = Field(0, ge=0)
    api_url: BaseUrl = "https://api.twilio.com"
    max_segments: int = Field(3, ge=1, le=10)
    max_concurrency: int = Field(8, ge=1, le=256)
    status_callbacks: bool | None = None  # None: on when server.public_url is https
    retry_for: Duration = 4 * 3600.0
    timeout: Duration = 15.0
    warmup: list[int] = Field(default_factory=list)
    prices: PriceTable = Field(default_factory=dict)  # per segment by country; see bot/engine/sms_cost
    help_text: str = (
        "Herald: IT notifications from your company. Reply STOP to opt out, START to opt back in."
    )


class SlackDmSettings(Section):
    """``[slack_dm]``: the ``slack`` channel's pacing (direct messages with ``[slack] bot_token``).

    Slack allows about one ``chat.postMessage`` per second per channel with short bursts, under a
    workspace-wide limit, and ``conversations.open`` is a Tier 3 method (50+ a minute): hence one DM
    a second by default; a 429's ``Retry-After`` slows the whole cluster further.
    """

    rate_per_second: float = Field(1.0, ge=0)
    burst: int = Field(0, ge=0)
    max_concurrency: int = Field(4, ge=1, le=64)
    daily_cap: int = Field(0, ge=0)
    retry_for: Duration = 4 * 3600.0
    timeout: Duration = 10.0
    warmup: list[int] = Field(default_factory=list)
    dm_cache: int = Field(10_000, ge=1)


class LdapSettings(Section):
    url: str | None = None
    start_tls: bool = False
    bind_dn: str | None = None
    bind_password: Secret | None = None
    base_dn: str | None = None
    user_filter: str = "(&(objectCategory=person)(objectClass=user))"
    page_size: int = Field(1000, ge=1)
    disabled_filter: str = "(userAccountControl:1.2.840.113556.1.4.803:=2)"
    group_base_dn: str | None = None
    group_filter: str = "(objectClass=group)"
    group_member_attribute: str = "member"
    attributes: dict[str, str] = Field(default_factory=dict)


class DirectorySettings(Section):
    source: Literal["file", "ldap", "slack"] = "file"
    path: str | None = None
    sync_every: Duration = 3600.0
    default_region: str | None = None
    ldap: LdapSettings = Field(default_factory=LdapSettings)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("expected a two-letter region code such as US or DE")
        return value.upper()


class SlaPolicy(Section):
    deliver_within: Duration
    ack_within: Duration | None = None
    escalate: list[str] = Field(default_factory=list)
    repeat_interval: Duration = 4 * 3600.0
    # The share of reachable people who must be reached by the deadline for the SLA to be met.
    reach: float = Field(1.0, ge=0.0, le=1.0)
    # Ask every recipient to confirm (as --confirm does); confirmations are due by confirm_within
    # (default: deliver_within). See SPEC "Confirmations and the channel ladder".
    confirm: bool = False
    confirm_within: Duration | None = None


DEFAULT_SLA: dict[str, dict[str, Any]] = {
    "critical": {"deliver_within": "2m", "ack_within": "10m"},
    "outage": {"deliver_within": "5m", "ack_within": "15m"},
    "security": {"deliver_within": "15m", "ack_within": "30m"},
    "maintenance": {"deliver_within": "4h", "reach": 0.99},
    "info": {"deliver_within": "24h", "reach": 0.99},
}


class Route(Section):
    match: dict[str, str] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    audience: str
    channels: list[ChannelName] = Field(default_factory=lambda: list[ChannelName](["email"]))
    severity: Severity | None = None
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])


class WebhookAuth(Section):
    token: Secret | None = None
    hmac_secret: Secret | None = None
    signature_header: str = "X-Herald-Signature"


class BouncesSettings(Section):
    return_path: str | None = None
    imap_url: str | None = Field(None, pattern=r"^imaps?://[^/?#]+/?$")
    username: str | None = None
    password: Secret | None = None
    folder: str = "INBOX"
    poll_every: Duration = Field(60.0, gt=0)


class QuietHours(Section):
    start: str = "22:00"
    end: str = "07:00"
    kinds: list[str] = Field(default_factory=lambda: ["maintenance", "info"])
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone such as Europe/Berlin") from exc
        return value

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError("expected a time of day as HH:MM")
        return value


class KindSettings(Section):
    mandatory: list[str] = Field(default_factory=lambda: ["critical", "outage", "security"])


class DispatcherSettings(Section):
    lease: Duration = 60.0
    batch_size: int = Field(200, ge=1, le=5000)
    poll_interval: Duration = 0.5
    max_attempts_unknown: int = Field(3, ge=1)
    retry_base: Duration = 10.0
    retry_cap: Duration = 900.0


class RetentionSettings(Section):
    # Finished notifications and resolved alerts older than this are deleted ("0s": keep everything).
    keep_for: Duration = 400 * 86400.0
    # How often the leading ``serve`` looks for them.
    every: Duration = Field(3600.0, gt=0)
    # Inbound SMS MessageSids kept against replays ("0s": keep them all); at least a day, far longer
    # than Twilio retries a webhook.
    inbound_sms_for: Duration = 90 * 86400.0

    @field_validator("inbound_sms_for")
    @classmethod
    def _replay_window(cls, value: float) -> float:
        if 0 < value < 86400:
            raise ValueError('expected at least "1d" (or "0s" to keep every inbound SMS)')
        return value


class AlertmanagerSettings(Section):
    # Base URL of Alertmanager (API v2): maintenance windows create their silences there. "" = off.
    url: BaseUrl = ""
    timeout: Duration = Field(5.0, gt=0)
    retry_every: Duration = Field(30.0, gt=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError('expected an http:// or https:// URL, or "" for none')
        return value


class TemplateSettings(Section):
    # A directory of <kind>.<channel>[.<language>].j2 templates that replace the built-in ones.
    dir: str | None = None
