"""Peak memory of ``herald serve`` while 16 MiB unsigned bodies are posted to every POST route.

Starts a real ``herald serve`` (SQLite, a temporary directory, Slack with a signing secret, Twilio
configured, every webhook with a token), reads its VmHWM (peak resident set) from /proc after start-up
as the baseline, posts a 16 MiB body without credentials to each route (streamed, so the client never
holds it either, and with a declared Content-Length as well as chunked), then reads VmHWM again. Prints
the status each route answered and both figures. Linux only (/proc).

    python bench/oversize_rss.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

SIZE = 16 * 1024 * 1024
ROUTES = [
    "/slack/events",
    "/hooks/alertmanager",
    "/hooks/grafana",
    "/hooks/alerts",
    "/hooks/twilio/status",
    "/hooks/twilio/inbound",
    "/u/some-token",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def chunks() -> Iterator[bytes]:
    block = b"x" * 65536
    for _ in range(SIZE // len(block)):
        yield block


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "herald.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp}/herald.db"\n[server]\nport = {port}\n'
            '[slack]\nbot_token = "xoxb-bench"\nsigning_secret = "bench-secret"\napi_url = "http://127.0.0.1:9/"\n'
            '[twilio]\naccount_sid = "AC00000000000000000000000000000000"\nauth_token = "bench-token"\n'
            'from_number = "+15005550006"\napi_url = "http://127.0.0.1:9"\n'
            '[webhooks.alertmanager]\ntoken = "t1"\n[webhooks.grafana]\nhmac_secret = "s"\n'
            '[webhooks.alerts]\ntoken = "t2"\n',
            encoding="utf-8",
        )
        serve = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not start")
                time.sleep(0.2)
            baseline = vm_hwm_kib(serve.pid)
            with httpx.Client(timeout=60) as http:
                for route in ROUTES:
                    declared = http.post(url + route, content=b"x" * SIZE)
                    streamed = http.post(url + route, content=chunks())
                    answers = f"{declared.status_code} (Content-Length), {streamed.status_code} (chunked)"
                    print(f"{route}: {answers}")
            peak = vm_hwm_kib(serve.pid)
            print(f"VmHWM after start-up: {baseline / 1024:.1f} MiB; after the bodies: {peak / 1024:.1f} MiB")
        finally:
            serve.terminate()
            serve.wait(timeout=30)


if __name__ == "__main__":
    os.environ.pop("HERALD_CONFIG", None)
    main()
