"""A critical notice created during a large maintenance fan-out: how soon its first email goes out.

One command: `.venv/bin/python bench/critical.py [--n 20000] [--trials 20] [--db sqlite|postgresql]
[--rates 200,0] [--via service|cli]`

Target (issue 20): a critical notice created during a 20,000-recipient maintenance fan-out has its first
send handed to the SMTP server within 1 s at p99 over 20 trials.

Everything runs as it would in production, from outside: the directory (N people at site Berlin, plus
one on-call person per trial) is loaded with `herald directory import`; the dispatcher is a `herald
worker` process of its own (one, as SQLite allows) sending email into Postfix's `smtp-sink` over 8
connections. Per rate in --rates (emails per second on the channel; 0 = unthrottled), on a fresh database:

1. idle baseline: --trials critical notices to one on-call person each, one at a time, at random moments
   with the dispatcher idle;
2. fan-out: `herald announce --severity maintenance --audience site:berlin --yes` (N emails), then
   --trials critical notices at moments spread over the fan-out (a random offset in each of --trials equal
   slices of its expected length, measured from its first second of sends).

Each critical notice is created through the service path `herald announce` runs (`bot.service.announce`,
in this bench's process, so no CLI start-up competes for the 2 CPUs at each trial; `--via cli` runs
`herald announce --severity critical --yes` as a subprocess instead). Latency = the delivery's `sent_at`
(the SMTP server accepted the message) - the notification's `created_at` (taken before the notice's
transaction commits, so the figure slightly over-states commit-to-send). Also per trial: the wait for a
claim (`claimed_at - created_at`) and how many maintenance emails were handed over in between. Prints
p50/p95/p99/max (nearest rank: with 20 trials p99 is the max) for both phases and the fan-out's rate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import email_send
from announce import database, drop
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from bot import service
from bot.app import Herald
from bot.config import load_settings

ROOT = Path(__file__).resolve().parents[1]
HERALD = [sys.executable, "-m", "bot"]


@dataclass
class Trial:
    notification_id: str
    latency: float = math.nan  # sent_at - created_at
    claim_wait: float = math.nan  # claimed_at - created_at
    overtaken: int = 0  # maintenance emails handed over between created_at and sent_at
    during: bool = True  # maintenance emails were still going out after it was sent


def write_config(tmp: Path, url: str, port: int, rate: float) -> Path:
    config = tmp / f"critical-{rate:g}.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nmax_connections = 8\n'
        f'rate_per_second = {rate:g}\nfrom_address = "Herald <herald@example.com>"\n'
        "[quiet_hours]\nkinds = []\n",
        encoding="utf-8",
    )
    return config


def import_people(tmp: Path, config: Path, n: int, on_call: int) -> None:
    people = tmp / "people.csv"
    with people.open("w", encoding="utf-8") as handle:
        handle.write("id,name,email,site\n")
        for i in range(n):
            handle.write(f"p{i},Person Number{i},user{i}@example.com,Berlin\n")
        for i in range(on_call):
            handle.write(f"c{i},On Call{i},oncall{i}@example.org,Oncall\n")
    subprocess.run(
        [*HERALD, "directory", "import", str(people), "--config", str(config)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )


def start_worker(config: Path, log: Path, connection: Connection) -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [*HERALD, "worker", "--config", str(config), "--id", "crit-bench"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        cwd=ROOT,
    )
    deadline = time.monotonic() + 300  # a loaded machine takes long to start a Python process
    while not scalar(connection, "SELECT count(*) FROM worker"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"herald worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    time.sleep(1.0)  # past its first claim and heartbeat
    return worker


def scalar(connection: Connection, sql: str, **params: object) -> object:
    value = connection.execute(text(sql), params).scalar()
    connection.commit()  # a fresh snapshot next time
    return value


class Creator:
    """Creates critical notices to one on-call person each, through the service or the CLI."""

    def __init__(self, config: Path, via: str) -> None:
        self.config, self.via, self.next = config, via, 0
        self.herald = Herald.build(load_settings(config)) if via == "service" else None

    def critical(self) -> str:
        person, self.next = f"c{self.next}", self.next + 1
        title, body = f"DB primary down ({person})", "Failover in progress; expect errors for 5 minutes."
        if self.herald is None:
            out = subprocess.run(
                [*HERALD, "announce", "--config", str(self.config), "--yes", "--json", "--audience",
                 f"person:{person}", "--channels", "email", "--severity", "critical", "--title", title,
                 "--body", body],
                check=True, capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            return str(json.loads(out.stdout)["id"])
        request = service.AnnounceRequest(
            audience=f"person:{person}", channels=("email",), severity="critical", title=title, body=body
        )
        return service.announce(self.herald, request)

    def close(self) -> None:
        if self.herald is not None:
            self.herald.store.engine.dispose()


def wait_sent(connection: Connection, notification_id: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    sql = "SELECT count(*) FROM delivery WHERE notification_id = :id AND sent_at IS NOT NULL"
    while not scalar(connection, sql, id=notification_id):
        if time.monotonic() > deadline:
            raise SystemExit(f"critical notice {notification_id} not sent within {timeout:.0f}s")
        time.sleep(0.01)


def fill(connection: Connection, trials: list[Trial], fanout: str | None) -> None:
    """Latency, claim wait and the maintenance emails sent meanwhile, from the ledger."""
    for trial in trials:
        created, claimed, sent = connection.execute(
            text(
                "SELECT n.created_at, min(d.claimed_at), min(d.sent_at) FROM notification n"
                " JOIN delivery d ON d.notification_id = n.id WHERE n.id = :id GROUP BY n.created_at"
            ),
            {"id": trial.notification_id},
        ).one()
        trial.latency, trial.claim_wait = sent - created, claimed - created
        if fanout is not None:
            mine = "SELECT count(*) FROM delivery WHERE notification_id = :f AND sent_at > "
            trial.overtaken = int(
                scalar(connection, mine + ":a AND sent_at <= :b", f=fanout, a=created, b=sent) or 0
            )
            trial.during = bool(scalar(connection, mine + ":b", f=fanout, b=sent))


def idle_trials(connection: Connection, creator: Creator, count: int) -> list[Trial]:
    trials = []
    for _ in range(count):
        time.sleep(random.uniform(0.2, 1.2))  # any phase of the dispatcher's poll
        trials.append(Trial(creator.critical()))
        wait_sent(connection, trials[-1].notification_id)
    fill(connection, trials, None)
    return trials


def fanout_trials(connection: Connection, config: Path, creator: Creator, n: int, count: int) -> dict:
    out = subprocess.run(
        [*HERALD, "announce", "--config", str(config), "--yes", "--json", "--audience", "site:berlin",
         "--channels", "email", "--severity", "maintenance", "--title",
         "Patch Tuesday: Berlin servers reboot", "--body", email_send.BODY],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    fanout = str(json.loads(out.stdout)["id"])
    sent_sql = "SELECT count(*) FROM delivery WHERE notification_id = :f AND sent_at IS NOT NULL"
    while not scalar(connection, sent_sql, f=fanout):
        time.sleep(0.01)
    first, began = int(scalar(connection, sent_sql, f=fanout) or 0), time.monotonic()
    time.sleep(1.0)
    rate = (int(scalar(connection, sent_sql, f=fanout) or 0) - first) / (time.monotonic() - began)
    # Spread over 85% of what is left: a random moment in each of ``count`` equal slices.
    left = (n - first) / max(rate, 1.0) - 1.0
    slice_ = max(left * 0.85, 0.5) / count
    start, trials = time.monotonic(), []
    for index in range(count):
        moment = start + slice_ * (index + random.uniform(0.0, 1.0))
        time.sleep(max(0.0, moment - time.monotonic()))
        trials.append(Trial(creator.critical()))
    for trial in trials:
        wait_sent(connection, trial.notification_id)
    done_sql = "SELECT state FROM notification WHERE id = :f"
    while scalar(connection, done_sql, f=fanout) != "done":
        time.sleep(0.2)
    fill(connection, trials, fanout)
    span = scalar(
        connection,
        "SELECT max(sent_at) - min(sent_at) FROM delivery WHERE notification_id = :f",
        f=fanout,
    )
    return {"trials": trials, "rate": (n - 1) / float(span or 1.0)}  # type: ignore[arg-type]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * 1000:6.0f} ms, p95 {percentile(values, 0.95) * 1000:6.0f} ms, "
        f"p99 {percentile(values, 0.99) * 1000:6.0f} ms, max {max(values) * 1000:6.0f} ms"
    )


def busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def scenario(args: argparse.Namespace, rate: float, port: int, tmp: Path) -> dict[str, list[float]]:
    url, schema = database(args.db, tmp)
    worker = None
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        config = write_config(tmp, url, port, rate)
        import_people(tmp, config, args.n, 2 * args.trials)
        with engine.connect() as connection:
            worker = start_worker(config, tmp / f"worker-{rate:g}.log", connection)
            creator = Creator(config, args.via)
            try:
                cpu, wall = busy_seconds(), time.monotonic()
                idle = idle_trials(connection, creator, args.trials)
                idle_cpu = (busy_seconds() - cpu) / (time.monotonic() - wall)
                cpu, wall = busy_seconds(), time.monotonic()
                loaded = fanout_trials(connection, config, creator, args.n, args.trials)
                fan_cpu = (busy_seconds() - cpu) / (time.monotonic() - wall)
            finally:
                creator.close()
        report(rate, idle, loaded, idle_cpu, fan_cpu, args.detail)
        return {
            "idle": [t.latency for t in idle],
            "fanout": [t.latency for t in loaded["trials"] if t.during],
        }
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        engine.dispose()
        drop(schema)


def report(
    rate: float, idle: list[Trial], loaded: dict, idle_cpu: float, fan_cpu: float, detail: bool
) -> None:
    trials: list[Trial] = loaded["trials"]
    during = [t for t in trials if t.during]
    label = f"{rate:g}/s" if rate else "unthrottled"
    busy = f"machine busy {idle_cpu:.2f} CPUs idle, {fan_cpu:.2f} during the fan-out"
    print(f"email {label}: fan-out {loaded['rate']:.0f} msg/s; {busy}")
    print(f"  idle dispatcher:   {summary([t.latency for t in idle])}")
    if during:
        share = f"({len(during)}/{len(trials)} trials)"
        print(f"  during fan-out:    {summary([t.latency for t in during])} {share}")
        print(f"    claim wait:      {summary([t.claim_wait for t in during])}")
        overtaken = sorted(t.overtaken for t in during)
        middle = overtaken[len(overtaken) // 2]
        print(f"    maintenance emails sent meanwhile: median {middle}, max {overtaken[-1]}")
    if detail:
        for index, trial in enumerate(trials):
            print(
                f"    trial {index + 1:2d}: {trial.latency * 1000:6.0f} ms (claim wait "
                f"{trial.claim_wait * 1000:6.0f} ms, {trial.overtaken} maintenance emails before it)"
                + ("" if trial.during else " [after the fan-out]")
            )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rates", default="200,0", help="email rates per second to run (0: unthrottled)")
    parser.add_argument("--via", choices=("service", "cli"), default="service")
    parser.add_argument("--detail", action="store_true", help="print every trial")
    args = parser.parse_args()
    print(
        f"critical notice during a {args.n}-email maintenance fan-out, {args.trials} trials, "
        f"database {args.db}, created via {args.via}; load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp_name, email_send.sink("smtp-sink") as (port, label):
        print(f"sink: {label}", flush=True)
        for rate in (float(r) for r in args.rates.split(",")):
            result = scenario(args, rate, port, Path(tmp_name))
            if result["fanout"]:
                p99 = percentile(result["fanout"], 0.99)
                verdicts.append(f"{rate:g}/s: p99 {p99 * 1000:.0f} ms {'<=' if p99 <= 1.0 else '>'} 1 s")
    print(f"target (first send <= 1 s at p99 during the fan-out): {'; '.join(verdicts)}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
