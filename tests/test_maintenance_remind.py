"""``herald announce --window START..END --remind 15m``: the scheduler tick (``herald serve``'s alert
tick, under a ManualClock) reminds the same people over the same channels 15 minutes before the window
starts, threaded with the announcement, once, also after a restart. Both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import Peers, dispatch_until
from test_announce_cli import announce, setup
from test_recipients_web import rows

from bot.alerts import escalation
from bot.app import Herald
from bot.clock import ManualClock
from bot.config import load_settings

LEAD = 15 * 60.0


def reminders(db_url: str, original: str) -> list[str]:
    found = rows(db_url, "SELECT id FROM notification WHERE parent_id = :n AND kind = 'followup'", n=original)
    return [row[0] for row in found]


def test_bad_remind_options_exit_2_naming_the_option(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path, people=2)
    base = ["--audience", "everyone", "--title", "T", "--severity", "maintenance"]
    for extra, named in (
        (["--remind", "15m"], "--remind: needs --window"),
        (["--window", "+10m..+1h", "--remind", "15m"], "--remind: the window starts sooner than that"),
        (["--window", "+1h..+2h", "--remind", "soon"], "--remind: "),
    ):
        result = announce(cli, config, *base, *extra)
        assert result.exit_code == 2 and named in result.stderr, (extra, result.stderr)
    assert rows(db_url, "SELECT count(*) FROM notification")[0][0] == 0


async def test_a_reminder_goes_out_once_before_the_window(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, db_url, tmp_path, people=4)
    args = [
        "--audience",
        "everyone",
        "--channels",
        "email",
        "--severity",
        "maintenance",
        "--title",
        "DB patching",
    ]
    result = await asyncio.to_thread(announce, cli, config, *args, "--window", "+2h..+3h", "--remind", "15m")
    assert result.exit_code == 0, result.stderr
    original = json.loads(result.stdout)["id"]
    first = {m.rcpt_tos[0] for m in peers.smtp.messages}
    assert len(first) == 4
    (start,) = rows(
        db_url, "SELECT starts_at FROM maintenance_window WHERE notification_id = :n", n=original
    )[0]
    clock = ManualClock(start - LEAD - 1)
    herald = Herald.build(load_settings(config), clock=clock)
    escalation.run_due(herald)
    assert reminders(db_url, original) == []  # one second early
    clock.advance(1)
    escalation.run_due(herald)
    (reminder,) = reminders(db_url, original)
    escalation.run_due(herald)
    restarted = Herald.build(load_settings(config), clock=ManualClock(start - 60))
    escalation.run_due(restarted)  # a second process, or serve restarted: still one reminder
    assert reminders(db_url, original) == [reminder]
    (deadline,) = rows(db_url, "SELECT deadline FROM notification WHERE id = :n", n=reminder)[0]
    assert deadline <= start

    await dispatch_until(herald, lambda: len(peers.smtp.messages) >= 8)
    later = peers.smtp.messages[4:]
    assert {m.rcpt_tos[0] for m in later} == first and len(later) == 4
    message = later[0].message
    assert message["Subject"] == "Re: [MAINTENANCE] DB patching" and message["In-Reply-To"]
    assert "Reminder: this maintenance starts at" in message.get_body(("plain",)).get_content()
    audit = json.loads((await asyncio.to_thread(cli, "audit", "--json", "--config", config)).stdout)
    assert [e["subject"] for e in audit if e["action"] == "maintenance.remind"] == [reminder]
    herald.store.dispose()
    restarted.store.dispose()
