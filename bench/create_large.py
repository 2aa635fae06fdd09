"""A 100,000-recipient notification on SQLite: how long creating it takes, and the dispatcher's peak RSS.

One command: `.venv/bin/python bench/create_large.py [--n 100000] [--runs 3] [--no-send]`

- create: `service.announce` (the path of `herald announce --yes`: audience condition, the notification
  and one INSERT ... SELECT of its deliveries, the audit row) for N people imported with `herald directory
  import`, each run a new notification in the same database (medians of 3). Same-run baseline: the
  bare sqlite3 module inserting N rows of the same width into a table shaped like `delivery`
  (one executemany, one commit), which is the floor for writing the rows at all.
- send: `herald announce --yes --wait --json` of N emails into Postfix's `smtp-sink` (Herald's aiosmtpd
  stand-in without it) as a child process; its peak RSS (ru_maxrss from wait4) and the ledger's rate.
  Targets (issue 20): created in <= 3 s, peak RSS <= 250 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import email_send

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp: Path, port: int) -> Path:
    config = tmp / "bench.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp / "bench.db"}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nmax_connections = 8\n'
        'rate_per_second = 0\nfrom_address = "Herald <herald@example.com>"\n'
        "[quiet_hours]\nkinds = []\n[dispatcher]\nbatch_size = 500\n",
        encoding="utf-8",
    )
    return config


def import_people(tmp: Path, config: Path, n: int) -> None:
    people = tmp / "people.csv"
    with people.open("w", encoding="utf-8") as handle:
        handle.write("id,name,email,phone\n")
        for i in range(n):
            handle.write(f"p{i},Person Number{i},user{i}@example.com,+491510{i:07d}\n")
    herald = [sys.executable, "-m", "bot", "directory", "import", str(people), "--config", str(config)]
    subprocess.run(herald, check=True, capture_output=True, cwd=ROOT)


def create_once(config: Path) -> float:
    from bot import service
    from bot.cli.delivery import open_herald

    request = service.AnnounceRequest(
        audience="everyone", channels=("email",), severity="maintenance", title="Reboot", body="Tonight."
    )
    with open_herald(str(config)) as herald:
        started = time.perf_counter()
        service.announce(herald, request)
        took = time.perf_counter() - started
        with herald.store.begin() as connection:  # leave nothing queued for the send below
            connection.exec_driver_sql("UPDATE delivery SET state = 'cancelled' WHERE state = 'queued'")
    return took


def floor_once(tmp: Path, n: int) -> float:
    connection = sqlite3.connect(tmp / "floor.db")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS d (id INTEGER PRIMARY KEY, notification_id TEXT, person_id TEXT, "
        "channel TEXT, address TEXT, state TEXT, deadline REAL, due_at REAL, attempts INT, created_at REAL, "
        "updated_at REAL, UNIQUE (notification_id, person_id, channel))"
    )
    key = str(time.perf_counter_ns())
    rows = (
        (key, f"p{i}", "email", f"user{i}@example.com", "queued", 1.0, 0.0, 0, 0.0, 0.0) for i in range(n)
    )
    started = time.perf_counter()
    connection.executemany(
        "INSERT INTO d (notification_id, person_id, channel, address, state, deadline, due_at, attempts, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    connection.commit()
    took = time.perf_counter() - started
    connection.close()
    return took


def send(config: Path) -> tuple[float, float]:
    """(peak RSS in MB, msg/s) of one `herald announce --wait` of everyone."""
    command = [sys.executable, "-m", "bot", "announce", "--config", str(config), "--yes", "--wait", "--json"]
    command += ["--audience", "everyone", "--channels", "email", "--severity", "maintenance"]
    command += ["--title", "Patch Tuesday: servers reboot tonight", "--body", email_send.BODY]
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        report = json.loads(out.read())
    sla = report["sla"]
    rate = report["channels"]["email"]["sent"] / max(1e-9, sla["last_delivery_s"] - sla["first_delivery_s"])
    return usage.ru_maxrss / 1024, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-send", action="store_true", help="measure creation only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name, email_send.sink("auto") as (port, label):
        tmp = Path(tmp_name)
        config = write_config(tmp, int(port))
        import_people(tmp, config, args.n)
        created, floors = [], []
        for run in range(args.runs):
            created.append(create_once(config))
            floors.append(floor_once(tmp, args.n))
            print(
                f"  run {run + 1}: create {created[-1]:.2f} s, sqlite3 floor {floors[-1]:.2f} s", flush=True
            )
        made, floor = statistics.median(created), statistics.median(floors)
        print(f"create {args.n:,} deliveries: {made:.2f} s (median; target <= 3 s)")
        print(f"bare sqlite3 executemany of as many rows: {floor:.2f} s; ratio {made / floor:.1f}x")
        if not args.no_send:
            rss, rate = send(config)
            print(f"announce --wait into {label}: peak RSS {rss:.0f} MB (target <= 250), {rate:,.0f} msg/s")


if __name__ == "__main__":
    main()
