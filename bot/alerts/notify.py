"""Store helpers shared by the lifecycle, acks and escalation: reading a group, stopping its chain,
and writing notifications about it exactly once.

Exactly once: every notification about a group carries an idempotency key that names the step it
stands for (``alert:<group>:fire:<n>``, ``alert:<group>:step:<n>``, ``alert:<group>:resolved``).
It is written first (:func:`bot.engine.create.ensure_notification`: found, else created; the unique
key settles a race), then linked to the group (:func:`link`, insert-or-ignore), and only then does
the group's counter move, compare-and-set. A crash anywhere in between is repaired by doing the same again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Integer, String, and_, cast, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bot.alerts.messages import MAX_LISTED, AlertLine, GroupFacts
from bot.alerts.models import Policy
from bot.alerts.routing import DEFAULT_AUDIENCE
from bot.alerts.tables import AlertGroup, AlertInstance, AlertNotice
from bot.channel_specs import CHANNELS
from bot.config import Settings
from bot.directory.audience import AudienceError, parse_audience
from bot.directory.audience_sql import audience_condition
from bot.recipients.rules import DeliveryRules, opted_out
from bot.store import Store
from bot.tables import Delivery, KeyValue, Notification, Person, Suppression, table_of

log = logging.getLogger("herald.alerts")

GROUP = table_of(AlertGroup)
INSTANCE = table_of(AlertInstance)
NOTICE = table_of(AlertNotice)
NOTIFICATION = table_of(Notification)
DELIVERY = table_of(Delivery)
PERSON = table_of(Person)
SUPPRESSION = table_of(Suppression)
KEY_VALUE = table_of(KeyValue)
UNROUTED_KEY = "alerts_unrouted"  # key_value row: alert groups whose route audience selected nobody

FIRING_KINDS = ("opened", "update", "repeat", "summary")
CHAIN_KINDS = ("escalation", "reminder")


def people_for(audience: str) -> ColumnElement[bool]:
    """The people an audience query selects; a query that does not parse pages the default audience
    (an alert must reach someone; ``herald config check`` is where a bad query should be caught)."""
    try:
        parsed = parse_audience(audience)
    except AudienceError as exc:
        log.error("alert audience %r does not parse (%s); paging %s instead", audience, exc, DEFAULT_AUDIENCE)
        parsed = parse_audience(DEFAULT_AUDIENCE)
    return audience_condition(parsed)


def selects_reachable(
    connection: Connection, audience: str, channels: Iterable[str], rules: DeliveryRules, severity: str
) -> bool:
    """Does ``audience`` select someone a delivery on one of ``channels`` could reach: active, with an
    address that is not suppressed, who did not turn ``severity`` off there?"""
    usable = []
    for channel in channels:
        if channel not in CHANNELS:
            continue
        address = PERSON.c[CHANNELS[channel].address_column]
        listed = exists().where(SUPPRESSION.c.channel == channel, SUPPRESSION.c.address == address)
        usable.append(
            and_(address.is_not(None), address != "", ~listed, ~opted_out(rules, severity, channel))
        )
    if not usable:
        return False
    found = select(exists().where(people_for(audience), or_(*usable)))
    return bool(connection.execute(found).scalar_one())


@dataclass(frozen=True, slots=True)
class Unrouted:
    """A group whose route (``route``, audience ``audience``) selected no reachable person: it pages
    ``fallback`` (the default route's audience), which selects someone reachable or not."""

    route: str
    audience: str
    fallback: str
    reachable: bool


def log_unrouted(settings: Settings, group_id: str, unrouted: Unrouted) -> None:
    """The one ERROR line an unrouted alert group gets, saying where it goes instead."""
    channel = settings.slack.alert_channel
    shown = f"shown in slack.alert_channel {channel}" if channel else "slack.alert_channel is not set"
    if channel and settings.slack.bot_token is None:
        shown = "not shown in Slack (slack.bot_token is not set)"
    if unrouted.reachable:
        outcome = f"paging the default route's audience {unrouted.fallback!r} instead; {shown}"
    else:
        outcome = f"the default route's audience {unrouted.fallback!r} selects nobody reachable either"
        outcome += f": nobody is paged; {shown}"
    log.error(
        "alert group %s: %s audience %r selects no reachable person; %s",
        group_id,
        unrouted.route,
        unrouted.audience,
        outcome,
    )


def count_unrouted(connection: Connection) -> None:
    """Add one to the stored count of unrouted alert groups (``herald_alerts_unrouted_total``)."""
    dialect_insert = sqlite.insert if connection.dialect.name == "sqlite" else postgresql.insert
    connection.execute(
        dialect_insert(KEY_VALUE)
        .values(key=UNROUTED_KEY, value="0")
        .on_conflict_do_nothing(index_elements=["key"])
    )
    connection.execute(
        update(KEY_VALUE)
        .where(KEY_VALUE.c.key == UNROUTED_KEY)
        .values(value=cast(cast(KEY_VALUE.c.value, Integer) + 1, String))
    )


def unrouted_total(connection: Connection) -> int:
    """How many alert groups so far had a route audience that selected no reachable person."""
    value = connection.execute(
        select(KEY_VALUE.c.value).where(KEY_VALUE.c.key == UNROUTED_KEY)
    ).scalar_one_or_none()
    return int(value) if value else 0


def notified_people(group_id: str) -> ColumnElement[bool]:
    """Everyone any notification about the group was addressed to (every tier; not resolutions)."""
    notices = select(NOTICE.c.notification_id).where(
        NOTICE.c.group_id == group_id, NOTICE.c.kind != "resolution"
    )
    return and_(
        PERSON.c.active.is_(True),
        PERSON.c.id.in_(select(DELIVERY.c.person_id).where(DELIVERY.c.notification_id.in_(notices))),
    )


def link(
    store: Store,
    group_ids: Iterable[str],
    notification_id: str,
    kind: str,
    step: int,
    audience: str,
    at: float,
) -> None:
    """Record that ``notification_id`` was about these groups (insert-or-ignore)."""
    rows = [
        {
            "group_id": group_id,
            "notification_id": notification_id,
            "kind": kind,
            "step": step,
            "audience": audience[:2000],
            "at": at,
        }
        for group_id in group_ids
    ]
    if not rows:
        return
    dialect_insert = sqlite.insert if store.is_sqlite else postgresql.insert
    statement = dialect_insert(NOTICE).on_conflict_do_nothing(index_elements=["group_id", "notification_id"])
    with store.begin() as connection:
        connection.execute(statement, rows)


def first_notification(connection: Connection, group_id: str) -> str | None:
    """The group's first notification (the parent of the ones that follow it)."""
    value = connection.execute(
        select(NOTICE.c.notification_id)
        .where(NOTICE.c.group_id == group_id)
        .order_by(NOTICE.c.at, NOTICE.c.notification_id)
        .limit(1)
    ).scalar_one_or_none()
    return str(value) if value else None


def group_row(connection: Connection, group_id: str) -> Mapping[str, Any] | None:
    row = connection.execute(select(GROUP).where(GROUP.c.id == group_id)).mappings().first()
    return dict(row) if row is not None else None


# Column values that stop a group's escalation chain: the timer is cleared, an owed update or repeat
# is dropped, and flood control no longer holds it.
CHAIN_STOPPED: dict[str, Any] = {
    "next_escalation_at": None,
    "pending": None,
    "pending_at": None,
    "held_since": None,
}


def resolution(now: float, by: str, notified: bool | ColumnElement[bool]) -> dict[str, Any]:
    """Column values of a group resolving ``now`` (``by`` a source or person): the chain stops, the
    open key is freed, and a resolution notice is owed when anyone was ``notified``."""
    return {
        "state": "resolved",
        "open_key": None,
        "resolved_at": now,
        "resolved_by": by,
        **CHAIN_STOPPED,
        "resolution_pending": notified,
    }


def stop_chain(
    connection: Connection, group_id: str, *conditions: ColumnElement[bool], **changes: Any
) -> bool:
    """Stop the group's escalation chain with ``changes``, where ``conditions`` hold: a visible change
    (``revision`` moves). False when the group did not match."""
    values = {**CHAIN_STOPPED, "version": GROUP.c.version + 1, "revision": GROUP.c.revision + 1, **changes}
    result = connection.execute(update(GROUP).where(GROUP.c.id == group_id, *conditions).values(values))
    return bool(result.rowcount)


def group_facts(connection: Connection, row: Mapping[str, Any]) -> GroupFacts:
    """What messages say about the group ``row``, with up to :data:`MAX_LISTED` firing alerts."""
    group_id = row["id"]
    counts: dict[str, int] = dict(
        connection.execute(
            select(INSTANCE.c.status, func.count())
            .where(INSTANCE.c.group_id == group_id)
            .group_by(INSTANCE.c.status)
        ).all()
    )
    status = "resolved" if row["state"] == "resolved" else "firing"
    sample_rows = connection.execute(
        select(INSTANCE.c.labels, INSTANCE.c.annotations)
        .where(INSTANCE.c.group_id == group_id, INSTANCE.c.status == status)
        .order_by(INSTANCE.c.first_seen_at, INSTANCE.c.id)
        .limit(MAX_LISTED)
    ).all()
    policy = Policy.from_json(row["policy"])
    return GroupFacts(
        id=group_id,
        title=row["title"],
        severity=row["severity"],
        route=row["route"],
        audience=policy.audience,
        opened_at=row["opened_at"],
        firing=int(counts.get("firing", 0)),
        resolved=int(counts.get("resolved", 0)),
        group_labels=json.loads(row["group_labels"] or "{}"),
        sample=tuple(_line(labels, annotations) for labels, annotations in sample_rows),
        truncated=int(row["truncated"] or 0),
        external_url=row["external_url"],
        held_since=row["held_since"],
    )


def _line(labels_json: str, annotations_json: str) -> AlertLine:
    labels: dict[str, str] = json.loads(labels_json or "{}")
    annotations: dict[str, str] = json.loads(annotations_json or "{}")
    summary = ""
    for key in ("summary", "title", "message"):
        if annotations.get(key, "").strip():
            summary = annotations[key].strip().splitlines()[0]
            break
    return AlertLine(
        summary=summary or labels.get("alertname") or "alert",
        labels=labels,
        description=annotations.get("description", "").strip(),
    )


def alert_links(connection: Connection, group_id: str, external_url: str | None) -> dict[str, str]:
    """Links a notification carries: the first alert's source (generatorURL) and the sender."""
    links: dict[str, str] = {}
    url = connection.execute(
        select(INSTANCE.c.generator_url)
        .where(INSTANCE.c.group_id == group_id, INSTANCE.c.generator_url.is_not(None))
        .order_by(INSTANCE.c.id)
        .limit(1)
    ).scalar_one_or_none()
    if url:
        links["Alert source"] = str(url)
    if external_url:
        links["Alert manager"] = external_url
    return links


def display_actor(actor: str | None) -> str | None:
    """``slack:U123`` → ``<@U123>`` (Slack renders the name); ``sms:+49… (Alice)`` → ``Alice (SMS)``."""
    if not actor:
        return None
    if actor.startswith("slack:"):
        return f"<@{actor.removeprefix('slack:')}>"
    if actor.startswith("sms:"):
        rest = actor.removeprefix("sms:")
        if "(" in rest and rest.endswith(")"):
            return f"{rest[rest.index('(') + 1 : -1]} (SMS)"
        return f"{rest} (SMS)"
    return actor


def forget_notice(store: Store, group_id: str, notification_id: str) -> None:
    """Unlink a notification that was cancelled before it counted (an ack won the race)."""
    with store.begin() as connection:
        connection.execute(
            delete(NOTICE).where(NOTICE.c.group_id == group_id, NOTICE.c.notification_id == notification_id)
        )
