"""SmsChannel's own request building and answer reading, against the official twilio client.

``form_tail`` and ``read_answer`` are tables; the wire test posts one message through
``SmsChannel`` and one through twilio's ``Client.messages.create_async`` (its stock
``AsyncTwilioHttpClient``) into a loopback server that records the raw requests, and compares them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

import pytest
from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from channels.base import (
    ChannelDownError,
    DeliveryError,
    Notice,
    PermanentError,
    Receipt,
    Recipient,
    TransientError,
    UncertainError,
)
from channels.sms import SmsChannel, SmsSettings, form_tail, read_answer

SID = "AC" + "e" * 32
TOKEN = "answers-token"
FROM = "+15005550006"
SERVICE = "MG" + "f" * 32
CALLBACK = "https://herald.example/hooks/twilio/status?a=1&b=2"
BASE = SmsSettings(SID, TOKEN, from_number=FROM)
T, P, U, D = TransientError, PermanentError, UncertainError, ChannelDownError


@pytest.mark.parametrize(
    ("settings", "body", "expected"),
    [
        (BASE, "Hi", b"&From=%2B15005550006&Body=Hi"),
        (BASE, "a b&c=d\n+e", b"&From=%2B15005550006&Body=a+b%26c%3Dd%0A%2Be"),
        (BASE, "Grüße 😀", b"&From=%2B15005550006&Body=Gr%C3%BC%C3%9Fe+%F0%9F%98%80"),
        (BASE, "", b"&From=%2B15005550006&Body="),
        (
            replace(BASE, from_number=None, messaging_service_sid=SERVICE),
            "Hi",
            b"&MessagingServiceSid=" + SERVICE.encode() + b"&Body=Hi",
        ),
        (
            replace(BASE, status_callback_url=CALLBACK),
            "Hi",
            b"&StatusCallback=https%3A%2F%2Fherald.example%2Fhooks%2Ftwilio%2Fstatus%3Fa%3D1%26b%3D2"
            b"&From=%2B15005550006&Body=Hi",
        ),
        (replace(BASE, status_callback_url=""), "Hi", b"&From=%2B15005550006&Body=Hi"),
    ],
)
def test_form_tail(settings: SmsSettings, body: str, expected: bytes) -> None:
    assert form_tail(settings, body) == expected


def _error(code: int, message: str, status: int) -> str:
    return json.dumps({"code": code, "message": message, "more_info": "", "status": status})


_RFC9457 = json.dumps(
    {
        "type": "https://www.twilio.com/docs/errors/21610",
        "title": "Unsubscribed recipient",
        "status": 400,
        "code": 21610,
        "detail": "The recipient replied STOP",
    }
)


@pytest.mark.parametrize(
    ("status", "text", "retry_after", "expected"),
    [
        (201, '{"sid": "SM1", "status": "queued", "body": "x"}', None, Receipt("SM1", "queued")),
        (200, '{"sid": "SM2", "status": "accepted"}', None, Receipt("SM2", "accepted")),
        (201, '{"sid": "SM3", "status": null}', None, Receipt("SM3", "")),
        (201, '{"sid": "SM4"}', None, Receipt("SM4", "")),
    ],
)
def test_read_answer_accepted(status: int, text: str, retry_after: str | None, expected: Receipt) -> None:
    assert read_answer(status, text, retry_after) == expected


@pytest.mark.parametrize(
    ("status", "text", "retry_after", "kind", "reason", "detail", "wait"),
    [
        # accepted, but without a SID: it may have been sent
        (201, "", None, U, "server_error", "accepted without a message sid", None),
        (201, '{"status": "queued"}', None, U, "server_error", "accepted without a message sid", None),
        (201, '{"sid": ""}', None, U, "server_error", "accepted without a message sid", None),
        (201, '["SM1"]', None, U, "server_error", "accepted without a message sid", None),
        (201, "<html>ok</html>", None, U, "server_error", "unreadable answer to an accepted request", None),
        # twilio's legacy error body: code and message
        (
            400,
            _error(21211, "The 'To' number 0151 is not valid.", 400),
            None,
            P,
            "invalid_address",
            "twilio 21211: The 'To' number 0151 is not valid.",
            None,
        ),
        (
            429,
            _error(20429, "Too Many Requests", 429),
            "2",
            T,
            "rate_limited",
            "twilio 20429: Too Many Requests",
            2.0,
        ),
        (401, _error(20003, "Authenticate", 401), None, D, "auth", "twilio 20003: Authenticate", None),
        (
            404,
            _error(20404, "The requested resource was not found", 404),
            None,
            D,
            "config",
            "twilio 20404: The requested resource was not found",
            None,
        ),
        (
            503,
            _error(20503, "Service unavailable", 503),
            "10",
            T,
            "server_error",
            "twilio 20503: Service unavailable",
            10.0,
        ),
        (400, '{"message": "no code"}', None, T, "unknown", "no code", None),  # code = status
        (400, '{"code": 21999}', None, T, "unknown", "twilio 21999: Unable to create record", None),
        # RFC 9457 problem details
        (
            400,
            _RFC9457,
            None,
            P,
            "opted_out",
            "twilio 21610: Unsubscribed recipient - The recipient replied STOP",
            None,
        ),
        # no JSON at all (a proxy's page): the status is the code
        (502, "<html>Bad Gateway</html>", None, T, "server_error", "Unable to create record", None),
        (500, "", "1", T, "server_error", "Unable to create record", 1.0),
        (403, "Forbidden", None, D, "auth", "Unable to create record", None),
        (302, "", None, T, "unknown", "Unable to create record", None),  # redirects are not followed
    ],
)
def test_read_answer_refused(
    status: int,
    text: str,
    retry_after: str | None,
    kind: type[DeliveryError],
    reason: str,
    detail: str,
    wait: float | None,
) -> None:
    with pytest.raises(DeliveryError) as caught:
        read_answer(status, text, retry_after)
    error = caught.value
    assert (type(error), error.reason, error.detail) == (kind, reason, detail)
    if isinstance(error, TransientError):
        assert error.retry_after == wait


@dataclass
class Recorder:
    """A loopback server that keeps every request's method, path, headers and raw body."""

    url: str = ""
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    seen = Recorder()

    async def handle(request: web.Request) -> web.Response:
        seen.requests.append((request.method, request.path, dict(request.headers), await request.read()))
        return web.json_response({"sid": "SM" + "0" * 32, "status": "queued"}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    seen.url = f"http://127.0.0.1:{port}"
    try:
        yield seen
    finally:
        await runner.cleanup()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # aiohttp on twilio's stock BasicAuth use
@pytest.mark.parametrize(
    "changes",
    [{}, {"from_number": None, "messaging_service_sid": SERVICE, "status_callback_url": CALLBACK}],
)
async def test_the_request_is_the_one_twilios_client_sends(
    recorder: Recorder, changes: dict[str, str]
) -> None:
    settings = replace(BASE, api_url=recorder.url + "/", **changes)
    notice = Notice("n-1", "maintenance", "Patch Tuesday", "Servers & printers reboot at 22:00 CET.")
    async with SmsChannel(settings) as sms:
        prepared = sms.prepare(notice)
        receipt = await sms.send(prepared, Recipient("+4915112345678"))
    assert receipt == Receipt("SM" + "0" * 32, "queued")
    http = AsyncTwilioHttpClient()
    try:
        client = Client(SID, TOKEN, http_client=http)
        client.api.base_url = recorder.url
        client.edge = client.region = None
        await client.messages.create_async(
            to="+4915112345678",
            body=prepared.text,
            from_=settings.from_number,
            messaging_service_sid=settings.messaging_service_sid,
            status_callback=settings.status_callback_url,
        )
    finally:
        await http.close()
    ours, theirs = recorder.requests
    assert ours == theirs
    assert ours[1] == f"/2010-04-01/Accounts/{SID}/Messages.json"
