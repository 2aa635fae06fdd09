"""Running a real server program (dovecot, slapd) in the foreground for a test: a free loopback port,
waiting until it accepts connections, and stopping it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def free_port() -> int:
    """A loopback port nothing listens on (a server started right after takes it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_listening(
    argv: Sequence[str], log: Path, port: int, timeout: float, logs: Callable[[], str]
) -> subprocess.Popen[bytes]:
    """Start ``argv`` (output to ``log``); return it once 127.0.0.1:``port`` accepts connections.

    Raises RuntimeError, with ``logs()``, when the program exits or does not listen within ``timeout``.
    """
    with log.open("wb") as output:
        process = subprocess.Popen(list(argv), stdout=output, stderr=subprocess.STDOUT)
    name = Path(argv[0]).name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited: {logs()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return process
        time.sleep(0.05)
    stop_process(process)
    raise RuntimeError(f"{name} did not start listening in time: {logs()}")


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate ``process`` if it still runs (kill it after 10 s)."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
