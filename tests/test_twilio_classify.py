"""Twilio answers and transport failures -> delivery errors (channels.sms classifiers), as tables."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from channels.base import (
    ChannelDownError,
    DeliveryError,
    PermanentError,
    TransientError,
    UncertainError,
    parse_retry_after,
)
from channels.sms import classify_transport_error, classify_twilio_error

T, P, U, D = TransientError, PermanentError, UncertainError, ChannelDownError


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "kind", "reason", "suppress", "wait"),
    [
        # rate limits and server trouble: transient, with the peer's wait when it gave one
        (429, 20429, "3", T, "rate_limited", None, 3.0),
        (429, 20429, None, T, "rate_limited", None, None),
        (429, None, "1.5", T, "rate_limited", None, 1.5),
        (400, 20429, None, T, "rate_limited", None, None),
        (500, 20500, None, T, "server_error", None, None),
        (503, 20503, "10", T, "server_error", None, 10.0),
        (502, 502, None, T, "server_error", None, None),  # a proxy's plain-text answer: code = status
        (504, None, None, T, "server_error", None, None),
        (400, 30001, None, T, "busy", None, None),
        # the number itself is bad or opted out: permanent, suppress it
        (400, 21610, None, P, "opted_out", True, None),
        (400, 21211, None, P, "invalid_address", True, None),
        (400, 21614, None, P, "invalid_address", True, None),
        (400, 21217, None, P, "invalid_address", True, None),
        (400, 21635, None, P, "invalid_address", True, None),
        (400, 21265, None, P, "invalid_address", True, None),
        (0, 30005, None, P, "invalid_address", True, None),  # delivery failures seen in callbacks
        (0, 30006, None, P, "invalid_address", True, None),
        # permanent for this message, but the number may be fine
        (400, 21612, None, P, "rejected_recipient", False, None),
        (0, 30003, None, P, "rejected_recipient", False, None),
        (0, 30004, None, P, "rejected_recipient", False, None),
        (400, 21604, None, P, "invalid_address", False, None),
        (400, 21602, None, P, "rejected_message", False, None),
        (400, 21617, None, P, "rejected_message", False, None),
        (0, 30007, None, P, "rejected_message", False, None),
        # ours to fix, for this destination only: region, trial-account limits
        (400, 21408, None, P, "config", False, None),
        (400, 21606, None, P, "config", False, None),
        (400, 21608, None, P, "config", False, None),
        # ours to fix, for everyone: the account or its sender cannot send; the channel is down
        (400, 21212, None, D, "config", None, None),
        (400, 21603, None, D, "config", None, None),
        (400, 21659, None, D, "config", None, None),
        (400, 21660, None, D, "config", None, None),
        (400, 30034, None, D, "config", None, None),
        (404, 20404, None, D, "config", None, None),
        (404, 404, None, D, "config", None, None),
        (401, 20003, None, D, "auth", None, None),
        (403, 20005, None, D, "auth", None, None),
        (403, None, None, D, "auth", None, None),
        # a code we do not know: retry a few times, never suppress
        (400, 21999, None, T, "unknown", None, None),
        (400, None, None, T, "unknown", None, None),
        (422, 99999, "2", T, "unknown", None, 2.0),
    ],
)
def test_classify_twilio_error(
    status: int,
    code: int | None,
    retry_after: str | None,
    kind: type[DeliveryError],
    reason: str,
    suppress: bool | None,
    wait: float | None,
) -> None:
    error = classify_twilio_error(status, code, retry_after, "detail")
    assert type(error) is kind
    assert error.reason == reason
    assert "detail" in error.detail
    if isinstance(error, PermanentError):
        assert error.suppress is suppress
    else:
        assert isinstance(error, TransientError)
        assert error.retry_after == wait


def test_classify_twilio_error_names_the_code_in_the_detail() -> None:
    error = classify_twilio_error(400, 21610, None, "Attempt to send to unsubscribed recipient")
    assert error.detail == "twilio 21610: Attempt to send to unsubscribed recipient"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", 1.0),
        ("120", 120.0),
        (" 2 ", 2.0),
        ("0.5", 0.5),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("-1", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # an HTTP-date needs the clock: left to the backoff
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value) == seconds


_KEY = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        # nothing was sent, and Twilio cannot be reached: the channel is down
        (aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "refused")), D, "network"),
        (aiohttp.ClientConnectorError(_KEY, ConnectionResetError(104, "reset")), D, "network"),
        (aiohttp.ClientConnectorDNSError(_KEY, OSError(-2, "name unknown")), D, "network"),
        (aiohttp.ConnectionTimeoutError("connect timeout"), D, "network"),
        # the request may have reached Twilio: uncertain
        (TimeoutError(), U, "timeout"),
        (aiohttp.SocketTimeoutError("read timeout"), U, "timeout"),
        (aiohttp.ServerDisconnectedError(), U, "network"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), U, "network"),
        (aiohttp.ClientPayloadError("truncated"), U, "network"),
        (ConnectionResetError(104, "reset"), U, "network"),
        # ours to fix
        (aiohttp.InvalidURL("not a url"), D, "config"),
    ],
)
def test_classify_transport_error(exc: BaseException, kind: type[DeliveryError], reason: str) -> None:
    error = classify_transport_error(exc)
    assert type(error) is kind
    assert error.reason == reason
    assert type(exc).__name__ in error.detail
