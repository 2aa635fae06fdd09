"""The message bytes on the wire are the same with PIPELINING as one command at a time (aiosmtplib's
``data``): CRLF line ends and lines starting with a dot stuffed, whether or not the message needed it.
The pipelined path skips the substitutions for a message that needs none; these tests hold both paths
to the same bytes. A real server on 127.0.0.1 (tests/scripted_smtp.py keeps each body as received)."""

from __future__ import annotations

import re

import pytest
from scripted_smtp import ScriptedSmtp

from channels.base import Notice, Recipient
from channels.email import EmailChannel, EmailSettings, PreparedEmail

PLAIN = "Servers reboot at 22:00 CET.\nSave your work."
DOTTED = ".profile is rewritten tonight.\n.\n..and so is .bashrc\nA line . with a dot\n."


def channel_for(port: int, pipelining: bool) -> EmailChannel:
    return EmailChannel(
        EmailSettings(
            host="127.0.0.1",
            port=port,
            security="none",
            from_address="Herald <herald@example.com>",
            max_connections=1,
            timeout=5.0,
            local_hostname="herald.test",
            pipelining=pipelining,
        )
    )


async def wire_bodies(prepared: PreparedEmail, pipelining: bool) -> list[bytes]:
    """What the server read between DATA's 354 and the lone dot, for two recipients, Date lines removed."""
    async with ScriptedSmtp() as server:
        channel = channel_for(server.port, pipelining)
        try:
            for i in (1, 2):
                to = Recipient(address=f"user{i}@example.com", name=f"User {i}", message_key=f"n-1.p{i}")
                await channel.send(prepared, to)
        finally:
            await channel.aclose()
    return [re.sub(rb"(?m)^Date: .*\r\n", b"", body) for body in server.bodies]


@pytest.mark.parametrize("body", [PLAIN, DOTTED], ids=["no-dot-lines", "dot-lines"])
async def test_pipelined_message_bytes_equal_one_at_a_time(body: str) -> None:
    prepared = channel_for(25, pipelining=True).prepare(
        Notice("n-1", "maintenance", "Patch Tuesday", body, mandatory=False)
    )
    pipelined = await wire_bodies(prepared, pipelining=True)
    one_at_a_time = await wire_bodies(prepared, pipelining=False)
    assert pipelined == one_at_a_time and len(pipelined) == 2
    for sent in pipelined:
        assert b"\r\n" in sent and re.search(rb"\r(?!\n)|(?<!\r)\n", sent) is None  # CRLF throughout
        if body is DOTTED:
            assert b"\r\n..profile is rewritten tonight." in sent and b"\r\n...and so is .bashrc" in sent
        else:
            assert b"\n." not in sent
