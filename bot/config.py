"""Herald's one typed settings object.

Loaded from TOML (``--config`` or ``HERALD_CONFIG``, else the embedded demo defaults), with every key
overridable by ``HERALD_<SECTION>__<KEY>`` environment variables (nested sections join with ``__``).
Durations are strings such as ``90s``, ``5m``, ``4h``, ``5d`` and are held as float seconds.
Secrets are :data:`~bot.config_types.Secret` (a :class:`pydantic.SecretStr`, so neither ``repr`` nor an
error message ever shows them, that is never empty: an empty secret is an error naming its key).
"""

from __future__ import annotations

import contextvars
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from bot.config_types import BaseUrl, Duration, EnvSource, EnvValueError, PriceTable, Secret, SlashedBaseUrl
from bot.config_types import parse_duration as parse_duration

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


def _default_sla() -> dict[str, SlaPolicy]:
    return {name: SlaPolicy.model_validate(policy) for name, policy in DEFAULT_SLA.items()}


_TomlData = dict[str, Any] | None
_toml_data: contextvars.ContextVar[_TomlData] = contextvars.ContextVar("herald_toml", default=None)


class _TomlSource(PydanticBaseSettingsSource):
    """Feeds the TOML document (already parsed by :func:`load_settings`) to pydantic-settings."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return (_toml_data.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_data.get() or {})


class Settings(BaseSettings):
    """Everything Herald reads from configuration."""

    model_config = SettingsConfigDict(
        env_prefix="HERALD_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    slack_dm: SlackDmSettings = Field(default_factory=SlackDmSettings)
    directory: DirectorySettings = Field(default_factory=DirectorySettings)
    sla: dict[str, SlaPolicy] = Field(default_factory=_default_sla)
    routes: list[Route] = Field(default_factory=list)
    webhooks: dict[Literal["alertmanager", "grafana", "alerts", "bounces"], WebhookAuth] = Field(
        default_factory=dict
    )
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    kinds: KindSettings = Field(default_factory=KindSettings)
    dispatcher: DispatcherSettings = Field(default_factory=DispatcherSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    bounces: BouncesSettings = Field(default_factory=BouncesSettings)

    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)

    templates: TemplateSettings = Field(default_factory=TemplateSettings)

    @field_validator("sla", mode="before")
    @classmethod
    def _merge_sla_defaults(cls, value: object) -> object:
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {k: dict(v) for k, v in DEFAULT_SLA.items()}
        for name, policy in value.items():
            if isinstance(policy, dict):
                merged.setdefault(name, {}).update(policy)
            else:
                merged[name] = policy
        return merged

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, EnvSource(settings_cls), _TomlSource(settings_cls))

    def sla_for(self, severity: str) -> SlaPolicy:
        return self.sla.get(severity) or SlaPolicy.model_validate(DEFAULT_SLA["info"])

    def is_mandatory(self, severity: str) -> bool:
        return severity in self.kinds.mandatory


class ConfigError(Exception):
    """Configuration could not be read or is invalid; ``problems`` holds one line per key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError([f"{path}: file not found"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from exc
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Load and validate settings; raise :class:`ConfigError` naming every bad key (never a value)."""
    from pydantic import ValidationError

    data = read_toml(Path(path)) if path else {}
    token = _toml_data.set(data)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            problems.append(f"{key}: {message}")
        raise ConfigError(problems) from None
    except SettingsError as exc:  # an environment variable that cannot be decoded
        cause = exc.__cause__
        raise ConfigError([str(cause) if isinstance(cause, EnvValueError) else str(exc)]) from None
    finally:
        _toml_data.reset(token)
    problems = check_settings(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def check_settings(settings: Settings) -> list[str]:
    """Cross-key rules pydantic cannot see field by field; one line per problem, no values."""
    problems: list[str] = []
    tw = settings.twilio
    if tw.from_number and tw.messaging_service_sid:
        problems.append("twilio: set exactly one of from_number and messaging_service_sid, not both")
    if tw.account_sid:
        if tw.auth_token is None:
            problems.append("twilio.auth_token: missing (required with account_sid)")
        if not (tw.from_number or tw.messaging_service_sid):
            problems.append("twilio: one of from_number and messaging_service_sid is required")
    lease = settings.dispatcher.lease
    for name, section in (("smtp", settings.smtp), ("twilio", settings.twilio)):
        if lease <= section.timeout + 1:
            problems.append(
                f"dispatcher.lease: must exceed {name}.timeout by more than 1s "
                "(a send must end within its lease)"
            )
    sl = settings.slack
    if sl.bot_token and not sl.app_token and sl.signing_secret is None:
        problems.append("slack.signing_secret: missing (required for HTTP mode; or set app_token)")
    if settings.smtp.username and settings.smtp.password is None:
        problems.append("smtp.password: missing (required with username)")
    problems += _check_bounces(settings)
    if not settings.database.url.startswith(("sqlite", "postgresql")):
        problems.append("database.url: expected sqlite:///PATH or postgresql://...")
    for severity in settings.kinds.mandatory:
        if severity not in settings.sla:
            problems.append(f"kinds.mandatory: unknown kind {severity!r}")
    if settings.templates.dir is not None and not Path(settings.templates.dir).is_dir():
        problems.append("templates.dir: not a directory")
    for index, route in enumerate(settings.routes):
        for label, pattern in route.match_re.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"routes.{index}.match_re.{label}: invalid regular expression: {exc}")
    return problems


def _check_bounces(settings: Settings) -> list[str]:
    bounces, problems = settings.bounces, []
    if bounces.return_path and not re.fullmatch(r"[^@+\s<>]+@[^@\s<>]+", bounces.return_path):
        problems.append("bounces.return_path: expected local@domain without '+' in the local part")
    if bounces.return_path and settings.server.secret_key is None:
        problems.append("server.secret_key: missing (required with bounces.return_path: it signs the token)")
    if bounces.imap_url and not (bounces.username and bounces.password):
        problems.append("bounces: username and password are required with imap_url")
    return problems


def unconfigured(settings: Settings) -> list[str]:
    """Features left off by missing keys: informational lines for ``config check``."""
    notes: list[str] = []
    if not settings.twilio.account_sid:
        notes.append("twilio.account_sid: not set, so the sms channel is off")
    if settings.slack.bot_token is None:
        notes.append("slack.bot_token: not set, so the Slack bot and the slack channel are off")
    if settings.slack.bot_token is not None and not settings.slack.announcers:
        notes.append("slack.announcers: empty, so nobody may announce from Slack")
    if settings.server.api_token is None:
        notes.append("server.api_token: not set, so GET /api/notifications/{id} is off")
    return notes
