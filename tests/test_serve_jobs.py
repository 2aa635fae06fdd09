"""`herald serve` runs the scheduled directory sync (the leader's job) from the configured file."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_herald


def test_serve_syncs_the_directory_on_schedule(db_url: str, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("id,name,email\na1,Ann,ann@example.com\nb2,Bob,bob@example.com\n", "utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[server]\nport = {port}\n'
        f'[directory]\nsource = "file"\npath = "{people}"\nsync_every = "2s"\n',
        "utf-8",
    )
    serve = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 40
        count = 0
        while time.monotonic() < deadline:
            shown = run_herald("directory", "show", "everyone", "--json", "--config", str(config))
            if shown.exit_code == 0:
                count = json.loads(shown.stdout)["count"]
                if count == 2:
                    break
            time.sleep(0.5)
        assert count == 2
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    assert serve.returncode == 0
