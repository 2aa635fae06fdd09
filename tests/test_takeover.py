"""A killed dispatcher's claims are taken over within 15 s (SPEC "Delivery semantics"), not when their
lease runs out: by its restart recognising the dead predecessor (SQLite and PostgreSQL), or by a live
worker once the dead one's heartbeat stops (PostgreSQL). The lease is set to 10 minutes here, so a
fan-out that finishes within the test's bounds can only have been taken over. Real ``herald worker``
processes, and an ``announce --wait`` dispatching itself, killed with SIGKILL mid-fan-out against a
slow SMTP server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from conftest import Peers, run_herald
from test_announce_cli import write_directory
from test_recipients_web import rows
from test_resume import start_worker, wait_until

PEOPLE = 60
MAX_CONNECTIONS = 4
LEASE_S = 600.0  # far beyond every wait below: the lease running out cannot explain a takeover
DEFAULT_LEASE_S = 60.0
EXTRA = f'[dispatcher]\nlease = "{int(LEASE_S)}s"\npoll_interval = "0.1s"\n'


def queue_fan_out(peers: Peers, db_url: str, tmp_path: Path) -> tuple[Path, str]:
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, EXTRA), encoding="utf-8")
    directory = write_directory(tmp_path / "people.csv", PEOPLE)
    assert run_herald("directory", "import", str(directory), "--config", str(config)).exit_code == 0
    queued = run_herald(
        "announce", "--config", str(config), "--yes", "--json", "--audience", "everyone",
        "--channels", "email", "--severity", "outage", "--title", "Core switch down",
    )  # fmt: skip
    assert queued.exit_code == 0, queued.stderr
    peers.smtp.stall("data", 0.25, times=None)  # slow enough to kill the worker mid-fan-out
    return config, json.loads(queued.stdout)["id"]


def status(config: Path, notification: str) -> dict[str, object]:
    return json.loads(run_herald("status", notification, "--json", "--config", str(config)).stdout)  # type: ignore[no-any-return]


def everyone_mailed(peers: Peers) -> bool:
    return len({rcpt for message in peers.smtp.messages for rcpt in message.rcpt_tos}) >= PEOPLE


def finish(peers: Peers, config: Path, notification: str) -> None:
    wait_until(lambda: everyone_mailed(peers), timeout=DEFAULT_LEASE_S)
    wait_until(lambda: status(config, notification)["state"] == "done", timeout=30)


def kill_mid_fan_out(worker: subprocess.Popen[str], peers: Peers) -> float:
    wait_until(lambda: len(peers.smtp.messages) >= 8)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=10)
    return time.time()


def stop(worker: subprocess.Popen[str]) -> str:
    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    return output


def assert_everyone_reached_once(peers: Peers, config: Path, notification: str, killed_at: float) -> None:
    final = status(config, notification)
    assert final["channels"]["email"]["sent"] == PEOPLE  # type: ignore[index]
    emails = Counter(rcpt for message in peers.smtp.messages for rcpt in message.rcpt_tos)
    assert len(emails) == PEOPLE
    assert sum(emails.values()) - PEOPLE <= MAX_CONNECTIONS  # at most what was in flight at the kill
    # Everything was sent before the default lease would have let anyone take it over.
    assert max(peers.arrivals) < killed_at + DEFAULT_LEASE_S
    resumed = min(t for t in peers.arrivals if t > killed_at) - killed_at
    print(f"first send {resumed:.1f}s after the kill, last {max(peers.arrivals) - killed_at:.1f}s")


def test_restart_takes_over_its_killed_predecessors_claims(peers: Peers, db_url: str, tmp_path: Path) -> None:
    config, notification = queue_fan_out(peers, db_url, tmp_path)
    killed_at = kill_mid_fan_out(start_worker(config), peers)
    assert status(config, notification)["left"] > 0  # type: ignore[operator]
    restarted = start_worker(config)
    try:
        finish(peers, config, notification)
    finally:
        output = stop(restarted)
    assert "took over" in output  # it recognised its dead predecessor and took its claims at once
    assert_everyone_reached_once(peers, config, notification, killed_at)


def test_live_worker_takes_over_when_a_peers_heartbeat_stops(
    peers: Peers, pg_url: str, tmp_path: Path
) -> None:
    config, notification = queue_fan_out(peers, pg_url, tmp_path)
    victim = start_worker(config)
    wait_until(lambda: len(peers.smtp.messages) >= 2)  # the victim holds claims before the survivor starts
    survivor = start_worker(config)
    try:
        killed_at = kill_mid_fan_out(victim, peers)
        finish(peers, config, notification)
    finally:
        output = stop(survivor)
    assert "stopped beating" in output
    assert_everyone_reached_once(peers, config, notification, killed_at)


def cli_claims(db_url: str) -> int:
    """Deliveries claimed (sending) by a command's own dispatching (``announce --wait``), per the ledger."""
    found = rows(db_url, "SELECT count(*) FROM delivery WHERE state = 'sending' AND lease_owner LIKE 'cli-%'")
    return int(found[0][0])


def test_live_worker_takes_over_a_killed_announce_wait(peers: Peers, db_url: str, tmp_path: Path) -> None:
    """``announce --wait`` dispatches itself, registered like a worker; a worker starts beside it (on
    SQLite too: the command's dispatching is not a second lasting one) and, once the command is
    killed mid-fan-out, takes its claims over (its pid is gone), far sooner than their 10-minute lease."""
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, EXTRA), encoding="utf-8")
    directory = write_directory(tmp_path / "people.csv", PEOPLE)
    assert run_herald("directory", "import", str(directory), "--config", str(config)).exit_code == 0
    # Slow enough that the command still fans out once the worker has started (the machine may be busy).
    peers.smtp.stall("data", 1.5, times=None)
    announcing = subprocess.Popen(
        [
            sys.executable, "-m", "bot", "announce", "--config", str(config), "--yes", "--wait", "--json",
            "--audience", "everyone", "--channels", "email", "--severity", "outage", "--title", "Core down",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_until(lambda: cli_claims(db_url) > 0)
    survivor = start_worker(config)
    try:
        assert survivor.stdout is not None
        said = next(line for line in survivor.stdout if line.startswith("herald"))  # after the log lines
        assert said.startswith("herald worker "), said  # not refused: it dispatches
        wait_until(lambda: cli_claims(db_url) > 0 and len(peers.smtp.messages) >= 8, timeout=120)
        announcing.send_signal(signal.SIGKILL)
        announcing.communicate(timeout=10)
        killed_at = time.time()
        wait_until(lambda: cli_claims(db_url) == 0, timeout=DEFAULT_LEASE_S)
        taken_over_after = time.time() - killed_at
        ((notification,),) = rows(db_url, "SELECT id FROM notification")
        finish(peers, config, str(notification))
    finally:
        if announcing.poll() is None:
            announcing.kill()
            announcing.communicate(timeout=10)
        output = stop(survivor)
    print(f"the killed command's claims were re-taken {taken_over_after:.1f}s after the kill")
    assert taken_over_after < LEASE_S / 10  # far within the lease: only the takeover explains it
    assert "stopped beating" in output and "cli-" in output
    assert_everyone_reached_once(peers, config, str(notification), killed_at)
