"""PIPELINING (RFC 2920) in the email channel: MAIL, RCPT and DATA in one write when the server offers
it, with the outcomes of the one-command-at-a-time path (tests/test_email_channel.py runs all its
cases on both paths). Real servers on 127.0.0.1: the aiosmtpd stand-in, and tests/scripted_smtp.py
where a reply aiosmtpd never gives is needed (354 to DATA after a refused recipient)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Peers
from scripted_smtp import RecordingProxy, Replies, ScriptedSmtp
from test_announce_cli import announce, setup
from test_email_channel import NOTICE, settings

from bot.standins.smtp import SmtpStandIn
from channels.base import PermanentError, Recipient, TransientError
from channels.email import EmailChannel


def channel_for(port: int, **overrides: object) -> EmailChannel:
    """One connection, so every message of a test takes the same (recorded) session."""
    return EmailChannel(settings(port, **{"max_connections": 1, **overrides}))


def person(i: int) -> Recipient:
    return Recipient(address=f"user{i}@example.com", name=f"User {i}", message_key=f"n-1.p{i}.email")


async def send_all(channel: EmailChannel, *recipients: Recipient) -> list[BaseException | str]:
    """Each recipient in turn over the channel: the receipt's detail, or the error raised."""
    prepared = channel.prepare(NOTICE)
    outcomes: list[BaseException | str] = []
    try:
        for recipient in recipients:
            try:
                outcomes.append((await channel.send(prepared, recipient)).detail)
            except (PermanentError, TransientError) as exc:
                outcomes.append(exc)
    finally:
        await channel.aclose()
    return outcomes


def envelope_writes(chunks: list[bytes]) -> list[int]:
    """For each chunk the server read that holds an envelope command: how many it holds."""
    counts = [
        sum(chunk.count(verb) for verb in (b"MAIL FROM:", b"RCPT TO:", b"DATA\r\n")) for chunk in chunks
    ]
    return [count for count in counts if count]


async def test_the_envelope_is_written_at_once_and_the_mail_arrives_intact() -> None:
    async with ScriptedSmtp(hold=True) as server:
        outcomes = await send_all(channel_for(server.port), person(1), person(2), person(3))
    assert outcomes == ["250 2.0.0 Ok: queued"] * 3
    assert server.held == [3, 3, 3] and server.connections == 1  # no reply before all three had arrived
    envelope = [command for command in server.commands if command[:4] in ("MAIL", "RCPT", "DATA")]
    assert [command[:4] for command in envelope] == ["MAIL", "RCPT", "DATA"] * 3
    size = len(server.bodies[0])  # no line starts with a dot, so nothing was stuffed
    assert envelope[:3] == [
        f"MAIL FROM:<herald@example.com> SIZE={size}",
        "RCPT TO:<user1@example.com>",
        "DATA",
    ]
    for i, body in enumerate(server.bodies, 1):
        assert b"Subject: [MAINTENANCE] Patch Tuesday\r\n" in body
        assert b"To: User %d <user%d@example.com>\r\n" % (i, i) in body


@pytest.mark.parametrize(
    ("advertise", "configured"), [(False, True), (True, False)], ids=["not-offered", "off"]
)
async def test_one_command_at_a_time_when_not_offered_or_turned_off(
    advertise: bool, configured: bool
) -> None:
    async with ScriptedSmtp(advertise=advertise) as server, RecordingProxy(server.port) as proxy:
        outcomes = await send_all(channel_for(proxy.port, pipelining=configured), person(1), person(2))
    assert outcomes == ["250 2.0.0 Ok: queued"] * 2
    assert envelope_writes(proxy.chunks) == [1] * 6 and server.held == [1, 1]


async def test_recipient_refused_although_data_got_354_ends_the_empty_message_and_resets() -> None:
    script = [
        Replies(rcpt="550 5.1.1 <user1@example.com>: User unknown", final="554 5.5.1 No valid recipients")
    ]
    async with ScriptedSmtp(hold=True, script=script) as server:
        refused, accepted = await send_all(channel_for(server.port), person(1), person(2))
    assert isinstance(refused, PermanentError) and refused.reason == "rejected_recipient" and refused.suppress
    assert "5.1.1" in refused.detail and accepted == "250 2.0.0 Ok: queued"
    assert server.bodies[0] == b"" and b"To: User 2" in server.bodies[1]  # "." alone, then the next message
    assert server.commands[4] == "RSET" and server.connections == 1


@pytest.mark.parametrize(
    "data_reply", ["503 5.5.1 Error: need RCPT command", "554 5.5.1 No valid recipients"]
)
async def test_recipient_refused_is_the_outcome_whatever_data_answers(data_reply: str) -> None:
    script = [Replies(rcpt="550 5.1.1 <user1@example.com>: User unknown", data=data_reply)]
    async with ScriptedSmtp(hold=True, script=script) as server:
        refused, accepted = await send_all(channel_for(server.port), person(1), person(2))
    assert isinstance(refused, PermanentError) and refused.reason == "rejected_recipient" and refused.suppress
    assert accepted == "250 2.0.0 Ok: queued" and server.commands[4] == "RSET" and server.connections == 1


async def test_data_refused_before_the_message_is_transient_and_the_session_goes_on() -> None:
    async with ScriptedSmtp(hold=True, script=[Replies(data="451 4.3.0 Try again later")]) as server:
        deferred, accepted = await send_all(channel_for(server.port), person(1), person(1))
    assert (
        isinstance(deferred, TransientError)
        and deferred.reason == "server_error"
        and "451" in deferred.detail
    )
    assert accepted == "250 2.0.0 Ok: queued" and server.connections == 1 and len(server.bodies) == 1


async def test_sender_refused_with_aiosmtpd_answering_the_rest_503() -> None:
    async with SmtpStandIn(pipelining=True) as smtp:
        smtp.fail("mail", "550 5.7.1 Sender rejected", times=1)
        refused, accepted = await send_all(channel_for(smtp.port), person(1), person(2))
    assert isinstance(refused, PermanentError) and refused.reason == "rejected_message"
    assert not refused.suppress and "5.7.1" in refused.detail
    assert str(accepted).startswith("250 ") and smtp.connections == 1
    assert [m.rcpt_tos for m in smtp.messages] == [["user2@example.com"]]


async def test_recipient_refused_with_aiosmtpd_answering_data_503() -> None:
    async with SmtpStandIn(pipelining=True) as smtp:
        smtp.fail("rcpt", "550 5.1.1 User unknown", address="user1@example.com")
        refused, accepted = await send_all(channel_for(smtp.port), person(1), person(2))
    assert isinstance(refused, PermanentError) and refused.reason == "rejected_recipient" and refused.suppress
    assert str(accepted).startswith("250 ") and smtp.connections == 1


@pytest.mark.parametrize("stage", ["mail", "rcpt"])
async def test_421_mid_pipeline_is_busy_and_drops_the_connection(stage: str) -> None:
    async with SmtpStandIn(pipelining=True) as smtp:
        smtp.fail(stage, "421 4.3.2 Service shutting down", times=1)  # type: ignore[arg-type]
        busy, accepted = await send_all(channel_for(smtp.port), person(1), person(2))
    assert isinstance(busy, TransientError) and busy.reason == "busy" and "421" in busy.detail
    assert str(accepted).startswith("250 ") and smtp.connections == 2
    assert [m.rcpt_tos for m in smtp.messages] == [["user2@example.com"]]


@pytest.mark.parametrize(
    "replies", [Replies(rcpt=None), Replies(data=None), Replies(final=None)], ids=["rcpt", "data", "message"]
)
async def test_connection_lost_mid_pipeline_is_network_and_reconnects(replies: Replies) -> None:
    async with ScriptedSmtp(hold=True, script=[replies]) as server:
        lost, accepted = await send_all(channel_for(server.port), person(1), person(2))
    assert isinstance(lost, TransientError) and lost.reason == "network"
    assert accepted == "250 2.0.0 Ok: queued" and server.connections == 2


async def test_421_then_hang_up_at_data_is_busy() -> None:
    async with ScriptedSmtp(hold=True, script=[Replies(data="421 4.4.2 Timeout, closing")]) as server:
        busy, accepted = await send_all(channel_for(server.port), person(1), person(2))
    assert isinstance(busy, TransientError) and busy.reason == "busy"
    assert accepted == "250 2.0.0 Ok: queued" and server.connections == 2


# End to end: herald announce --wait into aiosmtpd advertising PIPELINING, through a recording proxy


@pytest.fixture
def pipelining_peers() -> Iterator[tuple[Peers, RecordingProxy]]:
    running = Peers(smtp_pipelining=True)
    proxy = RecordingProxy(running.smtp.port)
    running.call(proxy.__aenter__())
    try:
        yield running, proxy
    finally:
        running.call(proxy.__aexit__())
        running.close()


def test_announce_wait_pipelines_every_message(
    cli, pipelining_peers: tuple[Peers, RecordingProxy], db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    peers, proxy = pipelining_peers
    config = setup(cli, peers, db_url, tmp_path, people=30, extra="")
    Path(config).write_text(
        Path(config).read_text().replace(f"port = {peers.smtp.port}", f"port = {proxy.port}"),
        encoding="utf-8",
    )
    args = ["--audience", "everyone", "--channels", "email", "--severity", "maintenance"]
    result = announce(cli, config, *args, "--title", "Patch Tuesday", "--body", "Servers reboot at 22:00.")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "done" and report["channels"]["email"]["sent"] == 30
    assert sorted(m.rcpt_tos[0] for m in peers.smtp.messages) == sorted(
        f"p{i}@example.com" for i in range(30)
    )
    for captured in peers.smtp.messages:
        assert captured.message["Subject"] == "[MAINTENANCE] Patch Tuesday"
        assert captured.message["To"].addresses[0].addr_spec == captured.rcpt_tos[0]
        assert "Servers reboot at 22:00." in captured.message.get_body(("plain",)).get_content()
    assert envelope_writes(proxy.chunks).count(3) == 30  # MAIL, RCPT and DATA arrived together, each time
