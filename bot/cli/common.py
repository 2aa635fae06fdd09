"""What every CLI command shares: the ``--config`` option, loading settings and the store, exit codes.

Exit codes: 0 success; 1 the job ran but something failed; 2 bad usage, bad configuration or an
unreadable input, with a one-line reason on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from bot.config import ConfigError, Settings, load_settings, parse_duration
from bot.store import Store, StoreError, open_store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (else $HERALD_CONFIG, else demo defaults)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
SinceOption = Annotated[str, typer.Option("--since", help="How far back, e.g. 7d, 24h.")]


def since_seconds(since: str) -> float:
    """``--since`` as seconds; a bad duration is a usage error naming the option."""
    try:
        return parse_duration(since)
    except ValueError as exc:
        fail(f"--since: {exc}")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print a one-line reason on stderr and exit."""
    print(f"herald: {message}", file=sys.stderr)
    raise typer.Exit(code)


def config_path(option: Path | None) -> Path | None:
    if option is not None:
        return option
    env = os.environ.get("HERALD_CONFIG")
    return Path(env) if env else None


def bad_configuration(exc: ConfigError) -> NoReturn:
    """Exit 2 with the first problem on one line (``config check`` lists them all); never a value."""
    more = len(exc.problems) - 1
    hint = f" (and {more} more; run 'herald config check')" if more else ""
    fail(f"bad configuration: {exc.problems[0]}{hint}")


def settings_from(option: Path | None) -> Settings:
    try:
        return load_settings(config_path(option))
    except ConfigError as exc:
        bad_configuration(exc)


class HeraldGroup(TyperGroup):
    """The command group: a command meeting bad configuration anywhere (``demo`` builds its own
    settings, which environment overrides still reach) ends with one line and exit 2, no traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context has no public name
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            bad_configuration(exc)


def store_from(settings: Settings) -> Store:
    try:
        return open_store(settings.database.url)
    except StoreError as exc:
        fail(str(exc))


def ask_to_send() -> None:
    """Ask "Send?" on the terminal; exit unless the answer is yes (exit 2 without a terminal)."""
    if not sys.stdin.isatty():
        fail("not sending without --yes (standard input is not a terminal)")
    if not typer.confirm("Send?", default=False):
        fail("cancelled", EXIT_FAILED)


def report_held(final: dict[str, Any]) -> None:
    """Name the outages that held a notification past its deadline (``--wait`` gave up on them)."""
    for outage in final.get("held_by", ()):
        print(f"herald: {final['id']}: deadline passed with deliveries held: {outage}", file=sys.stderr)
