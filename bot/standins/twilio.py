"""A local stand-in for Twilio's Messages API, for ``herald demo``, the tests and the benchmarks.

It follows the published contract of ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``
(and of ``GET /2010-04-01/Accounts/{AccountSid}.json``, the account fetch ``config check --probe``
makes: the Account resource, or 401/20003 and 404/20404 as below):
HTTP Basic auth with the account SID and auth token, a form with ``To``, ``From`` and/or
``MessagingServiceSid``, ``Body`` and an optional ``StatusCallback``, and Twilio's JSON bodies:
201 with the Message resource, or ``{"code", "message", "more_info", "status"}`` on error
(401/20003 bad credentials, 404/20404 another account, 400/21604 no To, 400/21603 no sender,
400/21602 no Body, 400/21211 a To that is not E.164, 400/21617 a body over 1,600 characters,
400/21610 an opted-out number, 429/20429 with ``Retry-After`` above ``max_rate``).

Failures on demand: ``faults`` maps a To number to a Twilio error code (``21614``), an HTTP
status (``500``, ``503``, ``502`` answers plain text like a proxy), ``"timeout"`` (answer only
after ``hang_for`` seconds or at close) or ``"disconnect"`` (drop the connection unanswered).

::

    async with TwilioStandIn(account_sid="AC...", auth_token="secret") as twilio:
        settings = SmsSettings(..., api_url=twilio.url)
        ...
        assert twilio.messages[0].to == "+4915112345678"

Run alone: ``python -m bot.standins.twilio --port 8090``. It never calls StatusCallback URLs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Literal

from aiohttp import web

from bot import runtime
from bot.standins import serve_until_signalled
from channels.gsm import count_segments

Fault = int | Literal["timeout", "disconnect"]

_E164 = re.compile(r"\+[1-9]\d{1,14}")
_ERROR_STATUS = {20003: 401, 20404: 404, 20429: 429, 20500: 500, 20503: 503}
_CODE_OF_STATUS = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
_MESSAGES = {
    20003: "Authentication Error - invalid username",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service unavailable",
    21211: "Invalid 'To' Phone Number",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number is not currently reachable via SMS",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit",
}


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message the stand-in accepted, as it arrived."""

    sid: str
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    status_callback: str | None
    num_segments: int
    created_at: datetime


class TwilioStandIn:
    """Twilio's Messages API on 127.0.0.1 (port 0 picks a free port); see the module docstring.

    ``max_rate`` (requests per second, 0 = unlimited) is a token bucket holding one second of
    requests; ``latency`` (seconds) delays every answer. ``messages`` records accepted messages,
    ``requests`` counts every request to the endpoint, ``max_in_flight`` the most at once.
    ``faults`` and ``opted_out`` may change while it runs.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_rate: float = 0.0,
        latency: float = 0.0,
        hang_for: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.account_sid = account_sid
        self.host, self.port = host, port
        self.latency = latency
        self.hang_for = hang_for
        self.faults: dict[str, Fault] = {}
        self.opted_out: set[str] = set()
        self.messages: list[SentMessage] = []
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""
        self._auth_token = auth_token
        self._authorization = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._bucket = _TokenBucket(max_rate, clock) if max_rate > 0 else None
        self._now = now
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Listen and return the base URL (``http://127.0.0.1:PORT``), which is also ``self.url``."""
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account_sid}/Messages.json", self._create_message)
        app.router.add_get("/2010-04-01/Accounts/{account_sid}.json", self._fetch_account)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def close(self) -> None:
        """Answer any hanging request, stop listening and close connections."""
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> TwilioStandIn:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), self._authorization.encode()):
            return twilio_error(20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.match_info["account_sid"] != self.account_sid:
            return twilio_error(20404)
        if self._bucket is not None and (wait := self._bucket.take()) > 0:
            return twilio_error(20429, headers={"Retry-After": str(math.ceil(wait))})
        form = await request.post()
        to, from_, service, body, callback = (
            _text(form.get(name)) for name in ("To", "From", "MessagingServiceSid", "Body", "StatusCallback")
        )
        if not to:
            return twilio_error(21604)
        if not from_ and not service:
            return twilio_error(21603)
        if not body:
            return twilio_error(21602)
        if not _E164.fullmatch(to):
            return twilio_error(21211, f"Invalid 'To' Phone Number: {to}")
        if to in self.faults:
            return await self._fault(request, self.faults[to])
        if to in self.opted_out:
            return twilio_error(21610)
        if len(body) > 1600:
            return twilio_error(21617)
        message = SentMessage(
            sid="SM" + uuid.uuid4().hex,
            to=to,
            from_=from_,
            messaging_service_sid=service,
            body=body,
            status_callback=callback,
            num_segments=count_segments(body).segments,
            created_at=self._now(),
        )
        self.messages.append(message)
        return web.json_response(self._resource(message), status=201)

    async def _fetch_account(self, request: web.Request) -> web.StreamResponse:
        """The Account resource (not counted in ``requests``, which counts sends)."""
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), self._authorization.encode()):
            return twilio_error(20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if request.match_info["account_sid"] != self.account_sid:
            return twilio_error(20404)
        uri = f"/2010-04-01/Accounts/{self.account_sid}"
        created = format_datetime(self._now())
        resources = ("Messages", "IncomingPhoneNumbers", "Calls", "Usage")
        return web.json_response(
            {
                "auth_token": self._auth_token,  # Twilio returns it too: a probe must never print it
                "date_created": created,
                "date_updated": created,
                "friendly_name": "Herald stand-in",
                "owner_account_sid": self.account_sid,
                "sid": self.account_sid,
                "status": "active",
                "subresource_uris": {name.lower(): f"{uri}/{name}.json" for name in resources},
                "type": "Full",
                "uri": f"{uri}.json",
            }
        )

    async def _fault(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault == "timeout":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.hang_for)
            return twilio_error(20503)
        if fault == "disconnect":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)  # written to nowhere: the connection is gone
        if fault >= 10000:
            return twilio_error(fault)
        if fault == 429:
            return twilio_error(20429, headers={"Retry-After": "1"})
        if fault in _CODE_OF_STATUS:
            return twilio_error(_CODE_OF_STATUS[fault])
        return web.Response(status=fault, text=f"{fault} stand-in fault\n")

    def _resource(self, message: SentMessage) -> dict[str, object]:
        """The Message resource as Twilio returns it after a create."""
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{message.sid}"
        created = format_datetime(message.created_at)
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": message.body,
            "date_created": created,
            "date_sent": None,
            "date_updated": created,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": message.from_,
            "messaging_service_sid": message.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(message.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": message.sid,
            # Twilio answers "accepted" while a Messaging Service still has to pick the sender.
            "status": "queued" if message.from_ else "accepted",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": message.to,
            "uri": f"{uri}.json",
        }


def twilio_error(code: int, message: str = "", headers: dict[str, str] | None = None) -> web.Response:
    """Twilio's JSON error answer for ``code``, with its usual HTTP status (400 unless known)."""
    status = _ERROR_STATUS.get(code, 400)
    body = {
        "code": code,
        "message": message or _MESSAGES.get(code, f"Error {code}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


class _TokenBucket:
    """``rate`` tokens per second, at most one second's worth saved up."""

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.rate, self.clock = rate, clock
        self.tokens, self.updated = max(rate, 1.0), clock()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = self.clock()
        self.tokens = min(max(self.rate, 1.0), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def _serve(args: argparse.Namespace) -> None:
    standin = TwilioStandIn(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        host=args.host,
        port=args.port,
        max_rate=args.rate,
        latency=args.latency,
    )
    await serve_until_signalled(
        standin,
        lambda s: f"twilio stand-in listening on {s.url}",
        lambda s: f"twilio stand-in stopped after {s.requests} requests",
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m bot.standins.twilio``: serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.standins.twilio", description="Local stand-in for Twilio's Messages API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed at start)")
    parser.add_argument("--account-sid", default="AC" + "0" * 32)
    parser.add_argument("--auth-token", default="stand-in-token")
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second, 0 = unlimited")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    runtime.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
