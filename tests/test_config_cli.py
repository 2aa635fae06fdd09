"""`herald config check` and `herald db upgrade`, driven through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import create_engine, inspect

from bot.config import load_settings, parse_duration
from bot.store import normalise_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("4h", 14400.0),
        ("5d", 432000.0),
        ("250ms", 0.25),
        ("12", 12.0),
        (3, 3.0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "-1s", "", "1y", True, -4])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_example_config_loads_and_documents_every_key() -> None:
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.smtp.retry_for == 5 * 86400
    text = (ROOT / "config.example.toml").read_text()
    for section, model in settings:
        if isinstance(model, BaseModel):
            for key in type(model).model_fields:
                assert f"{key} " in text or f"{key}=" in text or f"# {key}" in text, (
                    f"{section}.{key} undocumented"
                )


def test_config_check_ok_with_defaults(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("config", "check")
    assert result.exit_code == 0
    assert "ok: embedded defaults" in result.stdout
    assert "note: twilio.account_sid: not set, so the sms channel is off" in result.stdout


def test_config_check_names_every_bad_key_and_hides_secrets(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text(
        '[smtp]\nport = "many"\nretry_for = "soon"\nfavourite = 1\n'
        '[twilio]\naccount_sid = "AC123"\nauth_token = "tok-SECRET-value"\n'
        'from_number = "+15550001"\nmessaging_service_sid = "MG1"\n'
    )
    result = cli("config", "check", "--config", str(config))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert any(line.startswith("error: smtp.port:") for line in lines)
    assert "error: smtp.retry_for: Value error, expected a duration such as 90s, 5m, 4h or 5d" in lines
    assert "error: smtp.favourite: unknown key" in lines
    assert "tok-SECRET-value" not in result.stderr + result.stdout


def test_config_check_cross_key_rules(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text(
        '[twilio]\naccount_sid = "AC123"\nauth_token = "x"\nfrom_number = "+15550001"\n'
        'messaging_service_sid = "MG1"\n'
    )
    result = cli("config", "check", "--config", str(config))
    assert result.exit_code == 2
    assert (
        "error: twilio: set exactly one of from_number and messaging_service_sid, not both" in result.stderr
    )


def test_env_overrides_toml_and_secret_never_printed(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text('[smtp]\nport = 2525\n[twilio]\naccount_sid = "AC1"\nfrom_number = "+15550001"\n')
    env = {"HERALD_TWILIO__AUTH_TOKEN": "env-secret-123", "HERALD_SMTP__PORT": "nope"}
    result = cli("config", "check", "--config", str(config), env=env)
    assert result.exit_code == 2
    assert any(line.startswith("error: smtp.port:") for line in result.stderr.splitlines())
    assert "env-secret-123" not in result.stdout + result.stderr


def test_missing_config_file_is_exit_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("config", "check", "--config", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2
    assert "nope.toml: file not found" in result.stderr


def test_db_upgrade_creates_schema(cli, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {"HERALD_DATABASE__URL": db_url}
    result = cli("db", "upgrade", env=env)
    assert result.exit_code == 0, result.stderr
    assert "is at the latest schema" in result.stdout
    engine = create_engine(normalise_url(db_url))
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"person", "notification", "delivery", "attempt", "suppression", "audit_log"} <= tables
    again = cli("db", "upgrade", env=env)
    assert again.exit_code == 0


def test_db_upgrade_unreachable_database(cli) -> None:  # type: ignore[no-untyped-def]
    env = {"HERALD_DATABASE__URL": "postgresql://nobody:hunter2@127.0.0.1:1/none"}
    result = cli("db", "upgrade", env=env)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "herald: database postgresql://nobody:***@127.0.0.1:1/none: connection failed"
    )
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("HERALD_SLACK__ANNOUNCERS", "[bad", "slack.announcers"),
        ("HERALD_ROUTES", '[{"audience": "everyone"', "routes"),
        ("HERALD_WEBHOOKS", '{"alerts": {"token": "json-SECRET-4d1"', "webhooks"),
        ("HERALD_DIRECTORY__LDAP__ATTRIBUTES", "{mail: x}", "directory.ldap.attributes"),
    ],
)
def test_malformed_json_in_an_environment_override_is_one_line(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, name: str, value: str, key: str
) -> None:
    checked = cli("config", "check", env={name: value})
    assert checked.exit_code == 2
    (problem, summary) = checked.stderr.splitlines()
    assert problem.startswith(f"error: {name} ({key}): not valid JSON (")
    assert summary == "1 problem(s) in the embedded defaults"
    env = {name: value, "HERALD_DATABASE__URL": f"sqlite:///{tmp_path / 'h.db'}"}
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.exit_code == 2
    assert upgraded.stderr.startswith(f"herald: bad configuration: {name} ({key}): not valid JSON (")
    assert upgraded.stderr.count("\n") == 1
    assert "json-SECRET-4d1" not in checked.stderr + upgraded.stderr


@pytest.mark.parametrize("bad", ["99999999999d", "1e9999s", float("inf"), float("nan"), 10**20, "3651d"])
def test_parse_duration_refuses_what_would_overflow_a_date(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            b'[smtp]\nretry_for = "99999999999d"\n',
            "error: smtp.retry_for: Value error, a duration must be at most",
        ),
        (b"[smtp]\nretry_for = inf\n", "error: smtp.retry_for: Value error, a duration must be at most"),
        (b"\xff\xfe[smtp]\nport = 25\n", "invalid TOML: not UTF-8 (byte 0)"),
        (b'[smtp]\nfrom_address = "caf\xe9@example.com"\n', "invalid TOML: not UTF-8 (byte 26)"),
    ],
)
def test_a_config_file_with_a_huge_duration_or_bad_encoding_is_exit_2_naming_it(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, text: bytes, reason: str
) -> None:
    path = tmp_path / "herald.toml"
    path.write_bytes(text)
    result = cli("config", "check", "--config", str(path))
    assert result.exit_code == 2, result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 2  # the problem and the summary line
