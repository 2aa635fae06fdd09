"""VERP: with ``[bounces] return_path`` every email's envelope sender carries a signed token naming its
delivery, sent through the real client to the SMTP stand-in; the header From is unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Peers
from test_announce_cli import setup
from test_recipients_web import announce_json, rows

from bot.channel_specs import verp_key
from bot.config import ConfigError, load_settings
from channels.verp import Verp, derive_key

SECRET = "verp-test-secret-key"
BOUNCES = f'[server]\nsecret_key = "{SECRET}"\n[bounces]\nreturn_path = "bounces@example.com"\n'


def test_each_email_has_its_own_signed_return_path(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path, people=6, extra=BOUNCES)
    report = announce_json(cli, config, "everyone", "email", "info", "VERP")
    ids = dict(rows(db_url, "SELECT address, id FROM delivery WHERE notification_id = :n", n=report["id"]))
    verp = Verp("bounces@example.com", derive_key(SECRET))
    assert len(peers.smtp.messages) == len(ids) == 6
    senders = set()
    for message in peers.smtp.messages:
        (to,) = message.rcpt_tos
        local, _, domain = message.mail_from.partition("@")
        assert domain == "example.com" and local.startswith("bounces+") and len(local) < 40
        assert verp.read(message.mail_from) == ids[to]  # the token names this very delivery
        assert message.message["From"] == "Herald <herald@example.com>"
        senders.add(message.mail_from)
    assert len(senders) == 6


def test_a_forged_or_altered_token_names_nothing() -> None:
    verp = Verp("bounces@example.com", derive_key(SECRET))
    token = verp.token(12345)
    assert verp.read(token) == 12345 and verp.read(f"<bounces+{token.upper()}@Example.com>") == 12345
    other = Verp("bounces@example.com", derive_key("another key"))
    assert verp.read(other.token(12345)) is None  # signed with someone else's key
    encoded, mac = token.split("-")
    assert verp.read(f"{encoded}1-{mac}") is None  # the id altered
    assert verp.read(f"{encoded}-{mac[:-1]}{'a' if mac[-1] != 'a' else 'b'}") is None
    assert verp.read(f"postmaster+{token}@example.com") is None  # another local part
    assert verp.read("bounces@example.com") is None and verp.read("") is None


def test_return_path_needs_the_secret_key_and_a_plain_address(tmp_path: Path) -> None:
    path = tmp_path / "h.toml"
    path.write_text('[bounces]\nreturn_path = "bounces+x@example.com"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    problems = raised.value.problems
    assert any(p.startswith("bounces.return_path: expected local@domain") for p in problems)
    assert any(p.startswith("server.secret_key: missing") for p in problems)
    path.write_text(BOUNCES, encoding="utf-8")
    assert verp_key(load_settings(path)) == derive_key(SECRET)
