"""``herald alert``: raise (or resolve) an alert as a webhook would, through the same intake.

The options build SPEC's generic alert (``summary``, ``severity``, ``labels``, ``description``,
``status``, ``fingerprint``), which is parsed, routed, grouped and deduplicated exactly as a
``POST /hooks/alerts`` would be (source ``cli``). Without ``--wait`` a running ``serve`` or
``worker`` delivers it; with ``--wait`` the command dispatches until the notification it created is
final and prints its report (exit 1 when its delivery SLA was missed). Escalations need
``herald serve`` (its scheduler keeps the timers).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli.common import EXIT_FAILED, ConfigOption, JsonOption, fail, report_held
from bot.cli.delivery import open_herald

if TYPE_CHECKING:  # the rest is imported by the command itself (see bot.cli.delivery)
    from bot.alerts.models import IntakeResult
    from bot.app import Herald

_OPTION_OF = {"summary": "--summary", "severity": "--severity", "description": "--description"}


def parse_labels(values: list[str]) -> dict[str, str]:
    """``["team=network", "instance=sw1"]`` → a dict; raises ValueError naming the bad one."""
    labels: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--label: expected name=value, not {value!r}")
        labels[name.strip()] = text.strip()
    return labels


def _option(field: str | None) -> str:
    if field is None:
        return "alert"
    if field.startswith("labels."):
        return f"--label {field.removeprefix('labels.')}"
    return _OPTION_OF.get(field, f"--{field}")


def _state(result: IntakeResult) -> str:
    if result.notifications:
        return "queued"
    if result.held_back:
        return "held"
    if result.resolved_groups:
        return "resolved"
    if result.deduplicated:
        return "deduplicated"
    return "not_open" if not result.groups else "stored"


def register(app: typer.Typer) -> None:
    """Add ``herald alert`` to ``app``."""

    @app.command("alert")
    def alert(
        severity: Annotated[str, typer.Option("--severity", "-s", help="critical, outage, security...")],
        summary: Annotated[str, typer.Option("--summary", help="One line: what is wrong.")],
        label: Annotated[
            list[str] | None, typer.Option("--label", "-l", help="A label name=value (repeatable).")
        ] = None,
        description: Annotated[str | None, typer.Option("--description", "-d")] = None,
        fingerprint: Annotated[
            str | None, typer.Option("--fingerprint", help="Names the alert (default: from its labels).")
        ] = None,
        resolve: Annotated[bool, typer.Option("--resolve", help="Report the alert resolved.")] = False,
        wait: Annotated[bool, typer.Option("--wait", help="Deliver now and print the report.")] = False,
        as_json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Raise an alert as a webhook would (routing, grouping, dedup, escalation as configured)."""
        from bot.alerts.intake import parse_generic
        from bot.alerts.lifecycle import ingest
        from bot.alerts.models import PayloadError

        try:
            labels = parse_labels(label or [])
        except ValueError as exc:
            fail(str(exc))
        payload: dict[str, Any] = {
            "summary": summary,
            "severity": severity,
            "labels": labels,
            "status": "resolved" if resolve else "firing",
        }
        if description is not None:
            payload["description"] = description
        if fingerprint is not None:
            payload["fingerprint"] = fingerprint
        with open_herald(config) as herald:
            try:
                batch = parse_generic(payload, tuple(herald.settings.sla), source="cli")
            except PayloadError as exc:
                fail(f"{_option(exc.field)}: {exc}")
            result = ingest(herald, batch)
            if wait and result.notifications:
                _wait_and_report(herald, result, as_json)
            else:
                _print_stored(herald, result, as_json)


def _group_of(result: IntakeResult) -> str | None:
    return result.groups[0] if result.groups else None


def _wait_and_report(herald: Herald, result: IntakeResult, as_json: bool) -> None:
    from bot import runtime
    from bot.cli.wait import wait_for
    from bot.render import format_status

    finals = [
        runtime.run(wait_for(herald, nid, sys.stderr.isatty() and not as_json))
        for nid in result.notifications
    ]
    final = {**finals[0], "alert_group": _group_of(result)}
    print(json.dumps(final, indent=2) if as_json else format_status(final))
    for item in finals:
        report_held(item)
    if any(item["sla"]["met"] is False for item in finals):
        raise typer.Exit(EXIT_FAILED)


def _print_stored(herald: Herald, result: IntakeResult, as_json: bool) -> None:
    from bot import service
    from bot.engine import workers

    state = _state(result)
    nid = result.notifications[0] if result.notifications else None
    current = service.status(herald, nid) if nid else None
    running = workers.live_workers(herald.store, herald.clock.now(), lasting=True)
    if as_json:
        print(
            json.dumps(
                {
                    "id": nid,
                    "state": state,
                    "alert_group": _group_of(result),
                    "recipients": (current or {}).get("recipients"),
                    "notifications": list(result.notifications),
                    "dispatchers": len(running),
                }
            )
        )
    elif nid is not None:
        print(nid)
    else:
        group = _group_of(result)
        print(f"{state}: alert group {group}" if group else "nothing to resolve: no such alert is firing")
    if nid is not None and not running:
        print(
            "herald: warning: no dispatcher is running; start 'herald serve' or 'herald worker' "
            "(or use --wait) to deliver it",
            file=sys.stderr,
        )
