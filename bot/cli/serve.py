"""``herald serve`` and ``herald worker``: the long-running commands.

Both stop gracefully on SIGTERM or SIGINT: no new requests or claims, in-flight deliveries finished
or released, exit 0. What they run is :mod:`bot.cli.serving` and :mod:`bot.server`, imported only
when one of them starts.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from bot.cli.common import ConfigOption, fail, settings_from


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def register(app: typer.Typer) -> None:
    """Add the long-running commands to ``app``."""

    @app.command("serve")
    def serve(config: ConfigOption = None) -> None:
        """Web server (Slack, webhooks, health, metrics) + scheduler + dispatcher in one process."""
        from bot import runtime
        from bot.cli.serving import run_serve

        settings = settings_from(config)
        _setup_logging()
        code = runtime.run(run_serve(settings))
        if code:
            raise typer.Exit(code)

    @app.command("worker")
    def worker(
        config: ConfigOption = None,
        worker_id: Annotated[
            str | None, typer.Option("--id", help="Worker id (default: worker-HOST-PID).")
        ] = None,
    ) -> None:
        """Dispatcher only; many may run against one PostgreSQL database."""
        from bot import runtime
        from bot.cli.serving import run_worker
        from bot.engine.workers import COMMAND, is_command, new_worker_id

        settings = settings_from(config)
        _setup_logging()
        chosen = worker_id or new_worker_id("worker")
        if len(chosen) > 64:
            fail("--id: at most 64 characters")
        if is_command(chosen):
            fail(f"--id: {COMMAND}-... names the dispatching of a command's --wait; choose another")
        code = runtime.run(run_worker(settings, chosen))
        if code:
            raise typer.Exit(code)
