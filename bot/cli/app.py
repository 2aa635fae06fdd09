"""The ``herald`` command line: one typer app, sub-commands registered from their own modules."""

from __future__ import annotations

import gc
import sys
from typing import Annotated

import typer

from bot.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    ConfigOption,
    HeraldGroup,
    config_path,
    fail,
    settings_from,
)
from bot.config import SEVERITIES, ConfigError, Settings, load_settings, parse_duration, unconfigured
from bot.store import StoreError, open_store, safe_url

app = typer.Typer(
    name="herald",
    cls=HeraldGroup,
    help="Herald: chat-ops notifications for IT support (Slack, webhooks, email, SMS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Database.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")


@config_app.command("check")
def config_check(
    config: ConfigOption = None,
    probe: Annotated[
        bool, typer.Option("--probe", help="Also connect to every configured provider; exit 1 if one fails.")
    ] = False,
) -> None:
    """Validate configuration; print every missing or invalid key, never a secret."""
    path = config_path(config)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {path or 'the embedded defaults'}", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE) from None
    for note in unconfigured(settings):
        print(f"note: {note}")
    _check_templates(settings)
    print(f"ok: {path or 'embedded defaults'} (database {safe_url(settings.database.url)})")
    _check_audiences(settings)
    if probe:
        _probe(settings)


def _check_audiences(settings: Settings) -> None:
    """A ``warning:`` line (stderr) per route or escalation audience that selects nobody; the exit
    code stays as it is. Skipped, with a note, while the database or its schema is not there yet."""
    from bot.alerts.coverage import audience_targets, empty_audience_warnings, open_existing

    targets = audience_targets(settings)
    if not targets:
        return
    store = open_existing(settings.database.url)
    if isinstance(store, str):
        print(f"note: route and escalation audiences not checked: {store}")
        return
    try:
        for warning in empty_audience_warnings(store, targets):
            print(f"warning: {warning}", file=sys.stderr)
    finally:
        store.dispose()


def _check_templates(settings: Settings) -> None:
    """Compile and trial-render every template of ``[templates] dir``; exit 2 on an error."""
    from channels.templating import check_directory

    if settings.templates.dir is None:
        return
    problems = check_directory(settings.templates.dir, [*SEVERITIES, *settings.sla])
    for problem in problems:
        print(f"{'error' if problem.error else 'warning'}: templates: {problem}", file=sys.stderr)
    errors = sum(1 for problem in problems if problem.error)
    if errors:
        print(f"{errors} template(s) in {settings.templates.dir} refused", file=sys.stderr)
        raise typer.Exit(EXIT_USAGE)


def _probe(settings: Settings) -> None:
    """One line per provider; the run audited when the database answers; exit 1 on any failure."""
    from bot.cli import probe as cli_probe

    probes = cli_probe.probe_all(settings)
    for result in probes:
        print(result.line())
    if probes[0].ok:  # the database
        problem = cli_probe.audit(settings, probes)
        if problem is not None:
            print(f"note: probe not audited: {problem}", file=sys.stderr)
    failed = [result.provider for result in probes if not result.ok]
    if failed:
        print(
            f"{len(failed)} of {len(probes)} provider(s) did not answer: {', '.join(failed)}", file=sys.stderr
        )
        raise typer.Exit(EXIT_FAILED)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Apply schema migrations."""
    settings = settings_from(config)
    try:
        store = open_store(settings.database.url, migrate=True)
    except StoreError as exc:
        fail(str(exc))
    store.dispose()
    print(f"database {safe_url(settings.database.url)} is at the latest schema")


@db_app.command("prune")
def db_prune(
    config: ConfigOption = None,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Age such as 90d (default: [retention] keep_for)."),
    ] = None,
) -> None:
    """Delete finished notifications and resolved alerts older than the retention period, and inbound
    SMS records older than [retention] inbound_sms_for, now."""
    from bot.clock import SystemClock
    from bot.engine.retention import purge

    settings = settings_from(config)
    keep_for = settings.retention.keep_for
    if older_than is not None:
        try:
            keep_for = parse_duration(older_than)
        except ValueError as exc:
            fail(f"--older-than: {exc}")
        if keep_for <= 0:
            fail("--older-than: must be more than 0s")
    inbound_sms_for = settings.retention.inbound_sms_for
    if keep_for <= 0 and inbound_sms_for <= 0:
        print("retention is off ([retention] keep_for and inbound_sms_for = 0s): nothing deleted")
        return
    try:
        store = open_store(settings.database.url, migrate=True)
    except StoreError as exc:
        fail(str(exc))
    try:
        purged = purge(store, SystemClock().now(), keep_for, inbound_sms_for)
    finally:
        store.dispose()
    print(f"deleted {purged.describe()}")


def _register() -> None:
    from bot.cli import alert as cli_alert
    from bot.cli import audit as cli_audit
    from bot.cli import delivery as cli_delivery
    from bot.cli import directory as cli_directory
    from bot.cli import followup as cli_followup
    from bot.cli import serve as cli_serve
    from bot.cli import suppressions as cli_suppressions

    app.add_typer(cli_directory.directory_app, name="directory")
    cli_delivery.register(app)
    cli_alert.register(app)
    cli_serve.register(app)
    cli_suppressions.register(app)
    cli_audit.register(app)
    cli_followup.register(app)


_register()


def main() -> None:
    _settle_imports()
    try:
        app()
    finally:
        _skip_final_collection()


def _settle_imports() -> None:
    """Keep what the imports built out of every later collection, and let the collector run again.

    ``python -m bot`` imports the command line with the collector off (:func:`bot.__main__.main`): the
    modules, classes and tables SQLAlchemy, pydantic and typer build at import live as long as the
    process, and collecting while they piled up took 50-230 ms of a command's start on the loaded
    2-core machine. Frozen, they are skipped by every later full collection too (the sending loop's,
    the last one in :func:`_skip_final_collection`): over a 20,000-email ``announce --wait`` the
    collector's time fell from ~270 ms to ~70 ms.
    """
    gc.freeze()
    gc.enable()


def _skip_final_collection() -> None:
    """Collect what is garbage now, then freeze the rest so the interpreter's exit does not.

    At exit Python clears its modules and runs a last collection over everything SQLAlchemy, pydantic
    and the channels' libraries built at import: 0.7-1.3 s of a command's wall time on the loaded
    2-core machine (bench/README.md, "Start-up and the ends of the command"). Frozen objects are left
    to the operating system; anything already unreachable (an unclosed file or connection in a
    cycle) is still finalised by the collection before the freeze.
    """
    gc.collect()
    gc.freeze()
