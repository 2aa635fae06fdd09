"""``herald suppressions list|remove``: the addresses Herald never sends to, per channel."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bot.channel_specs import CHANNELS
from bot.cli.common import EXIT_FAILED, ConfigOption, JsonOption, fail, settings_from, store_from

suppressions_app = typer.Typer(
    help="The suppression list: bounced, invalid and opted-out addresses.", no_args_is_help=True
)


def _channel(value: str | None) -> str | None:
    if value is None:
        return None
    channel = value.strip().lower()
    if channel not in CHANNELS:
        fail(f"unknown channel {value!r} (expected one of {', '.join(CHANNELS)})")
    return channel


@suppressions_app.command("list")
def list_(
    channel: Annotated[str | None, typer.Option("--channel", help="Only email or only sms.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Every suppressed address, newest first, with the reason, source and time."""
    from bot.recipients import suppressions
    from bot.render import time_text

    wanted = _channel(channel)
    store = store_from(settings_from(config))
    try:
        found = suppressions.entries(store, wanted)
    finally:
        store.dispose()
    if as_json:
        rows = [entry.as_dict() for entry in found]
        print(json.dumps({"count": len(found), "suppressions": rows}, indent=2))
        return
    if not found:
        print("no suppressed addresses")
        return
    for entry in found:
        when = time_text(entry.created_at)
        print(f"{entry.channel:<5} {entry.address:<40} {when}  {entry.source}: {entry.reason}")
    print(f"{len(found)} suppressed address{'es' if len(found) != 1 else ''}")


@suppressions_app.command("remove")
def remove(
    channel: Annotated[str, typer.Argument(metavar="CHANNEL", help="email or sms")],
    address: Annotated[str, typer.Argument(metavar="ADDRESS")],
    config: ConfigOption = None,
) -> None:
    """Take an address off the list, so Herald sends to it again. Audited (``suppression.remove``)."""
    from bot.app import Herald
    from bot.recipients import suppressions
    from bot.service import audit

    name = _channel(channel)
    assert name is not None
    settings = settings_from(config)
    store = store_from(settings)
    try:
        removed = suppressions.remove(store, name, address)
        if removed:
            normalised = suppressions.normalise(name, address)
            audit(
                Herald.build(settings, store=store),
                "cli",
                "suppression.remove",
                normalised,
                True,
                {"channel": name},
            )
    finally:
        store.dispose()
    if not removed:
        fail(f"{address} is not suppressed on {name}", EXIT_FAILED)
    print(f"removed {suppressions.normalise(name, address)} from the {name} suppression list")


def register(app: typer.Typer) -> None:
    """Add ``herald suppressions`` to ``app``."""
    app.add_typer(suppressions_app, name="suppressions")
