"""Pure parsers: webhook bodies in, :class:`~bot.alerts.models.AlertBatch` out. No IO, no clock.

Three shapes are read:

- Prometheus Alertmanager's webhook, payload ``version`` ``"4"``: ``{receiver, status, alerts: [{status,
  labels, annotations, startsAt, endsAt, generatorURL, fingerprint}], groupLabels, commonLabels,
  commonAnnotations, externalURL, groupKey, truncatedAlerts}``. A firing alert's ``endsAt`` is Go's
  zero time ``0001-01-01T00:00:00Z``; timestamps may carry nanoseconds.
- Grafana unified alerting's webhook: the same ``alerts`` list plus ``title``, ``message``, ``state``,
  ``orgId`` (its ``version`` is ``"1"`` and is not checked).
- SPEC's generic alert: ``{"summary", "severity", "labels"?, "description"?, "status"?, "fingerprint"?}``.

Every problem raises :class:`~bot.alerts.models.PayloadError` naming the field, for example
``alerts[3].labels.instance``. Before any shape is read the whole body is checked
(:func:`check_tree`): nested at most :data:`MAX_DEPTH` levels, numbers at most :data:`MAX_DIGITS`
digits, and no text (key or value) with a NUL or a lone UTF-16 surrogate (``"\\ud800"``), which no
database column nor message can hold: one such alert once stopped every later one from being stored.
Label and annotation values must be strings; the generic shape also takes numbers and booleans
(written as JSON writes them), since people type those by hand.

An alert without a fingerprint gets a stable one: the SHA-256 of its sorted labels (first 16 hex
digits, as long as Alertmanager's), so a re-sent alert is recognised without the sender's help.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from bot.alerts.models import STATUSES, Alert, AlertBatch, PayloadError, Status

MAX_FINGERPRINT = 128
MAX_LABELS = 200
MAX_VALUE = 4000
MAX_DEPTH = 32
MAX_DIGITS = 100
MAX_TRUNCATED = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL
MAX_OFFSET = timedelta(hours=24)

_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")

_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,12}))?"
    r"(?P<zone>[Zz]|[+-]\d{2}:?\d{2})"
)


class _HugeNumber:
    """A JSON number longer than :data:`MAX_DIGITS` characters, or a float beyond a double's range
    (``1e999``, which would read as Infinity), kept as text for :func:`check_tree` to refuse."""

    def __init__(self, digits: str) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _HugeNumber:
    # Python refuses to convert over 4,300 digits with a bare ValueError; name the field instead.
    return _HugeNumber(text) if len(text) > MAX_DIGITS else int(text)


def _parse_float(text: str) -> float | _HugeNumber:
    value = float(text)
    return value if math.isfinite(value) and len(text) <= MAX_DIGITS else _HugeNumber(text)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def load_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 when it is not JSON, 422 when it is not an object."""
    try:
        data = json.loads(
            body, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant
        )
    except RecursionError as exc:
        raise PayloadError(f"the body is nested deeper than {MAX_DEPTH} levels", None, 400) from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PayloadError(f"the body is not valid JSON: {exc}", None, 400) from exc
    if not isinstance(data, dict):
        raise PayloadError("expected a JSON object", None, 400)
    return data


def _shown(key: str) -> str:
    """``key`` for a field name, with a NUL or lone surrogate written as an escape."""
    return _BAD_TEXT.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), key)


def check_tree(data: object) -> None:
    """Refuse nesting over :data:`MAX_DEPTH`, numbers over :data:`MAX_DIGITS` digits, and text with a
    NUL or a lone surrogate, naming the field (``alerts[0].labels.host``)."""
    stack: list[tuple[object, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, _HugeNumber):
            raise PayloadError(f"a number longer than {MAX_DIGITS} digits or out of range", where or None)
        if isinstance(value, str) and _BAD_TEXT.search(value):
            raise PayloadError("contains a NUL or an unpaired surrogate (\\ud800-\\udfff)", where or None)
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            raise PayloadError(f"nested deeper than {MAX_DEPTH} levels", where or None)
        if isinstance(value, list):
            stack.extend((item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                name = f"{where}.{_shown(key)}" if where else _shown(key)
                if _BAD_TEXT.search(key):
                    raise PayloadError("the name contains a NUL or an unpaired surrogate", name)
                stack.append((item, name, depth + 1))


def parse_timestamp(value: object, field: str) -> float | None:
    """RFC 3339 (nanoseconds allowed) → epoch seconds; Go's zero time, ``""`` or None → None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError("expected an RFC 3339 time such as 2026-01-01T12:00:00Z", field)
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise PayloadError("expected an RFC 3339 time such as 2026-01-01T12:00:00Z", field)
    if match.group("date").startswith("0001-"):
        return None  # Go's zero time: "not set" (a firing alert's endsAt)
    try:
        moment = datetime.fromisoformat(f"{match.group('date')}T{match.group('time')}")
    except ValueError as exc:
        raise PayloadError(f"not a valid time: {exc}", field) from exc
    offset = _offset(match.group("zone"), field)
    fraction = match.group("frac") or ""
    try:
        seconds = moment.replace(tzinfo=timezone(offset)).timestamp()
    except (ValueError, OverflowError) as exc:
        raise PayloadError(f"not a valid time: {exc}", field) from exc
    return seconds + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def _offset(zone: str, field: str) -> timedelta:
    """``Z`` or ``+hh:mm`` as a timedelta; RFC 3339 offsets stay under 24 hours."""
    if zone in ("Z", "z"):
        return timedelta(0)
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if minutes >= 60 or timedelta(hours=hours, minutes=minutes) >= MAX_OFFSET:
        raise PayloadError(f"the UTC offset {zone} is out of range (-23:59 to +23:59)", field)
    return (-1 if zone[0] == "-" else 1) * timedelta(hours=hours, minutes=minutes)


def fingerprint_of(labels: Mapping[str, str]) -> str:
    """A stable name for an alert from its labels alone (order does not matter)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _string_map(value: object, field: str, lenient: bool = False) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError("expected an object of string values", field)
    if len(value) > MAX_LABELS:
        raise PayloadError(f"at most {MAX_LABELS} entries", field)
    result: dict[str, str] = {}
    for key, item in value.items():
        where = f"{field}.{key}"
        if not key.strip():
            raise PayloadError("empty name", where)
        if isinstance(item, str):
            text = item
        elif lenient and isinstance(item, bool | int | float):
            text = json.dumps(item)
        else:
            raise PayloadError("expected a string", where)
        if len(text) > MAX_VALUE:
            raise PayloadError(f"longer than {MAX_VALUE} characters", where)
        result[key] = text
    return result


def _status(value: object, field: str, default: Status | None = None) -> Status:
    if value is None and default is not None:
        return default
    if isinstance(value, str):
        lowered = value.strip().lower()
        for status in STATUSES:
            if lowered == status:
                return status
    raise PayloadError("expected firing or resolved", field)


def _optional_string(value: object, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadError("expected a string", field)
    return value.strip() or None


def _fingerprint(value: object, field: str, labels: Mapping[str, str]) -> str:
    given = _optional_string(value, field)
    if given is None:
        return fingerprint_of(labels)
    if len(given) > MAX_FINGERPRINT:
        raise PayloadError(f"longer than {MAX_FINGERPRINT} characters", field)
    return given


def _alerts_list(data: Mapping[str, Any], top_status: Status | None) -> tuple[Alert, ...]:
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("expected a list of alerts", "alerts")
    parsed: list[Alert] = []
    for index, item in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(item, dict):
            raise PayloadError("expected an object", where)
        labels = _string_map(item.get("labels"), f"{where}.labels")
        if not labels:
            raise PayloadError("an alert needs at least one label", f"{where}.labels")
        parsed.append(
            Alert(
                status=_status(item.get("status"), f"{where}.status", top_status),
                labels=labels,
                annotations=_string_map(item.get("annotations"), f"{where}.annotations"),
                fingerprint=_fingerprint(item.get("fingerprint"), f"{where}.fingerprint", labels),
                starts_at=parse_timestamp(item.get("startsAt"), f"{where}.startsAt"),
                ends_at=parse_timestamp(item.get("endsAt"), f"{where}.endsAt"),
                generator_url=_optional_string(item.get("generatorURL"), f"{where}.generatorURL"),
            )
        )
    return tuple(parsed)


def _truncated(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError("expected a whole number", "truncatedAlerts")
    return min(value, MAX_TRUNCATED)  # a count for people to read: clamped, never refused


def parse_alertmanager(data: Mapping[str, Any]) -> AlertBatch:
    """Alertmanager's webhook body (version 4) → a batch. Raises :class:`PayloadError`."""
    check_tree(data)
    version = data.get("version")
    if version is not None and str(version) != "4":
        raise PayloadError(f"unsupported payload version {version!r} (expected 4)", "version")
    top = _status(data.get("status"), "status") if data.get("status") is not None else None
    return AlertBatch(
        source="alertmanager",
        alerts=_alerts_list(data, top),
        external_url=_optional_string(data.get("externalURL"), "externalURL"),
        truncated=_truncated(data.get("truncatedAlerts")),
    )


def parse_grafana(data: Mapping[str, Any]) -> AlertBatch:
    """Grafana's unified alerting webhook body → a batch. Raises :class:`PayloadError`."""
    check_tree(data)
    top = _status(data.get("status"), "status") if data.get("status") is not None else None
    return AlertBatch(
        source="grafana",
        alerts=_alerts_list(data, top),
        external_url=_optional_string(data.get("externalURL"), "externalURL"),
        truncated=_truncated(data.get("truncatedAlerts")),
    )


def parse_generic(data: Mapping[str, Any], severities: Collection[str], source: str = "alerts") -> AlertBatch:
    """SPEC's generic alert → a batch of one. ``severities`` are the known ones (``sla`` keys).

    The summary becomes the ``alertname`` label and the severity the ``severity`` label unless the
    labels name their own, so generic alerts group and route like Alertmanager's.
    """
    check_tree(data)
    summary = data.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise PayloadError("a summary is required", "summary")
    severity = data.get("severity")
    if not isinstance(severity, str) or severity.strip().lower() not in severities:
        raise PayloadError(f"expected one of {', '.join(severities)}", "severity")
    labels = _string_map(data.get("labels"), "labels", lenient=True)
    labels.setdefault("alertname", " ".join(summary.split())[:200])
    labels.setdefault("severity", severity.strip().lower())
    annotations = {"summary": summary.strip()}
    description = data.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise PayloadError("expected a string", "description")
        if description.strip():
            annotations["description"] = description.strip()
    alert = Alert(
        status=_status(data.get("status"), "status", "firing"),
        labels=labels,
        annotations=annotations,
        fingerprint=_fingerprint(data.get("fingerprint"), "fingerprint", labels),
    )
    return AlertBatch(source=source, alerts=(alert,))
