"""``[server] read_timeout``: a running serve closes connections whose request does not arrive in time
(half the headers, or the headers and part of the body), while complete requests are answered."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from bot.alerts.web import alert_routes
from bot.app import Herald
from bot.config import load_settings
from bot.server import HeraldServer

# Far below the 30s default: a close within WAIT proves the configured value is the one applied.
READ_TIMEOUT = "1s"
WAIT = 20.0


async def closed_by_server(url: str, head: bytes) -> bytes:
    """Send ``head`` over a raw connection and read until the server closes it; what it answered."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), WAIT)  # read() returns at EOF: the server closed
    finally:
        writer.close()


@pytest.fixture
async def serve(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[server]\nhost = "127.0.0.1"\nport = 0\n'
        f'read_timeout = "{READ_TIMEOUT}"\nkeep_alive = "8s"\n[webhooks.alerts]\ntoken = "t"\n',
        encoding="utf-8",
    )
    server = HeraldServer(load_settings(config), dispatch=False)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_half_sent_headers_are_cut_off(serve: HeraldServer) -> None:
    answer = await closed_by_server(serve.url, b"POST /hooks/alerts HTTP/1.1\r\nHost: herald\r\nContent-Ty")
    assert answer == b""  # closed without a response: nothing was ever complete


async def test_a_body_that_stops_arriving_is_cut_off(
    serve: HeraldServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    head = (
        b"POST /hooks/alerts HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer t\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"summary": "'
    )
    answer = await closed_by_server(serve.url, head)
    assert b" 5" not in answer.split(b"\r\n", 1)[0]  # no 5xx; the handler sees a disconnect
    await asyncio.sleep(0.2)  # let the handler unwind (it logs nothing, so there is nothing to wait on)
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert any("did not arrive within 1s" in r.getMessage() for r in caplog.records)


async def test_a_connection_that_sends_nothing_is_cut_off(serve: HeraldServer) -> None:
    assert await closed_by_server(serve.url, b"") == b""


async def test_complete_requests_are_still_answered(serve: HeraldServer) -> None:
    answer = await closed_by_server(
        serve.url, b"GET /healthz HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")


async def logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Wait (at most WAIT seconds) until a log line contains ``text``."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not any(text in r.getMessage() for r in caplog.records):
        assert asyncio.get_running_loop().time() < deadline, f"no log line with {text!r}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def serve_alerts(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The serve fixture's server with the alert webhooks mounted (their handler reads the body)."""
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[server]\nhost = "127.0.0.1"\nport = 0\n'
        '[webhooks.alerts]\ntoken = "t"\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    herald = Herald.build(settings)
    server = HeraldServer(settings, herald=herald, routes=alert_routes(herald), dispatch=False)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("path", "rest"),
    [
        ("/hooks/alerts", b""),  # the client hangs up mid-body: the handler's read sees a disconnect
        (
            "/healthz",
            b"zz\r\nnot a chunk size\r\n",
        ),  # uvicorn answers 400 itself; the app's 405 has no way out
    ],
)
async def test_a_client_that_leaves_mid_request_leaves_no_traceback(
    serve_alerts: HeraldServer, caplog: pytest.LogCaptureFixture, path: str, rest: bytes
) -> None:
    caplog.set_level(logging.INFO)
    serve = serve_alerts
    host, port = serve.url.removeprefix("http://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    head = f"POST {path} HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer t\r\n".encode()
    writer.write(head + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"sum\r\n' + rest)
    await writer.drain()
    writer.close()
    await logged(caplog, "the client left before the answer")
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    rendered = serve.metrics.render().decode()
    assert 'status="499"' in rendered and 'status="500"' not in rendered


async def test_an_idle_keep_alive_connection_outlives_a_proxys_reuse(serve: HeraldServer) -> None:
    """``[server] keep_alive`` (8 s here) applies: a connection idle for 6 s (past uvicorn's own 5 s
    default, under which a proxy reusing it would get a 502) still carries the next request."""
    host, port = serve.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    request = b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n"
    try:
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(6)
            writer.write(request)
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), WAIT)
            assert status.startswith(b"HTTP/1.1 200 "), status
            length = 0
            while (line := await asyncio.wait_for(reader.readline(), WAIT)) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
    finally:
        writer.close()
