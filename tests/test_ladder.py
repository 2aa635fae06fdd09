"""The channel ladder (``--channels email>sms``): the planner as a table; rung timing under the
injected clock on both databases (a rung starts at its latest safe time, only for the people left,
once, also across a restart); and ``herald announce --channels email>sms --confirm --wait`` end
to end through the SMTP and Twilio stand-ins.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Peers
from sqlalchemy import func, select

from bot import service
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import ConfigError, load_settings
from bot.engine import notice_state, retention, rungs
from bot.engine.ladder import LadderError, RungPlan, latest_start, parse_rungs, plan
from bot.engine.ladder_tick import start_due_rungs, starts_at
from bot.engine.sms_cost import country_of, most_cost
from bot.recipients.confirmations import confirm
from bot.recipients.rules import delivery_rules
from bot.store import Store
from bot.tables import Delivery, Person, Rung, table_of

DELIVERY = table_of(Delivery)
PEOPLE = 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email", (("email",),)),
        ("slack,email>sms", (("slack", "email"), ("sms",))),
        ("Email > SMS", (("email",), ("sms",))),
        ("slack>email>sms", (("slack",), ("email",), ("sms",))),
    ],
)
def test_rungs_are_read_from_channels(text: str, expected: tuple[tuple[str, ...], ...]) -> None:
    assert parse_rungs(text) == expected


@pytest.mark.parametrize(("text", "problem"), [("email>", "empty rung"), ("email>email", "two rungs")])
def test_bad_rungs_are_named(text: str, problem: str) -> None:
    with pytest.raises(LadderError, match=problem):
        parse_rungs(text)


@pytest.mark.parametrize(
    ("deadline", "seconds", "within", "expected"),
    [
        (1000.0, 0.0, 100.0, 990.0),  # nothing to wait for: the margin only
        (1000.0, 50.0, 100.0, 940.0),
        (1000.0, 2000.0, 100.0, -1010.0),  # already late: start at once (plan clamps)
        (7200.0, 600.0, 14400.0, 5160.0),  # maintenance: 4h deadline, margin 24 min
    ],
)
def test_latest_start(deadline: float, seconds: float, within: float, expected: float) -> None:
    assert latest_start(deadline, seconds, within) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("loads", "expected"),
    [
        ([(("email",), 10, 1.0), (("sms",), 10, 20.0)], [100.0, 1060.0]),  # 1200 - 20 - 120
        ([(("email",), 10, 1.0), (("sms",), 10, 5000.0)], [100.0, 100.0]),  # too slow: at once
        (
            [(("slack",), 5, 1.0), (("email",), 5, 300.0), (("sms",), 5, 100.0)],
            [100.0, 780.0, 980.0],  # each later rung no earlier than the one before
        ),
        ([(("slack",), 5, 1.0), (("email",), 5, 10.0), (("sms",), 5, 900.0)], [100.0, 1070.0, 1070.0]),
    ],
)
def test_the_plan(loads: list[tuple[tuple[str, ...], int, float]], expected: list[float]) -> None:
    plans = plan(loads, start=100.0, deadline=1200.0, deliver_within=1200.0)
    assert [p.starts_at for p in plans] == expected
    assert plans[0] == RungPlan(0, loads[0][0], loads[0][1], 100.0)


def seed(store: Store) -> None:
    with store.session() as session:
        for i in range(PEOPLE):
            session.add(
                Person(id=f"p{i}", name=f"P{i}", email=f"p{i}@example.com", phone=f"+49151100000{i:02d}")
            )
        session.commit()


def build(store: Store, db_url: str, clock: ManualClock) -> Herald:
    settings = load_settings(
        None,
        database={"url": db_url},
        twilio={
            "account_sid": "AC" + "0" * 32, "auth_token": "t", "from_number": "+15005550006",
            "api_url": "http://127.0.0.1:9", "rate_per_second": 0.5,
        },
        sla={"critical": {"deliver_within": "10m", "confirm_within": "5m"}},
        quiet_hours={"kinds": []},
    )  # fmt: skip
    return Herald.build(settings, clock=clock, store=store)


@pytest.fixture
def herald(store: Store, db_url: str) -> Iterator[Herald]:
    seed(store)
    yield build(store, db_url, ManualClock())


def sms_people(store: Store, notification_id: str) -> set[str]:
    with store.begin() as connection:
        rows = connection.execute(
            select(DELIVERY.c.person_id).where(
                DELIVERY.c.notification_id == notification_id, DELIVERY.c.channel == "sms"
            )
        ).scalars()
        return {str(r) for r in rows}


def test_a_rung_starts_at_its_latest_safe_time_for_the_people_left_once(
    herald: Herald, store: Store, db_url: str
) -> None:
    clock = herald.clock
    assert isinstance(clock, ManualClock)
    t0 = clock.now()
    request = service.AnnounceRequest(
        audience="everyone", channels=("email", "sms"), severity="critical", title="Core down",
        body="", meta={"confirm": True}, rungs=(("email",), ("sms",)),
    )  # fmt: skip
    nid = service.announce(herald, request)
    assert sms_people(store, nid) == set()
    status = service.status(herald, nid)
    assert status is not None and status["rungs"] == [
        {"rung": 1, "channels": ["sms"], "started_at": None, "people": 0}
    ]
    assert notice_state.finish_notifications(store, t0 + 1, [nid]) == []  # a pending rung keeps it open
    for i in range(4):
        assert confirm(store, nid, f"p{i}", "email", t0 + 10) is not None
    [pending] = rungs.pending(store, t0)
    due = starts_at(herald, pending, 6, t0)
    # confirm_within 5m, margin a tenth of 10m, 6 SMS at 0.5/s: well after now, well before 5m.
    assert t0 + 120 < due < t0 + 240
    clock.advance(due - t0 - 1)
    assert start_due_rungs(herald) == []
    clock.advance(1)
    assert start_due_rungs(herald) == [(nid, 1, 6)]
    assert sms_people(store, nid) == {f"p{i}" for i in range(4, PEOPLE)}
    # A second tick, and a restarted process with the same database, start nothing again.
    assert start_due_rungs(herald) == []
    assert start_due_rungs(build(store, db_url, ManualClock(clock.now() + 60))) == []
    with store.begin() as connection:
        total = connection.execute(
            select(func.count()).select_from(DELIVERY).where(DELIVERY.c.notification_id == nid)
        ).scalar_one()
    assert total == PEOPLE + 6
    final = service.status(herald, nid)
    assert final is not None and final["rungs"][0]["people"] == 6 and "sms" in final["channels"]


def test_everyone_confirmed_the_rung_ends_with_nobody(herald: Herald, store: Store) -> None:
    request = service.AnnounceRequest(
        audience="everyone", channels=("email", "sms"), severity="critical", title="Core down",
        body="", meta={"confirm": True}, rungs=(("email",), ("sms",)),
    )  # fmt: skip
    nid = service.announce(herald, request)
    for i in range(PEOPLE):
        confirm(store, nid, f"p{i}", "email", herald.clock.now())
    assert start_due_rungs(herald) == [(nid, 1, 0)]  # at once: nobody is left
    assert sms_people(store, nid) == set()


def test_a_cancelled_notification_starts_no_rung(herald: Herald, store: Store) -> None:
    request = service.AnnounceRequest(
        audience="everyone", channels=("email", "sms"), severity="critical", title="Core down",
        body="", rungs=(("email",), ("sms",)),
    )  # fmt: skip
    nid = service.announce(herald, request)
    [pending] = rungs.pending(store, herald.clock.now())
    service.cancel(herald, nid, "test")
    assert rungs.pending(store, herald.clock.now()) == []
    assert rungs.start(store, pending, delivery_rules(herald.settings), herald.clock.now()) is None
    assert sms_people(store, nid) == set()
    confirm(store, nid, "p0", "email", herald.clock.now())  # nothing asks: no row
    purged = retention.purge(store, herald.clock.now() + 10, keep_for=1)
    assert purged.notifications == 1
    with store.begin() as connection:
        assert connection.execute(select(func.count()).select_from(table_of(Rung))).scalar_one() == 0


@pytest.fixture
def config(peers: Peers, store: Store, db_url: str, tmp_path: Path) -> str:
    seed(store)
    path = tmp_path / "herald.toml"
    extra = '[sla.critical]\ndeliver_within = "20s"\nconfirm_within = "4s"\n'
    extra += '[dispatcher]\npoll_interval = "0.05s"\n[twilio.prices]\nDE = 0.08\ndefault = 0.5\n'
    path.write_text(peers.config(db_url, extra), encoding="utf-8")
    return str(path)


def test_announce_email_then_sms_to_whoever_did_not_confirm(
    cli: Any, peers: Peers, config: str, store: Store
) -> None:
    result = cli(
        "announce", "--config", config, "--yes", "--wait", "--confirm", "--audience", "everyone",
        "--channels", "email>sms", "--severity", "critical", "--title", "Core down",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "rungs (later ones" in result.stdout and "2. sms: starts after" in result.stdout
    assert "at most 10 people, SMS at most 0.80" in result.stdout  # 10 German numbers, 1 segment
    assert "(SMS to everyone at once: 0.80, 1 segment each)" in result.stdout
    assert len(peers.smtp.messages) == PEOPLE
    assert len(peers.twilio.messages) == PEOPLE  # nobody confirmed: the SMS rung went to all
    assert all(m.body.endswith("Reply OK to confirm.") for m in peers.twilio.messages)
    assert "confirmations: confirmed 0, not confirmed 10, unreachable 0" in result.stdout
    assert "rung 2 (sms): started " in result.stdout and " for 10 people" in result.stdout


def test_bad_rungs_on_the_cli_exit_2(cli: Any, peers: Peers, config: str) -> None:
    result = cli("announce", "--config", config, "--yes", "-a", "everyone", "--channels", "email>", "-t", "x")
    assert result.exit_code == 2 and "empty rung" in result.stderr


@pytest.mark.parametrize(
    ("number", "country"),
    [
        ("+4915110000001", "DE"),
        ("+14155550100", "US"),
        ("+447700900123", "GB"),
        ("+3531234", "IE"),
        ("+999", "ZZ"),
    ],
)
def test_a_numbers_country(number: str, country: str) -> None:
    assert country_of(number) == country


def test_prices_by_country_with_a_default() -> None:
    prices = load_settings(None, twilio={"prices": {"de": 0.08, "default": 0.05}}).twilio.prices
    assert prices == {"DE": 0.08, "default": 0.05}
    assert most_cost(prices, {"DE": 10, "US": 2}, 2) == pytest.approx(10 * 2 * 0.08 + 2 * 2 * 0.05)
    assert most_cost({"DE": 0.08}, {"US": 5}, 1) == 0.0  # no default: unknown countries cost nothing
    with pytest.raises(ConfigError, match=r"twilio\.prices: Germany: expected a country code"):
        load_settings(None, twilio={"prices": {"Germany": 0.08}})
