"""The channel ladder climbs without ``herald serve`` (SPEC "Confirmations and the channel ladder"): a
``herald worker`` runs the rung tick, so an announcement queued with ``--channels email>sms --confirm``
sends its SMS rung to the people who have not confirmed, whichever processes run. Several workers on
PostgreSQL start the rung once: each unconfirmed person gets one SMS, the confirmed none. Real
``herald worker`` processes against the SMTP and Twilio stand-ins; short SLA timings stand in for
real ones."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

from conftest import Peers, run_herald
from test_announce_cli import write_directory
from test_resume import start_worker, wait_until
from test_takeover import status, stop

from bot.recipients.confirmations import confirm
from bot.store import open_store

PEOPLE = 12  # every 4th has no phone: 9 can get an SMS
CONFIRMED = ("p0", "p1", "p2")
EXTRA = (
    '[sla.critical]\ndeliver_within = "20s"\nconfirm_within = "4s"\n[dispatcher]\npoll_interval = "0.1s"\n'
)


def queue_ladder(peers: Peers, db_url: str, tmp_path: Path) -> tuple[Path, str]:
    """Import the directory, announce with a ladder (no dispatcher yet), and have three confirm."""
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, EXTRA), encoding="utf-8")
    directory = write_directory(tmp_path / "people.csv", PEOPLE)
    assert run_herald("directory", "import", str(directory), "--config", str(config)).exit_code == 0
    queued = run_herald(
        "announce", "--config", str(config), "--yes", "--json", "--confirm", "--audience", "everyone",
        "--channels", "email>sms", "--severity", "critical", "--title", "Core down",
    )  # fmt: skip
    assert queued.exit_code == 0, queued.stderr
    notification = str(json.loads(queued.stdout)["id"])
    store = open_store(db_url, migrate=False)
    try:
        for person in CONFIRMED:
            assert confirm(store, notification, person, "email", 0.0) is not None
    finally:
        store.dispose()
    return config, notification


def expected_sms() -> set[str]:
    """The phones of the people who have not confirmed (and have one)."""
    return {f"+4915112345{i:03d}" for i in range(PEOPLE) if i % 4 != 3 and f"p{i}" not in CONFIRMED}


def climb(peers: Peers, config: Path, notification: str, dispatchers: list[subprocess.Popen[str]]) -> None:
    try:
        wait_until(lambda: len(peers.twilio.messages) >= len(expected_sms()), timeout=240)
        wait_until(lambda: status(config, notification)["state"] == "done", timeout=180)
    finally:
        for dispatcher in dispatchers:
            stop(dispatcher)
    final = status(config, notification)
    assert final["rungs"][0]["started_at"] is not None  # type: ignore[index]
    assert final["rungs"][0]["people"] == PEOPLE - len(CONFIRMED)  # type: ignore[index]
    sent = Counter(message.to for message in peers.twilio.messages)
    assert set(sent) == expected_sms() and set(sent.values()) == {1}  # the unconfirmed, once each
    assert len(peers.smtp.messages) == PEOPLE  # the first rung, to everyone


def test_a_worker_alone_starts_the_later_rung(peers: Peers, db_url: str, tmp_path: Path) -> None:
    config, notification = queue_ladder(peers, db_url, tmp_path)
    assert status(config, notification)["rungs"][0]["started_at"] is None  # type: ignore[index]
    climb(peers, config, notification, [start_worker(config)])


def test_several_workers_start_the_rung_once(peers: Peers, pg_url: str, tmp_path: Path) -> None:
    config, notification = queue_ladder(peers, pg_url, tmp_path)
    climb(peers, config, notification, [start_worker(config) for _ in range(3)])
