"""The stages one claimed delivery passes through, in the manner of Alertmanager's notify pipeline.

:class:`ChannelRunner` (:mod:`bot.engine.dispatcher`) drives each claimed delivery through
``cancel check -> slot -> pace -> lease check -> send -> decide -> record``. This module holds the
parts with state of their own:

- :class:`Notices`: each notification rendered once per channel (``Channel[Prepared]``) and language
  (the person's, which picks the templates), and which of the notifications being sent were cancelled;
- :func:`send_one`: the send stage, which turns whatever the adapter does into a receipt or a
  delivery error;
- :class:`GroupCommit`: the record stage. Outcomes are written in one transaction per group, and a
  send's slot is freed only once its outcome is in the ledger, so a process killed at any moment may
  repeat at most the sends in flight. A group is written from the loop itself
  (:mod:`bot.engine.loop_writes`), or by a worker thread when the database is busy.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from bot.app import Herald
from bot.channel_specs import ChannelSpec
from bot.engine import ledger, notice_state
from bot.engine.ledger import Claimed, Outcome
from bot.engine.loop_writes import loop_writer
from bot.store import database_reason
from bot.tables import Delivery, DeliveryState, Notification, table_of
from channels.base import DeliveryError, Notice, Prepared, Receipt, Recipient, TransientError

log = logging.getLogger("herald.dispatcher")

DELIVERY = table_of(Delivery)
LATENCIES_KEPT = 20_000
NOTICES_KEPT = 1000


@dataclass(frozen=True, slots=True)
class PreparedNotice:
    """One notification as a channel sends it: the rendered message and what decides its outcome."""

    prepared: Prepared
    urgent: bool  # a mandatory kind: an uncertain send is retried (a duplicate beats a miss)
    preferences_link: bool  # each copy carries the recipient's signed preferences link
    threads: Mapping[str, str] = field(default_factory=dict)  # a follow-up: person -> key it answers
    confirm_link: bool = False  # each copy carries the recipient's signed confirmation link


@dataclass
class ChannelStats:
    """What this process's runner did on one channel (read by :mod:`bot.metrics`)."""

    sends: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, reason) -> count
    throttle_wait: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def count(self, outcome: Outcome, latency: float) -> None:
        state = outcome.state
        self.sends[state if state in _COUNTED else "failed", outcome.reason or ""] += 1
        if state == DeliveryState.SENT:
            self.latencies.append(latency)
            if len(self.latencies) > LATENCIES_KEPT:
                del self.latencies[: LATENCIES_KEPT // 2]


_COUNTED = (DeliveryState.SENT, DeliveryState.DEFERRED)  # states counted as themselves; others "failed"


class Notices:
    """Notifications rendered for one channel, loaded on first use and forgotten when finished.

    ``by_id`` holds each notification in its default language; other languages are rendered on first
    use (``notices[notification_id, language]``) and kept beside it.
    """

    def __init__(self, herald: Herald, spec: ChannelSpec) -> None:
        self.herald = herald
        self.spec = spec
        self.by_id: dict[str, PreparedNotice] = {}
        self.notices: dict[str, Notice] = {}
        self.languages: dict[tuple[str, str], PreparedNotice] = {}
        self.cancelled: set[str] = set()

    def __getitem__(self, key: tuple[str, str]) -> PreparedNotice:
        notification_id, language = key
        if not language:
            return self.by_id[notification_id]
        prepared = self.languages.get(key)
        if prepared is None:
            default = self.by_id[notification_id]
            notice = replace(self.notices[notification_id], language=language)
            prepared = self.languages[key] = replace(default, prepared=self._channel_prepare(notice))
        return prepared

    async def load(self, ids: set[str]) -> None:
        """Render the notifications of ``ids`` not rendered yet (one query, one render each)."""
        missing = ids - self.by_id.keys()
        if not missing:
            return
        if len(self.by_id) > NOTICES_KEPT:
            self.by_id.clear()  # a bound for long-running processes; prepared again on demand
            self.notices.clear()
            self.languages.clear()
            missing = ids
        for row in await asyncio.to_thread(self._rows, missing):
            self.by_id[row.id] = self._prepare(row)
            if row.parent_id and row.kind == "followup" and self.spec.name == "email":
                threads = await asyncio.to_thread(thread_keys, self.herald, row.parent_id)
                self.by_id[row.id] = replace(self.by_id[row.id], threads=threads)

    def _rows(self, ids: set[str]) -> list[Notification]:
        with self.herald.store.session() as session:
            query = select(Notification).where(Notification.id.in_(ids))  # type: ignore[attr-defined]
            return list(session.exec(query).scalars())  # type: ignore[call-overload]

    def _prepare(self, row: Notification) -> PreparedNotice:
        mandatory = self.herald.settings.is_mandatory(row.severity)
        meta = json.loads(row.meta or "{}")
        notice = Notice(
            notification_id=row.id,
            severity=row.severity,
            title=row.title,
            body=row.body,
            mandatory=mandatory,
            links={str(k): str(v) for k, v in (meta.get("links") or {}).items()},
            reply=row.kind == "followup",
            deadline=row.deadline or None,
            window=_window(meta.get("window")),
            confirm=bool(meta.get("confirm")),
        )
        self.notices[row.id] = notice
        # Signing a link per recipient costs an HMAC, so it is skipped where unused: channels without
        # a preferences link (SMS opts out by STOP) and mandatory kinds, which never carry one.
        link = self.spec.preferences_link and not mandatory
        return PreparedNotice(
            self._channel_prepare(notice),
            mandatory,
            link,
            confirm_link=notice.confirm and self.spec.name == "email",
        )

    def _channel_prepare(self, notice: Notice) -> Prepared:
        return self.herald.channel(self.spec.name).prepare(notice)

    async def refresh_cancelled(self) -> None:
        if self.by_id:
            self.cancelled = await asyncio.to_thread(
                notice_state.cancelled_among, self.herald.store, self.by_id
            )

    def forget(self, ids: Iterable[str]) -> None:
        for notification_id in ids:
            self.by_id.pop(notification_id, None)
            self.notices.pop(notification_id, None)
        if self.languages:
            self.languages = {key: value for key, value in self.languages.items() if key[0] in self.by_id}


def _window(value: object) -> tuple[float, float] | None:
    """A maintenance window from a notification's meta: ``{"start": epoch, "end": epoch}``."""
    if not isinstance(value, dict):
        return None
    start, end = value.get("start"), value.get("end")
    if isinstance(start, int | float) and isinstance(end, int | float):
        return float(start), float(end)
    return None


async def send_one(
    herald: Herald, channel: str, item: Claimed, notice: PreparedNotice
) -> Receipt | DeliveryError:
    """The send stage: one message to one recipient; a channel's bug becomes a transient ``unknown``."""
    person, notification_id = item.person_id, item.notification_id
    recipient = Recipient(  # in field order (address, name, person_id, unsubscribe_url, ...): one per send
        item.address,
        item.name,
        person,
        herald.unsubscribe_url(person) if notice.preferences_link else "",
        f"{notification_id}.{item.id}",
        item.id,
        notice.threads.get(person, "") if notice.threads else "",
        herald.confirm_url(notification_id, person) if notice.confirm_link else "",
    )
    try:
        return await herald.channel(channel).send(notice.prepared, recipient)
    except DeliveryError as exc:
        return exc
    except Exception as exc:  # a bug in a channel: keep the delivery, log loudly
        log.exception("channel %s raised a non-delivery error", channel)
        return TransientError("unknown", f"{type(exc).__name__}: {exc}")


def thread_keys(herald: Herald, parent_id: str) -> dict[str, str]:
    """Each person's email of ``parent_id`` as a message key (its Message-ID), for a follow-up."""
    with herald.store.begin() as connection:
        rows = connection.execute(
            select(DELIVERY.c.person_id, DELIVERY.c.id).where(
                DELIVERY.c.notification_id == parent_id, DELIVERY.c.channel == "email"
            )
        ).all()
    return {str(person): f"{parent_id}.{delivery}" for person, delivery in rows}


class GroupCommit:
    """The record stage: outcomes gathered while a write runs are written together by the next one.

    ``release_slot`` is called once per outcome after its transaction commits; notifications with a
    final outcome are checked for completion by :meth:`finish`.
    """

    def __init__(
        self, herald: Herald, channel: str, worker_id: str, release_slot: Callable[[], None]
    ) -> None:
        self.herald = herald
        self.channel = channel
        self.worker_id = worker_id
        self.release_slot = release_slot
        self.pending: list[Outcome] = []
        self.touched: set[str] = set()  # notifications with outcomes since the last finish check
        self.ready = asyncio.Event()
        self.writing = asyncio.Lock()
        self.loop_writer = loop_writer(herald.store, worker_id)  # no thread hand-off per group

    def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        self.ready.set()

    async def run(self) -> None:
        """Write outcomes as soon as they arrive, all that piled up during the previous write."""
        while True:
            await self.ready.wait()
            await asyncio.sleep(0)  # sends finishing in this turn of the loop join the group
            self.ready.clear()
            await self.write()

    async def write(self) -> None:
        """Record the outcomes gathered so far in one transaction, then free their send slots."""
        async with self.writing:
            if not self.pending:
                return
            outcomes, self.pending = self.pending, []
            try:
                if not await self.loop_writer.record(outcomes):
                    await asyncio.to_thread(ledger.record, self.herald.store, outcomes, self.worker_id)
            except SQLAlchemyError as exc:
                # The database is the truth: keep the slots (sending stops) and retry.
                log.warning(
                    "%s: recording %d outcomes failed (%s); retrying",
                    self.channel,
                    len(outcomes),
                    database_reason(exc),
                )
                self.pending[:0] = outcomes
                await asyncio.sleep(1.0)
                self.ready.set()
                return
            for _ in outcomes:
                self.release_slot()
            self.touched.update(o.notification_id for o in outcomes if o.state != DeliveryState.DEFERRED)

    async def close(self) -> None:
        await self.loop_writer.close()

    async def finish(self) -> list[str]:
        """Mark notifications with nothing left open as done; the ids that finished."""
        if not self.touched:
            return []
        ids, self.touched = self.touched, set()
        try:
            return await asyncio.to_thread(
                notice_state.finish_notifications, self.herald.store, self.herald.clock.now(), ids
            )
        except SQLAlchemyError:
            self.touched |= ids  # checked again next time
            raise
