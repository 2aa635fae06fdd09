"""Slack as the directory (``directory.source = "slack"``): ``users.list`` pages and rate limits,
against Herald's Slack Web API stand-in, through the CLI on SQLite and PostgreSQL and through the
runner with a manual clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ldap_server import SlackPeer, slack_user
from sqlalchemy import select

from bot.clock import ManualClock
from bot.config import load_settings
from bot.standins.slack import SlackStandIn
from bot.store import Store
from bot.sync.errors import SyncError
from bot.sync.runner import sync
from bot.sync.slack_source import MAX_RATE_LIMITED
from bot.tables import AuditEntry, Person

USERS = 450  # three pages of 200


def workspace(n: int = USERS) -> dict[str, dict[str, Any]]:
    users = {f"U{i:07d}": slack_user(f"U{i:07d}", f"user{i}@example.com", name=f"User {i}") for i in range(n)}
    users["U0000003"]["deleted"] = True
    users["U0000004"]["profile"]["phone"] = "+49 30 12345678"
    users["U0000005"]["profile"]["phone"] = "ext. 42"  # free text: left out with a note
    users["U0000006"]["profile"]["email"] = "broken@"  # rejected, reported
    users["U0000007"]["locale"] = "pt-BR"
    users["B0000001"] = slack_user("B0000001", "bot@example.com", is_bot=True)
    users["USLACKBOT"] = slack_user("USLACKBOT", None)
    return users


@pytest.fixture
def slack() -> Iterator[SlackPeer]:
    peer = SlackPeer(workspace())
    try:
        yield peer
    finally:
        peer.close()


def config_file(tmp_path: Path, db_url: str, slack: SlackPeer) -> str:
    path = tmp_path / "herald.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n\n[directory]\nsource = "slack"\n\n' + slack.config())
    return str(path)


def people(store: Store) -> dict[str, Person]:
    with store.session() as session:
        return {p.id: p for p in session.exec(select(Person)).scalars()}  # type: ignore[call-overload]


def test_slack_is_the_directory(
    cli: Any, tmp_path: Path, db_url: str, store: Store, slack: SlackPeer
) -> None:
    slack.standin.rate_limit("users.list", times=1, retry_after=1)
    config = config_file(tmp_path, db_url, slack)
    result = cli("directory", "sync", "--config", config)
    assert result.exit_code == 1  # one rejected entry
    assert result.stderr.splitlines() == [
        "slack user U0000006: email: 'broken@' is not a valid email address "
        "(there must be something after the @-sign)",
        "note: slack user U0000005: phone left out: 'ext. 42' has no country code (+…) "
        "and directory.default_region is not set",
    ]
    assert result.stdout == (
        f"imported {USERS - 1} people ({USERS - 1} added, 0 changed, 0 unchanged, 0 deactivated), "
        "1 rejected\n"
    )
    calls = slack.standin.calls_to("users.list")
    # One 429, then the same first page again, then every page: 200, 200, 50 (+ two non-people).
    assert [(c.answered, c.args.get("cursor")) for c in calls] == [
        ("ratelimited", None),
        ("ok", None),
        ("ok", "200"),
        ("ok", "400"),
    ]
    assert calls[1].at - calls[0].at >= 1.0  # Retry-After honoured
    assert all(c.args["limit"] == "200" and c.args["include_locale"] == "1" for c in calls)

    stored = people(store)
    assert "B0000001" not in stored and "USLACKBOT" not in stored
    first = stored["U0000001"]
    assert (first.name, first.email, first.slack_user_id, first.timezone, first.source) == (
        "User 1",
        "user1@example.com",
        "U0000001",
        "Europe/Berlin",
        "slack",
    )
    assert (first.language, stored["U0000007"].language) == ("en-US", "pt-BR")  # Slack's locale
    assert stored["U0000003"].active is False  # deleted in Slack
    assert (stored["U0000004"].phone, stored["U0000005"].phone) == ("+493012345678", None)

    del slack.standin.users["U0000010"]
    slack.standin.users["U0000011"]["deleted"] = True
    again = cli("directory", "sync", "--config", config, "--json")
    document = json.loads(again.stdout)
    assert (document["added"], document["changed"], document["deactivated"], document["rejected"]) == (
        0,
        1,
        1,
        1,
    )
    stored = people(store)
    assert (stored["U0000010"].active, stored["U0000011"].active) == (False, False)


def test_slack_token_refused(cli: Any, tmp_path: Path, db_url: str, store: Store, slack: SlackPeer) -> None:
    slack.standin.fail("users.list", "invalid_auth")
    result = cli("directory", "sync", "--config", config_file(tmp_path, db_url, slack))
    assert (result.exit_code, result.stderr) == (
        2,
        "herald: slack users.list failed: invalid_auth (nothing was changed)\n",
    )
    assert people(store) == {}


def test_slack_without_a_token(cli: Any, db_url: str) -> None:
    env = {"HERALD_DATABASE__URL": db_url, "HERALD_DIRECTORY__SOURCE": "slack"}
    result = cli("directory", "sync", env=env)
    assert (result.exit_code, result.stderr) == (
        2,
        "herald: slack.bot_token is not set (required to read users from Slack) (nothing was changed)\n",
    )


# --- through the runner, with a manual clock ------------------------------------------------------------


def settings_for(db_url: str, api_url: str) -> Any:
    return load_settings(
        None,
        database={"url": db_url},
        directory={"source": "slack"},
        slack={"bot_token": SlackPeer.TOKEN, "signing_secret": "s", "api_url": api_url},
    )


async def test_rate_limits_are_waited_out_on_the_clock(store: Store, db_url: str) -> None:
    async with SlackStandIn(token=SlackPeer.TOKEN, users=workspace(250)) as standin:
        standin.rate_limit("users.list", times=2, retry_after=7)
        clock = ManualClock()
        start = clock.now()
        summary = await sync(store, settings_for(db_url, standin.api_url), clock=clock, actor="test")
        assert clock.now() - start == 14.0
        assert [c.answered for c in standin.calls_to("users.list")] == [
            "ratelimited",
            "ratelimited",
            "ok",
            "ok",
        ]
    assert (summary.added, summary.rejected) == (249, 1)


async def test_rate_limited_too_long_changes_nothing(store: Store, db_url: str) -> None:
    async with SlackStandIn(token=SlackPeer.TOKEN, users=workspace(250)) as standin:
        standin.rate_limit("users.list", times=MAX_RATE_LIMITED + 1, retry_after=30)
        with pytest.raises(SyncError, match="still rate limited after 10 waits") as caught:
            await sync(store, settings_for(db_url, standin.api_url), clock=ManualClock(), actor="test")
    assert caught.value.reason == "source"
    assert people(store) == {}
    with store.session() as session:
        entry = session.exec(select(AuditEntry)).scalars().one()  # type: ignore[call-overload]
    assert (entry.action, entry.subject, entry.actor) == ("directory.sync_failed", "slack", "test")
