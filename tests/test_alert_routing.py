"""Pure routing, severity, grouping, the escalation "what is due" function and flood control, as tables."""

from __future__ import annotations

import pytest

from bot.alerts.escalation import Chain, Step, due_step, step_of
from bot.alerts.flood import Owed, plan_flood
from bot.alerts.models import Policy
from bot.alerts.routing import (
    DEFAULT_AUDIENCE,
    choose_route,
    group_key,
    group_labels,
    group_title,
    policy_for,
    severity_for,
)
from bot.config import SEVERITIES, Route, Settings

ROUTES = [
    Route(
        match={"team": "network"},
        audience="group:oncall-network",
        channels=["email", "sms"],
        severity="critical",
    ),
    Route(match_re={"instance": r"db-\d+"}, audience="group:dba", group_by=["alertname", "instance"]),
    Route(
        match={"env": "prod"}, match_re={"alertname": "Disk.*"}, audience="group:storage", severity="outage"
    ),
    Route(match={"env": ""}, audience="group:unlabelled"),
]
BOTH = ("email", "sms")


@pytest.mark.parametrize(
    ("labels", "name", "audience"),
    [
        ({"team": "network", "alertname": "LinkDown"}, "routes[0]", "group:oncall-network"),
        ({"team": "Network", "env": "x"}, "default", DEFAULT_AUDIENCE),  # exact match is case-sensitive
        ({"instance": "db-12", "env": "x"}, "routes[1]", "group:dba"),
        ({"instance": "db-12x", "env": "x"}, "default", DEFAULT_AUDIENCE),  # fullmatch, not search
        ({"env": "prod", "alertname": "DiskFull"}, "routes[2]", "group:storage"),
        ({"env": "prod", "alertname": "HighDisk"}, "default", DEFAULT_AUDIENCE),
        ({"team": "network", "instance": "db-1"}, "routes[0]", "group:oncall-network"),  # first match wins
        ({"alertname": "NoEnvLabel"}, "routes[3]", "group:unlabelled"),  # missing label equals ""
    ],
)
def test_first_matching_route_wins(labels: dict[str, str], name: str, audience: str) -> None:
    choice = choose_route(ROUTES, labels, BOTH)
    assert (choice.name, choice.audience) == (name, audience)


def test_default_route_uses_every_configured_channel_and_unconfigured_channels_are_dropped() -> None:
    assert choose_route([], {"a": "b"}, BOTH).channels == BOTH
    assert choose_route([], {"a": "b"}, ("email",)).channels == ("email",)
    sms_only = [Route(audience="everyone", channels=["sms"])]
    assert choose_route(sms_only, {}, ("email",)).channels == ("email",)
    assert choose_route(sms_only, {}, BOTH).channels == ("sms",)


def test_route_key_is_stable_under_reordering_and_differs_by_content() -> None:
    a = choose_route(ROUTES, {"team": "network"}, BOTH)
    b = choose_route([ROUTES[3], ROUTES[0]], {"team": "network", "env": "x"}, BOTH)
    assert a.key == b.key
    assert a.name != b.name
    assert a.key != choose_route(ROUTES, {"instance": "db-1", "env": "x"}, BOTH).key


@pytest.mark.parametrize(
    ("route_severity", "label", "expected"),
    [
        ("outage", "critical", "outage"),  # the route's severity wins
        (None, "security", "security"),
        (None, "Maintenance", "maintenance"),
        (None, "warning", "info"),
        (None, "page", "critical"),
        (None, "bogus", "critical"),  # unknown: paged rather than downgraded
        (None, "", "critical"),
    ],
)
def test_severity(route_severity: str | None, label: str, expected: str) -> None:
    route = Route(audience="everyone", severity=route_severity)  # type: ignore[arg-type]
    choice = choose_route([route], {}, BOTH)
    labels = {"severity": label} if label else {}
    assert severity_for(choice, labels, SEVERITIES) == expected


def test_grouping() -> None:
    labels = {"alertname": "HighLatency", "instance": "api-1", "job": "api"}
    assert group_labels(["alertname"], labels) == {"alertname": "HighLatency"}
    assert group_labels(["alertname", "site"], labels) == {"alertname": "HighLatency", "site": ""}
    assert group_labels(["..."], labels) == dict(sorted(labels.items()))
    choice = choose_route([], labels, BOTH)
    one = group_key(choice, "critical", group_labels(["alertname"], labels))
    other_instance = group_key(
        choice, "critical", group_labels(["alertname"], {**labels, "instance": "api-2"})
    )
    assert one == other_instance
    assert one != group_key(choice, "info", group_labels(["alertname"], labels))
    assert group_title({"alertname": "HighLatency", "site": "berlin"}, "x") == "HighLatency berlin"
    assert group_title({"site": ""}, "fallback") == "fallback"
    assert group_title({"instance": "w1", "job": "api"}, "fallback") == "instance=w1 job=api"


def test_policy_is_frozen_from_the_sla() -> None:
    settings = Settings(sla={"critical": {"ack_within": "5m", "escalate": ["group:t1", "group:t2"]}})
    choice = choose_route([], {}, BOTH)
    policy = policy_for(settings, choice, "critical")
    assert (policy.ack_within, policy.escalate, policy.reminders, policy.steps) == (
        300.0,
        ("group:t1", "group:t2"),
        2,
        4,
    )
    assert Policy.from_json(policy.to_json()) == policy
    info = policy_for(settings, choice, "info")
    assert (info.ack_within, info.steps) == (None, 0)


# -- escalation: what is due ---------------------------------------------------------------------------

POLICY = Policy(
    route="default",
    audience="group:oncall",
    channels=BOTH,
    severity="critical",
    deliver_within=120,
    ack_within=600,
    escalate=("group:t1", "group:t2"),
    reminders=2,
)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (0, None),
        (1, Step(1, "escalation", 1, "group:t1")),
        (2, Step(2, "escalation", 2, "group:t2")),
        (3, Step(3, "reminder", 2, None)),
        (4, Step(4, "reminder", 2, None)),
        (5, None),
    ],
)
def test_steps_of_a_policy(number: int, expected: Step | None) -> None:
    assert step_of(POLICY, number) == expected


@pytest.mark.parametrize(
    ("state", "acked", "step", "next_at", "now", "expected"),
    [
        ("firing", False, 0, 1000.0, 999.0, None),  # not yet
        ("firing", False, 0, 1000.0, 1000.0, 1),  # exactly due
        ("firing", False, 1, 1600.0, 5000.0, 2),  # overdue (a restart): the next step only, none skipped
        ("firing", True, 0, 1000.0, 5000.0, None),  # acknowledged
        ("resolved", False, 0, 1000.0, 5000.0, None),  # resolved
        ("firing", False, 0, None, 5000.0, None),  # no timer
        ("firing", False, 4, 9000.0, 9999.0, None),  # chain over
        ("firing", False, 2, 2200.0, 2200.0, 3),  # first reminder
    ],
)
def test_due_step(
    state: str, acked: bool, step: int, next_at: float | None, now: float, expected: int | None
) -> None:
    due = due_step(Chain(state, acked, step, next_at, POLICY), now)
    assert (due.number if due else None) == expected


@pytest.mark.parametrize(
    ("taken", "at", "expected"),
    [(0, 100.0, 700.0), (3, 100.0, 700.0), (4, 100.0, None)],
)
def test_next_escalation(taken: int, at: float, expected: float | None) -> None:
    assert POLICY.next_escalation(taken, at) == expected


def test_no_ack_within_means_no_chain() -> None:
    policy = Policy("default", "everyone", BOTH, "info", 60.0, None, ("group:t1",))
    assert policy.steps == 0
    assert policy.next_escalation(0, 0.0) is None


# -- flood control -----------------------------------------------------------------------------------


def owed(n: int, route: str = "r", urgent: bool = False, start: int = 0) -> list[Owed]:
    return [
        Owed(f"{route}{i + start}", route, urgent, float(i + start), ("group:x", "email")) for i in range(n)
    ]


@pytest.mark.parametrize(
    ("items", "recent", "singles", "summaries", "held"),
    [
        (owed(3), {}, 3, [], 0),
        (owed(10), {}, 10, [], 0),
        (owed(30), {}, 9, [21], 0),  # one place left for a summary of the rest
        (owed(5), {"r": 8}, 1, [4], 0),
        (owed(5), {"r": 9}, 0, [5], 0),
        (owed(5), {"r": 10}, 0, [], 5),  # no room: held, never dropped
        (owed(5, urgent=True), {"r": 50}, 5, [], 0),  # urgent: its own lane, warnings never delay it
        (owed(30, urgent=True), {}, 9, [21], 0),  # an urgent storm is bounded too, the summary at once
        (owed(5, urgent=True), {"r:urgent": 10}, 0, [], 5),
        (owed(3, urgent=True) + owed(20, start=3), {"r": 5}, 3 + 4, [16], 0),
        (owed(12, "a") + owed(2, "b"), {"b": 10}, 9 + 0, [3], 2),
        ([*owed(11)[:10], Owed("odd", "r", False, 99.0, ("group:y", "email"))], {}, 10, [], 1),
    ],
)
def test_flood_plan(
    items: list[Owed], recent: dict[str, int], singles: int, summaries: list[int], held: int
) -> None:
    plan = plan_flood(items, recent, limit=10)
    assert len(plan.singles) == singles
    assert [len(s) for s in plan.summaries] == summaries
    assert len(plan.held) == held
    every = plan.singles + [g for s in plan.summaries for g in s] + plan.held
    assert sorted(every) == sorted(o.group_id for o in items)  # nothing lost, nothing twice


def test_flood_summary_keeps_audiences_apart_and_oldest_go_first() -> None:
    items = owed(9) + [Owed(f"y{i}", "r", False, 100.0 + i, ("group:y", "email")) for i in range(2)]
    items.append(Owed("z", "r", False, 200.0, ("group:z", "email")))
    plan = plan_flood(items, {}, limit=10)
    assert plan.singles[:9] == [f"r{i}" for i in range(9)]
    assert plan.summaries == [["y0", "y1"]]
    assert plan.held == ["z"]
