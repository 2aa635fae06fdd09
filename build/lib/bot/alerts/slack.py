"""Alerts in Slack: one message per alert group in ``slack.alert_channel``, kept up to date.

The message (``chat.postMessage``, then ``chat.update``) shows the group (``[FIRING:37] HighLatency``,
severity, route, the first alerts), its timeline (paged, updates, each escalation step, who
acknowledged and when, the resolution) and, while it fires, the Acknowledge and Resolve buttons
(action ids ``alert_ack`` / ``alert_resolve``, value: the group id).

The group row holds the Slack side, so a restart resumes: ``slack_ts`` (``""`` while one process
posts it; another takes over a claim older than :data:`CLAIM_STALE_AFTER`), ``slack_channel``, and
``slack_revision``, the group ``revision`` the message shows. Every visible change bumps
``revision``; :meth:`AlertSlack.sync` (the scheduler tick, a webhook's background task, a button)
edits messages that are behind. A writer re-reads the revision after each edit and edits again if it
moved, so the last edit always shows the latest state even when two writers cross.

:func:`on_alert_action` is what the Bolt listener for the two buttons calls after acking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import and_, func, or_, select, update

from bot.alerts import acks
from bot.alerts.messages import GroupFacts, alert_lines, firing_title
from bot.alerts.models import AckOutcome, Policy
from bot.alerts.notify import DELIVERY, GROUP, NOTICE, display_actor, group_facts
from bot.app import Herald
from bot.slack.blocks import slack_date
from bot.store import Store

log = logging.getLogger("herald.alerts.slack")

ACK_ACTION = "alert_ack"
RESOLVE_ACTION = "alert_resolve"
CLAIM_STALE_AFTER = 60.0
RESUME_WITHIN = 3 * 86400.0
SYNC_BATCH = 20
MAX_CATCH_UP = 3

Block = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NoticeLine:
    kind: str
    step: int
    audience: str
    at: float
    recipients: int


@dataclass(frozen=True, slots=True)
class GroupView:
    """Everything the Slack message shows, read from the store."""

    facts: GroupFacts
    state: str
    channels: tuple[str, ...]
    acked_at: float | None
    acked_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    next_escalation_at: float | None
    next_audience: str | None
    held_back: int
    notices: tuple[NoticeLine, ...]
    revision: int
    slack_channel: str | None
    slack_ts: str | None


# -- rendering (pure) -------------------------------------------------------------------------------


def _date(epoch: float) -> str:
    return slack_date(epoch)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _button(text: str, action_id: str, value: str, style: str) -> Block:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        "value": value,
        "style": style,
    }


_NOTICE_TEXT = {
    "opened": "Paged {audience}",
    "update": "Update sent to {audience}",
    "repeat": "Still firing: reminded {audience}",
    "summary": "Paged {audience} (in a flood-control summary)",
    "escalation": "Escalated to tier {tier}: {audience}",
    "reminder": "Reminder to everyone paged",
    "resolution": "Resolution notice sent to everyone notified",
}


def _timeline(view: GroupView) -> list[str]:
    lines = []
    for notice in view.notices:
        template = _NOTICE_TEXT.get(notice.kind, notice.kind)
        text = template.format(audience=f"`{_escape(notice.audience)}`", tier=notice.step)
        people = f" ({notice.recipients} {'person' if notice.recipients == 1 else 'people'})"
        lines.append(f"• {text}{people} · {_date(notice.at)}")
    if view.held_back:
        lines.append(f"• Flood control held back {view.held_back} notification(s) of this alert")
    if view.acked_at is not None:
        who = display_actor(view.acked_by) or "someone"
        lines.append(f"• :eyes: Acknowledged by {_escape_actor(who)} · {_date(view.acked_at)}")
    if view.resolved_at is not None:
        resolver = display_actor(view.resolved_by)
        by = f" by {_escape_actor(resolver)}" if resolver else ""
        lines.append(f"• :white_check_mark: Resolved{by} · {_date(view.resolved_at)}")
    elif view.next_escalation_at is not None and view.acked_at is None:
        target = f"`{_escape(view.next_audience)}`" if view.next_audience else "everyone paged (reminder)"
        lines.append(
            f"• :hourglass_flowing_sand: Next: {target} at {_date(view.next_escalation_at)}"
            " unless acknowledged"
        )
    return lines


def _escape_actor(who: str) -> str:
    return who if who.startswith("<@") else _escape(who)


def alert_message(view: GroupView) -> tuple[str, list[Block]]:
    """The alert group's Slack message: fallback text and blocks."""
    facts = view.facts
    if view.state == "resolved":
        title = f"[RESOLVED] {facts.title}"
        icon = ":white_check_mark:"
    else:
        title = firing_title(facts)
        icon = ":eyes:" if view.acked_at is not None else ":rotating_light:"
    text = f"[{facts.severity.upper()}] {title}"
    blocks: list[Block] = [
        _section(f"{icon} *{_escape(text)}*"),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Severity*\n{facts.severity}"},
                {"type": "mrkdwn", "text": f"*Alert*\n`{facts.id}`"},
                {"type": "mrkdwn", "text": f"*Route*\n{facts.route} → `{_escape(facts.audience)}`"},
                {"type": "mrkdwn", "text": f"*Opened*\n{_date(facts.opened_at)}"},
            ],
        },
    ]
    listed = alert_lines(facts)
    if listed and view.state != "resolved":
        blocks.append(_section(_escape("\n".join(listed))))
    timeline = _timeline(view)
    if timeline:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "\n".join(timeline)[:3000]}]}
        )
    if view.state == "firing":
        buttons = [_button("Resolve", RESOLVE_ACTION, facts.id, "danger")]
        if view.acked_at is None:
            buttons.insert(0, _button("Acknowledge", ACK_ACTION, facts.id, "primary"))
        blocks.append({"type": "actions", "block_id": f"alert_{facts.id}", "elements": buttons})
    return text, blocks


# -- reading and claiming ---------------------------------------------------------------------------


def load_view(store: Store, group_id: str) -> GroupView | None:
    with store.begin() as connection:
        found = connection.execute(select(GROUP).where(GROUP.c.id == group_id)).mappings().first()
        if found is None:
            return None
        row = dict(found)
        facts = group_facts(connection, row)
        notices = connection.execute(
            select(
                NOTICE.c.kind,
                NOTICE.c.step,
                NOTICE.c.audience,
                NOTICE.c.at,
                select(func.count(func.distinct(DELIVERY.c.person_id)))
                .where(DELIVERY.c.notification_id == NOTICE.c.notification_id)
                .scalar_subquery(),
            )
            .where(NOTICE.c.group_id == group_id)
            .order_by(NOTICE.c.at, NOTICE.c.step)
        ).all()
    policy = Policy.from_json(row["policy"])
    step = int(row["step"])
    next_audience = policy.escalate[step] if step < len(policy.escalate) else None
    return GroupView(
        facts=facts,
        state=row["state"],
        channels=policy.channels,
        acked_at=row["acked_at"],
        acked_by=row["acked_by"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        next_escalation_at=row["next_escalation_at"],
        next_audience=next_audience,
        held_back=int(row["held_back"] or 0),
        notices=tuple(NoticeLine(k, int(s), a, float(t), int(r or 0)) for k, s, a, t, r in notices),
        revision=int(row["revision"]),
        slack_channel=row["slack_channel"],
        slack_ts=row["slack_ts"],
    )


def behind(store: Store, now: float, limit: int = SYNC_BATCH) -> list[str]:
    """Groups whose message is missing or shows an older revision (recent ones only)."""
    with store.begin() as connection:
        return [
            str(value)
            for value in connection.execute(
                select(GROUP.c.id)
                .where(
                    GROUP.c.opened_at >= now - RESUME_WITHIN,
                    or_(GROUP.c.slack_ts.is_(None), GROUP.c.slack_revision < GROUP.c.revision),
                )
                .order_by(GROUP.c.opened_at)
                .limit(limit)
            ).scalars()
        ]


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


# -- the Slack side ---------------------------------------------------------------------------------


class _RateLimited(Exception):
    pass


def _rate_limited(exc: Exception) -> bool:
    return isinstance(exc, SlackApiError) and (
        exc.response.status_code == 429 or exc.response.get("error") == "ratelimited"
    )


class AlertSlack:
    """Posts and edits alert messages through ``client`` into ``channel``."""

    def __init__(self, herald: Herald, client: AsyncWebClient, channel: str) -> None:
        self.herald = herald
        self.client = client
        self.channel = channel

    @classmethod
    def build(cls, herald: Herald, client: AsyncWebClient | None = None) -> AlertSlack | None:
        """None when Slack is off (no ``slack.bot_token``) or ``slack.alert_channel`` is not set."""
        slack = herald.settings.slack
        if slack.bot_token is None or not slack.alert_channel:
            return None
        if client is None:
            client = AsyncWebClient(
                token=slack.bot_token.get_secret_value(),
                base_url=slack.api_url,
                retry_handlers=[],
                logger=logging.getLogger("herald.slack.web"),
            )
        return cls(herald, client, slack.alert_channel)

    async def sync(self, group_ids: Iterable[str] | None = None) -> None:
        """Bring these groups' messages (default: every one that is behind) up to date."""
        store = self.herald.store
        if group_ids is None:
            ids: Sequence[str] = await asyncio.to_thread(behind, store, self.herald.clock.now())
        else:
            ids = list(dict.fromkeys(group_ids))
        for group_id in ids:
            try:
                await self.sync_one(group_id)
            except _RateLimited:
                return  # the next tick goes on

    async def sync_one(self, group_id: str) -> None:
        store = self.herald.store
        for _ in range(MAX_CATCH_UP):
            view = await asyncio.to_thread(load_view, store, group_id)
            if view is None:
                return
            text, blocks = alert_message(view)
            if not view.slack_ts:
                if not self.channel or not await self._post(view, text, blocks):
                    return
            elif not await self._update(view, text, blocks):
                return
            current = await asyncio.to_thread(record_shown, store, group_id, view.revision)
            if current == view.revision:
                return

    async def _post(self, view: GroupView, text: str, blocks: list[Block]) -> bool:
        store, group_id = self.herald.store, view.facts.id
        if not await asyncio.to_thread(claim_post, store, group_id, self.herald.clock.now()):
            return False
        try:
            response = await self.client.chat_postMessage(channel=self.channel, text=text, blocks=blocks)
        except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
            if _rate_limited(exc):  # give the claim back: the next tick tries again
                await asyncio.to_thread(release_post, store, group_id)
            # Otherwise the claim stays: another try once it is stale, so a failing Slack is not hammered.
            self._failed("chat.postMessage", group_id, exc)
            return False
        channel = str(response.get("channel") or self.channel)
        await asyncio.to_thread(record_post, store, group_id, channel, str(response["ts"]), view.revision)
        return True

    async def _update(self, view: GroupView, text: str, blocks: list[Block]) -> bool:
        try:
            await self.client.chat_update(
                channel=view.slack_channel or self.channel, ts=view.slack_ts or "", text=text, blocks=blocks
            )
        except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
            if isinstance(exc, SlackApiError) and exc.response.get("error") in (
                "message_not_found",
                "channel_not_found",
            ):
                # The message is gone: mark it shown so it is not retried forever.
                await asyncio.to_thread(record_shown, self.herald.store, view.facts.id, view.revision)
            self._failed("chat.update", view.facts.id, exc)
            return False
        return True

    def _failed(self, method: str, group_id: str, exc: Exception) -> None:
        if _rate_limited(exc):
            log.info("%s for alert %s rate limited; the next tick retries", method, group_id)
            raise _RateLimited from exc
        log.warning("%s for alert %s failed: %s", method, group_id, exc)


async def on_alert_action(
    herald: Herald, client: AsyncWebClient, action_id: str, group_id: str, user_id: str
) -> str | None:
    """The Acknowledge or Resolve button (value: the group id), pressed by ``user_id``.

    Acknowledges or resolves, then edits the alert message at once. Returns a line to show the user
    only (ephemeral) when nothing changed (already acknowledged, resolved, unknown), else None.
    """
    actor = f"slack:{user_id}"
    outcome: AckOutcome
    if action_id == ACK_ACTION:
        outcome = await asyncio.to_thread(acks.acknowledge, herald, group_id, actor)
    elif action_id == RESOLVE_ACTION:
        outcome = await asyncio.to_thread(acks.resolve, herald, group_id, actor)
    else:
        return None
    slack = AlertSlack(herald, client, herald.settings.slack.alert_channel or "")
    with contextlib.suppress(_RateLimited):  # the scheduler's tick edits it shortly
        await slack.sync_one(group_id)
    return None if outcome.changed else outcome.message
