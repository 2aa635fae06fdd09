"""The Slack Web API client Herald talks through, built from settings.

``AsyncWebClient(token, base_url=slack.api_url, retry_handlers=[])``: the SDK's own retries are
off, so Herald is the one layer that waits out a 429 (the progress updater, the alert messages'
next tick). Tests point ``slack.api_url`` at a fake Web API on 127.0.0.1.
"""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.config import SlackSettings


def web_client(slack: SlackSettings) -> AsyncWebClient:
    """A client with ``slack.bot_token`` (none set: an empty token) against ``slack.api_url``."""
    return AsyncWebClient(
        token=slack.bot_token.get_secret_value() if slack.bot_token else "",
        base_url=slack.api_url,
        retry_handlers=[],
        logger=logging.getLogger("herald.slack.web"),
    )
