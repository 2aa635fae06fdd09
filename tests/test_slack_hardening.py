"""``POST /slack/events`` refuses what Slack did not sign before reading it, Slack text is escaped,
and status, list and the Home tab show notifications only to whom they concern.

Everything goes through signed (or unsigned) HTTP requests to ``HeraldServer`` with the Slack, SMTP
and Twilio stand-ins, as in ``test_slack_flows``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_signing import (
    ANNOUNCER,
    CHANNEL,
    SIGNING_SECRET,
    Harness,
    running_herald,
    sign,
)

MIB = 1024 * 1024
MARKER = "BODYMARKER-7f3a"


@pytest.fixture
async def h(db_url: str, tmp_path: Path) -> Any:
    async with running_herald(db_url, tmp_path) as harness:
        yield harness


async def raw_post(h: Harness, headers: dict[str, str], first_bytes: bytes) -> tuple[int, bytes]:
    """Send the request line, ``headers`` and only ``first_bytes`` of the body; read the answer.

    The server answers without waiting for the rest: proof it refused before reading the body.
    """
    where = urlsplit(h.server.url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"POST /slack/events HTTP/1.1\r\nHost: herald\r\n{head}\r\n".encode() + first_bytes)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


async def test_unsigned_16_mib_body_is_refused_before_it_is_read(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"Content-Type": "application/json", "Content-Length": str(16 * MIB)}
    status, body = await raw_post(h, headers, (MARKER + "\n").encode() * 100)
    assert status == 401 and b"signature" in body
    # Signed-looking headers but too large a declared length: 413, still before the body.
    signed = {**headers, **sign(SIGNING_SECRET, "whatever")}
    status, body = await raw_post(h, signed, MARKER.encode())
    assert status == 413 and b"larger than 1048576 bytes" in body
    assert MARKER not in caplog.text
    assert h.slack.calls == []


async def test_a_chunked_body_past_the_limit_is_413(h: Harness) -> None:
    big = b"{" + b" " * (2 * MIB) + b"}"

    async def chunks() -> Any:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    headers = {"Content-Type": "application/json", **sign(SIGNING_SECRET, big.decode())}
    answer = await h.http.post(f"{h.server.url}/slack/events", content=chunks(), headers=headers)
    assert answer.status_code == 413


FORM = "application/x-www-form-urlencoded"
MALFORMED = [
    (b"{not json", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b'"just a string"', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"[" * 100_000, "application/json"),
    (b"payload=%7Bnot-json", FORM),
    (b"payload=%5B1%5D", FORM),
    (b"payload=%FF%FE", FORM),
    (b'{"type": "event_callback", "event": "not an object"}', "application/json"),
    (b'{"type": "block_actions", "actions": "x", "user": 5}', "application/json"),
    (b'{"type": "view_submission", "view": {"callback_id": "announce_modal"}}', "application/json"),
    (b"payload=" + b"%7B%22type%22%3A%22view_submission%22%7D", FORM),
]


@pytest.mark.parametrize(("body", "content_type"), MALFORMED)
async def test_malformed_bodies_are_4xx_never_5xx_and_never_logged(
    h: Harness, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{h.server.url}/slack/events"
    unsigned = await h.http.post(url, content=body, headers={"Content-Type": content_type})
    assert unsigned.status_code == 401
    signed_headers = {"Content-Type": content_type, **_sign_bytes(body)}
    signed = await h.http.post(url, content=body, headers=signed_headers)
    assert 400 <= signed.status_code < 500, signed.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    "timestamp", ["abc", "", "-5", "1e9", "99999999999999999999", "12.5", str(int(time.time()) - 301)]
)
async def test_bad_timestamps_are_401(h: Harness, caplog: pytest.LogCaptureFixture, timestamp: str) -> None:
    caplog.set_level(logging.DEBUG)
    body = f"command=%2Fannounce&text=help&user_id={MARKER}"
    headers = {"Content-Type": FORM, **sign(SIGNING_SECRET, body)}
    headers["X-Slack-Request-Timestamp"] = timestamp
    answer = await h.http.post(f"{h.server.url}/slack/events", content=body.encode(), headers=headers)
    assert answer.status_code == 401
    assert MARKER not in caplog.text and "Traceback" not in caplog.text


async def test_forged_signature_is_never_logged_with_its_body(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = f"command=%2Fannounce&text=help%0AINFO+forged+line+{MARKER}"
    answer = await h.signed.post(body, FORM, secret="not-the-secret")
    assert answer.status_code == 401
    assert MARKER not in caplog.text and "forged line" not in caplog.text
    # A signed one still works.
    assert (await h.signed.post(body.replace("%0A", "+"), FORM)).status_code == 200


def _sign_bytes(body: bytes) -> dict[str, str]:
    import hashlib
    import hmac

    stamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def recorded_text(h: Harness) -> str:
    """Every text Herald sent to Slack: Web API calls and response_url posts, as JSON."""
    calls = [call.args for call in h.slack.calls]
    answers = [post.payload for post in h.slack.responses]
    return json.dumps([calls, answers], ensure_ascii=False)


__all__ = ["ANNOUNCER", "CHANNEL"]
