"""Scale-out benchmark: 1, 2 and 4 `herald worker` processes on one PostgreSQL database.

One command: `.venv/bin/python bench/workers.py [--messages 5000] [--latency 0.05] [--runs 3] [--detail]`

A Twilio stand-in (separate process) answers each request after `--latency` seconds, like the real API
(latency-bound, not CPU-bound); throttles are off. For each worker count the same SMS announcement is
queued, the workers are started, and the time from the first delivery to the last is measured on the
ledger's clock (process start-up excluded). Worker counts run round-robin (1, 2, 4, 1, 2, 4...), so
load that drifts during the benchmark hits each alike. Prints msg/s per run and per worker count
(median of --runs), the ratio to one worker (target: 4 workers >= 3.5x) and the CPU time the
hypervisor took; --detail adds each worker's share and the CPU cost per message of the workers,
the stand-in, PostgreSQL and the whole machine. 5,000 messages by default, as in PERF-FACTS: four
workers finish 2,000 in about four seconds, where the start and the last batch weigh more. Needs
PostgreSQL (HERALD_BENCH_DATABASE_URL, default the local test database).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BASE_URL = os.environ.get("HERALD_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
SID = "AC" + "0" * 32
TOKEN = "bench-token"


def herald(*args: str, config: Path) -> dict:
    out = subprocess.run(
        [PY, "-m", "bot", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}


def start_standin(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "bot.standins.twilio",
            "--latency",
            str(latency),
            "--account-sid",
            SID,
            "--auth-token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


def make_schema() -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(
        BASE_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    return schema, f"{BASE_URL}?options=-csearch_path%3D{schema}"


def drop_schema(schema: str) -> None:
    engine = create_engine(
        BASE_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def wait_for_workers(url: str, count: int) -> None:
    """Until ``count`` workers have registered, so that all of them start on the same announcement."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        while True:
            with engine.connect() as connection:
                live = connection.execute(text("SELECT count(*) FROM worker")).scalar_one()
            if live >= count:
                return
            time.sleep(0.1)
    finally:
        engine.dispose()


def wait_until_done(url: str, notification_id: str) -> None:
    """Poll the ledger over one connection: a `herald status` process per poll would cost a CPU second
    each time and steal it from the workers being measured."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            while True:
                state = connection.execute(
                    text("SELECT state FROM notification WHERE id = :id"), {"id": notification_id}
                ).scalar_one()
                connection.commit()
                if state == "done":
                    return
                time.sleep(0.2)
    finally:
        engine.dispose()


def cpu_steal() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs so far (Linux /proc/stat; None elsewhere)."""
    fields = cpu_fields()
    if fields is None:
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def cpu_fields() -> list[int] | None:
    """The machine's CPU jiffies so far by kind (user, nice, system, idle, iowait, ...), or None."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy so far (all but idle, iowait and steal)."""
    fields = cpu_fields()
    if fields is None:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0) + (fields[7] if len(fields) > 7 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_cpu_seconds() -> float | None:
    """CPU seconds used so far by the PostgreSQL server processes living now, when it runs here."""
    total, found = 0.0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text_ = stat.read_text()
        except OSError:
            continue
        if "(postgres)" in text_:
            fields = text_.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            found = True
    return total if found else None


def print_per_worker(url: str) -> None:
    """Who sent how many, and when each worker's first and last send landed (seconds from the first)."""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT worker, count(*), min(at) - (SELECT min(at) FROM attempt),"
                    " max(at) - (SELECT min(at) FROM attempt) FROM attempt GROUP BY worker ORDER BY worker"
                )
            ).all()
    finally:
        engine.dispose()
    for worker, count, first, last in rows:
        rate = count / max(last - first, 1e-6)
        print(f"    {worker}: {count} sent, {first:.2f}s .. {last:.2f}s ({rate:.0f} msg/s)", flush=True)


def one_run(
    workers: int, messages: int, api_url: str, tmp: Path, standin_pid: int, detail: bool = False
) -> float:
    schema, url = make_schema()
    try:
        config = tmp / f"bench-{workers}.toml"
        config.write_text(
            f'[database]\nurl = "{url}"\n'
            f'[twilio]\naccount_sid = "{SID}"\nauth_token = "{TOKEN}"\nfrom_number = "+15005550006"\n'
            f'api_url = "{api_url}"\nrate_per_second = 0\nmax_concurrency = 8\n'
            "[quiet_hours]\nkinds = []\n",
            encoding="utf-8",
        )
        people = tmp / "people.csv"
        with people.open("w", encoding="utf-8") as handle:
            handle.write("id,name,phone\n")
            for index in range(messages):
                handle.write(f"b{index},Bench {index},+1212555{index % 10000:04d}\n")
        subprocess.run(
            [PY, "-m", "bot", "directory", "import", str(people), "--config", str(config)],
            capture_output=True,
            check=True,
            cwd=ROOT,
        )
        procs = [
            subprocess.Popen(
                [PY, "-m", "bot", "worker", "--config", str(config), "--id", f"bench-{i}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=ROOT,
            )
            for i in range(workers)
        ]
        try:
            wait_for_workers(url, workers)
            cpu_before = [cpu_seconds(proc.pid) for proc in procs]
            standin_before, busy_before = cpu_seconds(standin_pid), machine_busy_seconds()
            database_before = database_cpu_seconds()
            queued = herald(
                "announce",
                "--yes",
                "--json",
                "--audience",
                "everyone",
                "--channels",
                "sms",
                "--severity",
                "critical",
                "--title",
                "bench",
                "--body",
                "x",
                config=config,
            )
            wait_until_done(url, queued["id"])
            standin_after, busy_after = cpu_seconds(standin_pid), machine_busy_seconds()
            database_after = database_cpu_seconds()
            status = herald("status", queued["id"], "--json", config=config)
        finally:
            cpu_after = [cpu_seconds(proc.pid) for proc in procs]
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=30)
        if detail:
            print_per_worker(url)
            spent = [
                b - a for a, b in zip(cpu_before, cpu_after, strict=True) if a is not None and b is not None
            ]
            if spent:
                total = sum(spent)
                print(
                    f"    workers' CPU after start-up: {total:.2f} s, "
                    f"{total / messages * 1000:.2f} ms per message"
                )
            if standin_before is not None and standin_after is not None:
                spent_standin = (standin_after - standin_before) / messages * 1000
                print(f"    stand-in's CPU: {spent_standin:.2f} ms per message")
            if database_before is not None and database_after is not None:
                spent_database = (database_after - database_before) / messages * 1000
                print(f"    PostgreSQL's CPU: {spent_database:.2f} ms per message")
            if busy_before is not None and busy_after is not None:
                busy = (busy_after - busy_before) / messages * 1000
                print(
                    f"    whole machine's CPU (workers, stand-in, database, rest): {busy:.2f} ms per message"
                )
        # From the first delivery to the last, on the ledger's clock (process start-up excluded).
        elapsed = status["sla"]["last_delivery_s"] - status["sla"]["first_delivery_s"]
        return (messages - 1) / max(elapsed, 1e-6)
    finally:
        drop_schema(schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--detail", action="store_true", help="print each worker's share and timing")
    args = parser.parse_args()
    standin, api_url = start_standin(args.latency)
    counts = [int(w) for w in args.workers.split(",")]
    rates: dict[int, list[float]] = {count: [] for count in counts}
    steal_before = cpu_steal()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Round-robin (1, 2, 4, 1, 2, 4, ...): load that drifts during the run hits every count alike.
            for run in range(args.runs):
                for count in counts:
                    rate = one_run(count, args.messages, api_url, Path(tmp), standin.pid, args.detail)
                    rates[count].append(rate)
                    print(f"run {run + 1}: {count} worker(s) {rate:6.0f} msg/s", flush=True)
    finally:
        standin.send_signal(signal.SIGTERM)
        standin.wait(timeout=10)
    results = {count: statistics.median(values) for count, values in rates.items()}
    for count, values in rates.items():
        listed = ", ".join(f"{r:.0f}" for r in values)
        print(f"{count} worker(s): {results[count]:8.0f} msg/s median (runs: {listed})")
    steal = cpu_steal_share(steal_before, cpu_steal())
    if steal is not None:
        print(f"CPU time stolen by the hypervisor during the benchmark: {steal:.0%}")
    base = results.get(1)
    if base:
        for count, rate in results.items():
            print(f"{count} worker(s) / 1 worker: {rate / base:.2f}x")


if __name__ == "__main__":
    main()
