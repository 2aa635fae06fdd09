"""Alertmanager silences for maintenance windows, through its API v2 (``[alertmanager] url``).

A window with matchers owes a silence (``am_state = "create"``): ``POST /api/v2/silences`` with the
same matchers (``isRegex: false, isEqual: true``), ``startsAt``/``endsAt``, ``createdBy: "herald"`` and
the title as comment; the answer's ``silenceID`` is stored. A window ended early owes an expiry
(``"expire"``): ``DELETE /api/v2/silence/{id}``. Alertmanager being unreachable or refusing is
logged once per try and retried by the scheduler's tick every ``[alertmanager] retry_every``; it
never blocks an announcement. Functions here are synchronous (network and database); async callers
use a thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from sqlalchemy import or_, select, update

from bot.alerts.maintenance import WINDOW, effective_end, iso
from bot.app import Herald

log = logging.getLogger("herald.alerts.silences")

MAX_PER_TICK = 20


class SilenceError(Exception):
    """Alertmanager did not take the request; the message is one line for the log."""


def silence_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """The v2 ``postableSilence`` for a window row (pure)."""
    matchers = json.loads(row["matchers"] or "{}")
    return {
        "matchers": [
            {"name": name, "value": value, "isRegex": False, "isEqual": True}
            for name, value in sorted(matchers.items())
        ],
        "startsAt": iso(row["starts_at"]),
        "endsAt": iso(row["ends_at"]),
        "createdBy": "herald",
        "comment": f"{row['title']} (Herald maintenance {row['notification_id']})",
    }


def sync_silences(herald: Herald) -> int:
    """Create and expire the silences owed and due; returns how many succeeded."""
    url = herald.settings.alertmanager.url.rstrip("/")
    if not url:
        return 0
    now = herald.clock.now()
    with herald.store.begin() as connection:
        rows = [
            dict(row)
            for row in connection.execute(
                select(WINDOW)
                .where(
                    WINDOW.c.am_state.in_(("create", "expire")),
                    or_(WINDOW.c.am_retry_at.is_(None), WINDOW.c.am_retry_at <= now),
                )
                .limit(MAX_PER_TICK)
            ).mappings()
        ]
    if not rows:
        return 0
    done = 0
    with httpx.Client(base_url=url, timeout=herald.settings.alertmanager.timeout) as client:
        for row in rows:
            done += _sync_one(herald, client, row, now)
    return done


def _sync_one(herald: Herald, client: httpx.Client, row: Mapping[str, Any], now: float) -> bool:
    nid = row["notification_id"]
    try:
        if row["am_state"] == "create":
            if effective_end(row) <= now:  # nothing left to silence
                _record(herald, nid, row["am_state"], am_state="")
                return True
            silence_id = _create(client, silence_body(row))
            _record(herald, nid, "create", am_state="created", am_silence_id=silence_id)
            log.info("maintenance %s: Alertmanager silence %s created", nid, silence_id)
        else:
            _expire(client, str(row["am_silence_id"]))
            _record(herald, nid, "expire", am_state="expired")
            log.info("maintenance %s: Alertmanager silence %s expired", nid, row["am_silence_id"])
        return True
    except SilenceError as exc:
        retry_at = now + herald.settings.alertmanager.retry_every
        log.warning("maintenance %s: Alertmanager silence not %sd, retrying: %s", nid, row["am_state"], exc)
        _record(herald, nid, row["am_state"], am_retry_at=retry_at, am_error=str(exc)[:500])
        return False


def _create(client: httpx.Client, body: dict[str, Any]) -> str:
    response = _call(client, "POST", "/api/v2/silences", body)
    try:
        silence_id = response.json()["silenceID"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SilenceError("the answer carries no silenceID") from exc
    return str(silence_id)


def _expire(client: httpx.Client, silence_id: str) -> None:
    try:
        _call(client, "DELETE", f"/api/v2/silence/{silence_id}", None)
    except SilenceError as exc:
        if "HTTP 404" not in str(exc):  # already gone: nothing left to expire
            raise


def _call(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    try:
        response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise SilenceError(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if response.status_code >= 300:
        raise SilenceError(f"HTTP {response.status_code}: {response.text[:200]}".splitlines()[0])
    return response


def _record(herald: Herald, nid: str, was: str, **values: Any) -> None:
    """Write the outcome, unless the state moved meanwhile (a ``--done`` while creating)."""
    if "am_error" not in values and "am_retry_at" not in values:
        values.update(am_error=None, am_retry_at=None)
    with herald.store.begin() as connection:
        connection.execute(
            update(WINDOW).where(WINDOW.c.notification_id == nid, WINDOW.c.am_state == was).values(**values)
        )
