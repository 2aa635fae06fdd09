"""Channel outages are held, not failed: wrong credentials at the real SMTP server and at the Twilio
stand-in hold the fan-out, tell the alert channel once, and after the fix every held delivery goes out
exactly once with nobody suppressed. Both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from conftest import TWILIO_SID, TWILIO_TOKEN
from test_announce_cli import write_directory

from bot import service
from bot.alerts.outages import outage_notifier
from bot.app import Herald
from bot.config import load_settings
from bot.engine.dispatcher import Dispatcher
from bot.metrics import HeraldMetrics
from bot.recipients import suppressions
from bot.standins.slack import SlackStandIn
from bot.standins.smtp import SmtpStandIn
from bot.standins.twilio import TwilioStandIn

BOT_TOKEN = "xoxb-outage-test"
ALERTS = "C0ALERTS"
PEOPLE = 8


def config_text(
    db_url: str, smtp: SmtpStandIn, twilio: TwilioStandIn, slack: SlackStandIn, **secrets: str
) -> str:
    return (
        f'[database]\nurl = "{db_url}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\nrate_per_second = 0\n'
        f'from_address = "herald@example.com"\nusername = "herald"\npassword = "{secrets["smtp_password"]}"\n'
        f'[twilio]\naccount_sid = "{TWILIO_SID}"\nauth_token = "{secrets["twilio_token"]}"\n'
        f'from_number = "+15005550006"\napi_url = "{twilio.url}"\nrate_per_second = 0\n'
        f'[slack]\nbot_token = "{BOT_TOKEN}"\napi_url = "{slack.api_url}"\nalert_channel = "{ALERTS}"\n'
        'signing_secret = "s3cret"\n'
        '[sla.maintenance]\ndeliver_within = "4s"\n'
        '[quiet_hours]\nkinds = []\n[dispatcher]\npoll_interval = "0.05s"\n'
    )


def alert_posts(slack: SlackStandIn) -> list[str]:
    return [
        call.args.get("text", "")
        for call in slack.calls_to("chat.postMessage")
        if call.args.get("channel") == ALERTS
    ]


async def deliver_all(herald: Herald, notification_id: str) -> dict[str, Any]:
    """Run a dispatcher (with the alert-channel notifier, as serve does) until the notification is done."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        Dispatcher(herald, "fixed", registered=False, notify=outage_notifier(herald)).run(stop)
    )
    try:
        async with asyncio.timeout(60):
            while True:
                status = await asyncio.to_thread(service.status, herald, notification_id)
                assert status is not None
                if status["state"] == "done":
                    return status
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def channel_up(herald: Herald, channel: str) -> str:
    text = HeraldMetrics(herald.store, herald.clock, ("email", "sms")).render().decode()
    return next(
        line for line in text.splitlines() if line.startswith(f'herald_channel_up{{channel="{channel}"}}')
    )


async def test_wrong_smtp_password_holds_the_fan_out_until_fixed(
    cli: Any, db_url: str, tmp_path: Path
) -> None:
    async with (
        SmtpStandIn(username="herald", password="right") as smtp,
        TwilioStandIn(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio,
        SlackStandIn(token=BOT_TOKEN) as slack,
    ):
        wrong = tmp_path / "wrong.toml"
        wrong.write_text(
            config_text(db_url, smtp, twilio, slack, smtp_password="wrong", twilio_token=TWILIO_TOKEN)
        )
        people = str(write_directory(tmp_path / "people.csv", PEOPLE))
        assert (
            await asyncio.to_thread(cli, "directory", "import", people, "--config", str(wrong))
        ).exit_code == 0
        args = ["announce", "--audience", "everyone", "--channels", "email", "--severity", "maintenance"]
        held = await asyncio.to_thread(
            cli,
            *args,
            "--title",
            "Patch",
            "--body",
            "Tonight",
            "--yes",
            "--wait",
            "--json",
            "--config",
            str(wrong),
        )
        # The deadline passed with every delivery held by the outage: exit 1, naming it.
        assert held.exit_code == 1, held.stderr
        assert "email channel is down (auth" in held.stderr
        report = json.loads(held.stdout)
        email = report["channels"]["email"]
        assert report["title"] == "Patch" and email.get("failed", 0) == 0 and email.get("suppressed", 0) == 0
        # Every delivery is held; one may be the probe in flight when the deadline passed.
        assert email.get("deferred", 0) + email.get("sending", 0) == PEOPLE and email.get("sending", 0) <= 1
        assert "email" in report["channels_down"]  # the status JSON names the outage too
        summary = await asyncio.to_thread(cli, "report", "--json", "--config", str(wrong))
        assert "email channel is down (auth" in json.loads(summary.stdout)["channels_down"]["email"]
        text = (await asyncio.to_thread(cli, "report", "--config", str(wrong))).stdout
        assert "down now: the email channel is down (auth" in text, text
        (item,) = json.loads(summary.stdout)["items"]
        assert item["sla"]["met"] is False and item["sla"]["cause"] == "channel_down"
        assert item["people"]["reached"] == 0 and item["people"]["unreached"] == PEOPLE
        assert smtp.messages == []
        posts = alert_posts(slack)
        assert len(posts) == 1 and "email channel is down" in posts[0]

        fixed = Herald.build(load_settings(wrong, smtp={"password": "right"}))
        try:
            assert channel_up(fixed, "email").endswith(" 0.0")
            assert suppressions.entries(fixed.store) == []
            notification_id = service.recent(fixed, limit=1)[0]["id"]
            final = await deliver_all(fixed, notification_id)
            assert final["channels"]["email"]["sent"] == PEOPLE
            assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(
                [f"p{index}@example.com" for index in range(PEOPLE)]
            )  # every held delivery went out, exactly once
            posts = alert_posts(slack)
            assert len(posts) == 2 and "answers again" in posts[1]
            assert channel_up(fixed, "email").endswith(" 1.0")
            assert suppressions.entries(fixed.store) == []
        finally:
            await fixed.aclose()


async def test_wrong_twilio_token_holds_sms_until_fixed(db_url: str, tmp_path: Path) -> None:
    async with (
        SmtpStandIn() as smtp,
        TwilioStandIn(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio,
        SlackStandIn(token=BOT_TOKEN) as slack,
    ):
        path = tmp_path / "herald.toml"
        path.write_text(
            config_text(db_url, smtp, twilio, slack, smtp_password="x", twilio_token="wrong-token")
        )
        wrong = Herald.build(load_settings(path))
        from bot.directory.store import import_file

        import_file(wrong.store, write_directory(tmp_path / "people.csv", PEOPLE))
        request = service.AnnounceRequest(
            audience="everyone", channels=("sms",), severity="critical", title="Core switch", body="Down"
        )
        notification_id = service.announce(wrong, request)
        stop = asyncio.Event()
        task = asyncio.create_task(
            Dispatcher(wrong, "w", registered=False, notify=outage_notifier(wrong)).run(stop)
        )
        try:
            async with asyncio.timeout(30):
                while (status := service.status(wrong, notification_id)) and status["channels"]["sms"][
                    "deferred"
                ] < 6:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task
            await wrong.aclose()
        assert status["channels"]["sms"]["failed"] == 0 and twilio.messages == []
        assert len(alert_posts(slack)) == 1 and "sms channel is down* (auth" in alert_posts(slack)[0]

        fixed = Herald.build(load_settings(path, twilio={"auth_token": TWILIO_TOKEN}))
        try:
            final = await deliver_all(fixed, notification_id)
        finally:
            await fixed.aclose()
        assert final["channels"]["sms"]["sent"] == 6  # the 2 of 8 without a phone are suppressed
        assert len({message.to for message in twilio.messages}) == len(twilio.messages) == 6
        assert "answers again" in alert_posts(slack)[-1]
