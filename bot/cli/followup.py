"""``herald followup ID --body B [--done] [--yes]``: a threaded follow-up to an announcement's people."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from bot import runtime
from bot.alerts.silences import sync_silences
from bot.app import Herald
from bot.cli.common import EXIT_FAILED, ConfigOption, JsonOption, fail, report_held
from bot.cli.delivery import open_herald, print_queued
from bot.engine.followup import FollowupError, followup, original_of
from bot.render import format_status
from bot.server import wait_for
from bot.slack.client import web_client
from bot.slack.threads import progress_message, reply_in_thread


def register(app: typer.Typer) -> None:
    """Add ``followup`` to ``app``."""

    @app.command("followup")
    def followup_command(
        notification_id: Annotated[str, typer.Argument(metavar="ID")],
        body: Annotated[str, typer.Option("--body", "-b", help="What to tell them.")],
        done: Annotated[
            bool, typer.Option("--done", help="The all-clear: also ends a maintenance window now.")
        ] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking.")] = False,
        wait: Annotated[bool, typer.Option("--wait", help="Deliver now and print the report.")] = False,
        as_json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Send a follow-up to the same people over the same channels, threaded with the original."""
        with open_herald(config) as herald:
            sent = _send(herald, notification_id, body, done, yes, as_json)
            if not wait:
                print_queued(herald, sent, as_json)
                return
            final = runtime.run(wait_for(herald, sent, sys.stderr.isatty() and not as_json))
        print(json.dumps(final, indent=2) if as_json else format_status(final))
        report_held(final)


def _send(herald: Herald, notification_id: str, body: str, done: bool, yes: bool, as_json: bool) -> str:
    """Show what will be sent, confirm, store it; the follow-up's id."""
    try:
        original = original_of(herald, notification_id)
    except FollowupError as exc:
        fail(str(exc))
    if not as_json:
        what = "all-clear" if done else "follow-up"
        print(f"{what} of {original['id']} {original['title']!r} over {original['channels']}")
    if not yes:
        if not sys.stdin.isatty():
            fail("not sending without --yes (standard input is not a terminal)")
        if not typer.confirm("Send?", default=False):
            fail("cancelled", EXIT_FAILED)
    try:
        sent = followup(herald, notification_id, body, done, "cli")
    except FollowupError as exc:
        fail(str(exc))
    if sent.ended_window and herald.settings.alertmanager.url:
        sync_silences(herald)  # best effort: the scheduler retries what fails
    if herald.settings.slack.bot_token is not None and progress_message(herald, sent.original):
        client = web_client(herald.settings.slack)
        runtime.run(reply_in_thread(herald, client, sent, body.strip(), done))
    return sent.id
