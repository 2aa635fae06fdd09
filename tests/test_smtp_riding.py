"""Riders (RFC 2920): the next transaction's MAIL, RCPT and DATA go out in the same write as the message
before it on a fast pipelining connection, and the connection passes on to it once that message has its
final reply; every message keeps the outcome it has without riding. Real servers on 127.0.0.1 (the
scripted server of tests/scripted_smtp.py, the aiosmtpd stand-in) behind a proxy that records how the
client's writes arrive; an injected clock stands for the end-of-data times the seats depend on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from scripted_smtp import RecordingProxy, Replies, ScriptedSmtp
from test_email_channel import NOTICE, settings
from test_smtp_pipelining import person

from bot.standins.smtp import SmtpStandIn
from channels.base import DeliveryError, PermanentError, TransientError
from channels.email import EmailChannel
from channels.smtp_pipeline import FAST_END_OF_DATA

QUEUED = "250 2.0.0 Ok: queued"
Outcome = BaseException | str


class Clock:
    """Stands still unless a test moves it: every end of data is answered at once, unless the server moves
    it on (``advance``) while it holds the final reply."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> Callable[[], asyncio.Future[None]]:
        async def later() -> None:
            self.now += seconds

        return later  # type: ignore[return-value]


def channel_for(port: int, clock: Clock | None = None, **overrides: object) -> EmailChannel:
    return EmailChannel(settings(port, **{"max_connections": 3, **overrides}), clock=clock or Clock())


async def outcome(channel: EmailChannel, recipient_number: int) -> Outcome:
    try:
        return (await channel.send(channel.prepare(NOTICE), person(recipient_number))).detail
    except DeliveryError as exc:
        return exc


async def warm_then_together(channel: EmailChannel, *together: int, warm: bool = True) -> list[Outcome]:
    """Person 0 alone (the connection's first end-of-data time), then ``together`` all at once."""
    try:
        first = [await outcome(channel, 0)] if warm else []
        return first + list(await asyncio.gather(*(outcome(channel, i) for i in together)))
    finally:
        await channel.aclose()


def rides(chunks: list[bytes]) -> list[bytes]:
    """The recipients whose envelope arrived in the same read as the end of the message before it."""
    return [
        chunk.split(b"RCPT TO:<")[1].split(b">")[0]
        for chunk in chunks
        if b"\r\n.\r\nMAIL FROM:" in chunk and chunk.endswith(b"\r\nDATA\r\n")
    ]


def start(channel: EmailChannel, *numbers: int) -> list[asyncio.Task[Outcome]]:
    return [asyncio.create_task(outcome(channel, i)) for i in numbers]


@contextlib.asynccontextmanager
async def recorded(**scripted: object) -> AsyncIterator[tuple[ScriptedSmtp, RecordingProxy]]:
    """A scripted server (see tests/scripted_smtp.py) behind a recording proxy."""
    async with ScriptedSmtp(**scripted) as server, RecordingProxy(server.port) as proxy:  # type: ignore[arg-type]
        yield server, proxy


@contextlib.asynccontextmanager
async def warmed(port: int) -> AsyncIterator[EmailChannel]:
    """A channel whose connection has sent person 0 alone (its first end-of-data time), closed after."""
    channel = channel_for(port)
    try:
        assert await outcome(channel, 0) == QUEUED
        yield channel
    finally:
        await channel.aclose()


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_the_second_envelope_rides_with_the_first_message_on_one_connection() -> None:
    async with ScriptedSmtp(hold=True) as server, RecordingProxy(server.port) as proxy:
        outcomes = await warm_then_together(channel_for(proxy.port), 1, 2)
    assert outcomes == [QUEUED] * 3 and server.connections == 1
    assert rides(proxy.chunks) == [b"user2@example.com"]
    # EHLO, envelope, message; envelope, message + envelope, message; QUIT
    assert len(proxy.chunks) == 7 and [chunk.count(b"\r\n.\r\n") for chunk in proxy.chunks[4:6]] == [1, 1]
    for i, body in enumerate(server.bodies):
        assert b"To: User %d <user%d@example.com>\r\n" % (i, i) in body and body.endswith(b"\r\n")
    assert "RSET" not in server.commands


async def test_a_rider_hosts_the_next_rider() -> None:
    held = asyncio.Event()
    async with (
        recorded(hold=True, script=[Replies(), Replies(before_final=held.wait)]) as (server, proxy),
        warmed(proxy.port) as channel,
    ):
        first, second = start(channel, 1, 2)
        await until(lambda: len(server.bodies) == 2)  # message 1 read, its final reply held back
        (third,) = start(channel, 3)  # boards the seat of message 2, written already
        await asyncio.sleep(0)
        held.set()
        assert await asyncio.gather(first, second, third) == [QUEUED] * 3
    assert rides(proxy.chunks) == [b"user2@example.com", b"user3@example.com"] and server.connections == 1
    assert [body.count(b"To: User %d" % i) for i, body in enumerate(server.bodies)] == [1, 1, 1, 1]


async def test_aiosmtpd_receives_host_and_rider_intact() -> None:
    async with SmtpStandIn(pipelining=True) as smtp, RecordingProxy(smtp.port) as proxy:
        outcomes = await warm_then_together(channel_for(proxy.port), 1, 2)
    assert all(str(o).startswith("250 ") for o in outcomes) and smtp.connections == 1
    assert rides(proxy.chunks) == [b"user2@example.com"]
    assert [m.rcpt_tos for m in smtp.messages] == [[f"user{i}@example.com"] for i in range(3)]
    for i, captured in enumerate(smtp.messages):
        assert captured.message["Subject"] == "[MAINTENANCE] Patch Tuesday"
        assert captured.message["To"].addresses[0].addr_spec == f"user{i}@example.com"
        assert captured.message.get_body(("plain",)).get_content().endswith("notification n-1.\r\n")
        assert len(captured.data) == len(smtp.messages[0].data)  # nothing lost or run on at either end


@pytest.mark.parametrize(
    ("final", "error", "reason"),
    [
        ("554 5.7.1 Rejected by content filter", PermanentError, "rejected_message"),
        ("451 4.3.0 Try again later", TransientError, "server_error"),
    ],
    ids=["permanent", "transient"],
)
async def test_host_message_refused_hands_over_without_rset(final: str, error: type, reason: str) -> None:
    async with recorded(hold=True, script=[Replies(), Replies(final=final)]) as (server, proxy):
        warm, refused, rider = await warm_then_together(channel_for(proxy.port), 1, 2)
    assert isinstance(refused, error) and refused.reason == reason and final[:3] in refused.detail
    assert warm == rider == QUEUED and server.connections == 1
    assert rides(proxy.chunks) == [b"user2@example.com"] and "RSET" not in server.commands


@pytest.mark.parametrize(
    ("final", "reason"), [("421 4.3.2 Shutting down", "busy"), (None, "network")], ids=["421", "dropped"]
)
async def test_rider_of_a_lost_connection_goes_on_a_new_one(final: str | None, reason: str) -> None:
    async with recorded(hold=True, script=[Replies(), Replies(final=final)]) as (server, proxy):
        warm, lost, rider = await warm_then_together(channel_for(proxy.port), 1, 2)
    assert isinstance(lost, TransientError) and lost.reason == reason
    assert warm == rider == QUEUED and server.connections == 2
    assert rides(proxy.chunks) == [b"user2@example.com"]  # it was aboard when the connection went
    assert b"To: User 2" in server.bodies[-1]


async def test_host_envelope_refused_the_rider_sends_on_its_own() -> None:
    need_mail = "503 5.5.1 Need MAIL"
    refused = Replies(mail="550 5.7.1 Sender rejected", rcpt=need_mail, data=need_mail)
    async with recorded(hold=True, script=[Replies(), refused]) as (server, proxy):
        warm, host, rider = await warm_then_together(channel_for(proxy.port), 1, 2)
    assert isinstance(host, PermanentError) and host.reason == "rejected_message"
    assert warm == rider == QUEUED and server.connections == 2 and rides(proxy.chunks) == []
    assert "RSET" in server.commands and b"To: User 2" in server.bodies[-1]


@pytest.mark.parametrize(
    ("warm", "end_of_data", "pipelining", "rode"),
    [
        (True, FAST_END_OF_DATA / 2, True, True),
        (True, FAST_END_OF_DATA * 2, True, False),
        (False, 0.0, True, False),
        (True, 0.0, False, False),
    ],
    ids=["fast", "slow", "not-yet-measured", "pipelining-off"],
)
async def test_seats_only_on_a_measured_fast_connection(
    warm: bool, end_of_data: float, pipelining: bool, rode: bool
) -> None:
    clock = Clock()
    script = [Replies(before_final=clock.advance(end_of_data))]
    async with ScriptedSmtp(hold=pipelining, script=script) as server, RecordingProxy(server.port) as proxy:
        channel = channel_for(proxy.port, clock, pipelining=pipelining)
        outcomes = await warm_then_together(channel, 1, 2, warm=warm)
    assert outcomes == [QUEUED] * (3 if warm else 2)
    assert rides(proxy.chunks) == ([b"user2@example.com"] if rode else [])
    assert server.connections == (1 if rode else 2)


async def test_rider_cancelled_before_it_is_written_frees_the_seat() -> None:
    held = asyncio.Event()
    async with (
        recorded(hold=True, script=[Replies(), Replies(before_replies=held.wait)]) as (server, proxy),
        warmed(proxy.port) as channel,
    ):
        host, rider = start(channel, 1, 2)
        await until(lambda: server.held == [3, 3])  # the host's envelope is in, unanswered
        rider.cancel()
        (next_rider,) = start(channel, 3)
        await asyncio.sleep(0)
        held.set()
        assert await asyncio.gather(host, next_rider) == [QUEUED] * 2
        with pytest.raises(asyncio.CancelledError):
            await rider
    assert rides(proxy.chunks) == [b"user3@example.com"] and server.connections == 1
    assert b"user2@" not in b"".join(proxy.chunks)


async def test_rider_cancelled_after_it_is_written_closes_the_connection() -> None:
    held = asyncio.Event()
    async with (
        recorded(hold=True, script=[Replies(), Replies(before_final=held.wait)]) as (server, proxy),
        warmed(proxy.port) as channel,
    ):
        host, rider = start(channel, 1, 2)
        await until(lambda: len(server.bodies) == 2)  # the host's message is in, with the envelope
        rider.cancel()
        await asyncio.sleep(0)
        held.set()
        assert await host == QUEUED
        with pytest.raises(asyncio.CancelledError):
            await rider
        assert await outcome(channel, 3) == QUEUED
    assert rides(proxy.chunks) == [b"user2@example.com"] and server.connections == 2
    assert [b"To: User 2" in body for body in server.bodies if body] == [False, False, False]


async def test_host_cancelled_the_rider_sends_on_its_own() -> None:
    held = asyncio.Event()
    async with (
        recorded(hold=True, script=[Replies(), Replies(before_replies=held.wait)]) as (server, proxy),
        warmed(proxy.port) as channel,
    ):
        try:
            host, rider = start(channel, 1, 2)
            await until(lambda: server.held == [3, 3])  # the host's envelope is in, unanswered
            host.cancel()
            assert await rider == QUEUED
            with pytest.raises(asyncio.CancelledError):
                await host
        finally:
            held.set()
    assert rides(proxy.chunks) == [] and server.connections == 2
    assert b"To: User 2" in server.bodies[-1] and len([body for body in server.bodies if body]) == 2
