"""Herald's one typed settings object.

Loaded from TOML (``--config`` or ``HERALD_CONFIG``, else the embedded demo defaults), with every key
overridable by ``HERALD_<SECTION>__<KEY>`` environment variables (nested sections join with ``__``).
Durations are strings such as ``90s``, ``5m``, ``4h``, ``5d`` and are held as float seconds.
Secrets are :data:`~bot.config.types.Secret` (a :class:`pydantic.SecretStr`, so neither ``repr`` nor an
error message ever shows them, that is never empty: an empty secret is an error naming its key).
"""

from __future__ import annotations

import contextvars
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from bot.config.sections import (
    CHANNEL_NAMES,
    DEFAULT_SLA,
    SEVERITIES,
    AlertmanagerSettings,
    BouncesSettings,
    ChannelName,
    DatabaseSettings,
    DirectorySettings,
    DispatcherSettings,
    KindSettings,
    LdapSettings,
    QuietHours,
    RetentionSettings,
    Route,
    Section,
    ServerSettings,
    Severity,
    SlackDmSettings,
    SlackSettings,
    SlaPolicy,
    SmtpSettings,
    TemplateSettings,
    TwilioSettings,
    WebhookAuth,
)
from bot.config.types import EnvSource, EnvValueError
from bot.config.types import parse_duration as parse_duration


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
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: not UTF-8 (byte {exc.start})"]) from exc
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


__all__ = [
    "CHANNEL_NAMES",
    "DEFAULT_SLA",
    "SEVERITIES",
    "AlertmanagerSettings",
    "BouncesSettings",
    "ChannelName",
    "ConfigError",
    "DatabaseSettings",
    "DirectorySettings",
    "DispatcherSettings",
    "KindSettings",
    "LdapSettings",
    "QuietHours",
    "RetentionSettings",
    "Route",
    "Section",
    "ServerSettings",
    "Settings",
    "Severity",
    "SlaPolicy",
    "SlackDmSettings",
    "SlackSettings",
    "SmtpSettings",
    "TemplateSettings",
    "TwilioSettings",
    "WebhookAuth",
    "check_settings",
    "load_settings",
    "parse_duration",
    "read_toml",
    "unconfigured",
]
