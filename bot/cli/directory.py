"""``herald directory``: import, sync and show people.

Exit codes: 0 all good; 1 some rows were rejected while the good ones loaded, or ``show`` matched no
one; 2 bad usage, configuration, query or an unusable file, with a one-line reason on stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli.common import EXIT_FAILED, EXIT_OK, ConfigOption, JsonOption, fail, settings_from, store_from
from bot.config import CHANNEL_NAMES, Settings
from bot.directory.audience import AudienceError, parse_audience
from bot.directory.reach import Reach, reach

if TYPE_CHECKING:  # what only one command needs is imported by it (see bot.cli.delivery)
    from bot.directory.store import FileImport

directory_app = typer.Typer(help="People and audiences.", no_args_is_help=True)


@directory_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV (header row) or JSON file of people.")],
    deactivate_missing: Annotated[
        bool,
        typer.Option("--deactivate-missing", help="Deactivate file-sourced people who are not in FILE."),
    ] = False,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Load people from FILE: valid rows are stored (upsert by id), invalid rows are reported and skipped."""
    settings = settings_from(config)
    _run_import(settings, file, deactivate_missing, json_output)


@directory_app.command("sync")
def sync_command(json_output: JsonOption = False, config: ConfigOption = None) -> None:
    """Sync from the configured source (directory.source: file, ldap or slack).

    Everything is read first, then stored in one transaction: people gone from the source are
    deactivated, never deleted; a sync that fails half-way changes nothing (exit 2). Exit 1 when
    some entries were rejected (the others loaded) or the source held nobody valid.
    """
    from bot import runtime
    from bot.sync.errors import SyncError
    from bot.sync.runner import sync  # LDAP and Slack clients: only this command loads them

    settings = settings_from(config)
    source = settings.directory.source
    store = store_from(settings)
    try:
        summary = runtime.run(sync(store, settings, actor="herald directory sync"))
    except SyncError as exc:
        fail(str(exc) if source == "file" else f"{exc} (nothing was changed)")
    finally:
        store.dispose()
    where = settings.directory.path if source == "file" else source
    if json_output:
        document = summary.as_dict()
        if source == "file":
            document = {"file": where, **document}
        print(json.dumps(document, indent=2))
    else:
        for error in summary.errors:
            print(error, file=sys.stderr)
        for note in summary.notes:
            print(f"note: {note}", file=sys.stderr)
        if summary.deactivation_skipped:
            rows = "rows" if source == "file" else "entries"
            print(f"herald: {where}: no valid {rows}, so nobody was deactivated", file=sys.stderr)
        print(summary.line())
    failed = summary.rejected or summary.deactivation_skipped
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


def _run_import(settings: Settings, file: Path, deactivate_missing: bool, json_output: bool) -> None:
    from bot.directory.files import DirectoryFileError
    from bot.directory.store import import_file

    store = store_from(settings)
    try:
        outcome = import_file(
            store,
            file,
            default_region=settings.directory.default_region,
            deactivate_missing=deactivate_missing,
        )
    except DirectoryFileError as exc:
        fail(str(exc))
    finally:
        store.dispose()
    if json_output:
        print(json.dumps(_import_json(file, outcome), indent=2))
    else:
        for error in outcome.parsed.errors:
            print(error, file=sys.stderr)
        if outcome.result.deactivation_skipped:
            print(f"herald: {file}: no valid rows, so nobody was deactivated", file=sys.stderr)
        print(_import_summary(outcome))
    raise typer.Exit(EXIT_FAILED if outcome.parsed.rejected else EXIT_OK)


def _import_summary(outcome: FileImport) -> str:
    result = outcome.result
    return (
        f"imported {result.imported} {'person' if result.imported == 1 else 'people'} "
        f"({result.added} added, {result.changed} changed, {result.unchanged} unchanged, "
        f"{result.deactivated} deactivated), {outcome.parsed.rejected} rejected"
    )


def _import_json(file: Path, outcome: FileImport) -> dict[str, Any]:
    result = outcome.result
    return {
        "file": str(file),
        "imported": result.imported,
        "added": result.added,
        "changed": result.changed,
        "unchanged": result.unchanged,
        "deactivated": result.deactivated,
        "rejected": outcome.parsed.rejected,
        "errors": [asdict(error) for error in outcome.parsed.errors],
    }


@directory_app.command("show")
def show_command(
    query: Annotated[
        str,
        typer.Argument(
            help='Audience query, e.g. "dept:finance,hr site:berlin -group:x" or '
            '"(dept:finance site:berlin) OR manager:alice@example.com".'
        ),
    ],
    json_output: JsonOption = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="How many people to list.")] = 10,
    config: ConfigOption = None,
) -> None:
    """Show who QUERY selects and which channels reach them. Exit 1 when it matches no one."""
    try:
        audience = parse_audience(query)
    except AudienceError as exc:
        fail(f"bad audience: {exc}")
    settings = settings_from(config)
    store = store_from(settings)
    try:
        result = reach(store, audience, CHANNEL_NAMES, sample=limit)
    finally:
        store.dispose()
    if json_output:
        print(json.dumps(reach_json(result), indent=2))
    elif result.count:
        _print_reach(str(audience), result)
    if result.count == 0:
        spared = f" (only {result.inactive} inactive {'person' if result.inactive == 1 else 'people'})"
        fail(f"no one matches {query!r}" + (spared if result.inactive else ""), EXIT_FAILED)


def reach_json(result: Reach) -> dict[str, Any]:
    """The ``--json`` document of ``herald directory show``."""
    return {
        "count": result.count,
        "reachable": dict(result.reachable),
        "unreachable": result.flat_unreachable(),
        "inactive": result.inactive,
        "people": [asdict(person) | {"groups": list(person.groups)} for person in result.sample],
    }


def _print_reach(query: str, result: Reach) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Piped or captured output gets room for whole email addresses rather than a terminal's 80 columns.
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    noun = "person matches" if result.count == 1 else "people match"
    inactive = f" ({result.inactive} inactive not counted)" if result.inactive else ""
    console.print(f"{result.count} {noun} {query}{inactive}", markup=False)
    if result.sample:
        table = Table("id", "name", "email", "phone", "department", "site", "language")
        for person in result.sample:
            cells = (
                *(person.id, person.name, person.email, person.phone, person.department, person.site),
                person.language,
            )
            table.add_row(*(Text(cell or "-") for cell in cells))
        console.print(table)
        if result.count > len(result.sample):
            console.print(
                f"… and {result.count - len(result.sample)} more (--limit N lists more)", markup=False
            )
    for channel in CHANNEL_NAMES:
        reasons = [
            f"{n} {reason.replace('_', ' ')}" for reason, n in result.unreachable[channel].items() if n
        ]
        line = f"{channel}: {result.reachable[channel]} reachable" + "".join(f", {r}" for r in reasons)
        console.print(line, markup=False)
