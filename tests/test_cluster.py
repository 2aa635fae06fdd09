"""Scale-out on PostgreSQL, as separate processes: two `herald serve` and three `herald worker` share one
database. Every recipient is reached, the cluster-wide rate holds in every 1-second window, a worker
killed with SIGKILL has its claims finished by the others, and when the leading `serve` is killed the
other one takes over the scheduler ticks (observed through its /metrics)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from conftest import Peers, run_herald
from server_process import free_port

RATE = 250
PEOPLE = 3000


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def scheduler_ticks(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return -1.0
    match = re.search(r'^herald_scheduler_ticks_total\{job="tick"\} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def dispatchers_listed(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return 0
    return len(re.findall(r"^herald_dispatcher_up\{", text, re.M))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def import_people(config: Path, prefix: str, count: int) -> None:
    """``count`` people with an email address each, imported through the CLI."""
    people = config.parent / "people.csv"
    people.write_text(
        "id,name,email\n"
        + "".join(f"{prefix}{i},Person {i},{prefix}{i}@example.com\n" for i in range(count)),
        "utf-8",
    )
    assert run_herald("directory", "import", str(people), "--config", str(config)).exit_code == 0


def is_done(notification: str, config: Path) -> bool:
    status = run_herald("status", notification, "--json", "--config", str(config))
    return bool(json.loads(status.stdout)["state"] == "done")


def test_cluster_delivers_once_under_one_rate_and_one_scheduler(
    peers: Peers, pg_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(pg_url, '[dispatcher]\nlease = "10s"\npoll_interval = "0.1s"\n'), "utf-8")
    import_people(config, "c", PEOPLE)
    # Ten SMTP connections for the cluster: two for each of the five dispatchers.
    env = {"HERALD_SMTP__RATE_PER_SECOND": str(RATE), "HERALD_SMTP__MAX_CONNECTIONS": "10"}
    ports = [free_port(), free_port()]
    serves = [
        spawn("serve", "--config", str(config), env={**env, "HERALD_SERVER__PORT": str(p)}) for p in ports
    ]
    workers = [spawn("worker", "--config", str(config), "--id", f"w{i}", env=env) for i in range(3)]
    try:
        wait_until(lambda: all(scheduler_ticks(p) >= 0 for p in ports), timeout=30)
        wait_until(lambda: dispatchers_listed(ports[0]) >= 5, timeout=30)  # 2 serve + 3 workers
        queued = run_herald(
            "announce",
            "--config",
            str(config),
            "--yes",
            "--json",
            "--audience",
            "everyone",
            "--severity",
            "outage",
            "--title",
            "Datacenter power work",
            env=env,
        )
        assert queued.exit_code == 0, queued.stderr
        notification = json.loads(queued.stdout)["id"]

        wait_until(lambda: len(peers.smtp.messages) >= PEOPLE // 3, timeout=60)
        workers[0].send_signal(signal.SIGKILL)  # mid-way: its claims go to the others after the lease

        wait_until(lambda: max(scheduler_ticks(p) for p in ports) >= 1, timeout=30)
        leader = max(range(2), key=lambda i: scheduler_ticks(ports[i]))
        other = 1 - leader
        before = scheduler_ticks(ports[other])
        serves[leader].send_signal(signal.SIGKILL)
        wait_until(lambda: scheduler_ticks(ports[other]) > before, timeout=30)

        wait_until(lambda: is_done(notification, config), timeout=120)
    finally:
        for proc in [*serves, *workers]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*serves, *workers]:
            proc.wait(timeout=30)

    final = json.loads(run_herald("status", notification, "--json", "--config", str(config)).stdout)
    report = json.loads(run_herald("report", "--json", "--config", str(config)).stdout)
    by_worker = {worker: counts.get("sent", 0) for worker, counts in report["workers"].items()}
    assert sum(by_worker.values()) >= PEOPLE  # who sent what: every send is attributed to a dispatcher
    assert {"w1", "w2"} <= set(by_worker)
    assert final["channels"]["email"]["sent"] == PEOPLE
    received = Counter(rcpt for message in peers.smtp.messages for rcpt in message.rcpt_tos)
    assert len(received) == PEOPLE
    # Two processes were killed mid-send: at most their in-flight mails (their connection share) twice.
    assert sum(received.values()) - PEOPLE <= 2 * 2
    arrivals = sorted(peers.arrivals)
    busiest = max(
        sum(1 for t in arrivals[i : i + RATE + 20] if t < arrivals[i] + 1.0) for i in range(len(arrivals))
    )
    # One rate for the whole cluster of five dispatchers, within loopback jitter.
    assert busiest <= RATE * 1.02


def test_workers_share_one_smtp_connection_budget(peers: Peers, pg_url: str, tmp_path: Path) -> None:
    """smtp.max_connections holds for the cluster: three workers never have more than two connections
    open at the SMTP server together, the budget is shared (more than one sends), every mail goes once,
    and the worker left without a share waits instead of spinning."""
    from sqlalchemy import create_engine, text

    people_count = 300
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(pg_url, '[dispatcher]\npoll_interval = "0.1s"\n'), "utf-8")
    import_people(config, "s", people_count)
    peers.smtp.stall("data", 0.02, times=None)  # each mail takes a while: the workers overlap
    env = {"HERALD_SMTP__MAX_CONNECTIONS": "2"}
    workers = [spawn("worker", "--config", str(config), "--id", f"m{i}", env=env) for i in range(3)]
    started = time.monotonic()
    admin = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    try:

        def registered() -> int:
            with admin.connect() as connection:
                return int(connection.execute(text("SELECT count(*) FROM worker")).scalar_one())

        wait_until(lambda: registered() == 3, timeout=30)
        queued = run_herald(
            "announce", "--config", str(config), "--yes", "--json", "--audience", "everyone",
            "--severity", "outage", "--title", "Mail relay migration", env=env,
        )  # fmt: skip
        assert queued.exit_code == 0, queued.stderr
        notification = json.loads(queued.stdout)["id"]

        wait_until(lambda: is_done(notification, config), timeout=90)
        # A worker without a share waits for one; it does not spin (a busy loop would use a core).
        elapsed = time.monotonic() - started
        for proc in workers:
            spent = cpu_seconds(proc.pid)
            assert spent is None or spent < 0.5 * elapsed, (proc.args, spent, elapsed)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=30)
        admin.dispose()
    assert peers.smtp.most_open <= 2
    received = Counter(rcpt for message in peers.smtp.messages for rcpt in message.rcpt_tos)
    assert len(received) == people_count and max(received.values()) == 1
    report = json.loads(run_herald("report", "--json", "--config", str(config)).stdout)
    senders = [worker for worker, counts in report["workers"].items() if counts.get("sent", 0) > 0]
    # Shares settle at 1, 1 and 0, but who holds them may change while the workers start up.
    assert len(senders) >= 2


def test_worker_rides_out_lost_database_connections(peers: Peers, pg_url: str, tmp_path: Path) -> None:
    """The server drops the worker's connections twice mid-fan-out (as a PostgreSQL restart or a failover
    would): the worker logs the reason, keeps going on fresh connections, and everyone gets one mail."""
    from sqlalchemy import create_engine, text

    people_count = 900
    name = f"herald-test-{os.getpid()}-{time.monotonic_ns()}"
    worker_url = f"{pg_url}&application_name={name}"
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(pg_url, '[dispatcher]\nlease = "10s"\npoll_interval = "0.1s"\n'), "utf-8")
    import_people(config, "d", people_count)
    env = {"HERALD_SMTP__RATE_PER_SECOND": "150", "HERALD_DATABASE__URL": worker_url}
    log_path = tmp_path / "worker.log"
    admin = create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bot", "worker", "--config", str(config), "--id", "survivor"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
        try:
            queued = run_herald(
                "announce", "--config", str(config), "--yes", "--json", "--audience", "everyone",
                "--severity", "outage", "--title", "Core switch replacement",
            )  # fmt: skip
            assert queued.exit_code == 0, queued.stderr
            notification = json.loads(queued.stdout)["id"]
            for share in (3, 2):
                wait_until(lambda s=share: len(peers.smtp.messages) >= people_count // s, timeout=60)
                with admin.connect() as connection:
                    dropped = connection.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE application_name = :n"
                        ),
                        {"n": name},
                    ).scalar_one()
                assert dropped >= 1

            wait_until(lambda: is_done(notification, config), timeout=90)
            assert worker.poll() is None, "the worker died with its database connections"
        finally:
            worker.send_signal(signal.SIGTERM)
            exit_code = worker.wait(timeout=30)
            admin.dispose()
    assert exit_code == 0
    received = Counter(rcpt for message in peers.smtp.messages for rcpt in message.rcpt_tos)
    assert len(received) == people_count
    # The worker never died, so nothing it sent was forgotten: no mail went out twice.
    assert max(received.values()) == 1
    output = log_path.read_text("utf-8", errors="replace")
    assert "failed (" in output  # the reason was logged...
    assert "Traceback" not in output  # ...as one line, not a crash


def test_idle_worker_wakes_on_new_work_at_once(peers: Peers, db_url: str, tmp_path: Path) -> None:
    """An announcement made by another process reaches an idle worker long before its next poll (60 s
    here): through PostgreSQL's NOTIFY, or SQLite's ``data_version`` moving."""
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, '[dispatcher]\npoll_interval = "60s"\n'), "utf-8")
    import_people(config, "i", 5)
    worker = spawn("worker", "--config", str(config), "--id", "sleeper")

    def announce(title: str) -> None:
        queued = run_herald(
            "announce", "--config", str(config), "--yes", "--audience", "everyone",
            "--severity", "info", "--title", title,
        )  # fmt: skip
        assert queued.exit_code == 0, queued.stderr

    try:
        announce("First")
        wait_until(lambda: len(peers.smtp.messages) >= 5, timeout=30)
        time.sleep(1.0)  # the worker has claimed nothing more and sleeps until its next poll
        announce("Second")
        started = time.monotonic()  # the NOTIFY is committed (the command's own start-up is not counted)
        wait_until(lambda: len(peers.smtp.messages) >= 10, timeout=20)
        assert time.monotonic() - started < 15  # a poll would have come 60 s after the last claim
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
