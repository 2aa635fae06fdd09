"""A person's language picks the short fixed texts around a message too (``channels.phrases``), end to
end on both databases: ``herald announce --confirm`` while ``HeraldServer`` delivers to the Slack,
SMTP and Twilio stand-ins gives a German reader the DM's header, Confirm button and preferences line,
the SMS hints, the email subject, the ``/c/{token}`` page, the DM's "Confirmed at" and the answer to
an SMS ``OK`` in German, and everyone else the English ones, byte for byte as before; the
``--remind`` reminder before a maintenance window reaches each person in their language.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from conftest import Peers, dispatch_until
from slack_signing import (
    BOT_TOKEN,
    SIGNING_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
    SignedSlack,
    block_action,
    herald_toml,
    seed_directory,
    sms_from,
)
from test_confirmations import Setup, eventually, run_cli, text_part
from test_recipients_web import rows

from bot.alerts import escalation
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings
from bot.recipients.web import recipient_routes
from bot.server import HeraldServer
from bot.slack.dm_blocks import CONFIRM_ACTION
from bot.standins.slack import PostedMessage, SlackStandIn
from bot.standins.smtp import SmtpStandIn
from bot.standins.twilio import TwilioStandIn

PEOPLE = [
    {"id": "anna", "name": "Anna", "email": "anna@example.com", "phone": "+4915110000011",
     "slack_user_id": "U0ANNA", "site": "Berlin", "language": "de"},
    {"id": "ben", "name": "Ben", "email": "ben@example.com", "phone": "+4915110000012",
     "slack_user_id": "U0BEN", "site": "Berlin"},
]  # fmt: skip
USERS = {user: {"id": user, "name": user.lower()} for user in ("U0ANNA", "U0BEN")}


@asynccontextmanager
async def running(db_url: str, tmp_path: Path) -> AsyncIterator[Setup]:
    seed_directory(db_url, PEOPLE)
    async with (
        SlackStandIn(token=BOT_TOKEN, users=USERS) as slack,
        SmtpStandIn() as smtp,
        TwilioStandIn(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio,
    ):
        config = tmp_path / "herald.toml"
        extra = '[dispatcher]\npoll_interval = "0.05s"\n[slack_dm]\nrate_per_second = 0\n'
        secret = f'signing_secret = "{SIGNING_SECRET}"\n'
        config.write_text(
            herald_toml(db_url, slack.api_url, smtp.port, twilio.url, secret, extra=extra), encoding="utf-8"
        )
        herald = Herald.build(load_settings(config))
        server = HeraldServer(herald.settings, herald=herald, routes=recipient_routes(herald), tick_every=0.5)
        async with server, httpx.AsyncClient(timeout=15) as http:
            signed = SignedSlack(http, f"{server.url}/slack/events", SIGNING_SECRET)
            yield Setup(server, slack, smtp, twilio, http, signed, db_url, config)


def block(dm: PostedMessage, block_id: str) -> dict[str, Any]:
    [found] = [b for b in dm.blocks if b.get("block_id") == block_id]
    return found


def context_text(dm: PostedMessage, block_id: str) -> str:
    return str(block(dm, block_id)["elements"][0]["text"])


async def click_confirm(s: Setup, dm: PostedMessage, user: str) -> None:
    value = block(dm, "actions")["elements"][0]["value"]
    url = s.slack.response_url(f"confirm-{user}")
    payload = block_action(CONFIRM_ACTION, value, user, dm.channel, url, ephemeral=False, message_ts=dm.ts)
    payload["message"] = {"type": "message", "ts": dm.ts, "text": dm.text, "blocks": dm.blocks}
    assert (await s.signed.interaction(payload)).status_code == 200


def check_dms(s: Setup, nid: str) -> tuple[PostedMessage, PostedMessage]:
    [anna], [ben] = s.slack.dms_to("U0ANNA"), s.slack.dms_to("U0BEN")
    assert [b["block_id"] for b in anna.blocks] == ["title", "body", "about", "actions", "preferences"]
    assert anna.blocks[0]["text"]["text"] == "[WARTUNG] Patch &amp; reboot"
    assert anna.text == "[WARTUNG] Patch &amp; reboot: Servers reboot at 22:00."
    assert context_text(anna, "about") == f":wrench: *Wartung* · Herald-Benachrichtigung `{nid}`"
    button = block(anna, "actions")["elements"][0]
    assert (button["text"]["text"], button["action_id"]) == ("Bestätigen", CONFIRM_ACTION)
    assert re.fullmatch(
        r"Diese Art von Meldungen können Sie abbestellen: <http\S+/u/\S+\|Benachrichtigungseinstellungen>",
        context_text(anna, "preferences"),
    )
    # no language: the English texts, exactly as before phrases existed
    assert ben.blocks[0]["text"]["text"] == "[MAINTENANCE] Patch &amp; reboot"
    assert ben.text == "[MAINTENANCE] Patch &amp; reboot: Servers reboot at 22:00."
    assert context_text(ben, "about") == f":wrench: *maintenance* · Herald notification `{nid}`"
    assert block(ben, "actions")["elements"][0]["text"]["text"] == "Confirm"
    assert re.fullmatch(
        r"You can turn off this kind of notice: <http\S+/u/\S+\|Notification preferences>",
        context_text(ben, "preferences"),
    )
    return anna, ben


def check_sms_and_mail(s: Setup) -> dict[str, Any]:
    sms = {m.to: m.body for m in s.twilio.messages}
    assert sms["+4915110000011"] == (
        "[WARTUNG] Patch & reboot: Servers reboot at 22:00.\n"
        "Antworten Sie OK zur Bestätigung.\nAntworten Sie STOP zum Abbestellen."
    )
    assert sms["+4915110000012"] == (
        "[MAINTENANCE] Patch & reboot: Servers reboot at 22:00.\nReply OK to confirm.\nReply STOP to opt out."
    )
    mail = {m.rcpt_tos[0]: m.message for m in s.smtp.messages}
    assert mail["anna@example.com"]["Subject"] == "[MAINTENANCE] Patch & reboot"
    assert mail["ben@example.com"]["Subject"] == "[MAINTENANCE] Patch & reboot"
    return mail


async def confirm_page(s: Setup, message: Any) -> str:
    link = re.search(r"https?://\S+/c/\S+", text_part(message))
    assert link is not None
    return s.server.url + urlsplit(link.group(0)).path


async def test_a_german_reader_gets_every_fixed_text_in_german(cli: Any, db_url: str, tmp_path: Path) -> None:
    async with running(db_url, tmp_path) as s:
        result = await run_cli(
            cli, "announce", "--config", str(s.config), "--yes", "--confirm", "--audience", "site:berlin",
            "--channels", "slack,email,sms", "--severity", "maintenance", "--title", "Patch & reboot",
            "--body", "Servers reboot at 22:00.",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        nid = result.stdout.strip().splitlines()[-1]
        await eventually(
            lambda: (
                len(s.smtp.messages) == len(s.twilio.messages) == 2
                and all(s.slack.dms_to(user) for user in USERS)
            ),
            "deliveries",
            timeout=60,  # a shared, loaded machine
        )
        anna, ben = check_dms(s, nid)
        mail = check_sms_and_mail(s)

        # the /c/{token} page: German for Anna (GET asks, POST confirms), English for Ben
        page = await confirm_page(s, mail["anna@example.com"])
        got = await s.http.get(page)
        assert '<html lang="de">' in got.text and "<h1>Erhalt bestätigen</h1>" in got.text
        assert '<button type="submit">Bestätigen</button>' in got.text
        assert "Herald · Benachrichtigungen Ihres IT-Teams" in got.text
        posted = await s.http.post(page)
        assert re.search(r"Bestätigt am \d{4}-\d\d-\d\d \d\d:\d\d UTC\. Vielen Dank\.", posted.text)
        english = await s.http.get(await confirm_page(s, mail["ben@example.com"]))
        assert '<html lang="en">' in english.text and "<h1>Confirm receipt</h1>" in english.text
        assert "Press the button to confirm that you got this message." in english.text
        assert "Herald · notifications from your IT team" in english.text

        # the DM's button becomes "Confirmed at …" in each reader's language
        await click_confirm(s, anna, "U0ANNA")
        await click_confirm(s, ben, "U0BEN")
        await eventually(lambda: len(s.slack.calls_to("chat.update")) == 2, "chat.update", timeout=60)
        done = {
            call.args["ts"]: json.dumps(call.args["blocks"], ensure_ascii=False)
            for call in s.slack.calls_to("chat.update")
        }
        assert re.search(r"Bestätigt am \d{4}-\d\d-\d\d \d\d:\d\d UTC", done[anna.ts])
        assert "Confirmed at " in done[ben.ts] and "Bestätigt" not in done[ben.ts]

        # the answer to an SMS OK
        anna_ok = await sms_from(s.http, s.server.url, "+4915110000011", "ok")
        assert "Danke, Ihre Bestätigung ist eingegangen." in anna_ok.text
        ben_ok = await sms_from(s.http, s.server.url, "+4915110000012", "OK")
        assert "Thank you, your confirmation is recorded." in ben_ok.text


REMIND_PEOPLE = "id,name,email,language\nde1,Dora,dora@example.com,de\nen1,Erik,erik@example.com,\n"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def german(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d um %H:%M UTC")


async def test_the_reminder_before_a_window_speaks_each_persons_language(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url), encoding="utf-8")
    (tmp_path / "people.csv").write_text(REMIND_PEOPLE, encoding="utf-8")
    imported = cli("directory", "import", str(tmp_path / "people.csv"), "--config", str(config))
    assert imported.exit_code == 0, imported.stderr
    args = ["announce", "--config", str(config), "--yes", "--wait", "--json", "--audience", "everyone"]
    args += [
        "--channels",
        "email",
        "--severity",
        "maintenance",
        "--title",
        "DB patching",
        "--body",
        "Save work.",
    ]
    result = await asyncio.to_thread(cli, *args, "--window", "+2h..+3h", "--remind", "15m")
    assert result.exit_code == 0, result.stderr
    original = json.loads(result.stdout)["id"]
    [(start, end)] = rows(
        db_url, "SELECT starts_at, ends_at FROM maintenance_window WHERE notification_id = :n", n=original
    )
    herald = Herald.build(load_settings(config), clock=ManualClock(start - 15 * 60))
    try:
        escalation.run_due(herald)
        await dispatch_until(herald, lambda: len(peers.smtp.messages) >= 4)
    finally:
        herald.store.dispose()
    reminders = {m.rcpt_tos[0]: m.message for m in peers.smtp.messages[2:]}
    dora, erik = reminders["dora@example.com"], reminders["erik@example.com"]
    assert dora["Subject"] == "Re: [MAINTENANCE] DB patching"
    assert (
        text_part(dora)
        .replace("\r\n", "\n")
        .startswith(
            f"[WARTUNG] DB patching\n\nErinnerung: Diese Wartung beginnt am {german(start)} und soll bis "
            f"{german(end)} beendet sein.\n\nSave work.\n"
        )
    )
    # English: the reminder as it always read (the sentence opens the body; no window line besides)
    assert erik["Subject"] == "Re: [MAINTENANCE] DB patching"
    assert (
        text_part(erik)
        .replace("\r\n", "\n")
        .startswith(
            f"[MAINTENANCE] DB patching\n\nReminder: this maintenance starts at {iso(start)} and should "
            f"end by {iso(end)}.\n\nSave work.\n\n-- \nSent by Herald"
        )
    )
