"""The DM's Confirm button (action ``confirm_receipt``, see :mod:`bot.slack.dm_blocks`).

A click records the person's confirmation of the notification the button names (the person is the
one whose ``slack_user_id`` clicked) and edits the DM in place (``chat.update``) so that the button
becomes "Confirmed at …". A second click, or a click after confirming by email or SMS, shows the
confirmation that stands.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import Herald
from bot.recipients.confirmations import confirm_by_slack_user
from bot.slack.dm_blocks import confirmed_blocks

log = logging.getLogger("herald.slack")

NOT_YOURS = "This confirmation is not for you, or the notice no longer asks for one."


def when_text(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


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
    blocks = confirmed_blocks(list(message.get("blocks") or []), when_text(found.at))
    try:
        await client.chat_update(
            channel=channel, ts=str(message.get("ts", "")), text=str(message.get("text", "")), blocks=blocks
        )
    except SlackApiError as exc:
        log.warning("confirm: chat.update failed (%s)", exc.response.get("error", "?"))
    return None
