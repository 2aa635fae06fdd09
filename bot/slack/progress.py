"""The live progress message of an announcement started from Slack.

After Send (or when a scheduled announcement's time comes) one message is posted in the channel the
command came from (``chat.postMessage``) and then edited (``chat.update``) as delivery goes: a text
bar, sent / failed / suppressed / left, an ETA; at the end the final counts, the slowest delivery and
the SLA outcome. Edits are at most one per ``min_interval`` seconds per message (Slack's
``chat.update`` tier allows about one a second per channel; 3 s leaves room) and a 429 is honoured
by waiting its ``Retry-After`` before the next try.

The notification's ``meta`` holds the Slack side, so a restart resumes where it left off:
``slack_channel``/``slack_user`` (where and by whom; written by Send), ``slack_ts`` (the progress
message; ``""`` while one process is posting it), ``slack_owner``/``slack_claimed_at`` (the process
that posts and edits it; another takes over only once the owner's worker heartbeat is gone) and
``slack_done`` (the final state has been shown). Claims are compare-and-set on the meta text, so
two ``herald serve`` replicas never post two messages for one notification nor edit one twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import and_, select, update

from bot import service
from bot.app import Herald
from bot.engine import workers
from bot.metrics import HeraldMetrics
from bot.slack.blocks import Message
from bot.slack.status_blocks import estimate_eta, progress_message, tally
from bot.slack.tasks import TaskSet
from bot.store import Store
from bot.tables import Notification, table_of
from channels.base import parse_retry_after

log = logging.getLogger("herald.slack")

NOTIFICATION = table_of(Notification)
CLAIM_STALE_AFTER = 60.0
RESUME_WITHIN = 3 * 86400.0
MAX_RATE_LIMITED = 10


# -- the meta column, compare-and-set ---------------------------------------------------------------


def change_meta(
    store: Store, notification_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> dict[str, Any] | None:
    """Apply ``change`` to the notification's meta atomically; None when ``change`` declines.

    ``change`` gets a copy of the meta and returns the new meta, or None to leave it. The write only
    lands if nobody changed the meta meanwhile; otherwise it is re-read and ``change`` asked again.
    """
    for _ in range(5):
        with store.begin() as connection:
            old = connection.execute(
                select(NOTIFICATION.c.meta).where(NOTIFICATION.c.id == notification_id)
            ).scalar_one_or_none()
            if old is None:
                return None
            new = change(json.loads(old or "{}"))
            if new is None:
                return None
            written = connection.execute(
                update(NOTIFICATION)
                .where(and_(NOTIFICATION.c.id == notification_id, NOTIFICATION.c.meta == old))
                .values(meta=json.dumps(new))
            ).rowcount
        if written:
            return new
    return None


def claim_posting(store: Store, notification_id: str, owner: str, now: float) -> dict[str, Any] | None:
    """Claim the right to post the progress message; None when it exists or another owner is on it."""

    def change(meta: dict[str, Any]) -> dict[str, Any] | None:
        if not meta.get("slack_channel") or meta.get("slack_ts") or meta.get("slack_done"):
            return None
        claimed_at = float(meta.get("slack_claimed_at") or 0.0)
        if "slack_ts" in meta and meta.get("slack_owner") != owner and now - claimed_at < CLAIM_STALE_AFTER:
            return None
        return {**meta, "slack_ts": "", "slack_owner": owner, "slack_claimed_at": now}

    return change_meta(store, notification_id, change)


def take_over(store: Store, notification_id: str, owner: str, live: set[str]) -> dict[str, Any] | None:
    """Become the one keeping an existing progress message up to date, unless a live process is."""

    def change(meta: dict[str, Any]) -> dict[str, Any] | None:
        current = meta.get("slack_owner")
        if current and current != owner and current in live:
            return None
        return meta if current == owner else {**meta, "slack_owner": owner}

    return change_meta(store, notification_id, change)


def set_meta(store: Store, notification_id: str, **values: Any) -> None:
    change_meta(store, notification_id, lambda meta: {**meta, **values})


def to_follow(store: Store, now: float) -> list[str]:
    """Slack-started notifications that have started and whose final state is not shown yet."""
    with store.begin() as connection:
        rows = connection.execute(
            select(NOTIFICATION.c.id, NOTIFICATION.c.meta).where(
                NOTIFICATION.c.meta.like('%"slack_channel"%'),
                NOTIFICATION.c.meta.not_like('%"slack_done"%'),
                NOTIFICATION.c.start_at <= now,
                NOTIFICATION.c.created_at >= now - RESUME_WITHIN,
            )
        ).all()
    return [str(row.id) for row in rows]


# -- following one notification ---------------------------------------------------------------------


def is_final(status: Mapping[str, Any], now: float) -> bool:
    """Nothing left in flight, and done, cancelled or started (a cancel leaves in-flight sends to end)."""
    if int(status.get("left") or 0) > 0:
        return False
    if status.get("state") != "cancelled" and any(r["started_at"] is None for r in status.get("rungs") or ()):
        return False  # a later rung of its channel ladder has not started yet (bot.engine.rungs)
    return status.get("state") in ("done", "cancelled") or float(status.get("start_at") or 0.0) <= now


def eta_of(status: Mapping[str, Any], now: float) -> float | None:
    """Seconds left at the pace so far; before the first send, the forecast shown in the preview."""
    counts = tally(status.get("channels") or {})
    start = float(status.get("start_at") or status.get("created_at") or now)
    eta = estimate_eta(counts.done, counts.left, now - start)
    if eta is None:
        forecast = (status.get("meta") or {}).get("forecast_s")
        if forecast is not None:
            return max(0.0, start + float(forecast) - now)
    return eta


@dataclass
class _Message:
    channel: str
    ts: str
    shown: tuple[str, str] | None = None
    shown_at: float = float("-inf")


class ProgressTracker:
    """Follows each Slack-started notification with one message, from start to final counts."""

    def __init__(
        self,
        herald: Herald,
        client: AsyncWebClient,
        tasks: TaskSet,
        metrics: HeraldMetrics,
        owner: str,
        min_interval: float = 3.0,
        poll_interval: float = 1.0,
    ) -> None:
        self.herald = herald
        self.client = client
        self.tasks = tasks
        self.metrics = metrics
        self.owner = owner
        self.min_interval = min_interval
        self.poll_interval = poll_interval
        self._following: set[str] = set()
        self._wake: dict[str, asyncio.Event] = {}
        self._closing = False

    def track(self, notification_id: str) -> None:
        """Follow ``notification_id`` unless this process already does."""
        if notification_id in self._following:
            return
        self._following.add(notification_id)
        self._wake[notification_id] = asyncio.Event()
        if self.tasks.spawn(self._follow(notification_id), f"progress-{notification_id}") is None:
            self._forget(notification_id)

    def close(self) -> None:
        """Stop following at the next step (a restarted process resumes from the stored meta)."""
        self._closing = True
        for event in self._wake.values():
            event.set()

    def poke(self, notification_id: str) -> None:
        """Something changed (a cancel): refresh soon instead of at the next poll."""
        event = self._wake.get(notification_id)
        if event is not None:
            event.set()

    async def sweep(self) -> None:
        """The scheduler tick: follow what started meanwhile (scheduled, or before a restart)."""
        if self._closing:
            return
        for notification_id in await asyncio.to_thread(to_follow, self.herald.store, self.herald.clock.now()):
            self.track(notification_id)

    def _forget(self, notification_id: str) -> None:
        self._following.discard(notification_id)
        self._wake.pop(notification_id, None)

    async def _status(self, notification_id: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(service.status, self.herald, notification_id)

    async def _follow(self, notification_id: str) -> None:
        try:
            message = await self._message(notification_id)
            if message is not None:
                await self._keep_up(notification_id, message)
        finally:
            self._forget(notification_id)

    async def _message(self, notification_id: str) -> _Message | None:
        """The existing progress message, or a new one when this process wins the claim."""
        status = await self._status(notification_id)
        if status is None:
            return None
        now = self.herald.clock.now()
        if (status.get("meta") or {}).get("slack_ts"):
            return await self._resume(notification_id, now)
        if status.get("state") == "cancelled":  # cancelled before it started: nothing to show
            await asyncio.to_thread(set_meta, self.herald.store, notification_id, slack_done=True)
            return None
        claimed = await asyncio.to_thread(claim_posting, self.herald.store, notification_id, self.owner, now)
        if claimed is None:
            return None
        return await self._post(notification_id, status, claimed, now)

    async def _resume(self, notification_id: str, now: float) -> _Message | None:
        """Resuming (a restart, or a replica that died): the posted message, only if its owner is gone."""
        live = set(await asyncio.to_thread(workers.live_workers, self.herald.store, now))
        taken = await asyncio.to_thread(take_over, self.herald.store, notification_id, self.owner, live)
        if taken is None:
            return None
        return _Message(str(taken["slack_channel"]), str(taken["slack_ts"]))

    async def _post(
        self, notification_id: str, status: Mapping[str, Any], claimed: Mapping[str, Any], now: float
    ) -> _Message | None:
        """Post the first progress message in the command's channel, else as a DM to the sender."""
        text, blocks = progress_message(status, now, eta_of(status, now), is_final(status, now))
        for channel in dict.fromkeys([str(claimed["slack_channel"]), str(claimed.get("slack_user") or "")]):
            if not channel:
                continue
            try:
                response = await self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
            except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
                # A private channel the app is not in: fall back to a DM to whoever sent it.
                log.warning("progress message for %s in %s failed: %s", notification_id, channel, exc)
                continue
            ts, posted_in = str(response["ts"]), str(response.get("channel") or channel)
            await asyncio.to_thread(
                set_meta, self.herald.store, notification_id, slack_ts=ts, slack_channel=posted_in
            )
            return _Message(posted_in, ts, (text, json.dumps(blocks)), self.herald.clock.now())
        await asyncio.to_thread(set_meta, self.herald.store, notification_id, slack_done=True)
        return None

    async def _keep_up(self, notification_id: str, message: _Message) -> None:
        # Sends in flight at a cancel end within a lease; a dead worker's lease runs out first.
        patience = self.herald.settings.dispatcher.lease + 30.0
        ended_at: float | None = None
        while not self._closing:
            status = await self._status(notification_id)
            if status is None:
                return
            now = self.herald.clock.now()
            if ended_at is None and status.get("state") in ("done", "cancelled"):
                ended_at = now
            final = is_final(status, now) or (ended_at is not None and now - ended_at > patience)
            text, blocks = progress_message(status, now, eta_of(status, now), final)
            shown = (text, json.dumps(blocks))
            if shown != message.shown:
                wait = message.shown_at + self.min_interval - now
                if wait > 0 and not final:
                    await self._pause(notification_id, wait)
                    continue  # re-read: the numbers moved while we waited (or we are closing)
                if wait > 0:
                    await self.herald.clock.sleep(wait)
                    # Read again: a redraw made meanwhile (the all-clear drops the Done button,
                    # bot.slack.threads.refresh_progress) must not be undone by what was read before.
                    text, blocks = await self._final_message(notification_id) or (text, blocks)
                    shown = (text, json.dumps(blocks))
                if not await self._update(message, text, blocks):
                    return
                message.shown, message.shown_at = shown, self.herald.clock.now()
            if final:
                await asyncio.to_thread(set_meta, self.herald.store, notification_id, slack_done=True)
                return
            await self._pause(notification_id, self.poll_interval)

    async def _final_message(self, notification_id: str) -> Message | None:
        status = await self._status(notification_id)
        if status is None:
            return None
        now = self.herald.clock.now()
        return progress_message(status, now, eta_of(status, now), True)

    async def _pause(self, notification_id: str, seconds: float) -> None:
        event = self._wake.get(notification_id)
        if event is None:
            await self.herald.clock.sleep(seconds)
            return
        sleeper = asyncio.ensure_future(self.herald.clock.sleep(seconds))
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (sleeper, waiter):
                pending.cancel()
            await asyncio.gather(sleeper, waiter, return_exceptions=True)
            event.clear()

    async def _update(self, message: _Message, text: str, blocks: list[dict[str, Any]]) -> bool:
        """One ``chat.update``, waiting out 429s; False when the message cannot be edited any more."""
        for _ in range(MAX_RATE_LIMITED):
            try:
                await self.client.chat_update(
                    channel=message.channel, ts=message.ts, text=text, blocks=blocks
                )
            except SlackApiError as exc:
                retry_after = rate_limit_wait(exc)
                if retry_after is None:
                    log.warning("chat.update %s failed: %s", message.ts, exc.response.get("error"))
                    return exc.response.get("error") not in ("message_not_found", "channel_not_found")
                self.metrics.slack_rate_limited.labels(method="chat.update").inc()
                await self.herald.clock.sleep(retry_after)
                continue
            except (SlackClientError, OSError, TimeoutError) as exc:
                log.warning("chat.update %s failed: %s", message.ts, exc)
                return True  # try again at the next change
            self.metrics.slack_progress_updates.inc()
            return True
        return True


def rate_limit_wait(error: SlackApiError) -> float | None:
    """Seconds to wait for a 429 answer (its ``Retry-After``, else 1); None for other errors."""
    response = error.response
    if response.status_code != 429 and response.get("error") != "ratelimited":
        return None
    wait = parse_retry_after(response.headers.get("Retry-After") or response.headers.get("retry-after"))
    return 1.0 if wait is None else wait
