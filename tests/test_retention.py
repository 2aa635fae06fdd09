"""Retention end to end on both databases: `herald db prune` and the leading `herald serve`'s scheduled
job delete finished notifications (deliveries, attempts) and resolved alerts older than the period,
and keep what is still open."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import Peers, run_herald
from sqlalchemy import func, select
from test_alert_cli import setup

from bot.alerts.tables import AlertGroup
from bot.store import open_store
from bot.tables import Attempt, Delivery, Notification


def counts(db_url: str) -> dict[str, int]:
    store = open_store(db_url, migrate=False)
    try:
        with store.begin() as connection:
            tables = (Notification, Delivery, Attempt, AlertGroup)
            return {
                table.__tablename__: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in tables
            }
    finally:
        store.dispose()


def announce(cli, config: str, title: str, *extra: str, code: int = 0) -> str:  # type: ignore[no-untyped-def]
    result = cli(
        "announce", "--config", config, "--yes", "--json", "--audience", "everyone",
        "--channels", "email", "--severity", "info", "--title", title, *extra,
    )  # fmt: skip
    assert result.exit_code == code, result.stderr
    return str(json.loads(result.stdout)["id"])


def test_db_prune_deletes_what_finished_before_the_period_and_keeps_the_rest(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("data", "554 5.6.0 content rejected", times=1)  # a failure leaves an attempt row
    done = announce(cli, config, "Printer moved", "--wait", code=1)  # exit 1: a delivery failed
    alert = ["alert", "--config", config, "--severity", "critical", "--label", "team=net"]
    assert cli(*alert, "--summary", "Core router down", "--label", "site=a", "--wait").exit_code == 0
    resolved = cli(*alert, "--summary", "Core router down", "--label", "site=a", "--resolve", "--wait")
    assert resolved.exit_code == 0, resolved.stderr
    firing = cli(*alert, "--summary", "Uplink flapping", "--label", "site=b", "--wait", "--json")
    assert firing.exit_code == 0, firing.stderr
    still_firing = json.loads(firing.stdout)["id"]
    queued = announce(cli, config, "Office closed Friday")  # no dispatcher runs: it stays queued
    before = counts(db_url)
    assert before["notification"] == 5 and before["alert_group"] == 2

    kept = cli("db", "prune", "--config", config)  # the default period (400 days) keeps all of it
    assert kept.exit_code == 0, kept.stderr
    assert kept.stdout.startswith("deleted 0 notification(s)")
    assert counts(db_url) == before

    time.sleep(1.2)
    pruned = cli("db", "prune", "--config", config, "--older-than", "1s")
    assert pruned.exit_code == 0, pruned.stderr
    # the announcement (3 people), the page and its resolution (2 people each, email and SMS)
    assert pruned.stdout.strip() == (
        "deleted 3 notification(s) with 11 deliveries and 1 attempts, 1 resolved alert group(s), "
        "0 inbound SMS record(s)"
    )
    after = counts(db_url)
    assert after["notification"] == 2 and after["alert_group"] == 1
    assert after["delivery"] == before["delivery"] - 11
    assert after["attempt"] == before["attempt"] - 1  # sends have no attempt row (sent_by on the delivery)
    gone = cli("status", done, "--config", config)
    assert gone.exit_code == 2 and "no notification" in gone.stderr
    for kept_id in (queued, still_firing):  # still open: kept however old
        assert cli("status", kept_id, "--config", config, "--json").exit_code == 0

    again = cli("db", "prune", "--config", config, "--older-than", "1s")
    assert again.stdout.startswith("deleted 0 notification(s)")
    bad = cli("db", "prune", "--config", config, "--older-than", "soon")
    assert bad.exit_code == 2 and "--older-than" in bad.stderr
    assert counts(db_url) == after


def test_leading_serve_prunes_on_schedule(peers: Peers, db_url: str, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    extra = f'[server]\nport = {port}\n[retention]\nkeep_for = "1s"\nevery = "1s"\n'
    config = setup(cli, peers, db_url, tmp_path, extra)
    peers.smtp.fail("data", "554 5.6.0 content rejected", times=1)  # a failure leaves an attempt row
    done = announce(cli, config, "Printer moved", "--wait", code=1)  # exit 1: a delivery failed
    assert counts(db_url)["attempt"] == 1
    serve = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--config", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90  # serve's start-up, then a 1 s tick: generous for a loaded CI
        while run_herald("status", done, "--config", config).exit_code == 0:
            assert time.monotonic() < deadline, "the scheduled purge never ran"
            time.sleep(0.5)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    assert serve.returncode == 0
    assert counts(db_url)["attempt"] == 0


def test_db_prune_forgets_inbound_sms_received_before_their_period(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    """Inbound SMS records (replay protection for /hooks/twilio/inbound) go after [retention]
    inbound_sms_for (90 days by default): the webhook stamps them with its injected clock, 91 and 89
    days ago; `herald db prune` removes the older one only. A replay of the one kept still changes
    nothing; the forgotten one is answered as a new message."""
    from test_recipients_web import SERVER_TOML, WebServer, rows
    from test_twilio_webhooks import INBOUND, post_signed, sms_in

    from bot.clock import ManualClock

    config = setup(cli, peers, db_url, tmp_path, SERVER_TOML)
    day = 86400.0
    clock = ManualClock(time.time() - 91 * day)
    server = WebServer(config, clock=clock)
    try:
        old, recent = sms_in("HELP", "+4915110000001"), sms_in("HELP", "+4915110000002")
        assert post_signed(server, INBOUND, old).status_code == 200
        clock.advance(2 * day)
        assert post_signed(server, INBOUND, recent).status_code == 200
        assert len(rows(db_url, "SELECT message_sid FROM inbound_sms")) == 2

        pruned = cli("db", "prune", "--config", config)
        assert pruned.exit_code == 0, pruned.stderr
        assert pruned.stdout.strip().endswith(", 1 inbound SMS record(s)")
        assert rows(db_url, "SELECT message_sid FROM inbound_sms") == [(recent["MessageSid"],)]
        again = cli("db", "prune", "--config", config, "--older-than", "1s")  # notifications only
        assert again.stdout.strip().endswith(", 0 inbound SMS record(s)")

        replayed = post_signed(server, INBOUND, recent)
        assert replayed.status_code == 200
        assert rows(db_url, "SELECT count(*) FROM inbound_sms") == [(1,)]  # seen: nothing new stored
        assert post_signed(server, INBOUND, old).status_code == 200  # forgotten: taken as new
        assert rows(db_url, "SELECT count(*) FROM inbound_sms") == [(2,)]
    finally:
        server.close()

    short = tmp_path / "short.toml"
    short.write_text(Path(config).read_text(encoding="utf-8") + '\n[retention]\ninbound_sms_for = "1h"\n')
    refused = cli("db", "prune", "--config", str(short))
    assert refused.exit_code == 2 and "inbound_sms_for" in refused.stderr
