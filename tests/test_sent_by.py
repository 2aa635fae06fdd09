"""A send is recorded on its delivery row (sent_at, sent_by), not as an attempt row; failures and retries
keep their attempt rows, and `herald report`'s workers section counts both (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Peers
from sqlalchemy import select
from test_alert_cli import setup

from bot.store import open_store
from bot.tables import Attempt, Delivery


def test_report_counts_sends_from_delivery_rows_and_failures_from_attempts(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("data", "554 5.6.0 content rejected", times=1)
    sent = cli(
        "announce", "--config", config, "--yes", "--wait", "--json", "--audience", "everyone",
        "--channels", "email", "--severity", "info", "--title", "Printer moved",
    )  # fmt: skip
    assert sent.exit_code == 1, sent.stderr  # one of the three failed
    store = open_store(db_url, migrate=False)
    try:
        with store.begin() as connection:
            rows = connection.execute(select(Delivery.state, Delivery.sent_by)).all()  # type: ignore[call-overload]
            attempts = connection.execute(select(Attempt.outcome, Attempt.worker)).all()  # type: ignore[call-overload]
    finally:
        store.dispose()
    assert sorted(state for state, _ in rows) == ["failed", "sent", "sent"]
    senders = {by for state, by in rows if state == "sent"}
    assert len(senders) == 1 and None not in senders
    assert [by for state, by in rows if state == "failed"] == [None]
    (worker,) = senders
    assert attempts == [("permanent", worker)]

    report = cli("report", "--config", config, "--json")
    assert report.exit_code == 0, report.stderr
    assert json.loads(report.stdout)["workers"] == {worker: {"sent": 2, "permanent": 1}}
