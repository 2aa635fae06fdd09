"""What ``herald serve`` and ``herald worker`` run (registered in :mod:`bot.cli.serve`).

A module of its own so that no other command imports the server's parts (uvicorn, APScheduler, Bolt,
the IMAP bounce reader, the LDAP sync): ``tests/test_import_discipline.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import sys

from bot.alerts.escalation import TICK_EVERY as ALERT_TICK_EVERY
from bot.alerts.escalation import alert_tick
from bot.alerts.outages import outage_notifier
from bot.alerts.web import alert_routes
from bot.app import Herald
from bot.cli.common import EXIT_FAILED, EXIT_USAGE, store_from
from bot.config import Settings
from bot.engine.dispatcher import Dispatcher
from bot.engine.ladder_tick import TICK_EVERY as RUNG_TICK_EVERY
from bot.engine.ladder_tick import run_ticks, rung_tick
from bot.engine.retention import retention_job
from bot.engine.workers import SecondDispatcherError
from bot.recipients.bounce_imap import bounce_jobs
from bot.recipients.bounce_web import bounce_routes
from bot.recipients.web import recipient_routes
from bot.server import HeraldServer, Job, ServeError
from bot.sync.schedule import check_every, scheduled_sync

log = logging.getLogger("herald.serve")


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def run_serve(settings: Settings) -> int:
    """``herald serve`` until SIGTERM/SIGINT; the exit code."""
    stop = asyncio.Event()
    _on_signals(stop)
    store = store_from(settings)
    herald = Herald.build(settings, store=store)
    server = HeraldServer(
        settings,
        herald=herald,
        routes=[*recipient_routes(herald), *alert_routes(herald), *bounce_routes(herald)],
        jobs=[
            Job("alerts", ALERT_TICK_EVERY, alert_tick(herald)),
            Job("rungs", RUNG_TICK_EVERY, rung_tick(herald)),
            Job("retention", settings.retention.every, retention_job(herald)),
            Job(
                "directory-sync",
                check_every(settings.directory.sync_every),
                functools.partial(scheduled_sync, herald),
            ),
            *bounce_jobs(herald),
        ],
    )
    try:
        url = await server.start()
    except ServeError as exc:
        await server.stop()
        print(f"herald: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"herald serve: listening on {url} (Slack: {server.slack_mode})", flush=True)
    if server.slack is None:
        log.info("Slack is off: slack.bot_token is not set; serving health, metrics and webhooks")
    await server.wait(stop)
    crashed = server.crashed()
    await server.stop()
    print("herald serve: stopped", flush=True)
    return EXIT_FAILED if crashed is not None and not stop.is_set() else 0


async def run_worker(settings: Settings, worker_id: str) -> int:
    """``herald worker`` until SIGTERM/SIGINT; the exit code."""
    stop = asyncio.Event()
    _on_signals(stop)
    herald = Herald.build(settings, store=store_from(settings))
    dispatcher = Dispatcher(herald, worker_id, notify=outage_notifier(herald))
    try:
        await asyncio.to_thread(dispatcher.start_checks)
    except SecondDispatcherError as exc:
        await herald.aclose()
        print(f"herald: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"herald worker {worker_id}: dispatching {', '.join(herald.configured_channels())}",
        flush=True,
    )
    task = asyncio.create_task(dispatcher.run(stop))
    ticks = asyncio.create_task(run_ticks(herald, stop, dispatcher.poke))
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    await waiter
    await ticks
    code = 0
    try:
        await task
    except Exception:
        log.exception("the dispatcher failed")
        code = EXIT_FAILED
    await herald.aclose()
    print(f"herald worker {worker_id}: stopped", flush=True)
    return code
