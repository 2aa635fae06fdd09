"""The alert webhooks: ``POST /hooks/alertmanager``, ``/hooks/grafana`` and ``/hooks/alerts``.

Each route only translates: authenticate the request (:mod:`bot.alerts.auth`: a bearer token or
a missing signature is settled from the headers, before any of the body is read), read the body (at
most :data:`MAX_BODY` bytes, refused on its ``Content-Length`` or as soon as the stream passes it),
check an HMAC signature against it, parse it (:mod:`bot.alerts.intake`), hand the batch to
:func:`bot.alerts.lifecycle.ingest`, answer. Answers, chosen for senders that retry 5xx and drop
4xx (Alertmanager does):

- ``202 {"accepted", "groups", "notifications", "deduplicated", "resolved", "held_back"}`` only once
  every alert is stored (notifications are created, not sent: the dispatcher sends them);
- ``401 {"error"}`` when the request is not authenticated, or the source has no auth configured;
- ``400 {"error", "field": null}`` when the body is not a JSON object; ``422 {"error", "field"}``
  when a field is wrong, naming it (``alerts[0].labels``);
- ``413 {"error"}`` over :data:`MAX_BODY` (Alertmanager's ``max_alerts`` keeps its bodies small),
  once the request is authenticated (an unauthenticated one gets its 401 unread);
- ``503 {"error"}`` when the alert could not be stored (the database is down): retry.

The alert channel's Slack message is posted right after the answer (a background task).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.alerts.auth import WebhookAuthError, verify_headers, verify_webhook
from bot.alerts.intake import load_json, parse_alertmanager, parse_generic, parse_grafana
from bot.alerts.lifecycle import ingest
from bot.alerts.models import AlertBatch, PayloadError
from bot.alerts.slack import AlertSlack
from bot.app import Herald

log = logging.getLogger("herald.alerts.web")

MAX_BODY = 4 * 1024 * 1024

Parser = Callable[[dict[str, Any]], AlertBatch]


class _TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The raw body, refusing (:class:`_TooLarge`) past ``limit`` bytes, declared or streamed."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def alert_routes(herald: Herald) -> list[BaseRoute]:
    """The three webhook routes, for ``build_web_app(..., routes=...)``."""
    slack = AlertSlack.build(herald)
    severities = tuple(herald.settings.sla)

    def endpoint(source: str, parse: Parser) -> Callable[[Request], Any]:
        async def receive(request: Request) -> Response:
            return await _receive(herald, slack, source, parse, request)

        return receive

    return [
        Route("/hooks/alertmanager", endpoint("alertmanager", parse_alertmanager), methods=["POST"]),
        Route("/hooks/grafana", endpoint("grafana", parse_grafana), methods=["POST"]),
        Route(
            "/hooks/alerts",
            endpoint("alerts", lambda data: parse_generic(data, severities)),
            methods=["POST"],
        ),
    ]


async def _receive(
    herald: Herald, slack: AlertSlack | None, source: str, parse: Parser, request: Request
) -> Response:
    auth = next((auth for name, auth in herald.settings.webhooks.items() if name == source), None)
    try:
        how = verify_headers(auth, source, request.headers)  # refused unread when the headers say no
        body = await read_body(request)
        if how is None:
            verify_webhook(auth, source, request.headers, body)
    except WebhookAuthError as exc:
        return JSONResponse({"error": str(exc)}, 401, headers={"WWW-Authenticate": 'Bearer realm="herald"'})
    except _TooLarge:
        return JSONResponse({"error": f"the body is larger than {MAX_BODY} bytes"}, 413)
    try:
        batch = parse(load_json(body))
    except PayloadError as exc:
        return JSONResponse(exc.as_json(), exc.status)
    try:
        result = await asyncio.to_thread(ingest, herald, batch)
    except Exception:
        log.exception("could not store %d alert(s) from %s", len(batch.alerts), source)
        return JSONResponse({"error": "the alert could not be stored; retry"}, 503)
    background = BackgroundTask(slack.sync, result.groups) if slack is not None and result.groups else None
    return JSONResponse(result.as_json(), 202, background=background)
