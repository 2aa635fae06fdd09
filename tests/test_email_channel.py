"""channels.email.EmailChannel against the SMTP stand-in over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import require_program

from bot.standins.smtp import SmtpStandIn
from channels.base import ChannelDownError, Notice, PermanentError, Recipient, TransientError
from channels.email import EmailChannel, EmailSettings, PreparedEmail

NOTICE = Notice("n-1", "maintenance", "Patch Tuesday", "Servers reboot at 22:00 CET.", mandatory=False)


def settings(port: int, **overrides: object) -> EmailSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "Herald <herald@example.com>",
        "max_connections": 2,
        "timeout": 5.0,
        "local_hostname": "herald.test",
    }
    values.update(overrides)
    return EmailSettings(**values)  # type: ignore[arg-type]


def person(i: int | str) -> Recipient:
    return Recipient(
        address=f"user{i}@example.com",
        name=f"User {i}",
        person_id=f"p{i}",
        unsubscribe_url=f"https://herald.example.com/u/t{i}",
        message_key=f"n-1.p{i}.email",
    )


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
async def smtp(request: pytest.FixtureRequest) -> AsyncIterator[SmtpStandIn]:
    """The stand-in, without and with PIPELINING advertised: every outcome must be the same."""
    async with SmtpStandIn(pipelining=request.param) as server:
        yield server


async def open_channel(smtp: SmtpStandIn, **overrides: object) -> tuple[EmailChannel, PreparedEmail]:
    channel = EmailChannel(settings(smtp.port, **overrides))
    return channel, channel.prepare(NOTICE)


async def test_a_message_arrives_with_its_receipt(smtp: SmtpStandIn) -> None:
    channel, prepared = await open_channel(smtp)
    try:
        receipt = await channel.send(prepared, person(1))
    finally:
        await channel.aclose()
    [captured] = smtp.messages
    assert captured.mail_from == "herald@example.com" and captured.rcpt_tos == ["user1@example.com"]
    assert receipt.provider_id == captured.message["Message-ID"] == "<n-1.p1.email@example.com>"
    assert receipt.detail.startswith("250 2.0.0 Ok: queued as ")
    assert captured.message["Subject"] == "[MAINTENANCE] Patch Tuesday"
    assert captured.message["To"] == "User 1 <user1@example.com>"
    assert captured.message["List-Unsubscribe"] == "<https://herald.example.com/u/t1>"


async def test_connections_are_opened_lazily_and_reused(smtp: SmtpStandIn) -> None:
    channel, prepared = await open_channel(smtp, max_connections=3)
    try:
        assert smtp.connections == 0
        await asyncio.gather(*(channel.send(prepared, person(i)) for i in range(60)))
        for i in range(60, 70):
            await channel.send(prepared, person(i))
    finally:
        await channel.aclose()
    assert len(smtp.messages) == 70
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(f"user{i}@example.com" for i in range(70))
    assert 1 <= smtp.connections <= 3 and channel.pool.opened == smtp.connections


async def test_unknown_user_at_rcpt_is_permanent_and_suppresses(smtp: SmtpStandIn) -> None:
    smtp.fail(
        "rcpt",
        "550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown",
        address="gone@example.com",
    )
    channel, prepared = await open_channel(smtp, max_connections=1)
    try:
        with pytest.raises(PermanentError) as caught:
            await channel.send(prepared, Recipient("gone@example.com", message_key="k"))
        await channel.send(prepared, person(1))  # the same connection carries on after RSET
    finally:
        await channel.aclose()
    assert caught.value.reason == "rejected_recipient" and caught.value.suppress
    assert "5.1.1" in caught.value.detail
    assert smtp.connections == 1 and len(smtp.messages) == 1


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_451_is_transient(smtp: SmtpStandIn, stage: str) -> None:
    smtp.fail(stage, "451 4.3.0 Try again later", times=1)  # type: ignore[arg-type]
    channel, prepared = await open_channel(smtp, max_connections=1)
    try:
        with pytest.raises(TransientError) as caught:
            await channel.send(prepared, person(1))
        await channel.send(prepared, person(1))
    finally:
        await channel.aclose()
    assert caught.value.reason == "server_error" and "451" in caught.value.detail
    assert smtp.connections == 1 and len(smtp.messages) == 1


async def test_content_rejected_after_data_is_permanent_without_suppression(smtp: SmtpStandIn) -> None:
    smtp.fail("data", "554 5.6.0 Message content rejected")
    channel, prepared = await open_channel(smtp)
    try:
        with pytest.raises(PermanentError) as caught:
            await channel.send(prepared, person(1))
    finally:
        await channel.aclose()
    assert caught.value.reason == "rejected_message" and not caught.value.suppress


@pytest.mark.parametrize("stage", ["mail", "data"])
async def test_421_drops_the_connection_and_the_next_send_reconnects(smtp: SmtpStandIn, stage: str) -> None:
    channel, prepared = await open_channel(smtp, max_connections=1)
    try:
        await channel.send(prepared, person(1))
        smtp.fail(stage, "421 4.3.2 Service shutting down", times=1)  # type: ignore[arg-type]
        with pytest.raises(TransientError) as caught:
            await channel.send(prepared, person(2))
        await channel.send(prepared, person(3))
    finally:
        await channel.aclose()
    assert caught.value.reason == "busy"
    assert smtp.connections == 2 and channel.pool.opened == 2
    assert [m.rcpt_tos[0] for m in smtp.messages] == ["user1@example.com", "user3@example.com"]


async def test_a_dropped_connection_is_transient_and_then_recovers(smtp: SmtpStandIn) -> None:
    channel, prepared = await open_channel(smtp, max_connections=1)
    smtp.drop_after(2)
    try:
        await channel.send(prepared, person(1))
        await channel.send(prepared, person(2))
        with pytest.raises(TransientError) as caught:
            await channel.send(prepared, person(3))
        await channel.send(prepared, person(3))
    finally:
        await channel.aclose()
    assert caught.value.reason == "network"
    assert smtp.connections == 2 and len(smtp.messages) == 3


async def test_a_connection_closed_while_idle_is_replaced_without_failing(smtp: SmtpStandIn) -> None:
    now = [1000.0]
    channel = EmailChannel(
        settings(smtp.port, max_connections=1, probe_idle_after=10.0), clock=lambda: now[0]
    )
    prepared = channel.prepare(NOTICE)
    try:
        await channel.send(prepared, person(1))
        await smtp.disconnect_all()  # the server times the idle session out
        now[0] += 60
        await channel.send(prepared, person(2))
    finally:
        await channel.aclose()
    assert len(smtp.messages) == 2 and smtp.connections == 2


async def test_auth_plain_with_good_and_bad_credentials() -> None:
    async with SmtpStandIn(username="herald", password="s3cret") as smtp:
        good, prepared = await open_channel(smtp, username="herald", password="s3cret")
        bad, _ = await open_channel(smtp, username="herald", password="wrong")
        anonymous, _ = await open_channel(smtp)
        try:
            await good.send(prepared, person(1))
            with pytest.raises(ChannelDownError) as wrong_password:
                await bad.send(prepared, person(2))
            with pytest.raises(ChannelDownError) as no_login:
                await anonymous.send(prepared, person(3))
        finally:
            for channel in (good, bad, anonymous):
                await channel.aclose()
        assert [m.authenticated_as for m in smtp.messages] == ["herald"]
    assert wrong_password.value.reason == "auth" and "535" in wrong_password.value.detail
    assert no_login.value.reason == "auth" and "530" in no_login.value.detail


async def test_connection_refused_is_the_channel_down() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = EmailChannel(settings(port))
    try:
        with pytest.raises(ChannelDownError) as caught:
            await channel.send(channel.prepare(NOTICE), person(1))
    finally:
        await channel.aclose()
    assert caught.value.reason == "network"


async def test_a_silent_server_is_a_transient_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    channel = EmailChannel(settings(server.sockets[0].getsockname()[1], timeout=0.2))
    try:
        with pytest.raises(TransientError) as caught:
            await channel.send(channel.prepare(NOTICE), person(1))
    finally:
        await channel.aclose()
        for writer in accepted:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
    assert caught.value.reason == "timeout"


async def test_a_reply_slower_than_the_timeout_is_transient_and_the_connection_replaced(
    smtp: SmtpStandIn,
) -> None:
    channel, prepared = await open_channel(smtp, max_connections=1, timeout=0.2)
    smtp.stall("data", 5.0)
    try:
        with pytest.raises(TransientError) as caught:
            await channel.send(prepared, person(1))
        await channel.send(prepared, person(2))
    finally:
        await channel.aclose()
    assert caught.value.reason == "timeout"
    assert smtp.connections == 2 and [m.rcpt_tos for m in smtp.messages] == [["user2@example.com"]]


async def test_a_send_cancelled_mid_transaction_closes_its_connection(smtp: SmtpStandIn) -> None:
    channel, prepared = await open_channel(smtp, max_connections=1)
    stall = smtp.stall("data", 5.0)
    try:
        sending = asyncio.create_task(channel.send(prepared, person(1)))
        while not stall.fired:
            await asyncio.sleep(0.01)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        await channel.send(prepared, person(2))
    finally:
        await channel.aclose()
    assert smtp.connections == 2 and [m.rcpt_tos for m in smtp.messages] == [["user2@example.com"]]


async def test_an_unusable_address_never_reaches_the_server(smtp: SmtpStandIn) -> None:
    channel, prepared = await open_channel(smtp)
    try:
        with pytest.raises(PermanentError) as caught:
            await channel.send(prepared, Recipient("a@example.com>\r\nRCPT TO:<evil@example.com"))
    finally:
        await channel.aclose()
    assert caught.value.reason == "invalid_address" and caught.value.suppress
    assert smtp.connections == 0


async def test_aclose_says_quit_and_later_sends_are_refused(smtp: SmtpStandIn) -> None:
    channel, prepared = await open_channel(smtp)
    await channel.send(prepared, person(1))
    await channel.aclose()
    with pytest.raises(TransientError):
        await channel.send(prepared, person(2))


async def test_send_refuses_what_prepare_did_not_make(smtp: SmtpStandIn) -> None:
    channel, _ = await open_channel(smtp)
    try:
        with pytest.raises(TypeError):
            await channel.send(object(), person(1))
    finally:
        await channel.aclose()


# TLS, with a certificate made for this test run


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    openssl = require_program("openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    yield cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.mark.parametrize("pipelining", [False, True])
async def test_starttls_with_auth(certificate: tuple[Path, Path], pipelining: bool) -> None:
    async with SmtpStandIn(
        tls_context=server_context(certificate),
        require_starttls=True,
        username="herald",
        password="pw",
        pipelining=pipelining,
    ) as smtp:
        channel, prepared = await open_channel(
            smtp, security="starttls", cert_bundle=str(certificate[0]), username="herald", password="pw"
        )
        try:
            await channel.send(prepared, person(1))
            await channel.send(prepared, person(2))
        finally:
            await channel.aclose()
    assert [(m.tls, m.authenticated_as) for m in smtp.messages] == [(True, "herald"), (True, "herald")]
    assert smtp.connections == 1


@pytest.mark.parametrize("pipelining", [False, True])
async def test_implicit_tls(certificate: tuple[Path, Path], pipelining: bool) -> None:
    async with SmtpStandIn(
        tls_context=server_context(certificate), implicit_tls=True, pipelining=pipelining
    ) as smtp:
        channel, prepared = await open_channel(smtp, security="tls", cert_bundle=str(certificate[0]))
        try:
            await channel.send(prepared, person(1))
        finally:
            await channel.aclose()
    assert [m.tls for m in smtp.messages] == [True]


async def test_an_untrusted_certificate_is_the_channel_down(certificate: tuple[Path, Path]) -> None:
    async with SmtpStandIn(tls_context=server_context(certificate), require_starttls=True) as smtp:
        channel, prepared = await open_channel(smtp, security="starttls")  # no cert_bundle
        try:
            with pytest.raises(ChannelDownError) as caught:
                await channel.send(prepared, person(1))
        finally:
            await channel.aclose()
        relaxed, _ = await open_channel(smtp, security="starttls", validate_certs=False)
        try:
            await relaxed.send(prepared, person(2))
        finally:
            await relaxed.aclose()
    assert caught.value.reason == "tls" and "certificate" in caught.value.detail
    assert [m.rcpt_tos for m in smtp.messages] == [["user2@example.com"]]


async def test_starttls_required_but_not_offered_is_the_channel_down(smtp: SmtpStandIn) -> None:
    channel, prepared = await open_channel(smtp, security="starttls")
    try:
        with pytest.raises(ChannelDownError) as caught:
            await channel.send(prepared, person(1))
    finally:
        await channel.aclose()
    assert caught.value.reason == "config" and smtp.messages == []
