"""``herald announce``, ``status`` and ``report``.

The commands import what they use in their bodies: every module of :mod:`bot.cli` is imported to
build the command line, so a module-level import here is paid by every ``herald`` command.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli.common import (
    EXIT_FAILED,
    ConfigOption,
    JsonOption,
    SinceOption,
    ask_to_send,
    fail,
    report_held,
    settings_from,
    since_seconds,
    store_from,
)

if TYPE_CHECKING:
    from bot import service
    from bot.alerts import maintenance
    from bot.app import Herald


@contextmanager
def open_herald(config: Any) -> Iterator[Herald]:
    """Herald for one command; its database connections are closed when the command ends."""
    from bot.app import Herald

    settings = settings_from(config)
    herald = Herald.build(settings, store=store_from(settings))
    try:
        yield herald
    finally:
        herald.store.dispose()


def register(app: typer.Typer) -> None:
    """Add the delivery commands to ``app``."""
    _register_announce(app)
    _register_status(app)
    _register_report(app)
    _register_demo(app)


def _register_announce(app: typer.Typer) -> None:
    """Add ``herald announce`` to ``app``."""

    @app.command()
    def announce(
        audience: Annotated[
            str, typer.Option("--audience", "-a", help="Audience query, e.g. 'site:berlin'.")
        ],
        title: Annotated[str, typer.Option("--title", "-t")],
        body: Annotated[str, typer.Option("--body", "-b")] = "",
        channels: Annotated[
            str, typer.Option("--channels", help="email, sms, slack or a list (email,slack)")
        ] = "email",
        severity: Annotated[str, typer.Option("--severity", "-s")] = "info",
        at: Annotated[str | None, typer.Option("--at", help="Send later: ISO time or +30m.")] = None,
        window: Annotated[
            str | None,
            typer.Option("--window", help="Maintenance window START..END (ISO, UTC unless offset)."),
        ] = None,
        silence: Annotated[
            str | None,
            typer.Option("--silence", help="Alerts to silence in the window: key=value[,key=value]."),
        ] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Send without asking.")] = False,
        wait: Annotated[bool, typer.Option("--wait", help="Deliver now and print the report.")] = False,
        as_json: JsonOption = False,
        config: ConfigOption = None,
        remind: Annotated[
            str | None,
            typer.Option(
                "--remind", help="With --window: remind the same people this long before it starts."
            ),
        ] = None,
        confirm: Annotated[
            bool, typer.Option("--confirm", help="Ask every recipient to confirm they got it.")
        ] = False,
    ) -> None:
        """Announce to an audience over email, SMS and/or Slack DMs (the same path as Slack's /announce)."""
        with open_herald(config) as herald:
            windowed = _window(herald, severity, window, silence)
            meta: dict[str, Any] = {"confirm": True} if confirm else {}
            if remind is not None:
                meta["remind"] = _remind(herald, remind, windowed)
            _announce(
                herald, audience, title, body, channels, severity, at, yes, wait, as_json, windowed, meta
            )


def _register_status(app: typer.Typer) -> None:
    """Add ``herald status`` to ``app``."""

    @app.command()
    def status(
        notification_id: Annotated[str, typer.Argument(metavar="ID")],
        as_json: JsonOption = False,
        why: Annotated[
            bool, typer.Option("--why", help="Why it took as long as it did, and the slowest deliveries.")
        ] = False,
        config: ConfigOption = None,
        recipients: Annotated[
            bool, typer.Option("--recipients", help="List every person x channel with state and times.")
        ] = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="With --recipients: CSV with a header.")] = False,
    ) -> None:
        """One notification: counts per channel and state, SLA met or missed, timings."""
        from bot import service
        from bot.alerts import maintenance
        from bot.cli.why import slowest_deliveries, why_text
        from bot.render import format_status

        if recipients or as_csv:
            _print_recipients(config, notification_id, recipients, as_csv, as_json)
            return
        with open_herald(config) as herald:
            current = service.status(herald, notification_id)
            if current is not None and why:
                current["slowest"] = slowest_deliveries(herald, current)
        if current is None:
            fail(f"no notification {notification_id!r}")
        if as_json:
            print(json.dumps(current, indent=2))
            return
        print(format_status(current))
        if current.get("window"):
            print("\n".join(maintenance.window_lines(current["window"])))
        if why:
            print(why_text(current, current["slowest"]))


def _register_report(app: typer.Typer) -> None:
    """Add ``herald report`` to ``app``."""

    @app.command()
    def report(
        since: SinceOption = "7d",
        as_json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Delivery and SLA report over many notifications."""
        from bot import reports
        from bot.render import format_report

        window = since_seconds(since)
        with open_herald(config) as herald:
            result = reports.report(herald, herald.clock.now() - window)
        print(json.dumps(result, indent=2) if as_json else format_report(result))


def _register_demo(app: typer.Typer) -> None:
    """Add ``herald demo`` to ``app``."""

    @app.command()
    def demo(
        people: Annotated[int, typer.Option("--people", help="Size of the sample directory.")] = 300,
    ) -> None:
        """Run the whole job locally with no accounts and print the report."""
        from bot import runtime
        from bot.cli.demo import run_demo

        code = runtime.run(run_demo(people))
        if code:
            raise typer.Exit(code)


def _print_recipients(
    config: Any, notification_id: str, recipients: bool, as_csv: bool, as_json: bool
) -> None:
    """``status ID --recipients``: the rows as a table, CSV or JSON, read a page at a time."""
    from bot.cli.recipients import print_rows
    from bot.engine import deliveries

    if not recipients:
        fail("--csv goes with --recipients")
    if as_csv and as_json:
        fail("--csv and --json: choose one")
    with open_herald(config) as herald:
        if not deliveries.exists(herald.store, notification_id):
            fail(f"no notification {notification_id!r}")
        style = "csv" if as_csv else "json" if as_json else "table"
        print_rows(deliveries.all_pages(herald.store, notification_id), style)


def _announce(
    herald: Herald,
    audience: str,
    title: str,
    body: str,
    channels: str,
    severity: str,
    at: str | None,
    yes: bool,
    wait: bool,
    as_json: bool,
    window: maintenance.Window | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    from bot import service
    from bot.alerts import maintenance
    from bot.engine.ladder import LadderError, parse_rungs

    now = herald.clock.now()
    try:
        start_at = maintenance.parse_moment(at, now, "--at") if at else None
    except ValueError as exc:
        fail(str(exc))
    if start_at is not None and start_at < now - maintenance.PAST_SLACK:
        fail(f"--at: {at} has passed; give a later time, or leave --at out to send now")
    try:
        ladder = parse_rungs(channels)
    except LadderError as exc:
        fail(str(exc))
    request = service.AnnounceRequest(
        audience=audience,
        channels=tuple(name for rung in ladder for name in rung),
        rungs=ladder if len(ladder) > 1 else (),
        severity=severity.lower(),
        title=title,
        body=body,
        created_by="cli",
        start_at=start_at,
        window=window,
        meta=meta or {},
    )
    try:
        if as_json:  # shows no preview: refuse what it would, without counting the reach
            service.check(herald, request)
        else:
            preview = service.preview(herald, request)
    except service.AnnounceError as exc:
        fail(str(exc))
    if not as_json:
        from bot.render import format_preview

        print(format_preview(preview, request))
        if window is not None:
            print("\n".join(maintenance.window_lines(window_document(window))))
        _print_ladder(herald, request, preview)
    if not yes:
        ask_to_send()
    try:
        notification_id = service.announce(herald, request)
    except service.AnnounceError as exc:
        fail(str(exc))
    if window is not None and herald.settings.alertmanager.url:
        from bot.alerts.silences import sync_silences

        sync_silences(herald)  # best effort: the scheduler retries what fails
    final = print_outcome(herald, notification_id, wait, as_json)
    if final is not None and final["sla"]["met"] is False:
        raise typer.Exit(EXIT_FAILED)


def _window(
    herald: Herald, severity: str, window: str | None, silence: str | None
) -> maintenance.Window | None:
    from bot.alerts import maintenance

    try:
        return maintenance.window_from_options(
            severity.lower(), window, silence, herald.clock.now(), ("--window", "--silence")
        )
    except maintenance.WindowError as exc:
        fail(str(exc))


def _remind(herald: Herald, remind: str, window: maintenance.Window | None) -> float:
    from bot.alerts import maintenance, window_remind

    try:
        return window_remind.parse_remind(remind, window, herald.clock.now())
    except maintenance.WindowError as exc:
        fail(str(exc))


def window_document(window: maintenance.Window) -> dict[str, Any]:
    from bot.alerts import maintenance

    return {
        "start": maintenance.iso(window.starts_at),
        "end": maintenance.iso(window.ends_at),
        "silence": dict(window.matchers),
    }


def _print_ladder(herald: Herald, request: service.AnnounceRequest, preview: service.Preview) -> None:
    from bot.engine.ladder_preview import ladder_preview
    from bot.render import format_ladder

    ladder = ladder_preview(herald, request, preview)
    if ladder is not None:
        print(format_ladder(ladder))


def print_outcome(herald: Herald, notification_id: str, wait: bool, as_json: bool) -> dict[str, Any] | None:
    """Without ``wait``, say it is queued; with it, deliver it now and print its report (returned)."""
    from bot import runtime
    from bot.cli.wait import wait_for

    if not wait:
        print_queued(herald, notification_id, as_json)
        return None
    final = runtime.run(wait_for(herald, notification_id, sys.stderr.isatty() and not as_json))
    if as_json:
        print(json.dumps(final, indent=2))
    else:
        from bot.render import format_status

        print(format_status(final))
    report_held(final)
    return final


def print_queued(herald: Herald, notification_id: str, as_json: bool) -> None:
    from bot import service
    from bot.engine import workers

    current = service.status(herald, notification_id) or {}
    running = workers.live_workers(herald.store, herald.clock.now(), lasting=True)
    if as_json:
        print(
            json.dumps(
                {
                    "id": notification_id,
                    "state": current.get("state", "queued"),
                    "recipients": current.get("recipients"),
                    "dispatchers": len(running),
                }
            )
        )
    else:
        print(notification_id)
    if not running:
        print(
            "herald: warning: no dispatcher is running; start 'herald serve' or 'herald worker' "
            "(or use --wait) to deliver it",
            file=sys.stderr,
        )
