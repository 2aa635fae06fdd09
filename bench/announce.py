"""The whole engine through the CLI: `herald announce --wait` for N people, against same-run baselines.

One command: `.venv/bin/python bench/announce.py [--channel email|sms] [--n 5000] [--db sqlite|postgresql]
[--runs 3]`

- email: N personalised messages through `herald announce --wait` (ledger, claims, rendering, the SMTP
  pool of 8 connections, batched outcome writes) into Postfix's `smtp-sink`, against (a) a bare
  aiosmtplib loop sending pre-rendered bytes over the same 8 connections (the Python ceiling).
  Target: Herald >= 0.5x (a).
- sms: N messages through `herald announce --wait` (throttles off, `max_concurrency` 32) into the
  Twilio stand-in in its own process, against raw aiohttp posting the same form bodies at the same
  concurrency. Target: Herald >= 0.6x raw.

Herald's figure is the ledger's own: messages / (last delivery - first delivery), so process start-up
and the directory import are excluded; the wall time of the whole command is printed too.
Also prints the ledger rates: deliveries written per second (the notification's INSERT ... SELECT) and
outcomes recorded per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import email_send
import sms as sms_bench
from sqlalchemy import create_engine, text

from channels.email import EmailChannel, EmailSettings, build_message

ROOT = Path(__file__).resolve().parents[1]
PG = os.environ.get("HERALD_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def database(kind: str, tmp: Path) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}", None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(PG.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return f"{PG}?options=-csearch_path%3D{schema}", schema


def drop(schema: str | None) -> None:
    if schema is None:
        return
    engine = create_engine(PG.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def herald_run(channel: str, n: int, url: str, peer: str, tmp: Path) -> dict[str, float]:
    config = tmp / "bench.toml"
    peer_section = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {peer}\nsecurity = "none"\nmax_connections = 8\n'
        'rate_per_second = 0\nfrom_address = "Herald <herald@example.com>"\n'
        if channel == "email"
        else f'[twilio]\naccount_sid = "{sms_bench.SID}"\nauth_token = "{sms_bench.TOKEN}"\n'
        f'from_number = "{sms_bench.FROM}"\napi_url = "{peer}"\nrate_per_second = 0\nmax_concurrency = 32\n'
    )
    config.write_text(
        f'[database]\nurl = "{url}"\n{peer_section}[quiet_hours]\nkinds = []\n'
        "[dispatcher]\nbatch_size = 500\n",
        encoding="utf-8",
    )
    people = tmp / "people.csv"
    with people.open("w", encoding="utf-8") as handle:
        handle.write("id,name,email,phone\n")
        for i in range(n):
            handle.write(f"p{i},Person Number{i},user{i}@example.com,+491510{i:07d}\n")
    herald = [sys.executable, "-m", "bot"]
    subprocess.run(
        [*herald, "directory", "import", str(people), "--config", str(config)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    started = time.perf_counter()
    done = _run_measured(
        [
            *herald,
            "announce",
            "--config",
            str(config),
            "--yes",
            "--wait",
            "--json",
            "--audience",
            "everyone",
            "--channels",
            channel,
            "--severity",
            "maintenance",
            "--title",
            "Patch Tuesday: servers reboot tonight",
            "--body",
            email_send.BODY,
        ],
    )
    wall = time.perf_counter() - started
    status = json.loads(done[0])
    assert status["channels"][channel]["sent"] == n, status["channels"]
    sla = status["sla"]
    span = sla["last_delivery_s"] - sla["first_delivery_s"]
    return {"rate": (n - 1) / span, "wall": wall, "cpu_ms": done[1] / n * 1000}


def _run_measured(command: list[str]) -> tuple[bytes, float]:
    """Run ``command`` in ROOT; its standard output and the CPU seconds it used (user + system)."""
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise subprocess.CalledProcessError(child.returncode, command)
        out.seek(0)
        return out.read(), usage.ru_utime + usage.ru_stime


def baseline(channel: str, n: int, peer: str) -> float:
    if channel == "email":
        people = email_send.recipients(n)
        settings = EmailSettings(
            host="127.0.0.1", port=int(peer), security="none", from_address=email_send.FROM
        )
        sample = build_message(EmailChannel(settings).prepare(email_send.NOTICE), people[0])
        return email_send.once(email_send.bare(int(peer), people, 8, sample))()
    return asyncio.run(sms_bench.raw_aiohttp(peer, n, 32, "Servers reboot at 22:00 CET."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", choices=("email", "sms"), default="email")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    herald_rates, walls, base_rates, cpus = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        context = email_send.sink("auto") if args.channel == "email" else _standin()
        with context as peer_info:
            peer, label = peer_info
            print(f"{args.channel}: {args.n} messages into {label}, database {args.db}", flush=True)
            for run in range(args.runs):
                url, schema = database(args.db, tmp)
                try:
                    result = herald_run(args.channel, args.n, url, str(peer), tmp)
                finally:
                    drop(schema)
                base = baseline(args.channel, args.n, str(peer))
                herald_rates.append(result["rate"])
                walls.append(result["wall"])
                cpus.append(result["cpu_ms"])
                base_rates.append(base)
                print(
                    f"  run {run + 1}: herald {result['rate']:7.0f} msg/s (command {result['wall']:.1f}s), "
                    f"baseline {base:7.0f} msg/s, herald CPU {result['cpu_ms']:.3f} ms/msg",
                    flush=True,
                )
    herald_median, base_median = statistics.median(herald_rates), statistics.median(base_rates)
    print(
        f"herald announce --wait: {herald_median:7.0f} msg/s (median); "
        f"whole command {statistics.median(walls):.1f}s"
    )
    print(
        f"baseline ({'bare aiosmtplib, pre-rendered' if args.channel == 'email' else 'raw aiohttp'}): "
        f"{base_median:7.0f} msg/s (median)"
    )
    print(f"herald process CPU: {statistics.median(cpus):.3f} ms per message (median)")
    print(f"ratio: {herald_median / base_median:.2f}x")


class _standin:
    def __enter__(self) -> tuple[str, str]:
        self.process, url = sms_bench.start_standin()
        return url, "the Twilio stand-in (own process)"

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


if __name__ == "__main__":
    main()
