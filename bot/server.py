"""The long-running process: what ``herald serve`` runs.

:class:`HeraldServer` runs, in one asyncio process: uvicorn serving :mod:`bot.web` (Slack over HTTP,
webhooks, health, metrics), the Bolt app over Socket Mode when ``slack.app_token`` is set, an
APScheduler ``AsyncIOScheduler`` whose tick follows Slack progress and runs the periodic jobs, and the
dispatcher. The command-line side lives in :mod:`bot.cli.serve`; a dispatcher beside the command that
created a notification (``announce --wait``) is :func:`bot.cli.wait.wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from starlette.routing import BaseRoute
from uvicorn.protocols.http.h11_impl import H11Protocol

from bot.alerts.outages import outage_notifier
from bot.app import Herald
from bot.clock import Clock
from bot.config import Settings
from bot.engine.dispatcher import Dispatcher
from bot.engine.leader import Leadership
from bot.engine.workers import SecondDispatcherError, new_worker_id
from bot.metrics import HeraldMetrics
from bot.people import ReachTargets
from bot.slack.app import SlackFrontDoor, build_slack
from bot.web import build_web_app

log = logging.getLogger("herald.serve")

TICK_EVERY = 5.0
DRAIN_TIMEOUT = 10.0


class ServeError(Exception):
    """``herald serve`` cannot start (port taken, second dispatcher on SQLite...)."""


@dataclass(frozen=True)
class Job:
    """A periodic job for the scheduler: ``run`` every ``every`` seconds, one run at a time."""

    name: str
    every: float
    run: Callable[[], Awaitable[None]]


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: Herald stops it after deciding how to shut down."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def timed_h11(read_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a read deadline: a request's headers and body must arrive within
    ``read_timeout`` of its first byte (or of the connection's opening), else the connection is
    closed; slow-header and slow-body clients cannot hold connections (uvicorn has no such limit)."""

    class TimedH11(H11Protocol):
        _read_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR):
                self._disarm()  # the whole request is in: the app's own time is not limited here
            else:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._read_deadline is None:
                self._read_deadline = self.loop.call_later(read_timeout, self._expired)

        def _disarm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def _expired(self) -> None:
            self._read_deadline = None
            if self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
                log.info("closed a connection whose request did not arrive within %gs", read_timeout)
                self.transport.close()

    return TimedH11


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=2048)


class HeraldServer:
    """Everything ``herald serve`` runs; ``start()`` returns the listening URL, ``stop()`` drains."""

    def __init__(
        self,
        settings: Settings,
        *,
        herald: Herald | None = None,
        clock: Clock | None = None,
        dispatch: bool = True,
        worker_id: str | None = None,
        routes: Sequence[BaseRoute] = (),
        jobs: Sequence[Job] = (),
        progress_interval: float = 3.0,
        tick_every: float = TICK_EVERY,
    ) -> None:
        self.settings = settings
        self.herald = herald or Herald.build(settings, clock=clock)
        self.worker_id = worker_id or new_worker_id("serve")
        self.metrics = HeraldMetrics(
            self.herald.store,
            self.herald.clock,
            self.herald.configured_channels(),
            ReachTargets.of(self.herald.settings),
        )
        notify = outage_notifier(self.herald)
        self.dispatcher = Dispatcher(self.herald, self.worker_id, notify=notify) if dispatch else None
        if self.dispatcher is not None:
            self.metrics.attach_dispatcher(self.dispatcher)
        self.slack: SlackFrontDoor | None = build_slack(
            self.herald,
            self.metrics,
            owner=self.worker_id,
            on_queued=self.dispatcher.poke if self.dispatcher is not None else None,
            progress_interval=progress_interval,
        )
        self.app = build_web_app(self.herald, self.metrics, self.slack, routes)
        self.jobs = list(jobs)
        self.leadership = Leadership(self.herald.store)
        self.tick_every = tick_every
        self.url = ""
        self._stop = asyncio.Event()
        self._socket: socket.socket | None = None
        self._uvicorn: _Uvicorn | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._socket_mode: Any = None
        self._socket_connect: asyncio.Task[None] | None = None
        self._stopped = False
        self._running_jobs: set[asyncio.Task[Any]] = set()  # scheduled jobs in progress, awaited at stop

    @property
    def slack_mode(self) -> str:
        if self.slack is None:
            return "off, slack.bot_token is not set"
        modes = []
        if self.slack.app_token:
            modes.append("Socket Mode")
        if self.slack.http_enabled:
            modes.append("HTTP at /slack/events")
        return " and ".join(modes) or "on, but neither signing_secret nor app_token is set"

    async def start(self) -> str:
        """Check, listen, and start every part; raises :class:`ServeError` when it cannot."""
        if self.dispatcher is not None:
            try:
                await asyncio.to_thread(self.dispatcher.start_checks)
            except SecondDispatcherError as exc:
                raise ServeError(str(exc)) from exc
        server = self.settings.server
        try:
            self._socket = _listen(server.host, server.port)
        except OSError as exc:
            raise ServeError(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}") from exc
        host, port = self._socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(DRAIN_TIMEOUT),
            timeout_keep_alive=max(1, round(server.keep_alive)),
            http=timed_h11(server.read_timeout),
        )
        self._uvicorn = _Uvicorn(config)
        self._tasks["web"] = asyncio.create_task(self._uvicorn.serve(sockets=[self._socket]), name="uvicorn")
        while not self._uvicorn.started:
            if self._tasks["web"].done():
                self._tasks["web"].result()
                raise ServeError("the web server stopped while starting")
            await asyncio.sleep(0.01)
        if self.dispatcher is not None:
            self._tasks["dispatcher"] = asyncio.create_task(
                self.dispatcher.run(self._stop), name="dispatcher"
            )
        self._start_scheduler()
        if self.slack is not None and self.slack.app_token:
            self._connect_socket_mode(self.slack, self.slack.app_token)
        return self.url

    def _start_scheduler(self) -> None:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        jobs = [Job("tick", self.tick_every, self.tick), *self.jobs]
        for job in jobs:
            scheduler.add_job(
                self._guarded(job),
                "interval",
                seconds=job.every,
                id=job.name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(job.every)),
            )
        scheduler.start()
        self._scheduler = scheduler

    def _guarded(self, job: Job) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            # Known to stop() from its first step, so a shutdown waits for it instead of cancelling it.
            running = asyncio.current_task()
            if running is not None:
                self._running_jobs.add(running)
            try:
                # One scheduler per cluster: only the leader runs jobs (each is idempotent anyway).
                if not await asyncio.to_thread(self.leadership.check):
                    return
                self.metrics.scheduler_ticks.labels(job=job.name).inc()
                await job.run()
            except asyncio.CancelledError:
                if not self._stopped:
                    raise
                # Cut off by the shutdown after the drain timeout: each job is idempotent, the next
                # start runs it again.
                log.info("scheduled job %s stopped by the shutdown", job.name)
            except Exception:
                log.exception("scheduled job %s failed", job.name)
            finally:
                self._running_jobs.discard(running)

        return run

    async def tick(self) -> None:
        """Follow Slack progress of what started meanwhile (scheduled, or before a restart)."""
        if self.slack is not None:
            await self.slack.tick()

    def _connect_socket_mode(self, slack: SlackFrontDoor, app_token: str) -> None:
        """Connect in the background: the SDK retries until Slack answers, serve runs meanwhile."""
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        handler = AsyncSocketModeHandler(
            slack.bolt, app_token, logger=logging.getLogger("herald.slack.socket")
        )
        self._socket_mode = handler
        connecting = handler.connect_async()  # type: ignore[no-untyped-call]
        self._socket_connect = asyncio.create_task(connecting, name="socket-mode-connect")

    def crashed(self) -> asyncio.Task[None] | None:
        """A part that ended on its own (the web server or the dispatcher), if any."""
        return next((task for task in self._tasks.values() if task.done()), None)

    async def wait(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set or a part ends on its own."""
        waiter = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([waiter, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter

    async def stop(self) -> None:
        """Stop taking requests and claims, let in-flight work finish or release it, close everything."""
        if self._stopped:
            return
        self._stopped = True
        if self._scheduler is not None:
            # A job in progress finishes first: shutting down cancels it (a traceback in the log).
            self._scheduler.pause()
            if self._running_jobs:
                await asyncio.wait(set(self._running_jobs), timeout=DRAIN_TIMEOUT)
            self._scheduler.shutdown(wait=False)
        if self._socket_connect is not None and not self._socket_connect.done():
            self._socket_connect.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._socket_connect
        if self._socket_mode is not None:
            with contextlib.suppress(Exception):
                await self._socket_mode.close_async()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        self._stop.set()
        if self.slack is not None:
            await self.slack.aclose(timeout=5.0)
        results = await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for name, result in zip(self._tasks, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("%s ended with an error", name, exc_info=result)
        if self._socket is not None:
            self._socket.close()
        await asyncio.to_thread(self.leadership.release)
        await self.herald.aclose()
        await asyncio.sleep(0)  # let the scheduler's cancelled jobs unwind

    async def __aenter__(self) -> HeraldServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
