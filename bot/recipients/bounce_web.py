"""``POST /hooks/bounces``: delivery reports from relays that send them by webhook.

Authenticated like the alert webhooks (``[webhooks.bounces]`` token or hmac_secret, settled from the
headers before the body is read). The body is one JSON object::

    {"recipient": "a@example.com", "status": "5.1.1", "action": "failed",
     "token": "1a2b-...", "message_id": "<...>", "diagnostic": "550 5.1.1 user unknown"}

``token`` (the VERP token, or the whole VERP address) or ``message_id`` names the delivery. Answers:
``200 {"outcome", "delivery_id"}`` (outcomes in :mod:`.bounces`; a forged token is ``forged`` and
changes nothing), ``400``/``422 {"error", "field"}`` for a bad body, ``401``, ``413``, ``503``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.alerts.auth import WebhookAuthError, verify_headers, verify_webhook
from bot.alerts.intake import load_json
from bot.alerts.models import PayloadError
from bot.alerts.web import MAX_BODY, _TooLarge, read_body
from bot.app import Herald
from bot.recipients.bounces import STATUS, BounceReport, apply

log = logging.getLogger("herald.bounces.web")

_OPTIONAL = ("token", "message_id", "diagnostic")


def bounce_routes(herald: Herald) -> list[BaseRoute]:
    async def receive(request: Request) -> Response:
        return await _receive(herald, request)

    return [Route("/hooks/bounces", receive, methods=["POST"])]


def parse_report(data: dict[str, Any]) -> BounceReport:
    """The report in a webhook body; :class:`PayloadError` naming the first bad field."""
    recipient = data.get("recipient")
    if not isinstance(recipient, str) or "@" not in recipient or len(recipient) > 320:
        raise PayloadError("expected the recipient's email address", "recipient")
    status = data.get("status")
    if not isinstance(status, str) or not STATUS.fullmatch(status.strip()):
        raise PayloadError("expected an enhanced status code such as 5.1.1", "status")
    action = data.get("action")
    if action not in ("failed", "delayed"):
        raise PayloadError("expected failed or delayed", "action")
    extra: dict[str, str | None] = {}
    for key in _OPTIONAL:
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 1000):
            raise PayloadError("expected a string of at most 1000 characters", key)
        extra[key] = value or None
    return BounceReport(
        recipient=recipient,
        status=status.strip(),
        action=action,
        token=extra["token"],
        message_id=extra["message_id"],
        diagnostic=extra["diagnostic"] or "",
    )


async def _receive(herald: Herald, request: Request) -> Response:
    auth = herald.settings.webhooks.get("bounces")
    try:
        how = verify_headers(auth, "bounces", request.headers)
        body = await read_body(request)
        if how is None:
            verify_webhook(auth, "bounces", request.headers, body)
    except WebhookAuthError as exc:
        return JSONResponse({"error": str(exc)}, 401, headers={"WWW-Authenticate": 'Bearer realm="herald"'})
    except _TooLarge:
        return JSONResponse({"error": f"the body is larger than {MAX_BODY} bytes"}, 413)
    try:
        report = parse_report(load_json(body))
    except PayloadError as exc:
        return JSONResponse(exc.as_json(), exc.status)
    try:
        applied = await asyncio.to_thread(apply, herald.store, herald.settings, report, herald.clock.now())
    except Exception:
        log.exception("could not record a bounce report")
        return JSONResponse({"error": "the report could not be recorded; retry"}, 503)
    return JSONResponse({"outcome": applied.outcome, "delivery_id": applied.delivery_id})
