"""``herald status ID --recipients [--csv | --json]``: every person x channel of a notification.

Rows are read and printed a page at a time (:func:`bot.engine.deliveries.all_pages`), so the
listing of a notification to 100,000 people starts at once and never holds them all in memory. The
table has fixed column widths so that its pages line up; text from the directory (names, ids,
addresses, reasons) is shown with control characters escaped (:func:`bot.render.terminal_text`),
and in CSV a cell that a spreadsheet would take for a formula is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.engine.deliveries import FIELDS
from bot.render import terminal_text

# Column widths of the table (longer values end in an ellipsis; --csv and --json keep them whole).
WIDTHS = {
    "person_id": 16,
    "name": 22,
    "channel": 7,
    "address": 30,
    "state": 10,
    "reason": 24,
    "created_at": 24,
    "sent_at": 24,
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FREE_TEXT = ("person_id", "name", "reason")  # addresses are kept as stored (+49... is a phone)


def print_rows(pages: Iterable[list[dict[str, Any]]], style: str) -> int:
    """Print every page in ``style`` (``table``, ``csv`` or ``json``); the number of rows printed."""
    printers = {"table": _table, "csv": _csv, "json": _json}
    return printers[style](iter(pages))


def _cell(value: Any) -> str:
    return terminal_text("" if value is None else str(value))


def _table(pages: Iterator[list[dict[str, Any]]]) -> int:
    console = Console(
        file=sys.stdout, width=sum(WIDTHS.values()) + 3 * len(WIDTHS), highlight=False, markup=False
    )
    count, header = 0, True
    for rows in pages:
        table = Table(box=box.SIMPLE_HEAD, show_header=header, pad_edge=False, show_edge=False)
        for name, width in WIDTHS.items():
            table.add_column(name.replace("_at", ""), width=width, no_wrap=True, overflow="ellipsis")
        for row in rows:
            table.add_row(*(Text(_cell(row[name])) for name in FIELDS))
        console.print(table)
        count, header = count + len(rows), False
    if count == 0:
        console.print("no deliveries")
    return count


def _spreadsheet_safe(name: str, value: str) -> str:
    return "'" + value if name in _FREE_TEXT and value.startswith(_FORMULA_START) else value


def _csv(pages: Iterator[list[dict[str, Any]]]) -> int:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(FIELDS)
    count = 0
    for rows in pages:
        writer.writerows([_spreadsheet_safe(name, _cell(row[name])) for name in FIELDS] for row in rows)
        count += len(rows)
    return count


def _json(pages: Iterator[list[dict[str, Any]]]) -> int:
    """A JSON list, written row by row (``json.dumps`` escapes every control character)."""
    count = 0
    sys.stdout.write("[")
    for rows in pages:
        for row in rows:
            sys.stdout.write((",\n " if count else "\n ") + json.dumps(row))
            count += 1
    sys.stdout.write("\n]\n" if count else "]\n")
    return count
