"""Secrets: an empty one is a configuration error for every key and every command (never a way to
turn a check off), auth never passes against an empty expected value, a bearer token must name its
scheme, and no secret ever appears in output. Driven through the CLI, ``herald serve`` as a process,
and HTTP requests to the real ASGI app."""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from conftest import run_herald
from pydantic import BaseModel, SecretStr

from bot.alerts.auth import sign_body
from bot.alerts.web import alert_routes
from bot.app import Herald
from bot.clock import SystemClock
from bot.config import Settings, WebhookAuth, load_settings
from bot.metrics import HeraldMetrics
from bot.store import open_store
from bot.web import build_web_app

API_TOKEN = "api-SECRET-7f3a"
HOOK_TOKEN = "hook-SECRET-91c2"
EMPTY = "empty; unset it or give a value"


def _members(annotation: Any) -> Iterator[Any]:
    """Every type an annotation is made of (through unions, Annotated and generics)."""
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _members(arg)


def secret_keys(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every secret key of the settings, found by walking the model: a new secret key is covered
    by the tests below without anyone remembering to add it."""
    for name, field in model.model_fields.items():
        members = list(_members(field.annotation))
        if SecretStr in members:
            yield ".".join((*prefix, name))
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                keys = [name]
                dict_keys = (
                    typing.get_args(field.annotation)[:1]
                    if typing.get_origin(field.annotation) is dict
                    else ()
                )
                for key_type in dict_keys:  # dict[Literal["alertmanager", ...], WebhookAuth]
                    if typing.get_origin(key_type) is Literal:
                        keys = [f"{name}.{value}" for value in typing.get_args(key_type)]
                for key in keys:
                    yield from secret_keys(member, (*prefix, *key.split(".")))


SECRET_KEYS = sorted(set(secret_keys()))


def env_name(key: str) -> str:
    return "HERALD_" + key.upper().replace(".", "__")


def test_the_walk_finds_every_known_secret_key() -> None:
    assert {
        "server.api_token",
        "server.secret_key",
        "slack.bot_token",
        "slack.signing_secret",
        "slack.app_token",
        "smtp.password",
        "twilio.auth_token",
        "directory.ldap.bind_password",
        "webhooks.alertmanager.token",
        "webhooks.grafana.hmac_secret",
        "webhooks.alerts.token",
    } <= set(SECRET_KEYS)


@pytest.mark.parametrize("value", ["", "   "])
@pytest.mark.parametrize("key", SECRET_KEYS)
def test_config_check_refuses_an_empty_secret_naming_the_key(cli, key: str, value: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("config", "check", env={env_name(key): value})
    assert result.exit_code == 2, result.stdout
    assert f"error: {key}: {EMPTY}" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr and "ok:" not in result.stdout


def test_an_empty_secret_in_toml_is_refused_too(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text('[server]\napi_token = ""\n[webhooks.grafana]\nhmac_secret = ""\n', encoding="utf-8")
    result = cli("config", "check", "--config", str(config))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert f"error: server.api_token: {EMPTY}" in lines
    assert f"error: webhooks.grafana.hmac_secret: {EMPTY}" in lines


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["db", "prune"],
        ["announce", "--audience", "everyone", "--title", "t", "--body", "b"],
        ["alert", "--severity", "critical", "--summary", "s"],
        ["status", "n1"],
        ["report"],
        ["directory", "show", "everyone"],
        ["suppressions", "list"],
        ["demo"],
    ],
)
def test_every_command_refuses_an_empty_secret_in_one_line(cli, tmp_path: Path, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    env = {"HERALD_DATABASE__URL": f"sqlite:///{tmp_path / 'h.db'}", "HERALD_SERVER__API_TOKEN": ""}
    result = cli(*command, env=env)
    assert result.exit_code == 2
    assert result.stderr == f"herald: bad configuration: server.api_token: {EMPTY}\n"


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_serve_and_worker_refuse_an_empty_twilio_auth_token(tmp_path: Path, command: str) -> None:
    """Finding: an empty auth_token passed ``config check`` and ``serve`` then died with a traceback."""
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "h.db"}"\n[server]\nport = 0\n'
        '[twilio]\naccount_sid = "AC123"\nfrom_number = "+15550001"\nauth_token = ""\n',
        encoding="utf-8",
    )
    result = run_herald(command, "--config", str(config), timeout=60)
    assert result.exit_code == 2
    assert result.stderr == f"herald: bad configuration: twilio.auth_token: {EMPTY}\n"
    checked = run_herald("config", "check", "--config", str(config), timeout=60)
    assert checked.exit_code == 2 and f"error: twilio.auth_token: {EMPTY}" in checked.stderr


def test_a_secret_given_never_appears_in_output(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = {
        "HERALD_SERVER__API_TOKEN": API_TOKEN,
        "HERALD_WEBHOOKS__ALERTS__TOKEN": HOOK_TOKEN,
        "HERALD_SLACK__SIGNING_SECRET": "",
    }
    result = cli("config", "check", env=env)
    assert result.exit_code == 2
    assert f"error: slack.signing_secret: {EMPTY}" in result.stderr.splitlines()
    for secret in (API_TOKEN, HOOK_TOKEN):
        assert secret not in result.stdout + result.stderr


# --- over HTTP: the notification API and the webhooks ---------------------------------------------


@pytest.fixture
async def herald(tmp_path: Path) -> AsyncIterator[Herald]:
    store = open_store(f"sqlite:///{tmp_path / 'h.db'}", migrate=True)
    settings = load_settings(
        None, server={"api_token": API_TOKEN}, webhooks={"alerts": {"token": HOOK_TOKEN}}
    )
    yield Herald(settings=settings, store=store, clock=SystemClock())
    store.dispose()


def client(herald: Herald) -> httpx.AsyncClient:
    app = build_web_app(herald, HeraldMetrics(herald.store, herald.clock), routes=alert_routes(herald))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://herald")


def with_secrets(herald: Herald, **sections: dict[str, Any]) -> Herald:
    """The same Herald with settings changed past validation (as if a check were ever missed)."""
    settings = herald.settings
    update = {name: getattr(settings, name).model_copy(update=values) for name, values in sections.items()}
    return Herald(settings=settings.model_copy(update=update), store=herald.store, clock=herald.clock)


async def test_the_api_wants_the_bearer_scheme(herald: Herald) -> None:
    url = "/api/notifications/nnothing"
    async with client(herald) as http:
        bare = await http.get(url, headers={"Authorization": API_TOKEN})
        assert bare.status_code == 401 and API_TOKEN not in bare.text
        assert (await http.get(url, headers={"Authorization": f"Basic {API_TOKEN}"})).status_code == 401
        for scheme in ("Bearer", "bearer", "BEARER"):
            found = await http.get(url, headers={"Authorization": f"{scheme} {API_TOKEN}"})
            assert found.status_code == 404 and found.json()["error"] == "no such notification"


async def test_the_webhooks_want_the_bearer_scheme(herald: Herald) -> None:
    body = {"summary": "x"}
    async with client(herald) as http:
        bare = await http.post("/hooks/alerts", json=body, headers={"Authorization": HOOK_TOKEN})
        assert bare.status_code == 401 and HOOK_TOKEN not in bare.text
        named = await http.post("/hooks/alerts", json=body, headers={"Authorization": f"bearer {HOOK_TOKEN}"})
        assert named.status_code == 422  # authenticated; the body is then found wanting


async def test_an_empty_api_token_that_slipped_past_configuration_opens_nothing(herald: Herald) -> None:
    empty = with_secrets(herald, server={"api_token": SecretStr("")})
    async with client(empty) as http:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": ""}):
            answer = await http.get("/api/notifications/nnothing", headers=headers)
            assert answer.status_code == 404
            assert answer.json()["error"] == "the notification API is off (set server.api_token)"


async def test_an_empty_hmac_secret_that_slipped_past_configuration_accepts_nothing(herald: Herald) -> None:
    unchecked = WebhookAuth.model_construct(hmac_secret=SecretStr(""))
    settings = herald.settings.model_copy(update={"webhooks": {"alerts": unchecked}})
    empty = Herald(settings=settings, store=herald.store, clock=herald.clock)
    content = b'{"summary": "x"}'
    async with client(empty) as http:
        signed = await http.post(
            "/hooks/alerts", content=content, headers={"X-Herald-Signature": sign_body("", content)}
        )
        assert signed.status_code == 401
        assert "not configured" in signed.json()["error"]
