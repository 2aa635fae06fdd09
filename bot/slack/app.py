"""Builds Herald's Slack side from settings: the Web API client, the Bolt AsyncApp and its parts.

Nothing here runs at import time; ``herald serve`` (and each test) calls :func:`build_slack`.
The Web API client comes from :func:`bot.slack.client.web_client` (the SDK's own retries off).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import Response

from bot.app import Herald
from bot.metrics import HeraldMetrics
from bot.slack.auth import Announcers, UserGroups
from bot.slack.client import web_client
from bot.slack.flows import AnnounceFlows
from bot.slack.http import BodyFreeLog, Refused, dispatch, verified_request
from bot.slack.listeners import Listeners, register
from bot.slack.progress import ProgressTracker
from bot.slack.tasks import TaskSet

log = logging.getLogger("herald.slack")


@dataclass
class SlackFrontDoor:
    """The running Slack side: the Bolt app, its client, and the work it started."""

    bolt: AsyncApp
    client: AsyncWebClient
    flows: AnnounceFlows
    tracker: ProgressTracker
    tasks: TaskSet
    app_token: str | None  # Socket Mode when set
    signing_secret: str = field(default="", repr=False)  # set: POST /slack/events is served

    @property
    def http_enabled(self) -> bool:
        return bool(self.signing_secret)

    async def handle_http(self, request: Request) -> Response:
        """``POST /slack/events``: verified by :mod:`bot.slack.http` first, then Bolt's."""
        try:
            verified = await verified_request(request, self.signing_secret, self.flows.herald.clock)
        except Refused as refused:
            return refused.response()
        return await dispatch(self.bolt, verified)

    async def tick(self) -> None:
        """The scheduler's tick: post and follow progress of what started meanwhile."""
        await self.tracker.sweep()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop following progress, let other Slack work finish for up to ``timeout`` seconds."""
        self.tracker.close()
        await self.tasks.aclose(timeout)


def build_slack(
    herald: Herald,
    metrics: HeraldMetrics,
    owner: str,
    on_queued: Callable[[], None] | None = None,
    progress_interval: float = 3.0,
    poll_interval: float = 1.0,
) -> SlackFrontDoor | None:
    """The Slack front door, or None when ``slack.bot_token`` is not set (Slack is off)."""
    slack = herald.settings.slack
    if slack.bot_token is None:
        return None
    client = web_client(slack)
    signing_secret = slack.signing_secret.get_secret_value() if slack.signing_secret else ""
    bolt = bolt_app(client, signing_secret)
    tasks = TaskSet()
    groups = UserGroups(client, herald.clock)
    tracker = ProgressTracker(
        herald, client, tasks, metrics, owner, min_interval=progress_interval, poll_interval=poll_interval
    )
    flows = AnnounceFlows(
        herald, client, Announcers(slack.announcers, groups), groups, tracker, metrics, on_queued
    )
    register(bolt, Listeners(flows, tasks, metrics))
    return SlackFrontDoor(
        bolt=bolt,
        client=client,
        flows=flows,
        tracker=tracker,
        tasks=tasks,
        app_token=slack.app_token.get_secret_value() if slack.app_token else None,
        signing_secret=signing_secret,
    )


def bolt_app(client: AsyncWebClient, signing_secret: str) -> AsyncApp:
    """The Bolt app: answers when a listener returns; logs no request body.

    Signatures are verified before Bolt sees a request (:meth:`SlackFrontDoor.handle_http`, with
    ``herald.clock``), so Bolt's own check is off. Bolt's loggers copy the filters of the logger
    given here, so :class:`~bot.slack.http.BodyFreeLog` strips what Bolt would log of a body.
    """
    logger = logging.getLogger("herald.slack.bolt")
    if not any(isinstance(existing, BodyFreeLog) for existing in logger.filters):
        logger.addFilter(BodyFreeLog())
    return AsyncApp(
        name="herald",
        client=client,
        signing_secret=signing_secret,
        process_before_response=True,
        request_verification_enabled=False,
        logger=logger,
    )
