"""The end of a maintenance window: alerts still firing overran it and page as usual from its end.

:func:`close_due` (the alert tick, under the injected clock) closes every window whose end (or early
end, ``herald followup --done``) has passed, once, compare-and-set on ``closed_at``. The groups it
silenced that still fire owe their first page (``pending = "opened"``, due at the window's end) and
start their escalation clock at the window's end, not when the alert came in. A window that overran
owes an overrun notice, which :func:`post_overrun_notices` posts to ``slack.alert_channel`` and, when
the announcer is a Slack user, to them by direct message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import Connection

from bot.alerts.maintenance import GROUP, WINDOW, effective_end, iso
from bot.alerts.models import Policy
from bot.app import Herald
from bot.slack.mrkdwn import mrkdwn

log = logging.getLogger("herald.alerts.maintenance")

MAX_PER_TICK = 20
_SLACK_ERRORS = (SlackApiError, SlackClientError, OSError, TimeoutError)


def close_due(herald: Herald) -> list[str]:
    """Close the windows whose end has passed; returns the ids of those that overran."""
    now = herald.clock.now()
    ended = or_(
        WINDOW.c.ends_at <= now, and_(WINDOW.c.ended_early_at.is_not(None), WINDOW.c.ended_early_at <= now)
    )
    with herald.store.begin() as connection:
        rows = [
            dict(r)
            for r in connection.execute(
                select(WINDOW).where(WINDOW.c.closed_at.is_(None), ended).limit(MAX_PER_TICK)
            ).mappings()
        ]
    overran = []
    for row in rows:
        with herald.store.begin() as connection:
            paged = _close(connection, row, now)
        if paged:
            overran.append(row["notification_id"])
            log.warning(
                "maintenance %s overran: %d alert group(s) still firing page from its end",
                row["notification_id"],
                paged,
            )
    return overran


def _close(connection: Connection, row: Mapping[str, Any], now: float) -> int:
    """Close one window (nothing if another process did) and page the groups it still silences."""
    nid = row["notification_id"]
    closed = connection.execute(
        update(WINDOW)
        .where(WINDOW.c.notification_id == nid, WINDOW.c.closed_at.is_(None))
        .values(closed_at=now)
    ).rowcount
    if not closed:
        return 0
    end = effective_end(row)
    groups = [dict(group) for group in connection.execute(_still_silenced(nid)).mappings()]
    paged: int = sum(_page_from(connection, group, end) for group in groups)
    if paged:
        connection.execute(
            update(WINDOW).where(WINDOW.c.notification_id == nid).values(overran=True, overrun_notice="owed")
        )
    return int(paged)


def _page_from(connection: Connection, group: Mapping[str, Any], end: float) -> int:
    """The group owes its first page at ``end``, its escalation clock starting then."""
    policy = Policy.from_json(group["policy"])
    return int(
        connection.execute(
            update(GROUP)
            .where(GROUP.c.id == group["id"], GROUP.c.version == group["version"])
            .values(
                pending="opened",
                pending_at=end,
                next_escalation_at=policy.next_escalation(0, end),
                version=GROUP.c.version + 1,
                revision=GROUP.c.revision + 1,
            )
        ).rowcount
    )


def _still_silenced(nid: str) -> Any:
    return select(GROUP.c.id, GROUP.c.policy, GROUP.c.version).where(
        GROUP.c.silenced_by == nid,
        GROUP.c.state == "firing",
        GROUP.c.acked_at.is_(None),  # someone took it on during the window: no page
        GROUP.c.pending.is_(None),
        GROUP.c.last_notified_at.is_(None),
    )


def _owed_notices(herald: Herald) -> list[dict[str, Any]]:
    with herald.store.begin() as connection:
        windows = [
            dict(r)
            for r in connection.execute(
                select(WINDOW).where(WINDOW.c.overrun_notice == "owed").limit(MAX_PER_TICK)
            ).mappings()
        ]
        for window in windows:
            window["groups"] = [
                (str(gid), str(title))
                for gid, title in connection.execute(
                    select(GROUP.c.id, GROUP.c.title).where(
                        GROUP.c.silenced_by == window["notification_id"], GROUP.c.state == "firing"
                    )
                ).all()
            ]
    return windows


def overrun_text(window: Mapping[str, Any]) -> str:
    """The overrun notice (Slack mrkdwn, user data escaped)."""
    groups = window.get("groups") or []
    lines = [
        mrkdwn(
            ":warning: Maintenance *{}* (`{}`) overran: {} alert group(s) still firing at its end ({}); "
            "they page as usual from now on.",
            window["title"],
            window["notification_id"],
            len(groups),
            iso(effective_end(window)),
        )
    ]
    lines += [mrkdwn("• `{}` {}", gid, title) for gid, title in groups[:10]]
    return "\n".join(str(line) for line in lines)


async def post_overrun_notices(herald: Herald, client: AsyncWebClient | None) -> int:
    """Post each owed overrun notice to the alert channel and DM the announcer when a Slack user."""
    windows = await asyncio.to_thread(_owed_notices, herald)
    channel = herald.settings.slack.alert_channel
    posted = 0
    for window in windows:
        if client is not None and channel:
            text = overrun_text(window)
            targets = [channel]
            if str(window["created_by"]).startswith("slack:"):
                targets.append(str(window["created_by"]).removeprefix("slack:"))
            for target in targets:
                try:
                    await client.chat_postMessage(channel=target, text=text)
                except _SLACK_ERRORS as exc:
                    log.warning(
                        "overrun notice of %s to %s failed: %s", window["notification_id"], target, exc
                    )
        await asyncio.to_thread(_mark_posted, herald, window["notification_id"])
        posted += 1
    return posted


def _mark_posted(herald: Herald, nid: str) -> None:
    with herald.store.begin() as connection:
        connection.execute(
            update(WINDOW)
            .where(WINDOW.c.notification_id == nid, WINDOW.c.overrun_notice == "owed")
            .values(overrun_notice="posted")
        )


def silence_note(window: Mapping[str, Any] | None, silent: bool) -> dict[str, Any] | None:
    """What an alert group's Slack message says about the window that silenced it (pure)."""
    if window is None:
        return None
    return {
        "id": window["notification_id"],
        "title": window["title"],
        "end": effective_end(window),
        "silent": silent,
        "matchers": json.loads(window["matchers"] or "{}"),
    }
