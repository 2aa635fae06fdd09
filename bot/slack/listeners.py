"""Thin Bolt listeners: ack, parse, hand the slow part to a flow, return.

The 3-second rule. The app runs with ``process_before_response=True``: Bolt answers Slack's HTTP
request (or Socket Mode envelope) when the listener *returns*, with whatever ``ack()`` set. Every
listener here acks first and returns at once; the slow part (user-group lookups, database queries,
Web API calls) runs as a task in :class:`~bot.slack.tasks.TaskSet`, which shutdown drains. (Bolt's
default for AsyncApp, ``process_before_response=False``, answers as soon as ``ack()`` is called
and leaves the rest of the listener running in an untracked ``asyncio.ensure_future``; tracking
our own tasks gives the same latency and a clean shutdown.) The one exception is a modal
submission: its validation errors must travel in the ack, so the preview is computed before acking
when it takes under :data:`ACK_BUDGET` seconds, and finishes in the background (its result then
posted ephemerally) when it does not.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts import slack as alert_slack
from bot.alerts.slack_message import ACK_ACTION, RESOLVE_ACTION
from bot.metrics import HeraldMetrics
from bot.service import AnnounceRequest
from bot.slack import announce_blocks, blocks, pending
from bot.slack import confirm as slack_confirm
from bot.slack.auth import refusal_text
from bot.slack.blocks import Block
from bot.slack.commands import (
    AnnounceCommand,
    CancelCommand,
    FollowupCommand,
    HelpCommand,
    ListCommand,
    ModalCommand,
    ModalErrors,
    ParseError,
    StatusCommand,
    named,
    parse_announce_command,
    parse_modal_submission,
)
from bot.slack.dm_blocks import CONFIRM_ACTION
from bot.slack.flows import AnnounceFlows, Origin, Previewed, Reply, ephemeral_reply, field_of
from bot.slack.mrkdwn import Mrkdwn
from bot.slack.tasks import TaskSet

log = logging.getLogger("herald.slack")

ACK_BUDGET = 2.0


def respond_reply(respond: AsyncRespond) -> Reply:
    """A :class:`Reply` through the payload's ``response_url`` (ephemeral; may replace the original).

    A payload without one, or one that cannot be reached, loses the reply with one WARNING line:
    the action itself stands, and nothing else is owed to a request that named nowhere to answer."""

    async def reply(text: Mrkdwn, message_blocks: list[Block], replace: bool = False) -> None:
        if not respond.response_url:
            log.warning("slack request without a response_url: its reply was not sent")
            return
        try:
            await respond(
                text=text,
                blocks=message_blocks,
                response_type="ephemeral",
                replace_original=True if replace else None,
            )
        except (aiohttp.ClientError, ValueError, OSError, TimeoutError) as exc:
            log.warning("could not reply through the response_url (%s)", type(exc).__name__)

    return reply


def _origin(body: dict[str, Any]) -> Origin:
    """User and channel of an interaction payload (block_actions, view_submission)."""
    user = body.get("user") or {}
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or ""
    return Origin(str(user.get("id", "")), str(channel))


def _submitter(body: dict[str, Any], view: dict[str, Any]) -> Origin:
    """Who submitted the modal, and the channel its ``private_metadata`` remembers (else a DM)."""
    user = str((body.get("user") or {}).get("id", ""))
    try:
        channel = str(json.loads(view.get("private_metadata") or "{}").get("channel_id") or "")
    except ValueError:
        channel = ""
    return Origin(user, channel or user)


class Listeners:
    """The listeners of one app; each method is registered on the Bolt app by :func:`register`."""

    def __init__(self, flows: AnnounceFlows, tasks: TaskSet, metrics: HeraldMetrics) -> None:
        self.flows = flows
        self.tasks = tasks
        self.metrics = metrics

    def _spawn(self, work: Coroutine[Any, Any, None], reply: Reply, name: str) -> None:
        self.tasks.spawn(self.flows.guarded(reply, work), name)

    async def command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        """``/announce …``: help and usage errors travel in the ack; everything else after it."""
        self.metrics.slack_requests.labels(kind="command").inc()
        name = self.flows.command
        try:
            parsed = parse_announce_command(str(command.get("text") or ""))
        except ParseError as exc:
            text, message_blocks = blocks.error_message(named(str(exc), name))
            await ack(text=text, blocks=message_blocks)
            return
        if isinstance(parsed, HelpCommand):
            text, message_blocks = announce_blocks.help_message(name)
            await ack(text=text, blocks=message_blocks)
            return
        await ack()
        origin = Origin(str(command.get("user_id", "")), str(command.get("channel_id", "")))
        reply = respond_reply(respond)
        flows = self.flows
        if isinstance(parsed, ModalCommand):
            work = self._open_modal(origin, str(command.get("trigger_id", "")), reply)
        elif isinstance(parsed, AnnounceCommand):
            work = flows.preview_typed(origin, parsed, reply)
        elif isinstance(parsed, ListCommand):
            work = flows.list(origin, reply)
        elif isinstance(parsed, StatusCommand):
            work = flows.status(origin, parsed.notification_id, reply)
        elif isinstance(parsed, FollowupCommand):
            work = flows.followup(origin, parsed.notification_id, parsed.body, parsed.done, reply)
        else:
            assert isinstance(parsed, CancelCommand)
            work = flows.cancel(origin, parsed.notification_id, reply)
        self._spawn(work, reply, f"command-{type(parsed).__name__}")

    async def _open_modal(self, origin: Origin, trigger_id: str, reply: Reply) -> None:
        if not await self.flows.may_announce(origin, "slack.announce", "(form)", reply):
            return
        view = announce_blocks.announce_modal(
            origin.channel_id, self.flows.herald.configured_channels(), command=self.flows.command
        )
        await self.flows.client.views_open(trigger_id=trigger_id, view=view)

    async def send(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        """The preview's Send button (value: the pending token)."""
        await ack()
        self.metrics.slack_requests.labels(kind="action").inc()
        reply = respond_reply(respond)
        self._spawn(self.flows.send(_origin(body), str(action.get("value", "")), reply), reply, "send")

    async def cancel(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        """Cancel on a preview (value: the pending token) or on a progress message (the notification id)."""
        await ack()
        self.metrics.slack_requests.labels(kind="action").inc()
        reply = respond_reply(respond)
        value = str(action.get("value", ""))
        origin = _origin(body)
        if pending.is_token(value):
            self._spawn(self.flows.discard(origin, value, reply), reply, "discard")
        else:
            self._spawn(self.flows.cancel(origin, value, reply), reply, "cancel")

    async def done(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        """The Done button on a maintenance notification's progress message: the all-clear."""
        await ack()
        self.metrics.slack_requests.labels(kind="action").inc()
        reply = respond_reply(respond)
        self._spawn(self.flows.done(_origin(body), str(action.get("value", "")), reply), reply, "done")

    async def submit(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """The modal's Preview: field errors go back in the ack; the preview is posted ephemerally."""
        self.metrics.slack_requests.labels(kind="view").inc()
        origin = _submitter(body, view)
        try:
            values = (view.get("state") or {}).get("values") or {}
            submission = parse_modal_submission(values, self.flows.herald.clock.now())
        except ModalErrors as exc:
            await ack(response_action="errors", errors=exc.errors)
            return
        request = self.flows.request_for(origin, submission.command, submission.start_at)
        task = self.tasks.spawn(self._modal_preview(origin, request), "modal-preview")
        if task is None:  # shutting down
            await ack(
                response_action="errors", errors={"audience": "Herald is restarting; try again shortly."}
            )
            return
        done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET)
        reply = ephemeral_reply(client, origin)
        if task in done and not task.cancelled() and task.exception() is None:
            await self._ack_preview(ack, task.result(), reply)
            return
        await ack()
        self._spawn(self._late_preview(task, reply), reply, "modal-preview-late")

    async def _ack_preview(self, ack: AsyncAck, outcome: Previewed | str, reply: Reply) -> None:
        """A preview ready within the ack budget: its errors travel in the ack, its message after."""
        if isinstance(outcome, str):
            await ack(response_action="errors", errors={"audience": outcome})
        elif outcome.error is not None:
            await ack(response_action="errors", errors={field_of(outcome.error): str(outcome.error)})
        else:
            await ack()
            if outcome.message is not None:
                self._spawn(reply(*outcome.message), reply, "modal-preview-post")

    async def _modal_preview(self, origin: Origin, request: AnnounceRequest) -> Previewed | str:
        """The preview, or the refusal text for someone who may not announce."""
        if not await self.flows.may_announce(
            origin, "slack.announce", f"{request.severity} to {request.audience}", None
        ):
            return refusal_text(origin.user_id)
        return await self.flows.prepare_preview(origin, request)

    async def _late_preview(self, task: asyncio.Task[Any], reply: Reply) -> None:
        outcome = await task
        if isinstance(outcome, str):
            await reply(*blocks.error_message(outcome))
        elif outcome.error is not None:
            await reply(*blocks.error_message(str(outcome.error)))
        elif outcome.message is not None:
            await reply(*outcome.message)

    async def alert_action(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        """Acknowledge / Resolve on an alert message (value: the alert group id)."""
        await ack()
        self.metrics.slack_requests.labels(kind="action").inc()
        reply = respond_reply(respond)
        self._spawn(self._alert_action(body, action, reply), reply, "alert-action")

    async def _alert_action(self, body: dict[str, Any], action: dict[str, Any], reply: Reply) -> None:
        herald, client = self.flows.herald, self.flows.client
        action_id, value = str(action.get("action_id", "")), str(action.get("value", ""))
        answer = await alert_slack.on_alert_action(herald, client, action_id, value, _origin(body).user_id)
        if answer is not None:
            await reply(*blocks.error_message(answer))

    async def confirm_action(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        """Confirm on a notification DM (value: the notification id)."""
        await ack()
        self.metrics.slack_requests.labels(kind="action").inc()
        reply = respond_reply(respond)
        self._spawn(self._confirm(body, action, reply), reply, "confirm")

    async def _confirm(self, body: dict[str, Any], action: dict[str, Any], reply: Reply) -> None:
        answer = await slack_confirm.on_confirm(self.flows.herald, self.flows.client, body, action)
        if answer is not None:
            await reply(*blocks.error_message(answer))

    async def home_opened(self, event: dict[str, Any]) -> None:
        """``app_home_opened`` (acked by Bolt): publish the Home tab."""
        self.metrics.slack_requests.labels(kind="event").inc()
        if event.get("tab", "home") == "home" and event.get("user"):
            self.tasks.spawn(self.flows.home(str(event["user"])), "home")

    async def error(self, error: Exception, body: dict[str, Any]) -> BoltResponse:
        """A bug (malformed requests are refused before Bolt): logged, answered 400, never 5xx."""
        log.error("unhandled error in a Slack listener (%s)", body.get("type", "?"), exc_info=error)
        return BoltResponse(status=400, body={"error": "herald could not handle this request"})


def register(app: AsyncApp, listeners: Listeners) -> None:
    """Attach the listeners to ``app``; the slash command under its configured name."""
    app.command(listeners.flows.command)(listeners.command)
    app.action(blocks.SEND_ACTION)(listeners.send)
    app.action(blocks.CANCEL_ACTION)(listeners.cancel)
    app.action(blocks.DONE_ACTION)(listeners.done)
    app.view(blocks.MODAL_CALLBACK)(listeners.submit)
    app.action(ACK_ACTION)(listeners.alert_action)
    app.action(RESOLVE_ACTION)(listeners.alert_action)
    app.action(CONFIRM_ACTION)(listeners.confirm_action)
    app.event("app_home_opened")(listeners.home_opened)
    app.error(listeners.error)
