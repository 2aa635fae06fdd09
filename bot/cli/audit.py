"""``herald audit``: who did what (the ``audit_log`` table), newest first.

Every row: when, who (``actor``), what (``action``: ``announce``, ``cancel``, ``slack.preview``,
``alert.ack``, ``suppression.remove``, ``preferences.save``, ``sms.stop``, ``directory.sync``,
``config.probe``...), on what
(``subject``: a notification id, an address, a source), whether it was allowed (a refusal shows
``REFUSED``) and a detail object. Text output shortens
the detail to one line; ``--json`` prints the rows as a list of objects with the detail whole.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import typer
from sqlalchemy import select

from bot.cli.common import (
    ConfigOption,
    JsonOption,
    SinceOption,
    settings_from,
    since_seconds,
    store_from,
)
from bot.clock import SystemClock
from bot.store import Store
from bot.tables import AuditEntry, table_of

AUDIT = table_of(AuditEntry)
DETAIL_WIDTH = 100


@dataclass(frozen=True)
class Row:
    at: float
    actor: str
    action: str
    subject: str
    allowed: bool
    detail: dict[str, Any]

    def line(self) -> str:
        from bot.render import time_text  # imported when printing: every herald command imports this module

        refused = "  REFUSED" if not self.allowed else ""
        head = f"{time_text(self.at)}  {self.actor}  {self.action}  {self.subject or '-'}{refused}"
        short = short_detail(self.detail)
        return f"{head}  {short}" if short else head


def entries(store: Store, since: float) -> list[Row]:
    """Audit rows at or after ``since`` (epoch seconds), newest first."""
    query = select(AUDIT).where(AUDIT.c.at >= since).order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc())
    with store.begin() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        Row(row["at"], row["actor"], row["action"], row["subject"], row["allowed"], _detail(row["detail"]))
        for row in rows
    ]


def _detail(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


def short_detail(detail: dict[str, Any], width: int = DETAIL_WIDTH) -> str:
    """``key=value, ...`` on one line, cut at ``width`` characters with an ellipsis."""
    parts = []
    for key, value in detail.items():
        shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
        parts.append(f"{key}={shown}")
    text = " ".join(", ".join(parts).split())  # one line whatever the values hold
    return text if len(text) <= width else text[: width - 1] + "…"


def audit_command(
    since: SinceOption = "7d",
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Who did what: announcements, cancels, refusals, acks, suppression removals, syncs, probes."""
    window = since_seconds(since)
    store = store_from(settings_from(config))
    try:
        rows = entries(store, SystemClock().now() - window)
    finally:
        store.dispose()
    if as_json:
        print(json.dumps([asdict(row) for row in rows], indent=2, default=str))
        return
    for row in rows:
        print(row.line())
    print(f"{len(rows)} audit entr{'ies' if len(rows) != 1 else 'y'} in the last {since}")


def register(app: typer.Typer) -> None:
    """Add ``herald audit`` to ``app``."""
    app.command("audit")(audit_command)
