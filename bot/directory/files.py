"""Reading directory files (CSV or JSON) into validated people: pure, no database.

A directory file is CSV (a header row, then one person per row; ``groups`` separated by ``;``) or
JSON (a list of objects, or ``{"people": [...]}``; ``groups`` may be a list) with the columns in
:data:`~bot.directory.records.FIELDS`. :func:`read_people` reads a whole file, validates each row
with :func:`~bot.directory.records.validate_rows`, and returns the valid people and one
:class:`~bot.directory.records.RowError` per problem.

Errors:

- :class:`DirectoryFileError` — the file as a whole cannot be used (missing, unreadable, empty,
  not UTF-8, not valid JSON, unknown columns, neither an ``id`` nor an ``email`` column). Nothing
  from it may be loaded.
- :class:`~bot.directory.records.RowError` (data, not raised) — one row cannot be used; the row is
  skipped, the rest load. ``where`` is ``line N`` for CSV (the header is line 1; a quoted field
  spanning lines counts from the line the row starts on) and ``item N`` for JSON (N is the 0-based
  index in the list, as ``jq '.[N]'`` counts).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from bot.directory.records import FIELDS, ParsedPeople, RawRow, validate_rows

if TYPE_CHECKING:
    from _csv import Reader


class DirectoryFileError(Exception):
    """The file as a whole cannot be imported; the message names the file and the reason."""


def read_people(path: Path | str, default_region: str | None = None) -> ParsedPeople:
    """Read, parse and validate a CSV or JSON directory file (JSON when it ends in ``.json`` or
    starts with ``[`` or ``{``). Raise :class:`DirectoryFileError` when the file cannot be used."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DirectoryFileError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise DirectoryFileError(f"{name}: is a directory") from None
    except OSError as exc:
        raise DirectoryFileError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    return parse_people(data, name, default_region)


def parse_people(data: bytes, name: str, default_region: str | None = None) -> ParsedPeople:
    """:func:`read_people` for bytes already in hand; ``name`` labels messages."""
    text = decode(data, name)
    stripped = text.lstrip()
    if not stripped:
        raise DirectoryFileError(f"{name}: empty")
    is_json = name.lower().endswith(".json") or stripped[0] in "[{"
    parsed = validate_rows(json_rows(text, name) if is_json else csv_rows(text, name), default_region)
    if not parsed.people and not parsed.rejected:
        raise DirectoryFileError(f"{name}: no people" + ("" if is_json else " after the header"))
    return parsed


def decode(data: bytes, name: str) -> str:
    """UTF-8 text (a leading BOM is dropped); a bad byte is reported with its line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DirectoryFileError(
            f"{name}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from exc


def _check_columns(columns: Iterable[str], name: str) -> None:
    seen = set(columns)
    unknown = sorted(seen - set(FIELDS))
    if unknown:
        listed = ", ".join(repr(c) for c in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise DirectoryFileError(f"{name}: unknown column{plural} {listed} (expected {', '.join(FIELDS)})")
    if "id" not in seen and "email" not in seen:
        raise DirectoryFileError(f"{name}: needs an 'id' or an 'email' column")


def csv_rows(text: str, name: str) -> Iterator[RawRow]:
    """Rows of a CSV document whose header names the columns (any case, blanks around ignored).

    Header problems raise :class:`DirectoryFileError` at once, before the first row is read.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise DirectoryFileError(f"{name}: line 1: {exc}") from exc
    columns = [column.strip().lower() for column in header]
    duplicated = sorted({c for c in columns if c and columns.count(c) > 1})
    if duplicated:
        raise DirectoryFileError(f"{name}: column {duplicated[0]!r} appears more than once")
    _check_columns([c for c in columns if c], name)
    return _csv_records(reader, columns)


def _csv_records(reader: Reader, columns: list[str]) -> Iterator[RawRow]:
    line = reader.line_num
    while True:
        where = f"line {line + 1}"
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The rest of the file cannot be read reliably after a broken quote.
            yield RawRow(where, {}, f"unreadable CSV: {exc}")
            return
        line = reader.line_num
        if not any(value.strip() for value in record):
            continue
        values = {c: v for c, v in zip(columns, record, strict=False) if c}
        if len(record) > len(columns):
            yield RawRow(where, values, f"{len(record)} values but the header has {len(columns)} columns")
            continue
        yield RawRow(where, values)


def json_rows(text: str, name: str) -> Iterator[RawRow]:
    """Rows of a JSON list of objects (or ``{"people": [...]}``); keys are matched in any case."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DirectoryFileError(
            f"{name}: not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    items = document.get("people") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise DirectoryFileError(f'{name}: expected a list of people or {{"people": [...]}}')
    if not items:
        raise DirectoryFileError(f"{name}: no people")
    objects = [
        {str(key).strip().lower(): value for key, value in item.items()} if isinstance(item, dict) else None
        for item in items
    ]
    _check_columns({key for item in objects if item is not None for key in item}, name)
    return (
        RawRow(f"item {index}", item)
        if item is not None
        else RawRow(f"item {index}", {}, "expected an object")
        for index, item in enumerate(objects)
    )
