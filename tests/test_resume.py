"""Nothing accepted is lost: a dispatcher killed mid-fan-out (kill -9) is resumed by the next one, and at
most the messages in flight at the kill go out twice. Driven through the CLI as separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from conftest import Peers, run_herald
from test_announce_cli import write_directory


def start_worker(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", "worker", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )


def wait_until(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_killed_worker_is_resumed_without_loss(peers: Peers, db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(
        peers.config(db_url, '[dispatcher]\nlease = "4s"\npoll_interval = "0.1s"\n'), encoding="utf-8"
    )
    env = {"HERALD_SMTP__RATE_PER_SECOND": "25", "HERALD_TWILIO__RATE_PER_SECOND": "25"}
    os.environ.update(env)
    try:
        directory = write_directory(tmp_path / "people.csv", 100)
        assert run_herald("directory", "import", str(directory), "--config", str(config)).exit_code == 0
        queued = run_herald(
            "announce",
            "--config",
            str(config),
            "--yes",
            "--json",
            "--audience",
            "everyone",
            "--channels",
            "email,sms",
            "--severity",
            "outage",
            "--title",
            "Core switch down",
        )
        assert queued.exit_code == 0, queued.stderr
        notification = json.loads(queued.stdout)["id"]

        first = start_worker(config)
        wait_until(lambda: len(peers.smtp.messages) >= 30 and len(peers.twilio.messages) >= 20)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        mid = json.loads(run_herald("status", notification, "--json", "--config", str(config)).stdout)
        assert mid["left"] > 0

        second = start_worker(config)
        try:

            def finished() -> bool:
                status = run_herald("status", notification, "--json", "--config", str(config))
                return json.loads(status.stdout)["state"] == "done"

            wait_until(finished, timeout=90)
        finally:
            second.send_signal(signal.SIGTERM)
            output, _ = second.communicate(timeout=30)
        assert second.returncode == 0, output
    finally:
        for key in env:
            os.environ.pop(key, None)

    final = json.loads(run_herald("status", notification, "--json", "--config", str(config)).stdout)
    assert final["channels"]["email"]["sent"] == 100
    assert final["channels"]["sms"]["sent"] == 75
    emails = Counter(rcpt for message in peers.smtp.messages for rcpt in message.rcpt_tos)
    texts = Counter(message.to for message in peers.twilio.messages)
    assert len(emails) == 100 and len(texts) == 75  # everyone reached
    # At most what was in flight at the kill went out twice.
    assert sum(emails.values()) - 100 <= 4  # smtp.max_connections
    assert sum(texts.values()) - 75 <= 8  # twilio.max_concurrency
