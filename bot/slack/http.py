"""``POST /slack/events`` before Bolt: size-limited, signature-checked, parsed; only then dispatched.

Bolt never sees a request Herald has not verified, so nothing unsigned reaches Bolt's logging
(Bolt logs a refused body in full). In order, each step answering without reading further:

1. ``X-Slack-Signature`` (``v0=`` and 64 hex digits) and ``X-Slack-Request-Timestamp`` (digits,
   within :data:`MAX_AGE` seconds of ``herald.clock``) must be present and well-formed, else 401;
2. a ``Content-Length`` over :data:`MAX_BODY` is 413, one that is not a number 400; the body is
   then streamed with a running limit (413 past it, whatever the header said);
3. the HMAC-SHA256 of ``v0:{timestamp}:{body}`` must match, else 401;
4. a signed body that is not UTF-8, not the JSON or form Slack sends, or not an object is 400, and
   so is one with a NUL or a lone surrogate anywhere, or a user, channel or team id over
   :data:`MAX_ID` characters (PostgreSQL can store neither).

Errors are ``{"error": "..."}`` and name no part of the body; nothing here logs the body.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Any

from slack_bolt.adapter.starlette.async_handler import to_starlette_response
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_bolt.request.internals import parse_body
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.clock import Clock

log = logging.getLogger("herald.slack")

MAX_BODY = 1024 * 1024  # Slack's payloads are a few KiB; a modal with every field full stays far below
MAX_AGE = 300.0  # Slack's own window for a request timestamp
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


class Refused(Exception):
    """The request is answered ``status`` with ``{"error": message}`` and never reaches Bolt."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> Response:
        return JSONResponse({"error": self.message}, self.status)


def check_headers(headers: Headers, now: float) -> tuple[str, str]:
    """The timestamp and signature, well-formed and fresh; :class:`Refused` 401 otherwise."""
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not timestamp or not signature:
        raise Refused(401, "missing slack signature headers")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Refused(401, "x-slack-request-timestamp is not a unix time")
    if abs(now - int(timestamp)) > MAX_AGE:
        raise Refused(401, "x-slack-request-timestamp is too old or in the future")
    if not _SIGNATURE.fullmatch(signature):
        raise Refused(401, "x-slack-signature is not a v0 signature")
    return timestamp, signature


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, refusing (413) past ``limit`` bytes, declared or streamed; a bad length is 400."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise Refused(400, "content-length is not a number")
        if int(declared) > limit:
            raise Refused(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, f"the body is larger than {limit} bytes")
    return bytes(body)


def check_signature(secret: str, timestamp: str, signature: str, body: bytes) -> None:
    """Slack's v0 signature over the raw bytes, compared in constant time; 401 when it differs."""
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Refused(401, "invalid slack signature")


def bolt_request(request: Request, body: bytes) -> AsyncBoltRequest:
    """The verified body as Bolt's request; 400 when it is not a Slack payload Bolt can read."""
    try:
        text = body.decode("utf-8")
        payload: Any = parse_body(text, request.headers.get("content-type"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Refused(400, "malformed slack request body") from exc
    if not isinstance(payload, dict):
        raise Refused(400, "malformed slack request body: not an object")
    check_shape(payload)
    try:  # Bolt reads team, user and enterprise ids out of the payload as it builds the request
        return AsyncBoltRequest(
            body=text,
            query=request.query_params,  # type: ignore[arg-type]
            headers=request.headers,  # type: ignore[arg-type]
        )
    except (ValueError, TypeError, AttributeError, LookupError, RecursionError) as exc:
        raise Refused(400, "malformed slack request body: unexpected fields") from exc


_OBJECTS = ("event", "view", "team", "user", "enterprise", "channel", "container", "message")
_LISTS_OF_OBJECTS = ("actions", "authorizations")


MAX_ID = 64  # Slack's ids (U0123ABCD, W..., C..., T...) are a dozen characters; the columns hold 200
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # Slack never sends them; no database column holds them
_IDS = (("user_id",), ("channel_id",), ("team_id",), ("user", "id"), ("channel", "id"), ("team", "id"))


def check_text(payload: object) -> None:
    """No key or text in the payload holds a NUL or a lone surrogate: 400 (PostgreSQL refuses both)."""
    stack = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, str) and _UNSTORABLE.search(value):
            raise Refused(400, "malformed slack request body: a NUL or an unpaired surrogate")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def check_ids(payload: dict[str, Any]) -> None:
    """The user, channel and team ids, where present, are short strings: 400 naming the field."""
    for path in _IDS:
        value: Any = payload
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and not (isinstance(value, str) and len(value) <= MAX_ID):
            raise Refused(400, f"malformed slack request body: '{'.'.join(path)}' is not a Slack id")


def check_shape(payload: dict[str, Any]) -> None:
    """The envelope fields Bolt and the listeners read have Slack's types; 400 naming the field."""
    for key in _OBJECTS:
        if key in payload and not isinstance(payload[key], dict):
            raise Refused(400, f"malformed slack request body: '{key}' is not an object")
    for key in _LISTS_OF_OBJECTS:
        value = payload.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)
        ):
            raise Refused(400, f"malformed slack request body: '{key}' is not a list of objects")
    view = payload.get("view") or {}
    if "state" in view and not isinstance(view["state"], dict):
        raise Refused(400, "malformed slack request body: 'view.state' is not an object")
    if not isinstance((view.get("state") or {}).get("values", {}), dict):
        raise Refused(400, "malformed slack request body: 'view.state.values' is not an object")
    check_ids(payload)
    check_text(payload)


async def verified_request(request: Request, secret: str, clock: Clock) -> AsyncBoltRequest:
    """The request as Bolt reads it, once it is small enough, signed and well-formed."""
    timestamp, signature = check_headers(request.headers, clock.now())
    body = await read_limited(request)
    check_signature(secret, timestamp, signature, body)
    return bolt_request(request, body)


async def dispatch(bolt: AsyncApp, request: AsyncBoltRequest) -> Response:
    """Bolt's answer to a verified request, as a Starlette response.

    Bolt indexes into payloads it assumes well-formed (``view.type``...): a signed payload that
    trips it is a malformed request, answered 400 and logged as one line without the body.
    """
    try:
        answer = await bolt.async_dispatch(request)
    except (ValueError, TypeError, AttributeError, LookupError) as exc:
        log.warning("slack request Bolt could not read (%s); answered 400", type(exc).__name__)
        return Refused(400, "malformed slack request body: unexpected fields").response()
    return to_starlette_response(answer)


class BodyFreeLog(logging.Filter):
    """Keeps request bodies out of Bolt's log lines: each keeps its first clause, without arguments.

    Bolt puts bodies into messages (``Unhandled request ({...})``, ``... (body: ...)``); what comes
    before the first ``(`` or line break is Bolt's own wording, so that is what is logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = _CLAUSE.split(message, maxsplit=1)[0].strip()[:200] or "slack_bolt"
        record.args = None
        return True


_CLAUSE = re.compile(r"[(\r\n]")
