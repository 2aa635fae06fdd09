"""The cost of counting reach misses in ``herald_sla_missed_notifications`` at scrape time.

One command: `.venv/bin/python bench/sla_missed.py [--n 20000] [--db sqlite|postgresql|both]`

Ten notifications to N people each, every delivery sent in time except one failure in one of them
(so that notification is grouped by person; it meets its 0.99 target). Timed, medians of 3: the
scrape's count of late notifications alone (the query before reach counted; the same-run baseline)
against the count of late notifications and those short of their reach target together.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import distinct, func, or_, select, union, update

sys.path.insert(0, str(Path(__file__).parent))
from ledger import bench_arguments, each_db, notification, scratch

from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.directory.records import PersonRecord
from bot.directory.store import import_people
from bot.engine.create import ensure_notification
from bot.metrics import DELIVERY
from bot.people import ReachTargets, reach_missed
from bot.store import Store
from bot.tables import OPEN_STATES


def seed(store: Store, n: int, now: float) -> None:
    import_people(store, [PersonRecord(id=f"p{i}", name="x", email=f"p{i}@x.org") for i in range(n)])
    everyone = audience_condition(parse_audience("everyone"))
    for k in range(10):
        ensure_notification(store, notification(f"n{k}", now - 7200), everyone)
    with store.begin() as connection:
        connection.execute(update(DELIVERY).values(state="sent", sent_at=now - 7100))
        one = (DELIVERY.c.notification_id == "n3") & (DELIVERY.c.person_id == "p1")
        connection.execute(update(DELIVERY).where(one).values(state="failed", sent_at=None))


def timed(store: Store, query: Any) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with store.begin() as connection:
            connection.execute(query).scalar_one()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(kind: str, n: int, tmp: Path) -> None:
    with scratch(kind, tmp) as store:
        now = time.time()
        seed(store, n, now)
        late = or_(
            DELIVERY.c.sent_at > DELIVERY.c.deadline,
            DELIVERY.c.state == "expired",
            DELIVERY.c.state.in_(OPEN_STATES) & (DELIVERY.c.deadline < now),
        )
        before = select(func.count(distinct(DELIVERY.c.notification_id))).where(late)
        either = union(
            select(DELIVERY.c.notification_id).where(late), reach_missed(ReachTargets.defaults(), now)
        )
        after = select(func.count()).select_from(either.subquery())
        old, new = timed(store, before), timed(store, after)
        print(
            f"{kind:10} {10 * n:,} deliveries | late only {old * 1000:5.0f} ms | "
            f"late + reach {new * 1000:5.0f} ms | ratio {new / old:4.2f}x",
            flush=True,
        )


def main() -> None:
    args = bench_arguments(__doc__.splitlines()[0], 20_000).parse_args()
    for kind, tmp in each_db(args.db):
        run(kind, args.n, tmp)


if __name__ == "__main__":
    main()
