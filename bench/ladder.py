"""The channel ladder against the all-channels blast: SMS sent and what they cost, same run.

    .venv/bin/python bench/ladder.py [--people 2000] [--confirm-share 0.7] [--runs 3]

A 2,000-person critical announcement over ``slack,email>sms --confirm`` (deliver_within 10m,
confirm_within 5m) under the injected clock (``ManualClock``), on a fresh SQLite database. Everyone
has an email address and a phone (60 % German, 30 % US, 10 % British numbers), 80 % a Slack user.
The real parts: ``service.announce`` (the rung stored with the notification), confirmations
recorded by ``bot.recipients.confirmations.confirm``, the rung tick
(``bot.engine.ladder_tick.start_due_rungs``: planner, forecast, the rung's deliveries) every 5 s of
clock time, ``[twilio.prices]`` costs by country (``bot.engine.sms_cost``). Simulated: the providers
(a delivery is marked sent at the time its channel's pace gives: email 50/s, Slack DMs 1/s, SMS at
``twilio.rate_per_second`` 10/s from the rung's start) and the people: ``confirm-share`` of them, drawn
at random, confirm at a uniform time within the first minute. The baseline is the blast:
``slack,email,sms`` at once, an SMS to everyone with a number. Medians of the runs (seeds 1..runs).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, select, update

from bot import service
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.engine.ladder_tick import start_due_rungs
from bot.engine.sms_cost import country_of, most_cost
from bot.recipients.confirmations import confirm
from bot.store import Store, open_store
from bot.tables import Delivery, Person, table_of

DELIVERY = table_of(Delivery)
PRICES = {"DE": 0.0794, "US": 0.0083, "GB": 0.0463, "default": 0.05}
PACE = {"email": 50.0, "slack": 1.0, "sms": 10.0}  # sends per second, as configured below
STEP = 5.0  # seconds of clock time between rung ticks (serve ticks every 2 s)


@dataclass
class Outcome:
    sms_ladder: int
    sms_blast: int
    cost_ladder: float
    cost_blast: float
    rung_start_s: float
    confirmed: int
    unreached: int
    last_first_contact_s: float
    deadline_s: float
    tick_ms: float


def phone(i: int) -> str:
    share = i % 10
    if share < 6:
        return f"+49151{i:08d}"
    if share < 9:
        return f"+1415555{i % 10000:04d}"
    return f"+447700{i % 1000000:06d}"


def seed(store: Store, people: int) -> None:
    with store.session() as session:
        for i in range(people):
            slack = f"U{i:08d}" if i % 5 else None
            session.add(
                Person(
                    id=f"p{i}", name=f"P{i}", email=f"p{i}@example.com", phone=phone(i), slack_user_id=slack
                )
            )
        session.commit()


def build(url: str, clock: ManualClock) -> Herald:
    settings = load_settings(
        None,
        database={"url": url},
        slack={"bot_token": "xoxb-bench", "signing_secret": "s", "api_url": "http://127.0.0.1:9/api/"},
        smtp={"host": "127.0.0.1", "port": 9, "security": "none", "from_address": "h@example.com",
              "rate_per_second": PACE["email"]},
        twilio={"account_sid": "AC" + "0" * 32, "auth_token": "t", "from_number": "+15005550006",
                "api_url": "http://127.0.0.1:9", "rate_per_second": PACE["sms"], "prices": PRICES},
        sla={"critical": {"deliver_within": "10m", "confirm_within": "5m"}},
        quiet_hours={"kinds": []},
    )  # fmt: skip
    return Herald.build(settings, clock=clock)


def mark_sent(
    store: Store, notification_id: str, channel: str, start: float, most: int | None = None
) -> None:
    """The provider: the channel's queued deliveries go out at its pace from ``start``."""
    with store.begin() as connection:
        ids = connection.execute(
            select(DELIVERY.c.id)
            .where(DELIVERY.c.notification_id == notification_id, DELIVERY.c.channel == channel)
            .where(DELIVERY.c.state == "queued")
            .order_by(DELIVERY.c.id)
        ).scalars()
        rows = [{"key": key, "at": start + n / PACE[channel]} for n, key in enumerate(ids)][:most]
        if rows:
            statement = update(DELIVERY).where(DELIVERY.c.id == bindparam("key"))
            connection.execute(statement.values(state="sent", sent_at=bindparam("at")), rows)


def first_contacts(store: Store, notification_id: str) -> dict[str, float]:
    with store.begin() as connection:
        rows = connection.execute(
            select(DELIVERY.c.person_id, DELIVERY.c.sent_at).where(
                DELIVERY.c.notification_id == notification_id, DELIVERY.c.sent_at.is_not(None)
            )
        ).all()
    first: dict[str, float] = {}
    for person, at in rows:
        first[person] = min(first.get(person, at), at)
    return first


def sms_numbers(store: Store, notification_id: str) -> list[str]:
    with store.begin() as connection:
        return list(
            connection.execute(
                select(DELIVERY.c.address).where(
                    DELIVERY.c.notification_id == notification_id,
                    DELIVERY.c.channel == "sms",
                    DELIVERY.c.state == "sent",
                )
            ).scalars()
        )


def cost(numbers: list[str], segments: int) -> float:
    by_country: dict[str, int] = {}
    for number in numbers:
        country = country_of(number)
        by_country[country] = by_country.get(country, 0) + 1
    return most_cost(PRICES, by_country, segments)


def run(people: int, share: float, run_seed: int) -> Outcome:
    rng = random.Random(run_seed)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        store = open_store(url)
        seed(store, people)
        clock = ManualClock()
        herald = build(url, clock)
        t0 = clock.now()
        request = service.AnnounceRequest(
            audience="everyone", channels=("slack", "email", "sms"), severity="critical",
            title="Core switch down", body="Berlin office offline; we are on it.",
            meta={"confirm": True}, rungs=(("slack", "email"), ("sms",)),
        )  # fmt: skip
        nid = service.announce(herald, request)
        mark_sent(store, nid, "email", t0)
        mark_sent(store, nid, "slack", t0, most=int(60 * PACE["slack"]))  # the first minute of DMs
        chosen = rng.sample(range(people), int(people * share))
        due = sorted((t0 + rng.uniform(5.0, 60.0), f"p{i}") for i in chosen)
        deadline = herald.settings.sla_for("critical").deliver_within
        rung_start, ticks = None, []
        while clock.now() <= t0 + deadline and rung_start is None:
            while due and due[0][0] <= clock.now():
                at, person = due.pop(0)
                confirm(store, nid, person, "email", at)
            began = time.perf_counter()
            started = start_due_rungs(herald)
            ticks.append(time.perf_counter() - began)
            if started:
                rung_start = clock.now()
                mark_sent(store, nid, "sms", rung_start)
            clock.advance(STEP)
        assert rung_start is not None, "the SMS rung never started"
        segments = herald.channel("sms").prepare(service_notice(request)).cost
        numbers = sms_numbers(store, nid)
        first = first_contacts(store, nid)
        blast_numbers = [phone(i) for i in range(people)]
        status = service.status(herald, nid) or {}
        store.dispose()
        herald.store.dispose()
    return Outcome(
        sms_ladder=len(numbers),
        sms_blast=len(blast_numbers),
        cost_ladder=cost(numbers, segments),
        cost_blast=cost(blast_numbers, segments),
        rung_start_s=rung_start - t0,
        confirmed=int(status.get("people", {}).get("confirmed", 0)),
        unreached=people - sum(1 for at in first.values() if at <= t0 + deadline),
        last_first_contact_s=max(first.values()) - t0,
        deadline_s=deadline,
        tick_ms=statistics.median(ticks) * 1000,
    )


def service_notice(request: service.AnnounceRequest):  # type: ignore[no-untyped-def]
    from channels.base import Notice

    return Notice("bench", request.severity, request.title, request.body, True, confirm=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--confirm-share", type=float, default=0.7)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    outcomes = [run(args.people, args.confirm_share, seed_) for seed_ in range(1, args.runs + 1)]

    def med(name: str) -> float:
        return float(statistics.median(getattr(o, name) for o in outcomes))

    fewer = 1 - med("sms_ladder") / med("sms_blast")
    print(f"{args.people} people, slack,email>sms --confirm, {args.confirm_share:.0%} confirm within 60 s;"
          f" medians of {args.runs} runs")  # fmt: skip
    print(f"  confirmed before the SMS rung: {med('confirmed'):.0f}")
    print(
        f"  SMS rung started at t+{med('rung_start_s'):.0f} s"
        f" (confirm_within 300 s, deadline {med('deadline_s'):.0f} s)"
    )
    print(
        f"  SMS sent: ladder {med('sms_ladder'):.0f} vs blast {med('sms_blast'):.0f}"
        f" ({fewer:.1%} fewer; target >= 60%)"
    )
    print(f"  SMS cost: ladder {med('cost_ladder'):.2f} vs blast {med('cost_blast'):.2f}"
          f" ({med('cost_ladder') / med('cost_blast'):.2f}x)")  # fmt: skip
    last_sms = med("rung_start_s") + (med("sms_ladder") - 1) / PACE["sms"]
    print(f"  last SMS out at t+{last_sms:.0f} s (confirm_within 300 s)")
    print(
        f"  unreached at the deadline: {med('unreached'):.0f};"
        f" last first contact t+{med('last_first_contact_s'):.0f} s"
    )
    print(f"  rung tick (plan + forecast, nothing due): median {med('tick_ms'):.1f} ms")


if __name__ == "__main__":
    main()
