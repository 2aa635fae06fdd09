"""Alert intake with maintenance windows open: what checking them costs each webhook batch.

Ingests ``--alerts`` single-alert batches (each opening a group that pages) into a fresh SQLite
database three ways in the same run: no window (baseline), ``--windows`` open windows none of which
match, and one window matching every alert (the alerts are stored silenced, nothing is paged). Also
times the windows query alone. Prints the median of ``--runs`` for each and the ratio to the baseline.

    .venv/bin/python bench/maintenance_intake.py [--alerts 300] [--windows 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from bot import service
from bot.alerts import maintenance
from bot.alerts.intake import fingerprint_of
from bot.alerts.lifecycle import ingest
from bot.alerts.models import Alert, AlertBatch
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.store import open_store
from bot.tables import Person, PersonGroup


def build(path: Path) -> Herald:
    settings = load_settings(None, database={"url": f"sqlite:///{path}"}, quiet_hours={"kinds": []})
    herald = Herald.build(settings, clock=ManualClock(), store=open_store(settings.database.url))
    with herald.store.session() as session:
        for index in range(20):
            session.add(Person(id=f"p{index}", name=f"P{index}", email=f"p{index}@example.com"))
        session.commit()
        for index in range(20):
            session.add(PersonGroup(person_id=f"p{index}", group_name="oncall"))
        session.commit()
    return herald


def open_windows(herald: Herald, count: int, matchers: str) -> None:
    for index in range(count):
        window = maintenance.window_from_options(
            "maintenance", "+0s..+1h", matchers.format(index=index), herald.clock.now() - 1, ("w", "s")
        )
        request = service.AnnounceRequest(
            audience="group:oncall",
            channels=("email",),
            severity="maintenance",
            title="w",
            body="",
            window=window,
        )
        service.announce(herald, request)


def alerts_per_second(windows: int, matchers: str, alerts: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        herald = build(Path(directory) / "bench.db")
        try:
            open_windows(herald, windows, matchers)
            started = time.perf_counter()
            for index in range(alerts):
                labels = {"alertname": f"A{index}", "service": "db"}
                alert = Alert("firing", labels, {"summary": "x"}, fingerprint_of(labels))
                ingest(herald, AlertBatch(source="alerts", alerts=(alert,)))
            return alerts / (time.perf_counter() - started)
        finally:
            herald.store.dispose()


def query_micros(windows: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        herald = build(Path(directory) / "bench.db")
        try:
            open_windows(herald, windows, "service=other{index}")
            started = time.perf_counter()
            for _ in range(1000):
                with herald.store.one_statement() as connection:
                    maintenance.open_windows(connection, herald.clock.now())
            return (time.perf_counter() - started) * 1000
        finally:
            herald.store.dispose()


def main() -> None:
    logging.disable(logging.WARNING)  # flood control says so for every held page
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = range(args.runs)
    base = statistics.median(alerts_per_second(0, "", args.alerts) for _ in runs)
    other = statistics.median(
        alerts_per_second(args.windows, "service=other{index}", args.alerts) for _ in runs
    )
    silenced = statistics.median(alerts_per_second(1, "service=db", args.alerts) for _ in runs)
    query = statistics.median(query_micros(args.windows) for _ in runs)
    print(f"no window (baseline): {base:,.0f} alerts/s")
    print(f"{args.windows} open windows, none matching: {other:,.0f} alerts/s ({other / base:.2f}x)")
    print(f"1 window matching every alert (silenced): {silenced:,.0f} alerts/s ({silenced / base:.2f}x)")
    print(f"the windows query alone, {args.windows} open: {query:.0f} us per batch")


if __name__ == "__main__":
    main()
