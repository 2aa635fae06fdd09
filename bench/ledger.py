"""Ledger throughput: deliveries written, claimed and recorded per second, on SQLite and PostgreSQL.

One command: `.venv/bin/python bench/ledger.py [--n 100000] [--db sqlite|postgresql|both]`

- write: one notification for N people (`create.ensure_notification`: one INSERT ... SELECT per channel,
  one transaction), against the same-run baseline of SQLModel `add` + `commit` per delivery (on a
  5,000-row sample, extrapolated);
- claim + record: the dispatcher's loop without sending (claim 500 under a lease, record 500 outcomes),
  until every delivery is final.
Prints rows/s for each and the ratio of the batched write to the per-row baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlmodel import Session

from bot.directory.audience import parse_audience
from bot.directory.audience_sql import audience_condition
from bot.directory.records import PersonRecord
from bot.directory.store import import_people
from bot.engine import ledger
from bot.engine.create import NewNotification, ensure_notification
from bot.engine.ledger import Outcome
from bot.store import Store, open_store
from bot.tables import Delivery

PG = os.environ.get("HERALD_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fresh(kind: str, tmp: Path) -> tuple[Store, str | None]:
    if kind == "sqlite":
        return open_store(f"sqlite:///{tmp / f'ledger-{uuid.uuid4().hex[:6]}.db'}"), None
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return open_store(f"{PG}?options=-csearch_path%3D{schema}"), schema


def drop(schema: str | None) -> None:
    if schema:
        admin = create_engine(
            PG.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def scratch(kind: str, tmp: Path) -> Iterator[Store]:
    """A fresh store (a SQLite file, or a PostgreSQL schema dropped afterwards) for one bench run."""
    store, schema = fresh(kind, tmp)
    try:
        yield store
    finally:
        store.dispose()
        drop(schema)


def bench_arguments(description: str, n: int) -> argparse.ArgumentParser:
    """The ``--n`` and ``--db sqlite|postgresql|both`` options every store bench takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    return parser


def each_db(db: str) -> Iterator[tuple[str, Path]]:
    """``(kind, scratch folder)`` for each database ``--db`` names."""
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("sqlite", "postgresql") if db == "both" else (db,):
            yield kind, Path(tmp)


def notification(n_id: str, now: float) -> NewNotification:
    return NewNotification(
        id=n_id,
        kind="announcement",
        severity="info",
        title="bench",
        body="",
        audience="everyone",
        channels=("email",),
        created_by="bench",
        created_at=now,
        start_at=now,
        deadline=now + 3600,
    )


def run(kind: str, n: int, tmp: Path) -> None:
    with scratch(kind, tmp) as store:
        people = [PersonRecord(id=f"p{i}", name=f"P {i}", email=f"p{i}@example.com") for i in range(n)]
        import_people(store, people)
        everyone = audience_condition(parse_audience("everyone"))
        now = time.time()
        started = time.perf_counter()
        ensure_notification(store, notification("nbench1", now), everyone)
        write_rate = n / (time.perf_counter() - started)

        sample = 5000
        ensure_notification(
            store, notification("nbench0", now), audience_condition(parse_audience("person:p0"))
        )
        started = time.perf_counter()
        with Session(store.engine) as session:
            for i in range(sample):
                session.add(
                    Delivery(
                        notification_id="nbench0",
                        person_id=f"x{i}",
                        channel="email",
                        address=f"x{i}@example.com",
                        deadline=now + 3600,
                        due_at=now,
                        created_at=now,
                    )
                )
                session.commit()
        per_row_rate = sample / (time.perf_counter() - started)

        started = time.perf_counter()
        done = 0
        while True:
            batch = ledger.claim(store, "email", "bench", time.time(), 60, 500)
            if not batch:
                break
            at = time.time()
            ledger.record(
                store,
                [
                    Outcome(
                        c.id,
                        "email",
                        c.address,
                        "sent",
                        at,
                        "sent",
                        provider_id=f"<{c.id}@x>",
                        notification_id=c.notification_id,
                    )
                    for c in batch
                ],
                "bench",
            )
            done += len(batch)
        cycle_rate = done / (time.perf_counter() - started)
        print(
            f"{kind:10} write (INSERT ... SELECT): {write_rate:9,.0f} rows/s | per-row add+commit: "
            f"{per_row_rate:7,.0f} rows/s | ratio {write_rate / per_row_rate:5.1f}x | "
            f"claim+record: {cycle_rate:8,.0f} rows/s",
            flush=True,
        )


def main() -> None:
    args = bench_arguments(__doc__.splitlines()[0], 100_000).parse_args()
    for kind, tmp in each_db(args.db):
        run(kind, args.n, tmp)


if __name__ == "__main__":
    main()
