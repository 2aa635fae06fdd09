"""Block Kit builders are pure: tables of inputs and what the user reads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.slack.announce_blocks import PreviewFacts, announce_modal, needs_confirmation, preview_message
from bot.slack.blocks import format_duration, headline, progress_bar, slack_date
from bot.slack.status_blocks import (
    Tally,
    estimate_eta,
    home_view,
    list_message,
    progress_message,
    status_message,
    tally,
)

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def read(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def actions(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks for e in b.get("elements", []) if "action_id" in e]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.4, "0s"),
        (59.6, "1m"),
        (75, "1m 15s"),
        (3600, "1h"),
        (7260, "2h 1m"),
        (90000, "1d 1h"),
        (-5, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("done", "total", "bar"),
    [
        (0, 10, "░░░░░░░░░░"),
        (5, 10, "█████░░░░░"),
        (10, 10, "██████████"),
        (0, 0, "██████████"),
        (3, 7, "████░░░░░░"),
    ],
)
def test_progress_bar(done: int, total: int, bar: str) -> None:
    assert progress_bar(done, total, width=10) == bar


@pytest.mark.parametrize(
    ("done", "left", "elapsed", "eta"),
    [(0, 10, 5.0, None), (10, 0, 5.0, 0.0), (5, 10, 10.0, 20.0), (5, 5, 0.0, None)],
)
def test_estimate_eta(done: int, left: int, elapsed: float, eta: float | None) -> None:
    assert estimate_eta(done, left, elapsed) == eta


def test_tally_sums_channels_by_outcome() -> None:
    channels = {
        "email": {"queued": 1, "sending": 2, "sent": 3, "delivered": 1, "failed": 1, "suppressed": 2},
        "sms": {"deferred": 1, "expired": 1, "cancelled": 4, "sent": 2},
    }
    assert tally(channels) == Tally(total=18, sent=6, failed=2, suppressed=2, cancelled=4, left=4)


@pytest.mark.parametrize(
    ("audience", "recipients", "above", "needed"),
    [
        ("everyone", 3, 500, True),
        ("everyone -dept:hr", 3, 500, True),
        ("site:berlin", 501, 500, True),
        ("site:berlin", 500, 500, False),
        ("person:everyone@example.com", 1, 500, False),
    ],
)
def test_needs_confirmation(audience: str, recipients: int, above: int, needed: bool) -> None:
    assert needs_confirmation(audience, recipients, above) is needed


def facts(**changes: Any) -> PreviewFacts:
    base: dict[str, Any] = {
        "severity": "critical",
        "title": "VPN <down>",
        "body": "Use the backup & wait",
        "audience": "site:berlin",
        "channels": ("email", "sms"),
        "recipients": 4,
        "reachable": {"email": 2, "sms": 3},
        "unreachable": {"email": {"no_email": 1, "suppressed": 1}, "sms": {"no_phone": 1, "suppressed": 0}},
        "sms_segments": 2,
        "finish_at": NOW + 300,
        "forecast_seconds": 300.0,
        "meets_sla": False,
        "deliver_within": 120.0,
    }
    return PreviewFacts(**{**base, **changes})


def test_preview_shows_reach_segments_forecast_and_a_plain_warning() -> None:
    text, blocks = preview_message(facts(), "p_token", confirm=False)
    shown = read(blocks)
    assert text == "Preview: [CRITICAL] VPN &lt;down&gt; to 4 people"  # the fallback text is escaped too
    assert "*email*: 2 reachable, 2 unreachable (1 no email, 1 suppressed or opted out)" in shown
    assert "*sms*: 3 reachable, 1 unreachable (1 no phone)" in shown
    assert "SMS length: 2 segments per message" in shown
    assert "> Use the backup &amp; wait" in shown  # user text escaped in mrkdwn
    assert ":warning: *This will miss the critical SLA*" in shown and "within 2m" in shown
    assert actions(blocks) == ["announce_send", "announce_cancel"]
    assert all(e["value"] == "p_token" for b in blocks for e in b.get("elements", []))


def test_preview_that_meets_the_sla_has_no_warning_and_can_ask_for_confirmation() -> None:
    _, blocks = preview_message(facts(meets_sla=True, audience="everyone"), "p_t", confirm=True)
    shown = read(blocks)
    assert ":warning:" not in shown and ":white_check_mark: meets" in shown
    send = blocks[-1]["elements"][0]
    assert send["confirm"]["title"]["text"] == "Send to everyone?"
    assert send["confirm"]["confirm"]["text"] == "Yes, send to 4"


def test_scheduled_preview_says_when_and_offers_schedule() -> None:
    _, blocks = preview_message(facts(start_at=NOW + 3600, meets_sla=True), "p_t", confirm=False)
    assert "Starts <!date^1767229200^" in read(blocks)
    assert blocks[-1]["elements"][0]["text"]["text"] == "Schedule"


def status(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "n1",
        "state": "sending",
        "severity": "maintenance",
        "title": "Patch",
        "recipients": 10,
        "created_at": NOW,
        "start_at": NOW,
        "finished_at": None,
        "left": 5,
        "channels": {"email": {"queued": 5, "sent": 4, "failed": 1}},
        "sla": {"deliver_within_s": 14400.0, "last_delivery_s": None, "met": None},
        "meta": {},
    }
    return {**base, **changes}


def test_progress_while_sending_has_bar_counts_eta_and_a_cancel_button() -> None:
    text, blocks = progress_message(status(), NOW + 10, eta=12.0)
    shown = read(blocks)
    assert text == "[MAINTENANCE] Patch: 50% (sent 4 · failed 1 · suppressed 0 · left 5)"
    assert "`██████████░░░░░░░░░░` 50%" in shown and "ETA 12s" in shown
    assert actions(blocks) == ["announce_cancel"] and blocks[-1]["elements"][0]["value"] == "n1"


def test_progress_final_shows_counts_slowest_delivery_and_sla() -> None:
    done = status(
        state="done",
        left=0,
        finished_at=NOW + 95,
        channels={"email": {"sent": 9, "failed": 1}},
        sla={"deliver_within_s": 14400.0, "last_delivery_s": 94.0, "met": True},
    )
    text, blocks = progress_message(done, NOW + 100)
    shown = read(blocks)
    assert text.startswith("[MAINTENANCE] Patch: finished")
    assert ":checkered_flag: *Finished* in 1m 35s. sent 9 · failed 1 · suppressed 0 · left 0" in shown
    assert "slowest delivery 1m 34s" in shown and "SLA (within 4h): :white_check_mark: met" in shown
    assert actions(blocks) == []
    missed = progress_message({**done, "sla": {**done["sla"], "met": False}}, NOW + 100)[1]
    assert ":x: missed" in read(missed)


def test_progress_while_cancelling_and_once_cancelled() -> None:
    cancelling = status(state="cancelled", left=2, channels={"email": {"sending": 2, "cancelled": 8}})
    text, blocks = progress_message(cancelling, NOW)
    assert text.startswith("[MAINTENANCE] Patch: cancelling") and actions(blocks) == []
    assert "Cancelling" in read(blocks)
    cancelled = status(state="cancelled", left=0, channels={"email": {"sent": 2, "cancelled": 8}})
    assert ":no_entry_sign: *Cancelled*" in read(progress_message(cancelled, NOW)[1])


def test_progress_of_a_scheduled_announcement_says_when() -> None:
    later = status(state="scheduled", start_at=NOW + 600, left=5, channels={"email": {"queued": 5}})
    assert ":calendar: Scheduled for <!date^1767226200^" in read(progress_message(later, NOW)[1])


def test_status_list_and_home() -> None:
    _, blocks = status_message(status(), NOW)
    assert actions(blocks) == [] and "10 people · state sending" in read(blocks)
    scheduled = [status(id="n2", state="scheduled", start_at=NOW + 60, audience="everyone", channels={})]
    _, listed = list_message(scheduled, [status()])
    shown = read(listed)
    assert "`n2` [MAINTENANCE] Patch starts <!date^" in shown and "to `everyone`" in shown
    assert "`n1` [MAINTENANCE] Patch · sending · sent 4/10 · SLA :hourglass_flowing_sand: open" in shown
    assert "Nothing scheduled." in read(list_message([], [])[1])
    home = home_view([status(sla={"met": True})], may_announce=False)
    assert home["type"] == "home" and ":white_check_mark: met" in read(home["blocks"])
    assert "not an announcer" in read(home["blocks"])


def test_modal_offers_configured_channels_and_remembers_the_channel() -> None:
    view = announce_modal("C42", channels=("email",))
    assert json.loads(view["private_metadata"]) == {"channel_id": "C42"}
    channels = next(b for b in view["blocks"] if b.get("block_id") == "channels")
    assert [o["value"] for o in channels["element"]["options"]] == ["email"]
    schedule = next(b for b in view["blocks"] if b.get("block_id") == "start_at")
    assert schedule["optional"] is True and schedule["element"]["type"] == "datetimepicker"


def test_small_helpers() -> None:
    assert headline("info", "Hi") == "[INFO] Hi"
    assert slack_date(NOW) == "<!date^1767225600^{date_short_pretty} {time}|2026-01-01 00:00 UTC>"


def test_the_manifest_matches_the_code() -> None:
    from pathlib import Path

    from bot.config import SlackSettings
    from bot.slack.commands import COMMAND

    manifest = (Path(__file__).parent.parent / "slack" / "manifest.yml").read_text(encoding="utf-8")
    assert SlackSettings().command == COMMAND
    assert f"- command: {COMMAND}\n" in manifest
    assert "[slack] command" in manifest  # documents that the name is configurable
    assert manifest.count("url: https://herald.example.com/slack/events") == 3
    assert "- app_home_opened" in manifest and "is_enabled: true" in manifest
    assert "socket_mode_enabled: false" in manifest and "should_escape: true" in manifest
    for scope in ("commands", "chat:write", "chat:write.public", "usergroups:read", "users:read", "im:write"):
        assert f"      - {scope} " in manifest or f"      - {scope}\n" in manifest, scope
