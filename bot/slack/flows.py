"""What happens after a listener has acked: one use case per method, each ending in a reply.

Each flow checks who is asking, calls one service function (in a worker thread: the service is
synchronous and talks to the database), and renders the result with
:mod:`bot.slack.announce_blocks` or :mod:`bot.slack.status_blocks`. Errors meant for the user
(:class:`~bot.service.AnnounceError`) become an ephemeral warning; anything else is logged and the
user is told Herald failed, never shown a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot import service
from bot.alerts import maintenance
from bot.alerts.silences import sync_silences
from bot.app import Herald
from bot.engine.followup import FollowupError, followup
from bot.engine.ladder_preview import ladder_preview
from bot.metrics import HeraldMetrics
from bot.render import format_ladder
from bot.service import AnnounceError, AnnounceRequest, Preview
from bot.slack import announce_blocks, blocks, pending, status_blocks
from bot.slack.auth import Announcers, UserGroups, refusal_text, subteams_in
from bot.slack.blocks import Block
from bot.slack.commands import AnnounceCommand
from bot.slack.home import home_items
from bot.slack.mrkdwn import Mrkdwn, channel_link, mention, mrkdwn, slack_date
from bot.slack.progress import ProgressTracker, set_meta
from bot.slack.threads import DONE_TEXT, refresh_progress, reply_in_thread

log = logging.getLogger("herald.slack")

INTERNAL_ERROR = "Herald could not do that because of an internal error; it is logged. Try again in a minute."


class Reply(Protocol):
    """Shows the user something only they see (response_url or chat.postEphemeral)."""

    async def __call__(self, text: Mrkdwn, blocks: list[Block], /, replace: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class Origin:
    """Who typed or clicked, and in which channel."""

    user_id: str
    channel_id: str


@dataclass(frozen=True, slots=True)
class Previewed:
    """A preview ready to show, or the user-facing reason it could not be made."""

    message: blocks.Message | None = None
    error: AnnounceError | None = None


def field_of(error: AnnounceError) -> str:
    """The modal field an :class:`AnnounceError` is about (its ``field`` when it names one)."""
    named = getattr(error, "field", None)
    if isinstance(named, str) and named:
        return named
    text = str(error).lower()
    if text.startswith(("audience", "no one matches")):
        return "audience"
    for block in ("severity", "channel", "title", "start"):
        if block in text:
            return {"channel": "channels", "start": "start_at"}.get(block, block)
    return "audience"


def preview_facts(request: AnnounceRequest, result: Preview) -> announce_blocks.PreviewFacts:
    """What the preview shows: the request, and the engine's reach and forecast for it."""
    return announce_blocks.PreviewFacts(
        severity=request.severity,
        title=request.title,
        body=request.body,
        audience=request.audience,
        channels=request.channels,
        recipients=result.recipients,
        reachable={name: ch.reachable for name, ch in result.channels.items()},
        unreachable={name: ch.unreachable for name, ch in result.channels.items()},
        sms_segments=result.sms_segments,
        finish_at=result.forecast.finish_at,
        forecast_seconds=result.forecast.seconds,
        meets_sla=result.forecast.meets,
        deliver_within=result.deliver_within,
        start_at=request.start_at,
        window=(window.starts_at, window.ends_at, window.matchers) if (window := request.window) else None,
    )


class AnnounceFlows:
    """The ``/announce`` use cases, the Home tab and the progress hand-off."""

    def __init__(
        self,
        herald: Herald,
        client: AsyncWebClient,
        announcers: Announcers,
        groups: UserGroups,
        tracker: ProgressTracker,
        metrics: HeraldMetrics,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.herald = herald
        self.client = client
        self.announcers = announcers
        self.groups = groups
        self.tracker = tracker
        self.metrics = metrics
        self.on_queued = on_queued
        self.command = herald.settings.slack.command  # the slash command's configured name

    # -- helpers ---------------------------------------------------------------------------------

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, self.herald, *args)

    async def guarded(self, reply: Reply, work: Awaitable[None]) -> None:
        """Run one flow; turn a domain error into a warning and anything else into a logged failure."""
        try:
            await work
        except AnnounceError as exc:
            await reply(*blocks.error_message(str(exc)))
        except Exception:
            log.exception("slack flow failed")
            await reply(*blocks.error_message(INTERNAL_ERROR))

    async def may_announce(self, origin: Origin, action: str, subject: str, reply: Reply | None) -> bool:
        """Announcers pass; anyone else is refused (ephemerally) and the refusal audited."""
        if await self.announcers.allows(origin.user_id):
            return True
        self.metrics.slack_refusals.inc()
        await self._call(
            service.audit,
            origin.user_id,
            action,
            subject[:200],
            False,
            {"reason": "not an announcer", "channel": origin.channel_id},
        )
        if reply is not None:
            await reply(*blocks.error_message(refusal_text(origin.user_id)))
        return False

    def request_for(
        self, origin: Origin, command: AnnounceCommand, start_at: float | None
    ) -> AnnounceRequest:
        return AnnounceRequest(
            audience=command.audience,
            channels=command.channels,
            severity=command.severity,
            title=command.title,
            body=command.body,
            created_by=f"slack:{origin.user_id}",
            start_at=start_at,
            window=self._window(command),
            meta={"confirm": True} if command.confirm else {},
            rungs=command.rungs,
        )

    def _window(self, command: AnnounceCommand) -> maintenance.Window | None:
        """The typed form's ``window``/``silence`` (times of day in UTC, or START..END)."""
        try:
            window = command.window and maintenance.day_window(command.window, self.herald.clock.now())
            return maintenance.window_from_options(
                command.severity,
                window or None,
                command.silence,
                self.herald.clock.now(),
                ("window", "silence"),
            )
        except maintenance.WindowError as exc:
            raise AnnounceError(str(exc)) from exc

    async def _with_groups(self, request: AnnounceRequest) -> AnnounceRequest:
        groups = subteams_in(request.audience)
        if not groups:
            return request
        return replace(request, slack_groups=await self.groups.resolve(groups))

    # -- preview ---------------------------------------------------------------------------------

    async def prepare_preview(self, origin: Origin, request: AnnounceRequest) -> Previewed:
        """Compute the preview and store it as pending (audited); the message carries its token."""
        resolved = await self._with_groups(request)
        try:
            result: Preview = await self._call(service.preview, resolved)
        except AnnounceError as exc:
            await self._call(
                service.audit,
                origin.user_id,
                pending.PREVIEW_ACTION,
                "",
                True,
                {"audience": request.audience, "error": str(exc), "channel": origin.channel_id},
            )
            return Previewed(error=exc)
        token = await self._keep_pending(origin, request, result)
        confirm = announce_blocks.needs_confirmation(
            request.audience, result.recipients, self.herald.settings.slack.confirm_above
        )
        facts = preview_facts(request, result)
        ladder = await self._call(ladder_preview, resolved, result)
        if ladder is not None:
            facts = replace(facts, ladder=tuple(format_ladder(ladder).splitlines()))
        return Previewed(message=announce_blocks.preview_message(facts, token, confirm))

    async def _keep_pending(self, origin: Origin, request: AnnounceRequest, result: Preview) -> str:
        """Store the request until Send; returns the token the preview's buttons carry."""
        entry = pending.Pending(
            token=pending.new_token(),
            user_id=origin.user_id,
            channel_id=origin.channel_id,
            request=request,
            recipients=result.recipients,
            forecast_seconds=result.forecast.seconds,
            created_at=self.herald.clock.now(),
        )
        await asyncio.to_thread(pending.save, self.herald, entry)
        return entry.token

    async def preview_typed(self, origin: Origin, command: AnnounceCommand, reply: Reply) -> None:
        """``/announce <severity> to <audience> via <channels>: <title> | <body>`` → preview."""
        subject = f"{command.severity} to {command.audience}"
        if not await self.may_announce(origin, "slack.announce", subject, reply):
            return
        outcome = await self.prepare_preview(origin, self.request_for(origin, command, None))
        if outcome.error is not None:
            await reply(*blocks.error_message(f"{outcome.error}"))
        elif outcome.message is not None:
            await reply(*outcome.message)

    # -- send / discard --------------------------------------------------------------------------

    async def send(self, origin: Origin, token: str, reply: Reply) -> None:
        """The preview's Send: store the announcement once (idempotent on the token), then follow it."""
        entry = await asyncio.to_thread(pending.load, self.herald, token)
        if entry is None:
            expired = f"This preview has expired; run {self.command} again."
            await reply(*blocks.error_message(expired), replace=True)
            return
        if entry.user_id != origin.user_id:
            await reply(
                *blocks.error_message(
                    mrkdwn("Only {}, who asked for this preview, can send it.", mention(entry.user_id))
                )
            )
            return
        if not await self.may_announce(origin, "slack.send", token, reply):
            return
        channel = entry.channel_id or origin.channel_id
        meta = {"slack_channel": channel, "slack_user": origin.user_id, "forecast_s": entry.forecast_seconds}
        request = await self._with_groups(replace(entry.request, meta={**entry.request.meta, **meta}))
        notification_id: str = await self._call(service.announce, request)
        self.metrics.announcements.labels(source="slack").inc()
        if self.on_queued is not None:
            self.on_queued()
        start_at = entry.request.start_at
        if start_at and start_at > self.herald.clock.now():
            text = mrkdwn(
                ":calendar: Scheduled `{id}` for {when}. "
                "`{command} list` shows it, `{command} cancel {id}` cancels it.",
                command=self.command,
                id=notification_id,
                when=slack_date(start_at),
            )
        else:
            text = mrkdwn(
                ":outbox_tray: Sending `{}`; progress is posted in {}.",
                notification_id,
                channel_link(channel),
            )
            self.tracker.track(notification_id)
        await reply(text, [blocks.section(text)], replace=True)

    async def discard(self, origin: Origin, token: str, reply: Reply) -> None:
        """The preview's Cancel: nothing was stored, so say so and audit it."""
        await self._call(service.audit, origin.user_id, "slack.discard", token, True, {})
        text = mrkdwn("Cancelled; nothing was sent.")
        await reply(text, [blocks.section(text)], replace=True)

    # -- cancel, status, list, home --------------------------------------------------------------

    async def cancel(self, origin: Origin, notification_id: str, reply: Reply) -> None:
        """Stop what has not been sent (``/announce cancel ID`` or the progress message's button)."""
        if not await self.may_announce(origin, "slack.cancel", notification_id, reply):
            return
        status = await self._call(service.status, notification_id)
        if status is None:
            await reply(*blocks.error_message(f"There is no notification {notification_id}."))
            return
        count: int = await self._call(service.cancel, notification_id, f"slack:{origin.user_id}")
        if status.get("state") == "scheduled":
            await asyncio.to_thread(set_meta, self.herald.store, notification_id, slack_done=True)
        self.tracker.poke(notification_id)
        noun = "message" if count == 1 else "messages"
        text = mrkdwn("Cancelled `{}`: {} {} will not be sent.", notification_id, count, noun)
        await reply(text, [blocks.section(text)])

    async def followup(
        self, origin: Origin, notification_id: str, body: str, done: bool, reply: Reply
    ) -> None:
        """``/announce update ID: text`` / ``/announce done ID: text``: a threaded follow-up."""
        action = "slack.done" if done else "slack.update"
        if not await self.may_announce(origin, action, notification_id, reply):
            return
        try:
            sent = await self._call(followup, notification_id, body, done, f"slack:{origin.user_id}")
        except FollowupError as exc:
            await reply(*blocks.error_message(str(exc)))
            return
        if self.on_queued is not None:
            self.on_queued()
        if sent.ended_window:
            await self._call(sync_silences)
        await reply_in_thread(self.herald, self.client, sent, body, done)
        what = "All-clear" if done else "Follow-up"
        ended = " The maintenance window has ended." if sent.ended_window else ""
        text = mrkdwn(
            "{} `{}` to the {} people of `{}` is on its way.{}",
            what,
            sent.id,
            sent.recipients,
            sent.original,
            ended,
        )
        await reply(text, [blocks.section(text)])

    async def done(self, origin: Origin, notification_id: str, reply: Reply) -> None:
        """The progress message's Done button: the all-clear, once, while the window is open."""
        status = await self._call(service.status, notification_id)
        if not status_blocks.window_open((status or {}).get("window"), self.herald.clock.now()):
            await reply(*blocks.error_message(f"The maintenance window of {notification_id} has ended."))
            return
        await self.followup(origin, notification_id, DONE_TEXT, True, reply)
        await refresh_progress(self.herald, self.client, notification_id)

    async def status(self, origin: Origin, notification_id: str, reply: Reply) -> None:
        """``/announce status ID``, for announcers only (others are refused like an announcement)."""
        if not await self.may_announce(origin, "slack.status", notification_id, reply):
            return
        status = await self._call(service.status, notification_id)
        if status is None:
            await reply(*blocks.error_message(f"There is no notification {notification_id}."))
            return
        await reply(*status_blocks.status_message(status, self.herald.clock.now()))

    async def list(self, origin: Origin, reply: Reply) -> None:
        """``/announce list``, for announcers only."""
        if not await self.may_announce(origin, "slack.list", "", reply):
            return
        scheduled = await self._call(service.scheduled)
        recent = await self._call(service.recent, 10)
        await reply(*status_blocks.list_message(scheduled, recent, self.command))

    async def home(self, user_id: str) -> None:
        """``app_home_opened``: the last notifications (a member's own only) with their SLA state."""
        announcer = await self.announcers.allows(user_id)
        items = await self._call(home_items, user_id, announcer)
        view = status_blocks.home_view(items, announcer, self.command)
        try:
            await self.client.views_publish(user_id=user_id, view=view)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("views.publish for %s failed: %s", user_id, exc)


def ephemeral_reply(client: AsyncWebClient, origin: Origin) -> Reply:
    """A :class:`Reply` through ``chat.postEphemeral``, falling back to a DM from the app."""

    async def reply(text: Mrkdwn, message_blocks: list[Block], replace: bool = False) -> None:
        try:
            await client.chat_postEphemeral(
                channel=origin.channel_id, user=origin.user_id, text=text, blocks=message_blocks
            )
        except SlackApiError as exc:
            log.info(
                "ephemeral in %s failed (%s); sending a DM", origin.channel_id, exc.response.get("error")
            )
            await client.chat_postMessage(channel=origin.user_id, text=text, blocks=message_blocks)

    return reply
