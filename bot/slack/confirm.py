"""The DM's Confirm button (action ``confirm_receipt``, see :mod:`bot.slack.dm_blocks`).

A click records the person's confirmation of the notification the button names (the person is the
one whose ``slack_user_id`` clicked) and edits the DM in place (``chat.update``) so that the button
becomes "Confirmed at …" (in the person's language). A second click, or a click after confirming
by email or SMS, shows the confirmation that stands.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import Herald
from bot.channel_specs import templates
from bot.recipients.confirmations import Confirmed, confirm_by_slack_user, reader
from bot.slack.dm_blocks import confirmed_blocks
from channels.phrases import Phrases

log = logging.getLogger("herald.slack")

NOT_YOURS = "This confirmation is not for you, or the notice no longer asks for one."


def when_text(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def confirmed_text(herald: Herald, found: Confirmed) -> str:
    """The DM's "Confirmed at …" in the person's language (the ``confirmed`` phrase of the notice's kind)."""
    severity, language = reader(herald.store, found.notification_id, found.person_id)
    phrases = Phrases.of_kind(templates(herald.settings), severity, language)
    return phrases.get("confirmed", when=when_text(found.at))


async def on_confirm(
    herald: Herald, client: AsyncWebClient, body: dict[str, Any], action: dict[str, Any]
) -> str | None:
    """Record the click's confirmation and update the DM; a problem to show the user, else None."""
    user = str((body.get("user") or {}).get("id", ""))
    notification_id = str(action.get("value", ""))
    now = herald.clock.now()
    found = await asyncio.to_thread(confirm_by_slack_user, herald.store, notification_id, user, now)
    if found is None:
        return NOT_YOURS
    message = body.get("message") or {}
    channel = str(
        (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""
    )
    confirmed = await asyncio.to_thread(confirmed_text, herald, found)
    blocks = confirmed_blocks(list(message.get("blocks") or []), confirmed)
    try:
        await client.chat_update(
            channel=channel, ts=str(message.get("ts", "")), text=str(message.get("text", "")), blocks=blocks
        )
    except SlackApiError as exc:
        log.warning("confirm: chat.update failed (%s)", exc.response.get("error", "?"))
    return None
