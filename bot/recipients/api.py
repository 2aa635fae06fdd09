"""``GET /api/notifications/{id}/deliveries``: every person x channel of a notification, by page.

The bearer of ``server.api_token`` (the same check as ``GET /api/notifications/{id}``, in
:func:`api_refusal`) gets ``{"deliveries": [...], "next": cursor or null}``; ``?limit=`` (default
500, at most 1000) and ``?after=<next>`` page through. A bad parameter is a 400 naming it, an
unknown id a 404. The rows come from :mod:`bot.engine.deliveries`, as ``status --recipients``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.alerts.auth import bearer_token, configured, secret_matches
from bot.app import Herald
from bot.engine import deliveries


def api_refusal(herald: Herald, headers: Mapping[str, str]) -> Response | None:
    """The answer to a request without the API token (404 while the API is off), else None."""
    api_token = herald.settings.server.api_token
    if configured(api_token) is None:  # unset (or empty, which configuration refuses too)
        return JSONResponse({"error": "the notification API is off (set server.api_token)"}, 404)
    if not secret_matches(bearer_token(headers), api_token):
        return JSONResponse(
            {"error": "unauthorized"}, 401, headers={"WWW-Authenticate": 'Bearer realm="herald"'}
        )
    return None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # no id holds them; the databases cannot compare them


def no_such_id(notification_id: str) -> Response | None:
    """404 for an id no notification can have (a NUL, which PostgreSQL cannot even compare), before
    any query; else None."""
    if _UNSTORABLE.search(notification_id):
        return JSONResponse({"error": "no such notification", "id": notification_id}, 404)
    return None


async def deliveries_endpoint(herald: Herald, request: Request) -> Response:
    refused = api_refusal(herald, request.headers) or no_such_id(request.path_params["id"])
    if refused is not None:
        return refused
    notification_id = request.path_params["id"]
    try:
        limit = deliveries.parse_limit(request.query_params.get("limit"))
        after = deliveries.parse_cursor(request.query_params.get("after") or None)  # "after=": page 1
        if after is not None and any(_UNSTORABLE.search(part) for part in after):  # a forged cursor
            raise deliveries.PageError("after", "expected the 'next' value of an earlier page")
    except deliveries.PageError as exc:
        return JSONResponse({"error": str(exc), "parameter": exc.parameter}, 400)
    found = await asyncio.to_thread(_page, herald, notification_id, limit, after)
    if found is None:
        return JSONResponse({"error": "no such notification", "id": notification_id}, 404)
    return JSONResponse({"deliveries": found.rows, "next": found.next})


def _page(
    herald: Herald, notification_id: str, limit: int, after: deliveries.Cursor
) -> deliveries.Page | None:
    if not deliveries.exists(herald.store, notification_id):
        return None
    return deliveries.page(herald.store, notification_id, limit, after)


_TEXT = {"type": "string"}
_MAYBE_TEXT = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}
DELIVERY_ROW = {
    "type": "object",
    "required": list(deliveries.FIELDS),
    "properties": {
        "person_id": _TEXT,
        "name": _TEXT,
        "channel": _TEXT,
        "address": {**_TEXT, "description": "as stored (empty when the person had none)"},
        "state": _TEXT,
        "reason": _MAYBE_TEXT,
        "created_at": _TIME,
        "sent_at": _TIME,
    },
}


_PAGE = {
    "type": "object",
    "required": ["deliveries", "next"],
    "properties": {
        "deliveries": {"type": "array", "items": DELIVERY_ROW},
        "next": {**_MAYBE_TEXT, "description": "pass as ?after= for the next page; null at the end"},
    },
}
_LIMIT = {
    "type": "integer",
    "minimum": 1,
    "maximum": deliveries.MAX_LIMIT,
    "default": deliveries.DEFAULT_LIMIT,
}
_QUERY = [
    {"name": "limit", "in": "query", "required": False, "schema": _LIMIT},
    {"name": "after", "in": "query", "required": False, "schema": _TEXT},
]


def openapi_paths(json_body: Any, error: dict[str, Any], path_parameter: Any) -> dict[str, Any]:
    """This route's OpenAPI path item (``json_body(description, schema)`` builds a response)."""
    get = {
        "summary": "Every person x channel of one notification with state, reason and times",
        "security": [{"bearer": []}],
        "parameters": _QUERY,
        "responses": {
            "200": json_body("one page, by person id and channel", _PAGE),
            "400": json_body("bad limit or after (named in `parameter`)", error),
            "401": json_body("unauthorized", error),
            "404": json_body("no such notification, or the API is off", error),
        },
    }
    return {"/api/notifications/{id}/deliveries": {"parameters": [path_parameter("id")], "get": get}}
