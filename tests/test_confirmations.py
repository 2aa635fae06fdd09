"""Confirmations (SPEC "Confirmations and the channel ladder"), end to end on both databases:
``herald announce --confirm`` over slack, email and sms while ``HeraldServer`` (as ``herald serve``
wires it) delivers to the stand-ins; then the DM's Confirm button (a signed block_actions request,
the DM updated in place by ``chat.update``), the email's ``/c/{token}`` page (GET never confirms,
POST does, a bad token is a 404), and signed inbound SMS ``OK``/``1``. The first confirmation counts;
``status`` shows confirmed / not confirmed / unreachable.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from slack_signing import (
    ANNOUNCER,
    BOT_TOKEN,
    CHANNEL,
    SIGNING_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
    Harness,
    SignedSlack,
    block_action,
    herald_toml,
    modal_values,
    seed_directory,
    sms_from,
)

from bot.app import Herald
from bot.config import load_settings
from bot.engine.ladder_tick import rung_tick
from bot.recipients.confirmations import make_confirm_token, read_confirm_token
from bot.recipients.sms import Command, read_inbound
from bot.recipients.web import recipient_routes
from bot.server import HeraldServer, Job
from bot.slack.announce_blocks import announce_modal
from bot.slack.commands import AnnounceCommand, parse_announce_command, parse_modal_submission
from bot.slack.dm_blocks import CONFIRM_ACTION
from bot.standins.slack import PostedMessage, SlackStandIn
from bot.standins.smtp import SmtpStandIn
from bot.standins.twilio import TwilioStandIn
from bot.tokens import make_token
from channels.base import Notice, Recipient
from channels.email_render import build_message, prepare_email

PEOPLE = [
    {"id": "alice", "name": "Alice", "email": "alice@example.com", "phone": "+4915110000001",
     "slack_user_id": "U0ALICE", "site": "Berlin"},
    {"id": "bob", "name": "Bob", "email": "bob@example.com", "phone": None, "site": "Berlin"},
    {"id": "carol", "name": "Carol", "email": None, "phone": "+4915110000003", "site": "Berlin"},
    {"id": "dave", "name": "Dave", "email": None, "phone": None, "site": "Berlin"},
]  # fmt: skip


@dataclass
class Setup(Harness):
    config: Path


@asynccontextmanager
async def running(db_url: str, tmp_path: Path, extra_toml: str = "") -> AsyncIterator[Setup]:
    seed_directory(db_url, PEOPLE)
    async with (
        SlackStandIn(token=BOT_TOKEN, users={"U0ALICE": {"id": "U0ALICE", "name": "alice"}}) as slack,
        SmtpStandIn() as smtp,
        TwilioStandIn(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio,
    ):
        config = tmp_path / "herald.toml"
        extra = '[dispatcher]\npoll_interval = "0.05s"\n[slack_dm]\nrate_per_second = 0\n' + extra_toml
        config.write_text(
            herald_toml(
                db_url,
                slack.api_url,
                smtp.port,
                twilio.url,
                f'signing_secret = "{SIGNING_SECRET}"\n',
                extra=extra,
            ),
            encoding="utf-8",
        )
        herald = Herald.build(load_settings(config))
        jobs = [Job("rungs", 0.2, rung_tick(herald))]
        server = HeraldServer(
            herald.settings, herald=herald, routes=recipient_routes(herald), jobs=jobs, tick_every=0.5
        )
        async with server, httpx.AsyncClient(timeout=15) as http:
            signed = SignedSlack(http, f"{server.url}/slack/events", SIGNING_SECRET)
            yield Setup(server, slack, smtp, twilio, http, signed, db_url, config)


async def eventually(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        await asyncio.sleep(0.05)


async def run_cli(cli: Any, *args: str) -> Any:
    return await asyncio.to_thread(cli, *args)


async def status(cli: Any, s: Setup, notification_id: str, as_json: bool = True) -> Any:
    result = await run_cli(
        cli, "status", notification_id, "--config", str(s.config), *(["--json"] if as_json else [])
    )
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout) if as_json else result.stdout


def text_part(message: Any) -> str:
    return str(message.get_body(preferencelist=("plain",)).get_content())


async def sms_reply(s: Setup, phone: str, text: str) -> httpx.Response:
    return await sms_from(s.http, s.server.url, phone, text)


async def click_confirm(s: Setup, dm: PostedMessage, user: str) -> httpx.Response:
    value = dm.blocks[-1]["elements"][0]["value"]
    url = s.slack.response_url(f"confirm-{user}")
    payload = block_action(CONFIRM_ACTION, value, user, dm.channel, url, ephemeral=False, message_ts=dm.ts)
    payload["message"] = {"type": "message", "ts": dm.ts, "text": dm.text, "blocks": dm.blocks}
    return await s.signed.interaction(payload)


async def test_every_channel_carries_its_way_to_confirm(cli: Any, db_url: str, tmp_path: Path) -> None:
    async with running(db_url, tmp_path) as s:
        result = await run_cli(
            cli, "announce", "--config", str(s.config), "--yes", "--confirm", "--audience", "site:berlin",
            "--channels", "slack,email,sms", "--severity", "critical", "--title", "Core switch down",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        nid = result.stdout.strip().splitlines()[-1]
        await eventually(
            lambda: len(s.smtp.messages) == 2 and len(s.twilio.messages) == 2 and s.slack.dms_to("U0ALICE"),
            "deliveries",
        )
        [dm] = s.slack.dms_to("U0ALICE")
        assert dm.blocks[-1]["elements"][0]["action_id"] == CONFIRM_ACTION
        assert all(m.body.endswith("Reply OK to confirm.") for m in s.twilio.messages)
        assert (await status(cli, s, nid))["people"]["confirmed"] == 0

        # Slack: the button confirms and the DM becomes "Confirmed at ..." in place.
        assert (await click_confirm(s, dm, "U0ALICE")).status_code == 200
        await eventually(lambda: bool(s.slack.calls_to("chat.update")), "chat.update")
        [update] = s.slack.calls_to("chat.update")
        assert update.args["ts"] == dm.ts and "Confirmed at" in json.dumps(update.args["blocks"])
        assert CONFIRM_ACTION not in json.dumps(update.args["blocks"])

        # Email: GET shows a button and confirms nothing (scanners prefetch); POST confirms.
        [bob_mail] = [m for m in s.smtp.messages if "bob@example.com" in m.rcpt_tos]
        link = re.search(r"https?://\S+/c/\S+", text_part(bob_mail.message))
        assert link is not None
        path = urlsplit(link.group(0)).path
        page = await s.http.get(s.server.url + path)
        assert page.status_code == 200 and '<form method="post">' in page.text
        assert (await status(cli, s, nid))["people"]["confirmed"] == 1
        posted = await s.http.post(s.server.url + path)
        assert posted.status_code == 200 and "Confirmed at" in posted.text
        assert (await s.http.post(s.server.url + path)).status_code == 200  # a repeat is harmless
        assert (await s.http.get(s.server.url + path[:-3] + "xyz")).status_code == 404

        # SMS: OK from carol confirms; "1" from alice changes nothing (her Slack click counts).
        reply = await sms_reply(s, "+4915110000003", "ok")
        assert reply.status_code == 200 and "confirmation is recorded" in reply.text
        assert (await sms_reply(s, "+4915110000001", "1")).status_code == 200
        assert (await sms_reply(s, "+4915110000009", "OK")).text.endswith("<Response/>")  # a stranger

        final = await status(cli, s, nid)
        assert final["people"]["confirmed"] == 3 and final["people"]["unreachable"] == 1
        text = await status(cli, s, nid, as_json=False)
        assert "confirmations: confirmed 3, not confirmed 0, unreachable 1" in text
        report = await run_cli(cli, "report", "--config", str(s.config))
        assert (
            report.exit_code == 0
            and "confirmations: confirmed 3, not confirmed 0, unreachable 1" in report.stdout
        )
        as_json = await run_cli(cli, "report", "--json", "--config", str(s.config))
        assert json.loads(as_json.stdout)["people"]["confirmed"] == 3


async def test_without_confirm_nothing_asks_and_ok_confirms_nothing(
    cli: Any, db_url: str, tmp_path: Path
) -> None:
    async with running(db_url, tmp_path) as s:
        result = await run_cli(
            cli, "announce", "--config", str(s.config), "--yes", "--audience", "site:berlin",
            "--channels", "email,sms", "--severity", "critical", "--title", "Heads up",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        nid = result.stdout.strip().splitlines()[-1]
        await eventually(lambda: len(s.smtp.messages) == 2 and len(s.twilio.messages) == 2, "deliveries")
        assert not any("confirm" in m.body.lower() for m in s.twilio.messages)
        assert all("/c/" not in text_part(m.message) for m in s.smtp.messages)
        assert (await sms_reply(s, "+4915110000003", "OK")).text.endswith("<Response/>")
        assert (await status(cli, s, nid))["people"]["confirmed"] == 0


def test_confirm_tokens_are_their_own_kind() -> None:
    key, now = b"k" * 32, 1_800_000_000.0
    token = make_confirm_token(key, "nabc", "alice", now)
    assert read_confirm_token(key, token, now) == ("nabc", "alice")
    assert read_confirm_token(key, token, now + 400 * 86400) is None  # expired
    assert read_confirm_token(b"x" * 32, token, now) is None
    assert read_confirm_token(key, make_token(key, "alice", now), now) is None  # a preferences token
    assert [read_inbound(t) for t in ("OK", " ok. ", "1", "YES")] == [
        Command.CONFIRM, Command.CONFIRM, Command.CONFIRM, Command.OPT_IN,
    ]  # fmt: skip


def test_the_typed_form_reads_confirm_before_the_colon() -> None:
    asked = parse_announce_command("critical to site:berlin via slack,email confirm: Core down | now")
    assert isinstance(asked, AnnounceCommand)
    assert (asked.channels, asked.confirm, asked.title) == (("slack", "email"), True, "Core down")
    plain = parse_announce_command("critical to site:berlin via email: Confirm the outage")
    assert isinstance(plain, AnnounceCommand) and not plain.confirm and plain.title == "Confirm the outage"


LADDER_TOML = '[sla.critical]\ndeliver_within = "30s"\nconfirm_within = "10s"\n'


def blocks_text(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


async def test_slack_typed_ladder_sends_sms_only_to_whoever_has_not_confirmed(
    db_url: str, tmp_path: Path
) -> None:
    async with running(db_url, tmp_path, LADDER_TOML) as s:
        text = "critical to site:berlin via slack,email>sms confirm: Core switch down | Berlin offline"
        assert (
            await s.signed.command(text, ANNOUNCER, CHANNEL, s.slack.response_url("cmd"))
        ).status_code == 200
        await s.slack.wait_for(lambda: bool(s.slack.responses_to("cmd")))
        preview = s.slack.responses_to("cmd")[0]
        shown = blocks_text(preview["blocks"])
        assert "1. slack,email: starts at once" in shown and "2. sms: starts after" in shown
        send = next(
            e
            for b in preview["blocks"]
            for e in b.get("elements", [])
            if e.get("action_id") == "announce_send"
        )
        clicked = await s.signed.interaction(
            block_action("announce_send", send["value"], ANNOUNCER, CHANNEL, s.slack.response_url("send"))
        )
        assert clicked.status_code == 200
        await eventually(lambda: bool(s.slack.dms_to("U0ALICE")), "the DM")
        [dm] = s.slack.dms_to("U0ALICE")
        assert (await click_confirm(s, dm, "U0ALICE")).status_code == 200
        assert not s.twilio.messages  # the SMS rung waits for its latest safe time
        await eventually(lambda: len(s.twilio.messages) == 1, "the SMS rung")
        assert [m.to for m in s.twilio.messages] == ["+4915110000003"]  # carol: alice confirmed
        assert sorted(m.rcpt_tos[0] for m in s.smtp.messages) == ["alice@example.com", "bob@example.com"]
        done = "confirmed 1, not confirmed 2, unreachable 1"
        await eventually(
            lambda: any(done in blocks_text(m.blocks) for m in s.slack.messages.values()), "progress"
        )


def test_the_modal_has_a_confirm_checkbox_that_asks_to_confirm() -> None:
    view = announce_modal("CITOPS")
    [box] = [b for b in view["blocks"] if b.get("block_id") == "confirm"]
    assert box["optional"] is True and box["element"]["options"][0]["value"] == "confirm"
    values = modal_values(audience="site:berlin", channels=("email",), severity="info", title="Hi")
    assert parse_modal_submission(values, 0.0).command.confirm is False
    values["confirm"] = {"value": {"type": "checkboxes", "selected_options": [box["element"]["options"][0]]}}
    assert parse_modal_submission(values, 0.0).command.confirm is True


def test_an_email_carries_both_its_preferences_and_its_confirmation_links() -> None:
    notice = Notice("nabc", "info", "Printer moved", "Second floor now.", mandatory=False, confirm=True)
    prepared = prepare_email(notice, from_address="Herald <herald@example.com>")
    to = Recipient(
        address="bob@example.com",
        unsubscribe_url="https://herald.example/u/PREFS",
        confirm_url="https://herald.example/c/CONFIRM&x",
        message_key="nabc.1",
    )
    message = BytesParser(policy=policy.default).parsebytes(build_message(prepared, to))
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "Please confirm you got this message: https://herald.example/c/CONFIRM&x" in text
    assert "https://herald.example/u/PREFS" in text
    assert 'href="https://herald.example/c/CONFIRM&amp;x"' in html and "/u/PREFS" in html
    plain = build_message(prepare_email(replace(notice, confirm=False), from_address="h@example.com"), to)
    assert b"/c/CONFIRM" not in plain
