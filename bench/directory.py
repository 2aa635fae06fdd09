"""Directory benchmark: import 100,000 people, then resolve a ~30,000-person audience.

    .venv/bin/python bench/directory.py [--db sqlite|postgresql] [--n 100000] [--url URL] [--explain]

Each figure has its naive baseline measured in the same run:

- import: the code path of ``herald directory import`` (``import_file``: ``read_people`` then
  ``import_people``, timed in those two halves) into an empty database, then the same file again
  through ``import_file`` (nothing changes), against SQLModel ``add`` + ``commit`` per row for a
  5,000-row sample, extrapolated to N;
- audience ``dept:eng,sales`` (30% of people by construction): ``reach()`` and a SELECT of the ids
  through ``audience_condition``, against loading every person and their groups into Python and
  filtering there.

Times are medians of 3 (the import runs once). Memory: the import's peak RSS growth
(``getrusage``), and tracemalloc peaks for the audience paths (measured in a separate pass so
tracing does not slow the timed one).
"""

# ruff: noqa: E402  (sys.path is fixed before the imports below)
from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where a bench script named like a top-level
# module would shadow it; the repository root is what this script needs instead.
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import argparse
import csv
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlmodel import Session

from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.directory.files import read_people
from bot.directory.reach import reach
from bot.directory.store import import_file, import_people
from bot.store import Store, normalise_url, open_store
from bot.tables import Person, PersonGroup

DEPARTMENTS = [("eng", 18), ("sales", 12), ("finance", 10), ("hr", 6), ("it", 14), ("ops", 14)]
DEPARTMENTS += [("legal", 6), ("marketing", 10), ("support", 10)]
SITES = ["Berlin", "New York", "London", "Paris", "Austin", "Singapore", "Toronto", "Madrid"]
GROUPS = [f"team-{i:02d}" for i in range(20)] + ["oncall", "contractors", "managers"]
TITLES = ["Engineer", "Senior Engineer", "Account Executive", "Analyst", "IT Manager", "Director"]
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def generate(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    names, weights = zip(*DEPARTMENTS, strict=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "email", "phone", "department", "site", "title", "groups", "timezone"])
        for i in range(n):
            phone = "" if i % 10 == 0 else f"+49 30 {rng.randrange(10**7, 10**8)}"
            writer.writerow(
                [
                    f"u{i:06d}",
                    f"Person {i}",
                    f"person{i}@example.com",
                    phone,
                    rng.choices(names, weights)[0],
                    rng.choice(SITES),
                    rng.choice(TITLES),
                    ";".join(rng.sample(GROUPS, rng.randrange(0, 4))),
                    "Europe/Berlin",
                ]
            )


@contextmanager
def database(kind: str, url: str | None, workdir: Path, label: str) -> Iterator[Store]:
    if kind == "sqlite":
        store = open_store(f"sqlite:///{workdir / f'{label}.db'}")
        try:
            yield store
        finally:
            store.dispose()
        return
    base = url or PG_DEFAULT
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    store = open_store(f"{base}{separator}options=-csearch_path%3D{schema}")
    try:
        yield store
    finally:
        store.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def traced_peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def naive_import(store: Store, path: Path, sample: int) -> float:
    """SQLModel add + commit per row, the first sample rows; seconds for the sample."""
    people = read_people(path).people[:sample]
    start = time.perf_counter()
    with Session(store.engine) as session:
        for person in people:
            session.add(
                Person(
                    id=person.id,
                    name=person.name,
                    email=person.email,
                    phone=person.phone,
                    department=person.department,
                    site=person.site,
                    title=person.title,
                    timezone=person.timezone,
                )
            )
            for group in person.groups:
                session.add(PersonGroup(person_id=person.id, group_name=group))
            session.commit()
    return time.perf_counter() - start


def naive_audience(store: Store) -> list[str]:
    """Everyone (and their groups) into Python, then filter: what the SQL condition replaces."""
    with Session(store.engine) as session:
        people = session.exec(select(Person)).scalars().all()  # type: ignore[call-overload]
        groups: dict[str, set[str]] = {}
        for membership in session.exec(select(PersonGroup)).scalars():  # type: ignore[call-overload]
            groups.setdefault(membership.person_id, set()).add(membership.group_name.lower())
    wanted = {"eng", "sales"}
    return [p.id for p in people if p.active and (p.department or "").lower() in wanted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--url", help=f"PostgreSQL base URL (default {PG_DEFAULT})")
    parser.add_argument("--naive-sample", type=int, default=5000)
    parser.add_argument("--explain", action="store_true", help="print the query plans")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        csv_path = workdir / "people.csv"
        start = time.perf_counter()
        generate(csv_path, args.n)
        size_mb = csv_path.stat().st_size / 2**20
        print(
            f"db={args.db} n={args.n:,} generated {size_mb:.1f} MB CSV in {time.perf_counter() - start:.1f}s"
        )

        with database(args.db, args.url, workdir, "main") as store:
            # import_file's body, timed in its two halves: read + validate, then the database writes.
            rss_before = maxrss_mb()
            start = time.perf_counter()
            parsed = read_people(csv_path)
            parse_s = time.perf_counter() - start
            result = import_people(store, parsed.people, keep=parsed.rejected_ids)
            import_s = time.perf_counter() - start
            db_s = import_s - parse_s
            rss_growth = maxrss_mb() - rss_before
            print(
                f"import (CLI path):         {import_s:7.2f}s  {args.n / import_s:9,.0f} rows/s"
                f"  peak RSS +{rss_growth:.0f} MB ({result.added:,} added, {parsed.rejected} bad)"
            )
            print(f"  read + validate:         {parse_s:7.2f}s  {args.n / parse_s:9,.0f} rows/s")
            print(f"  database writes:         {db_s:7.2f}s  {args.n / db_s:9,.0f} rows/s (batched upsert)")
            start = time.perf_counter()
            again = import_file(store, csv_path).result
            print(
                f"re-import (no changes):    {time.perf_counter() - start:7.2f}s"
                f"  ({again.unchanged:,} unchanged, {again.changed} changed)"
            )
            with database(args.db, args.url, workdir, "naive") as naive_store:
                sample_s = naive_import(naive_store, csv_path, args.naive_sample)
            naive_s = sample_s * args.n / args.naive_sample
            print(
                f"naive add+commit per row:  {naive_s:7.2f}s  {args.naive_sample / sample_s:9,.0f} rows/s"
                f"  (extrapolated from {args.naive_sample:,} rows)"
            )
            print(
                f"  -> database writes {naive_s / db_s:.0f}x faster batched;"
                f" whole import {(naive_s + parse_s) / import_s:.1f}x faster"
            )
            audience_report(store, args.explain)


def audience_report(store: Store, explain: bool) -> None:
    audience = parse_audience("dept:eng,sales")
    condition = audience_condition(audience)

    def select_ids() -> list[str]:
        with store.begin() as connection:
            return list(connection.scalars(select(Person.id).where(condition)))

    def run_reach() -> object:
        return reach(store, audience)

    reach_s, result = timed(run_reach)
    select_s, ids = timed(select_ids)
    naive_s, naive_ids = timed(lambda: naive_audience(store))
    assert sorted(ids) == sorted(naive_ids), "SQL and Python disagree"
    reach_mb = traced_peak_mb(run_reach)
    select_mb = traced_peak_mb(select_ids)
    naive_mb = traced_peak_mb(lambda: naive_audience(store))
    print(f"audience dept:eng,sales -> {len(ids):,} people; reach: {result.reachable}")
    print(f"reach() (COUNT/CASE):      {reach_s * 1000:7.1f}ms  peak {reach_mb:6.1f} MB")
    print(f"SELECT ids (condition):    {select_s * 1000:7.1f}ms  peak {select_mb:6.1f} MB")
    print(
        f"naive load-all + filter:   {naive_s * 1000:7.1f}ms  peak {naive_mb:6.1f} MB"
        f"  -> reach {naive_s / reach_s:.0f}x faster"
    )
    for query in ("dept:eng,sales -group:contractors title:engineer", "group:oncall site:berlin", "everyone"):
        other = parse_audience(query)
        seconds, other_reach = timed(lambda a=other: reach(store, a))
        print(f"reach({query!r}): {seconds * 1000:.1f}ms ({other_reach.count:,} people)")
    if explain:
        print_plans(store, audience)


def print_plans(store: Store, audience: Any) -> None:
    for query in ("dept:eng,sales", "group:oncall -group:contractors", "person:u000042", "<!subteam^S1>"):
        statement = select(Person.id).where(audience_condition(parse_audience(query)))
        with store.begin() as connection:
            compiled = statement.compile(connection, compile_kwargs={"literal_binds": True})
            prefix = "EXPLAIN QUERY PLAN " if store.is_sqlite else "EXPLAIN "
            rows = connection.execute(text(prefix + str(compiled))).all()
        print(f"-- plan for {query}")
        for row in rows:
            print("   ", row[-1])


if __name__ == "__main__":
    main()
