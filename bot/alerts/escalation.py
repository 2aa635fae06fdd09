"""Escalation: what is due now (a pure function of stored state and the clock), and the tick.

A group's policy (frozen when it opened) gives its chain. Step 0 is the page to the route's
audience when the alert is received. With ``ack_within`` set and nobody acknowledging:

- step ``n`` for ``n <= len(escalate)`` notifies ``escalate[n-1]`` (tier ``n``), a notification of
  kind ``escalation`` over the route's channels, ``ack_within`` after the step before it (the first
  one ``ack_within`` after the alert was received);
- then :data:`~bot.alerts.routing.REMINDERS` reminders (kind ``reminder``), one every
  ``ack_within``, to everyone paged so far;
- acknowledging or resolving stops the chain at once (``next_escalation_at`` is cleared).

A flood-control summary has one chain, its lead's (:mod:`bot.alerts.storm`): each step speaks for
every group of the summary still firing and is linked to them all; acknowledging any of them stops it.

The timer is ``alert_group.next_escalation_at``; the scheduler only ticks. Taking step ``n`` is
idempotent: the notification is keyed ``alert:<group>:step:<n>`` (created once, whoever ticks),
then the group moves from step ``n-1`` to ``n`` compare-and-set, so a double tick, two processes or
a restart between the two writes neither skip nor repeat a tier.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from sqlalchemy import select, update

from bot.alerts import messages, storm
from bot.alerts.models import Policy
from bot.alerts.notify import (
    GROUP,
    alert_links,
    first_notification,
    forget_notice,
    group_facts,
    group_row,
    link,
    notified_people,
    people_for,
)
from bot.alerts.outbox import flush, guarded
from bot.alerts.silences import sync_silences
from bot.alerts.window_end import close_due, post_overrun_notices
from bot.alerts.window_remind import remind_due
from bot.app import Herald
from bot.engine import notice_state
from bot.engine.create import NewNotification, ensure_notification, new_notification_id
from bot.recipients.rules import delivery_rules

log = logging.getLogger("herald.alerts")

TICK_EVERY = 2.0
MAX_PER_TICK = 200

StepKind = Literal["escalation", "reminder"]


@dataclass(frozen=True, slots=True)
class Chain:
    """The stored state the decision needs."""

    state: str
    acked: bool
    step: int
    next_at: float | None
    policy: Policy


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the chain. ``audience`` None means everyone paged so far (a reminder)."""

    number: int
    kind: StepKind
    tier: int
    audience: str | None


def step_of(policy: Policy, number: int) -> Step | None:
    """Step ``number`` (1-based) of the policy's chain, None past its end."""
    if number < 1 or number > policy.steps:
        return None
    tiers = len(policy.escalate)
    if number <= tiers:
        return Step(number, "escalation", number, policy.escalate[number - 1])
    return Step(number, "reminder", tiers, None)


def due_step(chain: Chain, now: float) -> Step | None:
    """The step to take now, or None: nothing is due, the group is acknowledged or resolved."""
    if chain.state != "firing" or chain.acked or chain.next_at is None or chain.next_at > now:
        return None
    return step_of(chain.policy, chain.step + 1)


def chain_of(row: Mapping[str, Any]) -> Chain:
    return Chain(
        state=row["state"],
        acked=row["acked_at"] is not None,
        step=int(row["step"]),
        next_at=row["next_escalation_at"],
        policy=Policy.from_json(row["policy"]),
    )


def escalate_due(herald: Herald) -> list[str]:
    """Take every due step; returns the notifications written (or found) for them."""
    now = herald.clock.now()
    with herald.store.begin() as connection:
        rows = [
            dict(row)
            for row in connection.execute(
                select(GROUP)
                .where(
                    GROUP.c.state == "firing",
                    GROUP.c.acked_at.is_(None),
                    GROUP.c.next_escalation_at.is_not(None),
                    GROUP.c.next_escalation_at <= now,
                )
                .order_by(GROUP.c.next_escalation_at)
                .limit(MAX_PER_TICK)
            ).mappings()
        ]
    taken = []
    for row in rows:
        chain = chain_of(row)
        step = due_step(chain, now)
        if step is None:
            _stop_timer(herald, row)
            continue
        nid = guarded("escalation", row["id"], partial(_take, herald, row, chain, step, now))
        if nid is not None:
            taken.append(nid)
    return taken


def _stop_timer(herald: Herald, row: Mapping[str, Any]) -> None:
    with herald.store.begin() as connection:
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id == row["id"], GROUP.c.step == row["step"])
            .values(next_escalation_at=None, version=GROUP.c.version + 1)
        )


def _take(herald: Herald, row: Mapping[str, Any], chain: Chain, step: Step, now: float) -> str | None:
    group_id = row["id"]
    members, acked = _summary(herald, group_id)
    if acked:  # someone acknowledged an alert of the summary this group leads: its chain stops
        _stop_timer(herald, row)
        return None
    audience = step.audience or f"everyone paged about alert {group_id}"
    people = people_for(step.audience) if step.audience else notified_people(group_id)
    new = _step_notification(herald, row, chain.policy, step, audience, now, members)
    nid, _ = ensure_notification(herald.store, new, people, delivery_rules(herald.settings))
    about = members or [group_id]
    link(herald.store, about, nid, step.kind, step.number, audience, now)
    moved, current = _advance(herald, group_id, chain.policy, step, now)
    if moved:
        log.info("alert %s: %s step %d to %s (%s)", group_id, step.kind, step.number, audience, nid)
        return nid
    if current is not None and (current["acked_at"] is not None or current["state"] != "firing"):
        # Acknowledged or resolved while the step was being written: it must not go out.
        notice_state.cancel(herald.store, nid, now)
        for member in about:
            forget_notice(herald.store, member, nid)
    return None


def _summary(herald: Herald, group_id: str) -> tuple[list[str] | None, bool]:
    """The groups still firing of the flood-control summary ``group_id`` leads (None: it leads none),
    and whether any of its groups was acknowledged."""
    with herald.store.begin() as connection:
        summary = storm.summary_led(connection, group_id)
        if summary is None:
            return None, False
        where = storm.in_summary(summary)
        return storm.firing_ids(connection, where), storm.acknowledged(connection, where)


def _step_notification(
    herald: Herald,
    row: Mapping[str, Any],
    policy: Policy,
    step: Step,
    audience: str,
    now: float,
    members: list[str] | None = None,
) -> NewNotification:
    """The step's notification, keyed ``alert:<group>:step:<n>`` so whoever ticks writes it once.
    For the lead of a flood-control summary (``members``) it speaks for the whole summary."""
    group_id = row["id"]
    waited = now - row["opened_at"]
    with herald.store.begin() as connection:
        facts = group_facts(connection, row)
        parent = first_notification(connection, group_id)
        links = alert_links(connection, group_id, row["external_url"])
        if members:
            folded = storm.storm_facts(connection, group_id, row["route"], GROUP.c.id.in_(members))
            title = messages.storm_escalation_title(folded, step.kind, step.number, step.tier)
            body = messages.storm_escalation_body(folded, step.kind, waited, audience)
        else:
            title = messages.escalation_title(facts, step.kind, step.number, step.tier)
            body = messages.escalation_body(facts, step.kind, waited, audience)
    return NewNotification(
        id=new_notification_id(),
        kind=step.kind,
        severity=row["severity"],
        title=title[:500],
        body=body,
        audience=audience[:2000],
        channels=policy.channels,
        created_by=f"alert:{row['source']}",
        created_at=now,
        start_at=now,
        deadline=now + policy.deliver_within,
        parent_id=parent,
        idempotency_key=f"alert:{group_id}:step:{step.number}",
        meta={"alert_group": group_id, "alert_step": step.number, "links": links},
    )


def _advance(
    herald: Herald, group_id: str, policy: Policy, step: Step, now: float
) -> tuple[bool, Mapping[str, Any] | None]:
    """Move the group from the step before to ``step`` (compare-and-set, only while it fires
    unacknowledged). When it did not move: the group as it is now."""
    with herald.store.begin() as connection:
        moved = connection.execute(
            update(GROUP)
            .where(
                GROUP.c.id == group_id,
                GROUP.c.step == step.number - 1,
                GROUP.c.state == "firing",
                GROUP.c.acked_at.is_(None),
            )
            .values(
                step=step.number,
                next_escalation_at=policy.next_escalation(step.number, now),
                version=GROUP.c.version + 1,
                revision=GROUP.c.revision + 1,
            )
        ).rowcount
        return bool(moved), (group_row(connection, group_id) if not moved else None)


def run_due(herald: Herald) -> None:
    """One pass of everything time-driven: maintenance windows that ended (their overruns page) and
    reminders before windows, escalation steps, owed notifications, then Alertmanager silences owed
    (bot.alerts.silences)."""
    close_due(herald)
    remind_due(herald)
    escalate_due(herald)
    flush(herald)
    sync_silences(herald)


def alert_tick(herald: Herald) -> Callable[[], Awaitable[None]]:
    """The scheduler job for ``herald serve``: run what is due, then bring Slack messages up to date."""
    from bot.alerts.slack import AlertSlack

    slack = AlertSlack.build(herald)

    async def tick() -> None:
        await asyncio.to_thread(run_due, herald)
        await post_overrun_notices(herald, slack.client if slack is not None else None)
        if slack is not None:
            await slack.sync()

    return tick
