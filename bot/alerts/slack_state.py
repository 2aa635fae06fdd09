"""The Slack side of an alert group, as stored on its row: read the view, claim, record.

``slack_ts`` is ``""`` while one process posts the message (another takes over a claim older than
:data:`CLAIM_STALE_AFTER`), ``slack_channel`` where it is, ``slack_revision`` the group
``revision`` it shows. Every visible change bumps ``revision``, so a message is *behind* while
``slack_revision < revision``. Functions here are synchronous (database work); async callers use a
thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection

from bot.alerts.maintenance import is_silent, window_row
from bot.alerts.models import Policy
from bot.alerts.notify import DELIVERY, GROUP, NOTICE, group_facts
from bot.alerts.slack_message import GroupView, NoticeLine
from bot.alerts.storm import SHOWN_IN, shown_with, storm_facts
from bot.alerts.window_end import silence_note
from bot.store import Store

CLAIM_STALE_AFTER = 60.0
RESUME_WITHIN = 3 * 86400.0
SYNC_BATCH = 20
CHUNK = 500


def load_view(store: Store, group_id: str) -> GroupView | None:
    """What the group's message should show now; None for an unknown group."""
    with store.begin() as connection:
        found = connection.execute(select(GROUP).where(GROUP.c.id == group_id)).mappings().first()
        if found is None:
            return None
        row = dict(found)
        facts = group_facts(connection, row)
        notices = _notices(connection, group_id)
        storm = storm_facts(connection, group_id, row["route"], shown_with(row))
        window = window_row(connection, row["silenced_by"]) if row["silenced_by"] else None
    policy = Policy.from_json(row["policy"])
    step = int(row["step"])
    return GroupView(
        facts=facts,
        state=row["state"],
        channels=policy.channels,
        acked_at=row["acked_at"],
        acked_by=row["acked_by"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        next_escalation_at=row["next_escalation_at"],
        next_audience=policy.escalate[step] if step < len(policy.escalate) else None,
        held_back=int(row["held_back"] or 0),
        notices=notices,
        storm=storm,
        maintenance=silence_note(window, is_silent(row)),
        revision=int(row["revision"]),
        slack_channel=row["slack_channel"],
        slack_ts=row["slack_ts"],
    )


def _notices(connection: Connection, group_id: str) -> tuple[NoticeLine, ...]:
    """The group's notices in order, each with how many people its notification reached."""
    people = (
        select(func.count(func.distinct(DELIVERY.c.person_id)))
        .where(DELIVERY.c.notification_id == NOTICE.c.notification_id)
        .scalar_subquery()
    )
    rows = connection.execute(
        select(NOTICE.c.kind, NOTICE.c.step, NOTICE.c.audience, NOTICE.c.at, people)
        .where(NOTICE.c.group_id == group_id)
        .order_by(NOTICE.c.at, NOTICE.c.step)
    ).all()
    return tuple(NoticeLine(k, int(s), a, float(t), int(r or 0)) for k, s, a, t, r in rows)


def behind(store: Store, now: float, limit: int = SYNC_BATCH) -> list[str]:
    """Groups whose message is missing or shows an older revision (recent ones only). A follower of
    a flood-control summary that changed stands for its lead's message (see :mod:`bot.alerts.storm`)."""
    recent = GROUP.c.opened_at >= now - RESUME_WITHIN
    stale = or_(GROUP.c.slack_ts.is_(None), GROUP.c.slack_revision < GROUP.c.revision)
    with store.begin() as connection:
        changed = connection.execute(
            select(GROUP.c.id).where(recent, _FOLLOWER, GROUP.c.slack_revision < GROUP.c.revision)
        ).scalars()
        leads = _followers_shown(connection, [str(value) for value in changed])
        rest = connection.execute(
            select(GROUP.c.id)
            .where(recent, stale, ~_FOLLOWER | GROUP.c.slack_ts.is_(None))
            .order_by(GROUP.c.opened_at)
            .limit(limit)
        ).scalars()
        return list(dict.fromkeys([*leads.values(), *(str(value) for value in rest)]))


def owners(store: Store, group_ids: Sequence[str]) -> list[str]:
    """The groups whose message shows ``group_ids`` (a summary's follower: its lead), once each."""
    with store.begin() as connection:
        leads = _followers_shown(connection, group_ids)
    return list(dict.fromkeys(leads.get(group_id, group_id) for group_id in group_ids))


_FOLLOWER = GROUP.c.slack_ts.like(SHOWN_IN + "%")


def _followers_shown(connection: Connection, group_ids: Sequence[str]) -> dict[str, str]:
    """Followers among ``group_ids`` -> their lead; each is marked shown (its lead's message shows it)."""
    leads: dict[str, str] = {}
    for start in range(0, len(group_ids), CHUNK):
        chunk = group_ids[start : start + CHUNK]
        found = connection.execute(
            select(GROUP.c.id, GROUP.c.slack_ts).where(GROUP.c.id.in_(chunk), _FOLLOWER)
        ).all()
        leads.update({str(gid): str(ts).removeprefix(SHOWN_IN) for gid, ts in found})
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id.in_([gid for gid, _ in found]))
            .values(slack_revision=GROUP.c.revision)
        )
    return leads


def claim_post(store: Store, group_id: str, now: float) -> bool:
    """The right to post the group's message (compare-and-set; a stale claim is taken over)."""
    with store.begin() as connection:
        return bool(
            connection.execute(
                update(GROUP)
                .where(
                    GROUP.c.id == group_id,
                    or_(
                        GROUP.c.slack_ts.is_(None),
                        and_(GROUP.c.slack_ts == "", GROUP.c.slack_claimed_at < now - CLAIM_STALE_AFTER),
                    ),
                )
                .values(slack_ts="", slack_claimed_at=now)
            ).rowcount
        )


def record_post(store: Store, group_id: str, channel: str, ts: str, revision: int) -> None:
    """The message now exists: where, and which revision it shows."""
    with store.begin() as connection:
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id == group_id)
            .values(slack_channel=channel, slack_ts=ts, slack_revision=revision)
        )


def release_post(store: Store, group_id: str) -> None:
    """Give back a claim to post (the post failed in a way worth retrying soon)."""
    with store.begin() as connection:
        connection.execute(
            update(GROUP).where(GROUP.c.id == group_id, GROUP.c.slack_ts == "").values(slack_ts=None)
        )


def record_shown(store: Store, group_id: str, revision: int) -> int:
    """Note that the message shows ``revision``; returns the group's current revision."""
    with store.begin() as connection:
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id == group_id, GROUP.c.slack_revision < revision)
            .values(slack_revision=revision)
        )
        return int(connection.execute(select(GROUP.c.revision).where(GROUP.c.id == group_id)).scalar_one())
