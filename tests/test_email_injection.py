"""Header and body injection through titles, names and severities, in any encoding.

Raw CR/LF, Unicode line separators and RFC 2047 encoded words (q and b) that decode to them must
never become a header line, a MIME part or a recipient: mail goes through the real email channel
into the SMTP stand-in (and once through ``herald announce --yes --wait``), and what arrived is
parsed with the modern email policy and compared with exactly the headers and parts Herald builds.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import unicodedata
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import Peers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.standins.smtp import SmtpStandIn
from channels.base import Notice, Recipient
from channels.email import EmailChannel, EmailSettings
from channels.email_render import build_message, prepare_email

HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "MIME-Version",
    "Content-Type",
]
SEPARATORS = {
    "CR": "\r",
    "LF": "\n",
    "LS": "\u2028",
    "PS": "\u2029",
    "NEL": "\x85",
    "VT": "\x0b",
    "FF": "\x0c",
}
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
PAYLOAD = "Reply-To: a@evil.test{0}Bcc: b@evil.test{0}Content-Type: text/html{0}{0}<h1>y</h1>"


def q_word(text: str, charset: str = "utf-8") -> str:
    encoded = "".join(
        f"={b:02X}" if not (chr(b).isalnum() or b in b"@.:<>/") else chr(b) for b in text.encode()
    )
    return f"=?{charset}?q?{encoded}?="


def b_word(text: str, charset: str = "utf-8") -> str:
    return f"=?{charset}?b?{base64.b64encode(text.encode()).decode()}?="


BRIEF_EXAMPLE = "x =?utf-8?q?=0D=0AReply-To:_a@evil.test=0D=0AContent-Type:_text/html=0D=0A=0D=0A<h1>y</h1>?="
ENCODED = {
    "brief-q": BRIEF_EXAMPLE,
    "q-upper": "x " + q_word("\r\n" + PAYLOAD.format("\r\n"), "UTF-8").replace("?q?", "?Q?"),
    "q-latin1": "x " + q_word("\r\n" + PAYLOAD.format("\r\n"), "iso-8859-1"),
    "q-glued": "x" + q_word("\r\n" + PAYLOAD.format("\r\n")),
    "b-crlf": "x " + b_word("\r\n" + PAYLOAD.format("\r\n")),
    "b-lf": "x " + b_word("\n" + PAYLOAD.format("\n")),
    "two-words": "x " + q_word("\r\n") + " " + b_word(PAYLOAD.format("\r\n")),
    **{f"q-{name}": "x " + q_word(sep + PAYLOAD.format(sep)) for name, sep in SEPARATORS.items()},
    **{f"b-{name}": "x " + b_word(sep + PAYLOAD.format(sep)) for name, sep in SEPARATORS.items()},
}
RAW = {f"raw-{name}": "x" + sep + PAYLOAD.format(sep) for name, sep in SEPARATORS.items()}


def shown(text: str) -> str:
    """What a reader should see of ``text`` in a header: control characters and line and paragraph
    separators as single spaces, bidi embeddings, overrides and isolates dropped."""
    text = "".join(
        " " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else "" if c in BIDI else c for c in text
    )
    return " ".join(text.split())


def assert_only_herald(message: EmailMessage, address: str, *, unsubscribe: bool = True) -> None:
    expected = HEADERS if unsubscribe else [h for h in HEADERS if not h.startswith("List-")]
    assert message.keys() == expected
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert all(
        not part.is_multipart() and part.keys() == ["Content-Type", "Content-Transfer-Encoding"]
        for part in message.iter_parts()
    )
    assert [a.addr_spec for a in message["To"].addresses] == [address]
    html = message.get_body(("html",))
    assert html is not None and "<h1>y</h1>" not in html.get_content()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpStandIn]:
    async with SmtpStandIn() as server:
        yield server


def email_settings(port: int, **overrides: str) -> EmailSettings:
    return EmailSettings(
        host="127.0.0.1",
        port=port,
        security="none",
        from_address=overrides.get("from_address", "Herald <herald@example.com>"),
        reply_to=overrides.get("reply_to"),
        timeout=5.0,
        local_hostname="herald.test",
    )


async def send_one(smtp: SmtpStandIn, notice: Notice, to: Recipient, **overrides: str) -> EmailMessage:
    channel = EmailChannel(email_settings(smtp.port, **overrides))
    try:
        await channel.send(channel.prepare(notice), to)
    finally:
        await channel.aclose()
    [captured] = smtp.messages
    assert captured.rcpt_tos == [to.address] and captured.mail_from == "herald@example.com"
    return captured.message


def alice(name: str = "Alice") -> Recipient:
    return Recipient(
        "alice@example.com", name=name, unsubscribe_url="https://h.example.com/u/1", message_key="k1"
    )


@pytest.mark.parametrize("title", [*ENCODED.values(), *RAW.values()], ids=[*ENCODED, *RAW])
async def test_a_title_never_becomes_a_header_or_a_part(smtp: SmtpStandIn, title: str) -> None:
    notice = Notice("n-1", "critical", title, "Servers reboot at 22:00 CET.", mandatory=False)
    message = await send_one(smtp, notice, alice())
    assert_only_herald(message, "alice@example.com")
    assert "Reply-To" not in message and "Bcc" not in message
    assert message["Subject"] == "[CRITICAL] " + shown(title)
    text = message.get_body(("plain",))
    assert text is not None and "Servers reboot at 22:00 CET." in text.get_content()


@pytest.mark.parametrize("name", [*ENCODED.values(), *RAW.values()], ids=[*ENCODED, *RAW])
async def test_a_display_name_never_becomes_a_header_or_a_recipient(smtp: SmtpStandIn, name: str) -> None:
    notice = Notice("n-1", "info", "Patch Tuesday", "Body.", mandatory=False)
    message = await send_one(smtp, notice, alice(name))
    assert_only_herald(message, "alice@example.com")
    assert message["Subject"] == "[INFO] Patch Tuesday"
    # Python 3.11 shows the fold between two encoded words of a phrase as a space (RFC 2047 drops it)
    assert message["To"].addresses[0].display_name.replace(" ", "") == shown(name).replace(" ", "")


@pytest.mark.parametrize(
    "attack", [ENCODED["brief-q"], ENCODED["b-crlf"], RAW["raw-LS"]], ids=["q", "b", "LS"]
)
async def test_severity_sender_and_reply_to_names_stay_in_their_headers(
    smtp: SmtpStandIn, attack: str
) -> None:
    notice = Notice("n-1", "info " + attack, "Patch", "Body.", mandatory=True)
    quoted = attack.replace("\\", "\\\\").replace('"', '\\"')
    message = await send_one(
        smtp,
        notice,
        alice(),
        from_address=f'"{quoted}" <herald@example.com>',
        reply_to=f'"{quoted}" <replies@example.com>',
    )
    assert message.keys() == ["From", "To", "Subject", "Date", "Message-ID", "Reply-To", *HEADERS[7:]]
    assert [a.addr_spec for a in message["From"].addresses] == ["herald@example.com"]
    assert [a.addr_spec for a in message["Reply-To"].addresses] == ["replies@example.com"]
    assert message["Subject"].startswith("[INFO X") and message["Subject"].endswith("] Patch")


def test_the_old_stdlib_folding_is_gone_from_the_wire() -> None:
    """The raw bytes carry the attack only inside base64 encoded words, never as text a parser reads."""
    prepared = prepare_email(Notice("n", "info", BRIEF_EXAMPLE, "b"), from_address="h@example.com")
    raw = build_message(prepared, alice())
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"Reply-To" not in head and b"evil" not in head and head.count(b"Content-Type") == 1
    assert all(len(line) <= 78 for line in head.split(b"\r\n"))


# -- the property: whatever the text, the message parses to exactly what Herald builds -------------

FRAGMENTS = st.sampled_from(
    [
        "=?utf-8?q?",
        "=?utf-8?b?",
        "?=",
        "=0D=0A",
        "=0A",
        "=E2=80=A8",
        "DQo=",
        "DQpCY2M6IGJAZXZpbC50ZXN0DQo=",
        "_Bcc:_b@evil.test",
        "Bcc: b@evil.test",
        "Content-Type: text/html",
        "--=_herald_",
        "\r\n",
        "\r\n\r\n",
        ":",
        '"',
        "<",
        ">",
        ",",
        "\\",
        *SEPARATORS.values(),
        "\x00",
        "\x1b[31m",
        "\u202e",
        "\u0085",
        "é",
        "名",
        "😀",
        " ",
    ]
)
TEXT = st.lists(st.one_of(FRAGMENTS, st.text(max_size=6)), max_size=12).map("".join)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=TEXT, body=TEXT, name=TEXT, severity=TEXT, mandatory=st.booleans())
def test_any_text_renders_to_exactly_herald_headers_parts_and_recipient(
    title: str, body: str, name: str, severity: str, mandatory: bool
) -> None:
    notice = Notice("n-1", severity, title, body, mandatory=mandatory)
    raw = build_message(prepare_email(notice, from_address="Herald <h@example.com>"), alice(name))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    names = [line.split(b":", 1)[0].decode() for line in head.split(b"\r\n") if not line[:1].isspace()]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert_only_herald(message, "alice@example.com", unsubscribe=not mandatory)
    assert names == message.keys()
    assert [a.addr_spec for a in message["From"].addresses] == ["h@example.com"]
    subject = message["Subject"]
    assert "\n" not in subject and "\r" not in subject
    assert subject.endswith(shown(title)[:200].rstrip()) or subject.endswith("...")


# -- end to end: herald announce --yes --wait ---------------------------------------------------------


def test_announce_wait_sends_an_injected_title_as_plain_subject_text(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url), encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,phone,department,site,timezone\n"
        f'p0,"{ENCODED["b-crlf"]}",p0@example.com,,Eng,Berlin,Europe/Berlin\n'
        f"p1,Person One,p1@example.com,,Eng,Berlin,Europe/Berlin\n",
        encoding="utf-8",
    )
    assert cli("directory", "import", str(people), "--config", str(config)).exit_code == 0
    result = cli(
        "announce", "--config", str(config), "--yes", "--wait", "--json",
        "--audience", "dept:eng", "--channels", "email", "--severity", "maintenance",
        "--title", BRIEF_EXAMPLE, "--body", "Servers reboot at 22:00 CET.",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["channels"]["email"]["sent"] == 2
    arrived = sorted(peers.smtp.messages, key=lambda m: m.rcpt_tos)
    assert [m.rcpt_tos for m in arrived] == [["p0@example.com"], ["p1@example.com"]]
    for captured in arrived:
        message = captured.message
        assert_only_herald(message, captured.rcpt_tos[0])
        assert "Reply-To" not in message and "Bcc" not in message
        assert message["Subject"] == "[MAINTENANCE] " + BRIEF_EXAMPLE
