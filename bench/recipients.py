"""Listing a notification's deliveries page by page (``status --recipients``, the deliveries API).

One command: `.venv/bin/python bench/recipients.py [--n 100000] [--db sqlite|postgresql|both] [--runs 3]`

A notification to N people (one email delivery each) sits next to another one of N people, as in a
busy ledger. Timed, medians of ``--runs``: reading every row through
:func:`bot.engine.deliveries.all_pages` (1,000-row keyset pages), against the same-run baseline of
one query returning all rows at once (``fetchall``); and the Python heap peak of each (tracemalloc),
which shows the paged listing's memory stays flat while the one-shot read grows with N.
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).parent))
from ledger import bench_arguments, each_db, notification, scratch

from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.directory.records import PersonRecord
from bot.directory.store import import_people
from bot.engine import deliveries
from bot.engine.create import ensure_notification
from bot.store import Store


def measure(work: Callable[[], int], runs: int) -> tuple[float, float, int]:
    """Median seconds, and the heap peak (MiB) of one more run; the rows ``work`` read."""
    times, rows = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = work()
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(times), peak, rows


def paged(store: Store) -> int:
    return sum(len(rows) for rows in deliveries.all_pages(store, "nbench1"))


def at_once(store: Store) -> int:
    query = select(deliveries.DELIVERY, deliveries.PERSON.c.name).select_from(
        deliveries.DELIVERY.outerjoin(
            deliveries.PERSON, deliveries.PERSON.c.id == deliveries.DELIVERY.c.person_id
        )
    )
    with store.begin() as connection:
        found = connection.execute(query.where(deliveries.DELIVERY.c.notification_id == "nbench1")).all()
    return len([deliveries._row(row._mapping) for row in found])  # the same dicts as a page holds


def run(kind: str, n: int, runs: int, tmp: Path) -> None:
    with scratch(kind, tmp) as store:
        import_people(store, [PersonRecord(id=f"p{i}", name=f"P {i}", email=f"p{i}@x.org") for i in range(n)])
        everyone = audience_condition(parse_audience("everyone"))
        now = time.time()
        ensure_notification(store, notification("nbench0", now), everyone)
        ensure_notification(store, notification("nbench1", now), everyone)
        p_time, p_peak, p_rows = measure(lambda: paged(store), runs)
        o_time, o_peak, o_rows = measure(lambda: at_once(store), runs)
        assert p_rows == o_rows == n, (p_rows, o_rows)
        print(
            f"{kind:10} {n:,} rows | paged: {p_time:6.2f}s ({n / p_time:7,.0f} rows/s), "
            f"peak {p_peak:5.1f} MiB"
            f" | all at once: {o_time:6.2f}s, peak {o_peak:6.1f} MiB | time ratio {p_time / o_time:4.2f}x",
            flush=True,
        )


def main() -> None:
    parser = bench_arguments(__doc__.splitlines()[0], 100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for kind, tmp in each_db(args.db):
        run(kind, args.n, args.runs, tmp)


if __name__ == "__main__":
    main()
