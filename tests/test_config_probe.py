"""`herald config check --probe`, driven through the CLI against the real SMTP server (with AUTH), the
Twilio stand-in and the Slack stand-in on 127.0.0.1: one line per provider, exit 1 naming a provider
that does not answer, never a secret, the run audited."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TWILIO_SID, TWILIO_TOKEN, Peers
from ldap_server import SERVICE_DN, SERVICE_PASSWORD, LdapServer
from sqlalchemy import select

from bot.standins.slack import SlackStandIn
from bot.standins.smtp import SmtpStandIn
from bot.store import open_store
from bot.tables import AuditEntry

SMTP_USER, SMTP_PASSWORD = "herald", "smtp-Secret-pw"
SLACK_TOKEN = "xoxb-probe-Secret-token"
SIGNING_SECRET = "probe-Signing-secret"
SECRETS = (SMTP_PASSWORD, SLACK_TOKEN, TWILIO_TOKEN, SIGNING_SECRET)


@pytest.fixture
def providers(peers: Peers) -> Iterator[tuple[Peers, SlackStandIn]]:
    """The peers with an SMTP server that wants AUTH, and a Slack stand-in."""
    peers.call(peers.smtp.stop())
    peers.smtp = SmtpStandIn(username=SMTP_USER, password=SMTP_PASSWORD)
    peers.call(peers.smtp.start())
    slack = SlackStandIn(token=SLACK_TOKEN)
    peers.call(slack.start())
    try:
        yield peers, slack
    finally:
        peers.call(slack.close())


def write(
    tmp_path: Path,
    peers: Peers,
    slack: SlackStandIn,
    db_url: str,
    password: str = SMTP_PASSWORD,
    token: str = SLACK_TOKEN,
    extra: str = "",
) -> str:
    text = peers.config(db_url, extra).replace(
        'security = "none"\n', f'security = "none"\nusername = "{SMTP_USER}"\npassword = "{password}"\n'
    )
    text += (
        f'[slack]\nbot_token = "{token}"\nsigning_secret = "{SIGNING_SECRET}"\napi_url = "{slack.api_url}"\n'
    )
    path = tmp_path / "herald.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


def probe(cli: Any, config: str) -> Any:
    result = cli("config", "check", "--probe", "--config", config)
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    return result


def audited(db_url: str) -> list[AuditEntry]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return list(session.exec(select(AuditEntry).order_by(AuditEntry.id)).scalars())  # type: ignore[call-overload, arg-type]
    finally:
        store.dispose()


def test_every_provider_answers(
    cli: Any, providers: tuple[Peers, SlackStandIn], db_url: str, tmp_path: Path
) -> None:
    peers, slack = providers
    assert cli("db", "upgrade", "--config", write(tmp_path, peers, slack, db_url)).exit_code == 0
    result = probe(cli, write(tmp_path, peers, slack, db_url))
    assert (result.exit_code, result.stderr) == (0, "")
    lines = [line for line in result.stdout.splitlines() if not line.startswith("note: ")]
    assert lines[0].startswith("ok: ")
    assert lines[1].startswith("ok  database ")
    assert lines[2] == f"ok  smtp 127.0.0.1:{peers.smtp.port} (no tls, auth)"
    assert lines[3] == f"ok  twilio {peers.twilio.url.removeprefix('http://')} account {TWILIO_SID} (active)"
    assert lines[4] == f"ok  slack {slack.api_url.split('/')[2]} (team Herald Stand-in, user herald)"
    assert len(lines) == 5
    assert peers.smtp.messages == [] and peers.twilio.messages == []  # nothing was sent
    assert [call.method for call in slack.calls] == ["auth.test"]
    [entry] = audited(db_url)
    assert (entry.actor, entry.action, entry.subject) == ("cli", "config.probe", "database,smtp,twilio,slack")
    assert json.loads(entry.detail)["failed"] == []


@pytest.mark.parametrize("wrong", ["smtp", "twilio", "slack"])
def test_a_wrong_secret_fails_naming_the_provider(
    cli: Any, providers: tuple[Peers, SlackStandIn], db_url: str, tmp_path: Path, wrong: str
) -> None:
    peers, slack = providers
    config = write(
        tmp_path,
        peers,
        slack,
        db_url,
        password="Wrong-smtp-pw" if wrong == "smtp" else SMTP_PASSWORD,
        token="xoxb-Wrong-token" if wrong == "slack" else SLACK_TOKEN,
        extra="",
    )
    if wrong == "twilio":
        config_text = Path(config).read_text().replace(f'"{TWILIO_TOKEN}"', '"Wrong-twilio-token"')
        Path(config).write_text(config_text)
    assert cli("db", "upgrade", "--config", config).exit_code == 0
    result = probe(cli, config)
    assert result.exit_code == 1
    for secret in ("Wrong-smtp-pw", "xoxb-Wrong-token", "Wrong-twilio-token"):
        assert secret not in result.stdout + result.stderr
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    expected = {
        "smtp": "FAIL smtp: 127.0.0.1:{port}: 535 5.7.8 Authentication credentials invalid",
        "twilio": "FAIL twilio: 20003 Authentication Error - invalid username",
        "slack": "FAIL slack: {slack_host}: invalid_auth",
    }[wrong].format(port=peers.smtp.port, slack_host=slack.api_url.split("/")[2])
    assert failures == [expected]
    assert result.stderr.endswith(f"1 of 4 provider(s) did not answer: {wrong}\n")
    [entry] = audited(db_url)  # the database answered: the run is audited
    assert json.loads(entry.detail)["failed"] == [wrong]


def test_unreachable_providers_and_starttls_the_server_does_not_offer(
    cli: Any, providers: tuple[Peers, SlackStandIn], db_url: str, tmp_path: Path
) -> None:
    peers, slack = providers
    port = closed_port()
    config = write(tmp_path, peers, slack, db_url)
    text = Path(config).read_text().replace('security = "none"', 'security = "starttls"')
    text = text.replace(peers.twilio.url, f"http://127.0.0.1:{port}")
    Path(config).write_text(text)
    result = probe(cli, config)
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if not line.startswith("note: ")]
    assert lines[2].startswith(f"FAIL smtp: 127.0.0.1:{peers.smtp.port}: ")
    assert "STARTTLS" in lines[2]
    assert lines[3].startswith(f"FAIL twilio: 127.0.0.1:{port}: ")
    assert lines[4].startswith("ok  slack ")
    note, summary = result.stderr.splitlines()
    assert note.startswith("note: probe not audited: database ")  # not migrated: no audit_log yet
    assert summary == "2 of 4 provider(s) did not answer: smtp, twilio"


def test_an_unreachable_database_fails_and_nothing_is_audited(
    cli: Any, providers: tuple[Peers, SlackStandIn], tmp_path: Path
) -> None:
    peers, slack = providers
    port = closed_port()
    url = f"postgresql://herald:Db-Secret-pw@127.0.0.1:{port}/herald"
    result = probe(cli, write(tmp_path, peers, slack, url))
    assert result.exit_code == 1
    assert "Db-Secret-pw" not in result.stdout + result.stderr
    assert f"\nFAIL database: database postgresql://herald:***@127.0.0.1:{port}/herald: " in result.stdout
    assert "\nok  smtp " in result.stdout
    assert result.stderr == "1 of 4 provider(s) did not answer: database\n"  # and no note: not audited


def test_without_probe_config_check_connects_to_nothing(
    cli: Any, providers: tuple[Peers, SlackStandIn], db_url: str, tmp_path: Path
) -> None:
    peers, slack = providers
    result = cli("config", "check", "--config", write(tmp_path, peers, slack, db_url, token="xoxb-Wrong"))
    assert result.exit_code == 0
    assert [line for line in result.stdout.splitlines() if not line.startswith("note: ")] == [
        result.stdout.splitlines()[-1]
    ]
    assert slack.calls == []


def test_ldap_bind(cli: Any, peers: Peers, slapd: LdapServer, db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    ldap = f'[directory]\nsource = "ldap"\n[directory.ldap]\nurl = "{slapd.url}"\nbind_dn = "{SERVICE_DN}"\n'
    config.write_text(peers.config(db_url, ldap), encoding="utf-8")
    run = ["config", "check", "--probe", "--config", str(config)]

    good = cli(*run, env={"HERALD_DIRECTORY__LDAP__BIND_PASSWORD": SERVICE_PASSWORD})
    assert good.exit_code == 0, good.stdout + good.stderr
    assert f"\nok  ldap {slapd.url} (bind as {SERVICE_DN})\n" in good.stdout

    bad = cli(*run, env={"HERALD_DIRECTORY__LDAP__BIND_PASSWORD": "Wrong-ldap-pw"})
    assert bad.exit_code == 1
    assert "Wrong-ldap-pw" not in bad.stdout + bad.stderr and SERVICE_PASSWORD not in bad.stdout
    assert f"\nFAIL ldap: {slapd.url}: bind as '{SERVICE_DN}' refused: " in bad.stdout
    assert bad.stderr.endswith("did not answer: ldap\n")
