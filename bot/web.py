"""The HTTP side of ``herald serve``: one Starlette app; routes translate and hand on, nothing more.

Routes here: ``POST /slack/events`` (Bolt, through its Starlette adapter: signatures verified, 401
on a bad or stale one), ``GET /healthz`` (200 while the process is up), ``GET /readyz`` (200 when
the database answers, else 503), ``GET /metrics`` (Prometheus text), ``GET /openapi.json``, and
``GET /api/notifications/{id}`` (status JSON, ``Authorization: Bearer <server.api_token>``) and
``GET /api/notifications/{id}/deliveries`` (its person x channel rows, :mod:`bot.recipients.api`).
Webhook and preference-page routes are built by their own modules and passed in as ``routes``.

Every route's request body is capped at :data:`MAX_REQUEST_BODY` (:class:`BodyLimitMiddleware`):
413 at once on a larger ``Content-Length``, or as soon as a streamed body passes the cap, so nothing
is ever read in full past it. Metrics label requests by route template and known method only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import service
from bot.app import Herald
from bot.metrics import CONTENT_TYPE, HeraldMetrics
from bot.recipients.api import api_refusal, deliveries_endpoint
from bot.recipients.api import openapi_paths as deliveries_paths
from bot.slack.app import SlackFrontDoor

READY_TIMEOUT = 5.0
MAX_REQUEST_BODY = 4 * 1024 * 1024  # the alert webhooks' own cap; Slack, Twilio and forms are far smaller
KNOWN_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})


def build_web_app(
    herald: Herald,
    metrics: HeraldMetrics,
    slack: SlackFrontDoor | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ASGI app; ``slack`` None (no bot token) or without a signing secret leaves /slack/events 404."""
    handlers = WebHandlers(herald, metrics, slack)
    return Starlette(
        routes=[
            Route("/slack/events", handlers.slack_events, methods=["POST"]),
            Route("/healthz", handlers.healthz, methods=["GET"]),
            Route("/readyz", handlers.readyz, methods=["GET"]),
            Route("/metrics", handlers.metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", handlers.openapi, methods=["GET"]),
            Route("/api/notifications/{id}", handlers.notification, methods=["GET"]),
            Route("/api/notifications/{id}/deliveries", handlers.deliveries, methods=["GET"]),
            *routes,
        ],
        middleware=[
            Middleware(MetricsMiddleware, metrics=metrics),
            Middleware(BodyLimitMiddleware, limit=MAX_REQUEST_BODY),
        ],
        exception_handlers={404: json_http_error, 405: json_http_error},
    )


async def json_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) as a JSON error, like every other."""
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    headers = getattr(exc, "headers", None)
    detail = exc.detail if isinstance(exc, HTTPException) else "not found"
    return JSONResponse({"error": str(detail).lower()}, status, headers=headers)


class WebHandlers:
    """The handlers of :func:`build_web_app`'s own routes."""

    def __init__(self, herald: Herald, metrics: HeraldMetrics, slack: SlackFrontDoor | None) -> None:
        self.herald = herald
        self.metrics = metrics
        self.slack = slack if slack is not None and slack.http_enabled else None

    async def slack_events(self, request: Request) -> Response:
        if self.slack is None:
            return JSONResponse(
                {"error": "slack over HTTP is off (set slack.bot_token and signing_secret)"}, 404
            )
        return await self.slack.handle_http(request)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            up = await asyncio.wait_for(asyncio.to_thread(self.herald.store.ping), READY_TIMEOUT)
        except TimeoutError:
            up = False
        if up:
            return JSONResponse({"status": "ready", "database": "ok"})
        return JSONResponse({"status": "not ready", "database": "unreachable"}, 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        body = await asyncio.to_thread(self.metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(self.herald.settings.server.public_url))

    async def notification(self, request: Request) -> Response:
        """``GET /api/notifications/{id}``: the status JSON, for the bearer of ``server.api_token``."""
        refused = api_refusal(self.herald, request.headers)
        if refused is not None:
            return refused
        found = await asyncio.to_thread(service.status, self.herald, request.path_params["id"])
        if found is None:
            return JSONResponse({"error": "no such notification", "id": request.path_params["id"]}, 404)
        return JSONResponse(found)

    async def deliveries(self, request: Request) -> Response:
        """``GET /api/notifications/{id}/deliveries``: one page of its person x channel rows."""
        return await deliveries_endpoint(self.herald, request)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (never by raw path: ids are unbounded)
    and method (one of :data:`KNOWN_METHODS`, else ``other``: a client may send any token there)."""

    def __init__(self, app: ASGIApp, metrics: HeraldMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.http_requests.labels(route=route, method=method, status=str(status)).inc()
            self.metrics.http_seconds.labels(route=route).observe(time.perf_counter() - started)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses (413 JSON) a request body over ``limit`` bytes before it is read in full: on its
    ``Content-Length`` before the route runs, else the moment the stream passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").strip()
        if declared.isdigit() and (len(declared) > 18 or int(declared) > self.limit):  # no huge int()
            await self._refuse(scope, send)
            return
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        answer = JSONResponse({"error": f"the body is larger than {self.limit} bytes"}, 413)
        await answer(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_STATUS = {
    "type": "object",
    "required": ["id", "state", "recipients", "channels", "people", "sla"],
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": ["scheduled", "queued", "sending", "done", "cancelled"]},
        "recipients": {"type": "integer"},
        "channels": {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "people": {
            "type": "object",
            "properties": {
                name: {"type": "integer"}
                for name in ("reached", "unreached", "unreachable", "cancelled", "confirmed")
            },
        },
        "sla": {
            "type": "object",
            "properties": {
                "deliver_within_s": {"type": "number"},
                "last_delivery_s": {"type": ["number", "null"]},
                "reach": {"type": "number", "minimum": 0, "maximum": 1},
                "reach_target": {"type": "number", "minimum": 0, "maximum": 1},
                "met": {"type": ["boolean", "null"]},
            },
        },
    },
}
_GENERIC_ALERT = {
    "type": "object",
    "required": ["summary", "severity"],
    "properties": {
        "summary": {"type": "string"},
        "severity": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "description": {"type": "string"},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "fingerprint": {"type": "string"},
    },
}


def openapi_document(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of Herald's HTTP API (every route of SPEC's table)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald",
            "version": "0.1.0",
            "description": "Chat-ops notifications for IT support.",
        },
        "servers": [{"url": public_url}],
        "paths": {
            **_slack_paths(),
            **_alert_hook_paths(),
            **_bounce_paths(),
            **_twilio_paths(),
            **_preference_paths(),
            **_api_paths(),
            **_operations_paths(),
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "hmac": {"type": "apiKey", "in": "header", "name": "X-Herald-Signature"},
            }
        },
    }


def _slack_paths() -> dict[str, Any]:
    return {
        "/slack/events": {
            "post": {
                "summary": "Slack slash commands, interactivity and events (Bolt)",
                "description": "Signed by Slack (X-Slack-Signature, X-Slack-Request-Timestamp); "
                "a bad or stale (over 5 minutes) signature is answered 401.",
                "responses": {
                    "200": {"description": "acknowledged"},
                    "401": {"description": "bad signature"},
                },
            }
        },
    }


def _alert_hook_paths() -> dict[str, Any]:
    responses = {
        "202": _json("stored"),
        "400": _json("unreadable: not JSON, nested too deeply", _ERROR),
        "401": _json("unauthenticated", _ERROR),
        "413": _json("body over 4 MiB", _ERROR),
        "422": _json("invalid field (named in `field`)", _ERROR),
        "503": _json("the alert could not be stored: retry", _ERROR),
    }
    return {
        "/hooks/alertmanager": _alert_hook("Prometheus Alertmanager webhook, payload version 4", responses),
        "/hooks/grafana": _alert_hook("Grafana alerting webhook", responses),
        "/hooks/alerts": _alert_hook(
            "Generic JSON alert",
            responses,
            requestBody={"content": {"application/json": {"schema": _GENERIC_ALERT}}},
        ),
    }


def _alert_hook(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A POST alert webhook, authenticated by bearer token or HMAC signature."""
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"hmac": []}]
    return {"post": {"summary": summary, "security": security, **extra, "responses": responses}}


def _bounce_paths() -> dict[str, Any]:
    text: dict[str, Any] = {"type": "string"}
    fields: dict[str, Any] = {
        "recipient": text,
        "status": {"type": "string", "pattern": r"^[245]\.\d+\.\d+$"},
    }
    fields |= {
        "action": {"enum": ["failed", "delayed"]},
        "token": text,
        "message_id": text,
        "diagnostic": text,
    }
    report = {"type": "object", "required": ["recipient", "status", "action"], "properties": fields}
    responses = {"200": _json("recorded: outcome, delivery_id"), "401": _json("unauthenticated", _ERROR)}
    responses |= {"400": _json("not a JSON object", _ERROR), "422": _json("invalid field", _ERROR)}
    body = {"content": {"application/json": {"schema": report}}}
    return {
        "/hooks/bounces": _alert_hook("A delivery report (bounce) from a relay", responses, requestBody=body)
    }


def _twilio_paths() -> dict[str, Any]:
    return {
        "/hooks/twilio/status": {
            "post": {
                "summary": "Twilio status callback (X-Twilio-Signature verified)",
                "responses": {"204": {"description": "recorded"}, "403": {"description": "bad signature"}},
            }
        },
        "/hooks/twilio/inbound": {
            "post": {
                "summary": "Inbound SMS: STOP/UNSUBSCRIBE opt out, START opts in, HELP answers",
                "responses": {"200": {"description": "TwiML reply", "content": {"text/xml": {}}}},
            }
        },
    }


def _preference_paths() -> dict[str, Any]:
    return {
        "/u/{token}": {
            "parameters": [_path_parameter("token")],
            "get": {
                "summary": "Preferences page (never changes anything)",
                "responses": {"200": {"description": "page", "content": {"text/html": {}}}},
            },
            "post": {
                "summary": "List-Unsubscribe=One-Click unsubscribes (RFC 8058); other posts save the form",
                "responses": {"200": {"description": "saved", "content": {"text/html": {}}}},
            },
        },
    }


def _api_paths() -> dict[str, Any]:
    return {
        "/api/notifications/{id}": {
            "parameters": [_path_parameter("id")],
            "get": {
                "summary": "Status of one notification, as `herald status --json`",
                "security": [{"bearer": []}],
                "responses": {
                    "200": _json("status", _STATUS),
                    "401": _json("unauthorized", _ERROR),
                    "404": _json("no such notification, or the API is off", _ERROR),
                },
            },
        },
        **deliveries_paths(_json, _ERROR, _path_parameter),
    }


def _operations_paths() -> dict[str, Any]:
    return {
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json("up")}}},
        "/readyz": {
            "get": {
                "summary": "Readiness: the database answers",
                "responses": {"200": _json("ready"), "503": _json("database unreachable")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {"description": "text exposition format", "content": {"text/plain": {}}}
                },
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json("OpenAPI 3.1")}}},
    }


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
