"""The whole engine through the CLI: `herald announce --wait` for N people, against same-run baselines.

One command: `.venv/bin/python bench/announce.py [--channel email|sms] [--n 5000] [--connections C]
[--db sqlite|postgresql] [--runs 3] [--sink auto|smtp-sink|standin]`

- email: N personalised messages through `herald announce --wait` (ledger, claims, rendering, the SMTP
  pool of C connections (`smtp.max_connections`, default 8), batched outcome writes) into Postfix's
  `smtp-sink`, against, in the same run and alternating which goes first:
  (b) a bare aiosmtplib loop sending pre-rendered bytes over the same C connections, on the event loop
      Herald runs on (uvloop when installed, `bot.runtime`): the Python ceiling;
  (c) Postfix `smtp-source -s C -m N` with messages of the same size into the same sink.
  Targets: engine (ledger span) >= 0.5x (b); end to end (whole command) >= 0.22x (c).
- sms: N messages through `herald announce --wait` (throttles off, `max_concurrency` C, default 32)
  into the Twilio stand-in in its own process, against raw aiohttp posting the same form bodies at the
  same concurrency. Target: Herald >= 0.6x raw.

Herald's engine figure is the ledger's own: messages / (last delivery - first delivery), so process
start-up, the notification's creation and the final report are excluded. The end-to-end figure is
N / the wall time of the whole `herald announce --wait` process (start to exit; the directory import
before it is excluded). Both are printed, with the process's CPU per message (user + system).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import resource
import signal
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

from bot import runtime
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


def herald_run(channel: str, n: int, url: str, peer: str, tmp: Path, connections: int) -> dict[str, float]:
    """Import ``n`` people, then time ``herald announce --wait`` to all of them: the ledger's rate, the
    whole command's wall time and its CPU per message."""
    config = tmp / "bench.toml"
    peer_section = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {peer}\nsecurity = "none"\nmax_connections = {connections}\n'
        'rate_per_second = 0\nfrom_address = "Herald <herald@example.com>"\n'
        if channel == "email"
        else f'[twilio]\naccount_sid = "{sms_bench.SID}"\nauth_token = "{sms_bench.TOKEN}"\n'
        f'from_number = "{sms_bench.FROM}"\napi_url = "{peer}"\nrate_per_second = 0\n'
        f"max_concurrency = {connections}\n"
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
    _run_measured([*herald, "directory", "import", str(people), "--config", str(config)])
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
        peer,
    )
    wall = time.perf_counter() - started
    status = json.loads(done[0])
    sent = status["channels"][channel]["sent"]
    if sent != n:
        raise SystemExit(f"herald sent {sent} of {n}: {status['channels']}")
    sla = status["sla"]
    span = sla["last_delivery_s"] - sla["first_delivery_s"]
    return {"rate": (n - 1) / span, "wall": wall, "wall_rate": n / wall, "cpu_ms": done[1] / n * 1000}


def _run_measured(command: list[str], peer: str = "") -> tuple[bytes, float]:
    """Run ``command`` in ROOT; its standard output and the CPU seconds it used (user + system).

    A failure ends the bench with the command's last lines of standard error; an interrupted bench
    stops the command too, and so does the SMTP sink on port ``peer`` going away (Herald would
    otherwise retry until the deadline)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, cwd=ROOT)
        try:
            status, usage = _wait(child.pid, peer)
        except BaseException:
            email_send.stop(child)
            raise
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-15:]
            raise SystemExit(
                f"{' '.join(command[2:4])} failed with status {child.returncode}:\n" + "\n".join(tail)
            )
        out.seek(0)
        return out.read(), usage.ru_utime + usage.ru_stime


def _wait(pid: int, peer: str) -> tuple[int, resource.struct_rusage]:
    """``wait4`` for ``pid`` every 10 ms (the whole command's wall time is read when this returns: a
    coarser poll would add up to its period to it), checking twice a second that the sink on port
    ``peer`` (if any) still runs."""
    next_check = time.monotonic() + 0.5
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        if time.monotonic() >= next_check:
            next_check += 0.5
            gone = email_send.sink_gone(int(peer)) if peer.isdigit() else None
            if gone:
                raise SystemExit(f"{gone} during the run (another process stopped it?): bench abandoned")
        time.sleep(0.01)


def email_sample(port: int) -> bytes:
    """The message the bare loop sends (and smtp-source's size): Herald's rendering for person 0."""
    settings = EmailSettings(host="127.0.0.1", port=port, security="none", from_address=email_send.FROM)
    return build_message(EmailChannel(settings).prepare(email_send.NOTICE), email_send.recipients(1)[0])


def baseline(channel: str, n: int, peer: str, connections: int) -> float:
    """(b): bare aiosmtplib on Herald's event loop (email), or raw aiohttp (sms): msg/s."""
    if channel == "email":
        runner = email_send.bare(int(peer), email_send.recipients(n), connections, email_sample(int(peer)))
        return email_send.once(runner, runtime.loop_factory())()
    return asyncio.run(sms_bench.raw_aiohttp(peer, n, connections, "Servers reboot at 22:00 CET."))


def one_run(args: argparse.Namespace, tmp: Path, peer: str, paths: list[str]) -> dict[str, float]:
    """Every path once, in the order given: herald's figures plus ``base`` and (email) ``source``."""
    figures: dict[str, float] = {}
    for path in paths:
        gone = email_send.sink_gone(int(peer)) if peer.isdigit() else None
        if gone:
            raise SystemExit(f"{gone} (another process stopped it?): bench abandoned")
        if path == "herald":
            url, schema = database(args.db, tmp)
            try:
                figures.update(herald_run(args.channel, args.n, url, peer, tmp, args.connections))
            finally:
                drop(schema)
                for leftover in tmp.glob("bench-*.db*"):
                    leftover.unlink()
        elif path == "base":
            figures["base"] = baseline(args.channel, args.n, peer, args.connections)
        else:
            source = email_send.smtp_source(int(peer), args.n, len(email_sample(int(peer))), args.connections)
            assert source is not None
            figures["source"] = source()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", choices=("email", "sms"), default="email")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--connections",
        type=int,
        help="smtp.max_connections (email, default 8) or twilio.max_concurrency (sms, default 32); "
        "the baselines use as many",
    )
    parser.add_argument(
        "--sink",
        choices=("auto", "smtp-sink", "standin"),
        default="auto",
        help="email: the SMTP server (auto: smtp-sink when installed, else the aiosmtpd stand-in)",
    )
    args = parser.parse_args()
    for stopping in (signal.SIGTERM, signal.SIGINT):  # unwind (children stopped, temp dir gone) on either
        signal.signal(stopping, _interrupted)
    if args.connections is None:
        args.connections = 8 if args.channel == "email" else 32
    _compile_herald()
    paths = ["herald", "base"]
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp_name:
        tmp = Path(tmp_name)
        context = email_send.sink(args.sink) if args.channel == "email" else _standin()
        with context as peer_info:
            peer, label = peer_info
            if args.channel == "email":
                if label == "Postfix smtp-sink" and email_send.postfix_program("smtp-source"):
                    paths.append("source")
                else:
                    print("note: smtp-source or smtp-sink missing: path (c) skipped", file=sys.stderr)
            loop = "uvloop" if runtime.loop_factory() else "asyncio"
            print(
                f"{args.channel}: {args.n} messages into {label}, database {args.db}, "
                f"{args.connections} connections, baseline on {loop}, "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            for run in range(args.runs):  # each path leads in turn: drifting load hits all alike
                order = paths[run % len(paths) :] + paths[: run % len(paths)]
                runs.append(one_run(args, tmp, str(peer), order))
                print_run(run, runs[-1])
    report(args, runs)


def _compile_herald() -> None:
    """Compile Herald's own modules to bytecode, as ``pip install`` does for an installed Herald (the
    Dockerfile's): with ``PYTHONDONTWRITEBYTECODE`` set (this machine kind sets it), a source checkout
    is otherwise compiled anew by every ``herald`` process, ~0.1 s of each command's start."""
    for package in ("bot", "channels"):
        compileall.compile_dir(ROOT / package, quiet=1)


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def print_run(run: int, figures: dict[str, float]) -> None:
    source = f", smtp-source {figures['source']:7.0f} msg/s" if "source" in figures else ""
    print(
        f"  run {run + 1}: herald {figures['rate']:7.0f} msg/s (command {figures['wall']:.1f}s, "
        f"{figures['wall_rate']:.0f} msg/s), baseline {figures['base']:7.0f} msg/s{source}, "
        f"herald CPU {figures['cpu_ms']:.3f} ms/msg, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


def report(args: argparse.Namespace, runs: list[dict[str, float]]) -> None:
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(
        f"herald announce --wait: {median['rate']:7.0f} msg/s (median); "
        f"whole command {median['wall']:.1f}s ({median['wall_rate']:.0f} msg/s)"
    )
    print(
        f"baseline ({'bare aiosmtplib, pre-rendered' if args.channel == 'email' else 'raw aiohttp'}): "
        f"{median['base']:7.0f} msg/s (median)"
    )
    print(f"herald process CPU: {median['cpu_ms']:.3f} ms per message (median)")
    print(f"ratio: {median['rate'] / median['base']:.2f}x")
    if "source" in median:
        source = median["source"]
        print(f"smtp-source -s {args.connections}: {source:7.0f} msg/s (median)")
        print(f"engine (ledger span) / bare: {median['rate'] / median['base']:.3f}x")
        print(
            f"end to end (whole command) / smtp-source: {median['wall_rate'] / source:.3f}x (target >= 0.22)"
        )
        print(f"engine (ledger span) / smtp-source: {median['rate'] / source:.3f}x")
        print(f"bare / smtp-source (the Python ceiling): {median['base'] / source:.3f}x")


class _standin:
    def __enter__(self) -> tuple[str, str]:
        self.process, url = sms_bench.start_standin()
        return url, "the Twilio stand-in (own process)"

    def __exit__(self, *exc: object) -> None:
        email_send.stop(self.process)


if __name__ == "__main__":
    main()
