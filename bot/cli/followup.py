"""``herald followup ID --body B [--done] [--yes]``: a threaded follow-up to an announcement's people."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli.common import ConfigOption, JsonOption, ask_to_send, fail
from bot.cli.delivery import open_herald, print_outcome

if TYPE_CHECKING:  # the rest is imported by the command itself (see bot.cli.delivery)
    from bot.app import Herald


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
            print_outcome(herald, sent, wait, as_json)


def _send(herald: Herald, notification_id: str, body: str, done: bool, yes: bool, as_json: bool) -> str:
    """Show what will be sent, confirm, store it; the follow-up's id."""
    from bot import runtime
    from bot.alerts.silences import sync_silences
    from bot.engine.followup import FollowupError, followup, original_of
    from bot.slack.client import web_client
    from bot.slack.threads import progress_message, reply_in_thread

    try:
        original = original_of(herald, notification_id)
    except FollowupError as exc:
        fail(str(exc))
    if not as_json:
        what = "all-clear" if done else "follow-up"
        print(f"{what} of {original['id']} {original['title']!r} over {original['channels']}")
    if not yes:
        ask_to_send()
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
