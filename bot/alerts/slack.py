"""Alerts in Slack: one message per alert group in ``slack.alert_channel``, kept up to date.

The message (``chat.postMessage``, then ``chat.update``) is rendered by
:func:`bot.alerts.slack_message.alert_message`; the group row holds the Slack side
(:mod:`bot.alerts.slack_state`), so a restart resumes. :meth:`AlertSlack.sync` (the scheduler
tick, a webhook's background task, a button) edits messages that are behind. A writer re-reads the
revision after each edit and edits again if it moved, so the last edit always shows the latest
state even when two writers cross.
A group flood control folded or held is shown in another group's message (its summary's lead, see
:mod:`bot.alerts.storm`): syncing it edits that message, so a storm is a handful of messages.

:func:`on_alert_action` is what the Bolt listener for the Acknowledge and Resolve buttons calls
after acking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts import acks
from bot.alerts.models import AckOutcome
from bot.alerts.slack_message import ACK_ACTION, RESOLVE_ACTION, GroupView, actor_text, alert_message
from bot.alerts.slack_state import (
    behind,
    claim_post,
    load_view,
    owners,
    record_post,
    record_shown,
    release_post,
)
from bot.app import Herald
from bot.slack.blocks import Block
from bot.slack.client import web_client
from bot.slack.mrkdwn import Mrkdwn, mrkdwn

log = logging.getLogger("herald.alerts.slack")

MAX_CATCH_UP = 3
_SLACK_ERRORS = (SlackApiError, SlackClientError, OSError, TimeoutError)
_GONE = ("message_not_found", "channel_not_found")


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
        return cls(herald, client if client is not None else web_client(slack), slack.alert_channel)

    async def sync(self, group_ids: Iterable[str] | None = None) -> None:
        """Bring these groups' messages (default: every one that is behind) up to date."""
        store = self.herald.store
        if group_ids is None:
            ids: Sequence[str] = await asyncio.to_thread(behind, store, self.herald.clock.now())
        else:  # a flood-control summary's followers are shown in its lead's message
            ids = await asyncio.to_thread(owners, store, list(dict.fromkeys(group_ids)))
        for group_id in ids:
            try:
                await self.sync_one(group_id)
            except _RateLimited:
                return  # the next tick goes on

    async def sync_one(self, group_id: str) -> None:
        store = self.herald.store
        (group_id,) = await asyncio.to_thread(owners, store, [group_id])
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
        except _SLACK_ERRORS as exc:
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
        except _SLACK_ERRORS as exc:
            if isinstance(exc, SlackApiError) and exc.response.get("error") in _GONE:
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
) -> Mrkdwn | None:
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
    if outcome.changed:
        return None
    return unchanged_answer(await asyncio.to_thread(load_view, herald.store, group_id), group_id)


def unchanged_answer(view: GroupView | None, group_id: str) -> Mrkdwn:
    """Why a button did nothing, for Slack: who acknowledged is a mention, the title escaped text."""
    if view is None:
        return mrkdwn("There is no alert {}.", group_id)
    title = view.facts.title
    if view.state == "resolved":
        return mrkdwn("Alert {} ({}) is already resolved.", group_id, title)
    who = actor_text(view.acked_by) or "someone"
    return mrkdwn("Alert {} ({}) was already acknowledged by {}.", group_id, title, who)
