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
import logging
import time
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot import service
from bot.app import Herald
from bot.metrics import CONTENT_TYPE, HeraldMetrics
from bot.openapi import openapi_document
from bot.recipients.api import api_refusal, deliveries_endpoint, no_such_id
from bot.slack.app import SlackFrontDoor

log = logging.getLogger("herald.web")

READY_TIMEOUT = 5.0
MAX_REQUEST_BODY = 4 * 1024 * 1024  # the alert webhooks' own cap; Slack, Twilio and forms are far smaller
KNOWN_METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})
CLIENT_GONE = 499  # the metrics' status for a request whose client left before the answer (nginx's)


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
        refused = api_refusal(self.herald, request.headers) or no_such_id(request.path_params["id"])
        if refused is not None:
            return refused
        found = await asyncio.to_thread(service.status, self.herald, request.path_params["id"])
        if found is None:
            return JSONResponse({"error": "no such notification", "id": request.path_params["id"]}, 404)
        return JSONResponse(found)

    async def deliveries(self, request: Request) -> Response:
        """``GET /api/notifications/{id}/deliveries``: one page of its person x channel rows."""
        return await deliveries_endpoint(self.herald, request)


class _ClientGone(Exception):
    """The answer could not be written: the client left, or the server already refused the request."""


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (never by raw path: ids are unbounded)
    and method (one of :data:`KNOWN_METHODS`, else ``other``: a client may send any token there).

    A client that leaves mid-request (it disconnected, or the read deadline closed it, or uvicorn
    already answered 400 to a broken chunked body) is the client's doing, not a server error: one
    INFO line and status :data:`CLIENT_GONE` in the metrics, never a traceback."""

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
            try:
                await send(message)
            except Exception as exc:  # the transport is closed or the protocol already answered
                raise _ClientGone from exc

        try:
            await self.app(scope, receive, record_status)
        except (ClientDisconnect, _ClientGone):
            status = CLIENT_GONE
            log.info("%s %s: the client left before the answer", scope["method"][:16], _route(scope))
        finally:
            route = _route(scope)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.http_requests.labels(route=route, method=method, status=str(status)).inc()
            self.metrics.http_seconds.labels(route=route).observe(time.perf_counter() - started)


def _route(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", None) or "unmatched"


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
