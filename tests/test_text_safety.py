"""Control characters from titles and bodies reach neither a phone nor the operator's terminal.

SMS bodies go through the real SMS channel into the Twilio stand-in; terminal output comes from
``herald announce``, ``status`` and ``report`` run through the CLI.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import Peers
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.standins.twilio import TwilioStandIn
from channels.base import Notice, Recipient
from channels.sms import SmsChannel, SmsSettings, render_sms

SID = "AC" + "e" * 32
TOKEN = "safety-token"
TO = "+4915112345678"
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
NASTY_TITLE = "Disk\x1b[2J\x1b[31m full\x07 on \u202edb1\u202c\x01 now\x7f \x1b]0;pwned\x07\x9b1mok"


def unsafe(text: str, allowed: str = "") -> list[str]:
    """The control, separator and bidi characters in ``text`` (``allowed`` left out)."""
    return [
        c for c in text if c not in allowed and (unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI)
    ]


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStandIn]:
    async with TwilioStandIn(account_sid=SID, auth_token=TOKEN) as standin:
        yield standin


@pytest.mark.parametrize(
    ("title", "body", "expected"),
    [
        (NASTY_TITLE, "", "[CRITICAL] Disk full on db1 now ok"),
        (
            "Patch",
            "Line\x1b[1A\x1b[K one\nline\x00 two\u2028three",
            "[CRITICAL] Patch: Line one\nline two\nthree",
        ),
        ("Bell\x07\x07", "tab\there\x0bvt\x0cff\x85nel", "[CRITICAL] Bell: tab here\nvt\nff\nnel"),
        (
            "\u202egpj.exe",
            "\u2066iso\u2069 \u202aemb\u202c \u202dlro\u202c",
            "[CRITICAL] gpj.exe: iso emb lro",
        ),
    ],
    ids=["ansi-title", "body-escapes", "whitespace-controls", "bidi"],
)
async def test_sms_bodies_carry_no_control_characters(
    twilio: TwilioStandIn, title: str, body: str, expected: str
) -> None:
    settings = SmsSettings(SID, TOKEN, from_number="+15005550006", api_url=twilio.url, timeout=2.0)
    async with SmsChannel(settings) as sms:
        await sms.send(sms.prepare(Notice("n-1", "critical", title, body, mandatory=True)), Recipient(TO))
    [message] = twilio.messages
    assert message.body == expected
    assert unsafe(message.body, allowed="\n") == []


@settings(max_examples=200, deadline=None, database=None)
@given(
    title=st.text(max_size=40),
    body=st.text(max_size=80),
    severity=st.sampled_from(["critical", "info", "x\x1b[0m"]),
)
def test_any_sms_text_is_free_of_control_characters(title: str, body: str, severity: str) -> None:
    text = render_sms(Notice("n-1", severity, title, body, mandatory=False), 3).text
    assert unsafe(text, allowed="\n") == []
    assert "\n\n" not in text.removesuffix("\nReply STOP to opt out.")


def test_status_report_and_announce_show_no_escapes_from_a_title(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url), encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,phone,department,site,timezone\n"
        "p0,Person Zero,p0@example.com,+4915112345000,Eng,Berlin,Europe/Berlin\n",
        encoding="utf-8",
    )
    assert cli("directory", "import", str(people), "--config", str(config)).exit_code == 0
    args = (
        "--audience",
        "dept:eng",
        "--channels",
        "email,sms",
        "--severity",
        "critical",
        "--body",
        "b\x1b[5m",
    )
    announced = cli("announce", "--config", str(config), "--yes", "--wait", "--title", NASTY_TITLE, *args)
    assert announced.exit_code == 0, announced.stderr
    as_json = cli(
        "announce", "--config", str(config), "--yes", "--wait", "--json", "--title", NASTY_TITLE, *args
    )
    notification_id = json.loads(as_json.stdout)["id"]
    assert json.loads(as_json.stdout)["title"] == NASTY_TITLE  # JSON keeps the title, escaped by JSON
    status = cli("status", notification_id, "--config", str(config))
    report = cli("report", "--since", "1h", "--config", str(config))
    for shown in (announced.stdout, status.stdout, report.stdout):
        assert unsafe(shown, allowed="\n") == []
    assert re.search(r"\[CRITICAL\] Disk\\x1b\[2J\\x1b\[31m full\\x07 on \\u202edb1", status.stdout)
    assert "\\x1b]0;pwned\\x07\\x9b1mok" in announced.stdout
    assert "[critical] Disk\\x1b[2J" in report.stdout
    assert [m.body for m in peers.twilio.messages] == ["[CRITICAL] Disk full on db1 now ok: b"] * 2
