"""The HTTP side of ``herald serve``: one Starlette app; routes translate and hand on, nothing more.

Routes here: ``POST /slack/events`` (Bolt, through its Starlette adapter: signatures verified, 401
on a bad or stale one), ``GET /healthz`` (200 while the process is up), ``GET /readyz`` (200 when
the database answers, else 503), ``GET /metrics`` (Prometheus text), ``GET /openapi.json``, and
``GET /api/notifications/{id}`` (status JSON, ``Authorization: Bearer <server.api_token>``).
Webhook and preference-page routes are built by their own modules and passed in as ``routes``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import service
from bot.alerts.auth import bearer_token, configured, secret_matches
from bot.app import Herald
from bot.metrics import CONTENT_TYPE, HeraldMetrics
from bot.slack.app import SlackFrontDoor

READY_TIMEOUT = 5.0


def build_web_app(
    herald: Herald,
    metrics: HeraldMetrics,
    slack: SlackFrontDoor | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The ASGI app; ``slack`` None (no bot token) or without a signing secret leaves /slack/events 404."""
    handler = AsyncSlackRequestHandler(slack.bolt) if slack is not None and slack.http_enabled else None
    api_token = herald.settings.server.api_token

    async def slack_events(request: Request) -> Response:
        if handler is None:
            return JSONResponse(
                {"error": "slack over HTTP is off (set slack.bot_token and signing_secret)"}, 404
            )
        return await handler.handle(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            up = await asyncio.wait_for(asyncio.to_thread(herald.store.ping), READY_TIMEOUT)
        except TimeoutError:
            up = False
        if up:
            return JSONResponse({"status": "ready", "database": "ok"})
        return JSONResponse({"status": "not ready", "database": "unreachable"}, 503)

    async def metrics_endpoint(request: Request) -> Response:
        body = await asyncio.to_thread(metrics.render)
        return Response(body, media_type=CONTENT_TYPE)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(herald.settings.server.public_url))

    async def notification(request: Request) -> Response:
        if configured(api_token) is None:  # unset (or empty, which configuration refuses too)
            return JSONResponse({"error": "the notification API is off (set server.api_token)"}, 404)
        if not secret_matches(bearer_token(request.headers), api_token):
            return JSONResponse(
                {"error": "unauthorized"}, 401, headers={"WWW-Authenticate": 'Bearer realm="herald"'}
            )
        found = await asyncio.to_thread(service.status, herald, request.path_params["id"])
        if found is None:
            return JSONResponse({"error": "no such notification", "id": request.path_params["id"]}, 404)
        return JSONResponse(found)

    app = Starlette(
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/api/notifications/{id}", notification, methods=["GET"]),
            *routes,
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
    )
    return app


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (never by raw path: ids are unbounded)."""

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
            self.metrics.http_requests.labels(route=route, method=scope["method"], status=str(status)).inc()
            self.metrics.http_seconds.labels(route=route).observe(time.perf_counter() - started)


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_STATUS = {
    "type": "object",
    "required": ["id", "state", "recipients", "channels", "sla"],
    "properties": {
        "id": {"type": "string"},
        "state": {"type": "string", "enum": ["scheduled", "queued", "sending", "done", "cancelled"]},
        "recipients": {"type": "integer"},
        "channels": {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
        "sla": {
            "type": "object",
            "properties": {
                "deliver_within_s": {"type": "number"},
                "last_delivery_s": {"type": ["number", "null"]},
                "met": {"type": ["boolean", "null"]},
            },
        },
    },
}


def openapi_document(public_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of Herald's HTTP API (every route of SPEC's table)."""
    hook_auth: list[dict[str, list[str]]] = [{"bearer": []}, {"hmac": []}]
    paths: dict[str, Any] = {
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
        "/hooks/alertmanager": {
            "post": {
                "summary": "Prometheus Alertmanager webhook, payload version 4",
                "security": hook_auth,
                "responses": {
                    "202": _json("stored"),
                    "400": _json("malformed", _ERROR),
                    "401": _json("unauthenticated", _ERROR),
                    "422": _json("invalid field", _ERROR),
                },
            }
        },
        "/hooks/grafana": {
            "post": {
                "summary": "Grafana alerting webhook",
                "security": hook_auth,
                "responses": {"202": _json("stored"), "401": _json("unauthenticated", _ERROR)},
            }
        },
        "/hooks/alerts": {
            "post": {
                "summary": "Generic JSON alert",
                "security": hook_auth,
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
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
                        }
                    }
                },
                "responses": {
                    "202": _json("stored"),
                    "401": _json("unauthenticated", _ERROR),
                    "422": _json("invalid field", _ERROR),
                },
            }
        },
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
        "/u/{token}": {
            "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "summary": "Preferences page (never changes anything)",
                "responses": {"200": {"description": "page", "content": {"text/html": {}}}},
            },
            "post": {
                "summary": "List-Unsubscribe=One-Click unsubscribes (RFC 8058); other posts save the form",
                "responses": {"200": {"description": "saved", "content": {"text/html": {}}}},
            },
        },
        "/api/notifications/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
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
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Herald",
            "version": "0.1.0",
            "description": "Chat-ops notifications for IT support.",
        },
        "servers": [{"url": public_url}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "hmac": {"type": "apiKey", "in": "header", "name": "X-Herald-Signature"},
            }
        },
    }
