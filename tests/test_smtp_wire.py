"""The message bytes on the wire are the same with PIPELINING as one command at a time (aiosmtplib's
``data``): CRLF line ends and lines starting with a dot stuffed, whether or not the message needed it.
The pipelined path skips the substitutions for a message that needs none, and the check for one that
the renderer already knows needs none (``OutgoingEmail.clean``); these tests hold both paths to the
same bytes, and ``clean`` to the truth, whatever templates, names, links and text make the message. A
real server on 127.0.0.1 (tests/scripted_smtp.py keeps each body as received)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scripted_smtp import ScriptedSmtp

from channels.base import Notice, Recipient
from channels.email import EmailChannel, EmailSettings, PreparedEmail
from channels.email_render import personalise, prepare_email
from channels.smtp_pipeline import wire_clean
from channels.templating import Templates

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


async def wire_bodies(prepared: PreparedEmail, pipelining: bool, name: str = "User") -> list[bytes]:
    """What the server read between DATA's 354 and the lone dot, for two recipients, Date lines removed."""
    async with ScriptedSmtp() as server:
        channel = channel_for(server.port, pipelining)
        try:
            for i in (1, 2):
                to = Recipient(address=f"user{i}@example.com", name=f"{name} {i}", message_key=f"n-1.p{i}")
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


async def test_a_name_starting_a_line_with_a_dot_is_stuffed_on_both_paths(tmp_path: Path) -> None:
    """The prepared text is clean, the value spliced in is not: the message is stuffed all the same."""
    (tmp_path / "default.email.txt.j2").write_text("Dear\n{{ name }}\n{{ body }}\n", encoding="utf-8")
    notice = Notice("n-1", "maintenance", "Patch Tuesday", PLAIN, mandatory=True)
    prepared = prepare_email(notice, from_address="herald@example.com", templates=Templates(tmp_path))
    assert prepared.wire_clean
    dotted = Recipient(address="a@example.com", name=".Bob")
    assert not personalise(prepared, dotted, date=prepared.date).clean
    pipelined = await wire_bodies(prepared, pipelining=True, name=".Bob")
    assert pipelined == await wire_bodies(prepared, pipelining=False, name=".Bob")
    assert all(b"\r\n..Bob 1=\r\n" in sent or b"\r\n..Bob 2=\r\n" in sent for sent in pipelined)


def test_ordinary_messages_need_no_check_before_they_are_sent() -> None:
    """The default templates, a plain name and a signed link: the renderer vouches for the message."""
    notice = Notice("n-1", "maintenance", "Patch Tuesday", PLAIN + "\n\n" + "x" * 3000, mandatory=False)
    prepared = prepare_email(notice, from_address="Herald <herald@example.com>")
    to = Recipient("a@example.com", "Anna Lee", unsubscribe_url="https://herald.example.com/u/" + "a1" * 60)
    assert prepared.wire_clean and personalise(prepared, to, date=prepared.date).clean


# Template text made of what can break the wire form: dots, lone CR and LF, the slots at line starts.
SLOTS = ["{{ name }}", "{{ unsubscribe_url }}", "{{ confirm_url }}", "{{ body }}"]
TEMPLATE_BITS = st.sampled_from([*SLOTS, ".", "..", "\n", "\r", "\r\n", " ", "=", "text", "\n.", ". "])
VALUE_TEXT = st.text(st.sampled_from([*".\r\n =aZ\u00e9/", "\u2028", "\x00"]), max_size=90)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.lists(TEMPLATE_BITS, max_size=12).map("".join),
    html=st.lists(TEMPLATE_BITS, max_size=6).map("".join),
    body=VALUE_TEXT,
    name=VALUE_TEXT,
    link=VALUE_TEXT,
    confirm=st.booleans(),
    mandatory=st.booleans(),
)
def test_clean_is_said_only_of_messages_that_need_no_stuffing(
    text: str, html: str, body: str, name: str, link: str, confirm: bool, mandatory: bool
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "default.email.txt.j2").write_text(text, encoding="utf-8", newline="")
        (Path(directory) / "default.email.html.j2").write_text(html, encoding="utf-8", newline="")
        notice = Notice("n-1", "maintenance", "Title", body, mandatory=mandatory, confirm=confirm)
        prepared = prepare_email(notice, from_address="herald@example.com", templates=Templates(directory))
    url = "https://herald.example.com/u/" + link.replace("\n", ".")  # long links break where a dot is
    to = Recipient("a@example.com", name, unsubscribe_url=url, confirm_url=url.replace("/u/", "/c/"))
    outgoing = personalise(prepared, to, date=prepared.date)
    if outgoing.clean:
        assert wire_clean(outgoing.data) and outgoing.data.endswith(b"\r\n")
