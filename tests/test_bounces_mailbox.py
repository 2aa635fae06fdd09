"""The bounce mailbox against a real IMAP server (a private Dovecot): real-looking reports from
tests/data/bounces (Postfix, Exchange, Gmail, Exim, a delay warning, an out-of-office reply, an ARF
complaint, unrelated mail) are APPENDed for mail Herald sent through the SMTP stand-in with VERP, then
read by the poll; and end to end, `herald serve` reads a bounce and the next announcement skips the
address. Also: each sample is classified as expected, and an unreachable mailbox is logged once."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Peers, require_program
from dovecot_server import PASSWORD, USER, DovecotServer, free_port
from test_announce_cli import setup
from test_recipients_web import announce_json, deliveries, rows

from bot.app import Herald
from bot.config import load_settings
from bot.recipients.bounce_imap import BounceMailbox
from bot.recipients.bounce_mail import parse_message

SAMPLES = Path(__file__).parent / "data" / "bounces"
PLACEHOLDER_VERP = b"bounces+1a-aaaaaaaaaaaaa@example.com"
PLACEHOLDER_ID = b"<n1.1@example.com>"

# file: [kind, recipient, status, action] of its one report, or [kind] when it has none (bench/bounces.py
# reads the same file)
EXPECTED: dict[str, tuple[str, ...]] = {
    name: tuple(value) for name, value in json.loads((SAMPLES / "expected.json").read_text()).items()
}
SAMPLE_RECIPIENT = {name: expected[1] for name, expected in EXPECTED.items() if len(expected) > 1}


def classify(raw: bytes) -> tuple[str, ...]:
    parsed = parse_message(raw, "bounces")
    if not parsed.reports:
        return (parsed.kind,)
    (report,) = parsed.reports
    return parsed.kind, report.recipient, report.status, report.action


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_is_classified(name: str) -> None:
    raw = (SAMPLES / name).read_bytes()
    assert classify(raw) == EXPECTED[name]
    parsed = parse_message(raw, "bounces")
    if name not in ("unrelated.eml",):
        assert all(r.token == PLACEHOLDER_VERP.decode() for r in parsed.reports)


def bounce_for(name: str, verp: str, address: str, message_id: str) -> bytes:
    """A sample rewritten as the bounce of one of Herald's own messages."""
    raw = (SAMPLES / name).read_bytes().replace(PLACEHOLDER_VERP, verp.encode())
    raw = raw.replace(PLACEHOLDER_ID, message_id.encode())
    return raw.replace(SAMPLE_RECIPIENT[name].encode(), address.encode())


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[DovecotServer]:
    server = DovecotServer(tmp_path / "dovecot", require_program("dovecot"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def mailbox_toml(port: int, poll_every: str = "1m", serve_port: int = 0) -> str:
    return (
        f'[server]\nsecret_key = "mailbox-test-key"\nport = {serve_port}\n'
        f'[bounces]\nreturn_path = "bounces@example.com"\nimap_url = "imap://127.0.0.1:{port}"\n'
        f'username = "{USER}"\npassword = "{PASSWORD}"\npoll_every = "{poll_every}"\n'
    )


def sent_mail(peers: Peers) -> dict[str, tuple[str, str]]:
    """address -> (VERP envelope sender, Message-ID) of what the SMTP stand-in received last."""
    return {m.rcpt_tos[0]: (m.mail_from, str(m.message["Message-ID"])) for m in peers.smtp.messages}


def test_the_poll_acts_on_each_kind_of_message_once(  # type: ignore[no-untyped-def]
    cli, peers: Peers, dovecot: DovecotServer, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, db_url, tmp_path, extra=mailbox_toml(dovecot.port))
    first = announce_json(cli, config, "dept:engineering", "email", "info", "One")
    mail = sent_mail(peers)
    p = {n: f"p{n}@example.com" for n in range(0, 12, 2)}
    local, domain = mail[p[8]][0].split("@")
    forged_verp = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"  # the MAC altered
    for name, n in (("postfix_dsn.eml", 0), ("gmail_style.eml", 2), ("delayed_dsn.eml", 4)):
        dovecot.append(bounce_for(name, mail[p[n]][0], p[n], mail[p[n]][1]))
    dovecot.append(bounce_for("exim_plain.eml", mail[p[10]][0], p[10], mail[p[10]][1]))
    dovecot.append(bounce_for("arf_complaint.eml", mail[p[6]][0], p[6], mail[p[6]][1]))
    dovecot.append(bounce_for("exchange_ndr.eml", forged_verp, p[8], mail[p[8]][1]))
    dovecot.append((SAMPLES / "out_of_office.eml").read_bytes())
    dovecot.append((SAMPLES / "unrelated.eml").read_bytes())

    mailbox = BounceMailbox(Herald.build(load_settings(config)))
    counts = mailbox.poll_once()
    assert dict(counts) == {
        "bounce:suppressed": 2,  # Postfix 5.1.1, Exim 5.1.1
        "bounce:failed": 1,  # Gmail 5.2.2 (over quota): failed, not suppressed
        "bounce:delayed": 1,
        "bounce:forged": 1,
        "complaint:complaint": 1,
        "autoreply": 1,
        "unrelated": 1,
    }
    state = deliveries(db_url, first["id"])
    assert state[("p0", "email")][0] == "failed" and state[("p0", "email")][1].startswith(
        "bounced: 5.1.1 smtp;"
    )
    assert state[("p2", "email")][0] == "failed" and state[("p2", "email")][1].startswith("bounced: 5.2.2")
    assert state[("p4", "email")] == ("sent", None)
    assert state[("p8", "email")] == ("sent", None)  # the forged token changed nothing
    assert dict(rows(db_url, "SELECT address, source FROM suppression")) == {p[0]: "bounce", p[10]: "bounce"}
    assert dovecot.seen() == (8, 8)
    assert mailbox.poll_once() == {}  # each message once
    mailbox.herald.store.dispose()

    second = announce_json(cli, config, "dept:engineering", "email", "info", "Two")
    state = deliveries(db_url, second["id"])
    assert state[("p0", "email")][0] == "suppressed" and state[("p10", "email")][0] == "suppressed"
    assert state[("p6", "email")][0] == "suppressed"  # complained: no more non-mandatory email
    assert state[("p2", "email")][0] == "sent"
    critical = announce_json(cli, config, "person:p6@example.com", "email", "critical", "Three")
    assert deliveries(db_url, critical["id"])[("p6", "email")][0] == "sent"  # mandatory still reaches


def test_an_unreachable_mailbox_is_logged_once_and_retried(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = DovecotServer(tmp_path / "dovecot", require_program("dovecot"), port=free_port())
    config = setup(cli, peers, db_url, tmp_path, people=2, extra=mailbox_toml(server.port))
    mailbox = BounceMailbox(Herald.build(load_settings(config)))
    caplog.set_level(logging.INFO, "herald.bounces.imap")
    assert mailbox.poll_once() == {} and mailbox.poll_once() == {}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage() and mailbox.down
    server.start()
    try:
        server.append((SAMPLES / "unrelated.eml").read_bytes())
        assert mailbox.poll_once() == {"unrelated": 1} and not mailbox.down
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        assert PASSWORD not in caplog.text
    finally:
        server.stop()
        mailbox.herald.store.dispose()


def test_serve_reads_a_bounce_and_the_next_announcement_skips_the_address(  # type: ignore[no-untyped-def]
    cli, peers: Peers, dovecot: DovecotServer, db_url: str, tmp_path: Path
) -> None:
    extra = mailbox_toml(dovecot.port, poll_every="1s", serve_port=free_port())
    config = setup(cli, peers, db_url, tmp_path, people=4, extra=extra)
    first = announce_json(cli, config, "everyone", "email", "info", "One")
    verp, message_id = sent_mail(peers)["p1@example.com"]
    dovecot.append(bounce_for("postfix_dsn.eml", verp, "p1@example.com", message_id))
    serve = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and deliveries(db_url, first["id"])[("p1", "email")][0] == "sent":
            time.sleep(0.2)
    finally:
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=30)
    assert serve.returncode == 0, stderr
    assert deliveries(db_url, first["id"])[("p1", "email")][0] == "failed", stderr
    assert dovecot.seen() == (1, 1)
    listed = json.loads(cli("suppressions", "list", "--json", "--config", config).stdout)
    assert [(e["address"], e["source"]) for e in listed["suppressions"]] == [("p1@example.com", "bounce")]
    before = len(peers.smtp.messages)
    second = announce_json(cli, config, "everyone", "email", "info", "Two")
    assert second["channels"]["email"]["suppressed"] == 1
    assert "p1@example.com" not in {m.rcpt_tos[0] for m in peers.smtp.messages[before:]}


def test_config_check_probe_logs_in_to_the_mailbox(  # type: ignore[no-untyped-def]
    cli, peers: Peers, dovecot: DovecotServer, db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, mailbox_toml(dovecot.port)), encoding="utf-8")
    dovecot.append((SAMPLES / "unrelated.eml").read_bytes())
    good = cli("config", "check", "--probe", "--config", str(config))
    assert good.exit_code == 0, good.stdout + good.stderr
    assert (
        f"\nok  imap 127.0.0.1:{dovecot.port} (no tls, login as {USER}, INBOX: 1 messages)\n" in good.stdout
    )
    bad = cli(
        "config", "check", "--probe", "--config", str(config), env={"HERALD_BOUNCES__PASSWORD": "Wrong-pw"}
    )
    assert bad.exit_code == 1 and bad.stderr.endswith("did not answer: imap\n")
    assert f"\nFAIL imap: 127.0.0.1:{dovecot.port}: " in bad.stdout
    assert "Wrong-pw" not in bad.stdout + bad.stderr and PASSWORD not in good.stdout + bad.stdout
    assert dovecot.seen() == (0, 1)  # the probe reads nothing
    empty = cli("config", "check", "--config", str(config), env={"HERALD_BOUNCES__PASSWORD": ""})
    assert empty.exit_code == 2 and "bounces.password" in empty.stderr
