"""A follow-up in the Slack thread of the original's progress message (``herald followup``,
``/announce update|done``). The progress message's place is in the original's ``meta``
(``slack_channel``, ``slack_ts``, see :mod:`bot.slack.progress`); an announcement made elsewhere has
no thread, and a failing Slack is logged, never fatal: the follow-up itself is already stored."""

from __future__ import annotations

import asyncio
import json
import logging

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot import service
from bot.app import Herald
from bot.engine.followup import Followup
from bot.slack.mrkdwn import Mrkdwn, mrkdwn
from bot.slack.status_blocks import progress_message as render
from bot.tables import Notification, table_of

log = logging.getLogger("herald.slack")

NOTIFICATION = table_of(Notification)
_SLACK_ERRORS = (SlackApiError, SlackClientError, OSError, TimeoutError)
DONE_TEXT = "The maintenance is finished: all clear."


def thread_text(sent: Followup, body: str, done: bool) -> Mrkdwn:
    """The thread reply: the follow-up's text, who it went to, and whether it ended the window."""
    head = ":white_check_mark: *All clear*" if done else ":speech_balloon: *Update*"
    ended = " · maintenance window ended" if sent.ended_window else ""
    return mrkdwn(
        "{}: {}\n_follow-up `{}` to {} people{}_", mrkdwn(head), body, sent.id, sent.recipients, ended
    )


def progress_message(herald: Herald, notification_id: str) -> tuple[str, str] | None:
    """Where the notification's progress message is in Slack (channel, ts); None when it has none."""
    with herald.store.begin() as connection:
        query = select(NOTIFICATION.c.meta).where(NOTIFICATION.c.id == notification_id)
        meta = json.loads(connection.execute(query).scalar_one_or_none() or "{}")
    channel, ts = meta.get("slack_channel"), meta.get("slack_ts")
    return (str(channel), str(ts)) if channel and ts else None


async def reply_in_thread(
    herald: Herald, client: AsyncWebClient, sent: Followup, body: str, done: bool
) -> bool:
    """Post the follow-up under the original's progress message; False when it has none or Slack failed."""
    place = await asyncio.to_thread(progress_message, herald, sent.original)
    if place is None:
        return False
    text = thread_text(sent, body, done)
    try:
        await client.chat_postMessage(channel=place[0], thread_ts=place[1], text=str(text))
    except _SLACK_ERRORS as exc:
        log.warning("follow-up %s not posted in the Slack thread: %s", sent.id, exc)
        return False
    return True


async def refresh_progress(herald: Herald, client: AsyncWebClient, notification_id: str) -> None:
    """Redraw a finished progress message (after the all-clear its Done button goes)."""
    place = await asyncio.to_thread(progress_message, herald, notification_id)
    status = await asyncio.to_thread(service.status, herald, notification_id)
    if place is None or status is None:
        return
    text, message_blocks = render(status, herald.clock.now())
    try:
        await client.chat_update(channel=place[0], ts=place[1], text=str(text), blocks=message_blocks)
    except _SLACK_ERRORS as exc:
        log.warning("progress message of %s not redrawn: %s", notification_id, exc)
