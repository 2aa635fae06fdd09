"""``/announce`` end to end: signed requests over HTTP to ``HeraldServer``, the real AsyncWebClient
talking to the Slack stand-in, deliveries sent to the SMTP and Twilio stand-ins."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_signing import (
    ANNOUNCER,
    CHANNEL,
    GROUPED,
    STRANGER,
    Harness,
    block_action,
    modal_values,
    running_herald,
    view_submission,
)
from sqlalchemy import Engine, event, select

from bot.store import open_store
from bot.tables import AuditEntry, Notification


def texts(blocks: list[dict[str, Any]]) -> str:
    """All text of a message's blocks, one string (for asserting what the user reads)."""
    return json.dumps(blocks, ensure_ascii=False)


def button(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any]:
    for block in blocks:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return element
    raise AssertionError(f"no {action_id} button in {blocks}")


def notifications(db_url: str) -> list[Notification]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return list(session.exec(select(Notification)).scalars())  # type: ignore[call-overload]
    finally:
        store.dispose()


def audit_rows(db_url: str) -> list[AuditEntry]:
    store = open_store(db_url)
    try:
        with store.session() as session:
            return list(session.exec(select(AuditEntry).order_by(AuditEntry.id)).scalars())  # type: ignore[call-overload,arg-type]
    finally:
        store.dispose()


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def progress_final(h: Harness) -> bool:
    return any("Finished" in m.text or "finished" in m.text for m in h.slack.messages.values())


async def preview_typed(h: Harness, text: str, key: str, user: str = ANNOUNCER) -> dict[str, Any]:
    response = await h.signed.command(text, user, CHANNEL, h.response_url(key))
    assert response.status_code == 200
    return (await h.responses(key))[0]


async def press_send(h: Harness, blocks: list[dict[str, Any]], key: str = "s") -> httpx.Response:
    """Press the preview's Send button: a signed block_actions request, answered at ``key``."""
    send = button(blocks, "announce_send")
    return await h.signed.interaction(
        block_action("announce_send", send["value"], ANNOUNCER, CHANNEL, h.response_url(key))
    )


@pytest.fixture
async def h(db_url: str, tmp_path: Path) -> Any:
    async with running_herald(db_url, tmp_path) as harness:
        yield harness


TYPED = "/announce maintenance to site:berlin via email,sms: Patch Tuesday | Servers reboot at 22:00 CET"


async def test_typed_command_previews_then_send_delivers_with_live_progress(h: Harness) -> None:
    preview = await preview_typed(h, TYPED.removeprefix("/announce "), "cmd")
    shown = texts(preview["blocks"])
    assert preview["response_type"] == "ephemeral"
    assert "*4* people" in shown
    assert "*email*: 2 reachable, 2 unreachable (1 no email, 1 suppressed or opted out)" in shown
    assert "*sms*: 3 reachable, 1 unreachable (1 no phone)" in shown
    assert "SMS length: 1 segment per message" in shown
    assert ":white_check_mark: meets" in shown
    send = button(preview["blocks"], "announce_send")
    assert "confirm" not in send  # 4 people, not everyone: no second confirmation

    clicked = await h.signed.interaction(
        block_action("announce_send", send["value"], ANNOUNCER, CHANNEL, h.response_url("send"))
    )
    assert clicked.status_code == 200
    replaced = (await h.responses("send"))[0]
    assert replaced["replace_original"] is True
    assert "Sending" in replaced["text"]

    await eventually(lambda: progress_final(h))
    assert sorted(m.rcpt_tos[0] for m in h.smtp.messages) == ["alice@example.com", "bob@example.com"]
    assert h.smtp.messages[0].message["Subject"] == "[MAINTENANCE] Patch Tuesday"
    assert sorted(m.to for m in h.twilio.messages) == ["+4915110000001", "+4915110000003", "+4915110000004"]

    posts = h.slack.calls_to("chat.postMessage")
    assert len(posts) == 1 and posts[0].args["channel"] == CHANNEL
    (message,) = h.slack.messages.values()
    final = texts(message.blocks)
    assert "sent 5" in final and "failed 0" in final and "left 0" in final
    assert "slowest delivery" in final and ":white_check_mark: met" in final
    assert "announce_cancel" not in final  # nothing left to cancel

    (row,) = notifications(h.db_url)
    assert row.created_by == f"slack:{ANNOUNCER}"
    assert json.loads(row.meta)["slack_channel"] == CHANNEL


async def test_modal_opens_validates_and_previews(h: Harness) -> None:
    opened = await h.signed.command("", ANNOUNCER, CHANNEL, h.response_url("cmd"), trigger_id="trig.1")
    assert opened.status_code == 200
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("views.open")))
    (call,) = h.slack.calls_to("views.open")
    assert call.args["trigger_id"] == "trig.1"
    view = call.args["view"]
    assert view["callback_id"] == "announce_modal"
    assert [b.get("block_id") for b in view["blocks"][:6]] == [
        "audience",
        "channels",
        "severity",
        "title",
        "body",
        "start_at",
    ]

    # Field errors come back in the ack, under the field.
    empty = view_submission(view, modal_values(audience="site:berlin", title="Patch"), ANNOUNCER)
    answer = await h.signed.interaction(empty)
    assert answer.status_code == 200
    assert answer.json() == {
        "response_action": "errors",
        "errors": {"channels": "pick at least one channel", "severity": "pick a severity"},
    }
    nobody = modal_values(audience="site:atlantis", channels=("email",), severity="info", title="Hi")
    answer = await h.signed.interaction(view_submission(view, nobody, ANNOUNCER))
    assert answer.json()["response_action"] == "errors"
    assert "no one matches" in answer.json()["errors"]["audience"]

    good = modal_values(
        audience="site:berlin", channels=("email",), severity="maintenance", title="Patch", body="Tonight"
    )
    answer = await h.signed.interaction(view_submission(view, good, ANNOUNCER))
    assert answer.status_code == 200 and answer.content == b""  # the modal closes
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("chat.postEphemeral")))
    (ephemeral,) = h.slack.calls_to("chat.postEphemeral")
    assert ephemeral.args["channel"] == CHANNEL and ephemeral.args["user"] == ANNOUNCER
    shown = texts(ephemeral.args["blocks"])
    assert "*4* people" in shown and "*email*: 2 reachable" in shown and "sms" not in shown
    await press_send(h, ephemeral.args["blocks"])
    await eventually(lambda: progress_final(h) and len(h.smtp.messages) == 2)
    assert not h.twilio.messages


async def test_slack_retry_of_send_never_announces_twice(h: Harness) -> None:
    preview = await preview_typed(h, "info to site:berlin via email: Lunch | Cake in the kitchen", "cmd")
    token = button(preview["blocks"], "announce_send")["value"]
    payload = block_action("announce_send", token, ANNOUNCER, CHANNEL, h.response_url("send"))
    first = await h.signed.interaction(payload)
    retried = await h.signed.interaction(
        payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    assert first.status_code == retried.status_code == 200
    await h.responses("send", count=2)
    await eventually(lambda: progress_final(h))
    await h.server.slack.tasks.drain()  # type: ignore[union-attr]
    assert len(notifications(h.db_url)) == 1
    assert len(h.slack.calls_to("chat.postMessage")) == 1
    assert len(h.smtp.messages) == 2


async def test_non_announcer_is_refused_and_audited(h: Harness) -> None:
    reply = await preview_typed(h, "info to everyone via email: Hi | there", "cmd", user=STRANGER)
    assert "not allowed to send announcements" in reply["text"]
    assert reply["response_type"] == "ephemeral"
    assert not notifications(h.db_url)
    refusals = [row for row in audit_rows(h.db_url) if not row.allowed]
    assert [(row.actor, row.action) for row in refusals] == [(STRANGER, "slack.announce")]
    # The form is refused too, before it opens.
    await h.signed.command("", STRANGER, CHANNEL, h.response_url("form"))
    assert "not allowed" in (await h.responses("form"))[0]["text"]
    assert not h.slack.calls_to("views.open")


async def test_user_group_members_may_announce_and_groups_are_cached(h: Harness) -> None:
    first = await preview_typed(h, "info to site:paris via email: One | 1", "a", user=GROUPED)
    second = await preview_typed(h, "info to site:paris via email: Two | 2", "b", user=GROUPED)
    assert "Preview" in first["text"] and "Preview" in second["text"]
    assert len(h.slack.calls_to("usergroups.users.list")) == 1


async def test_preview_cancel_sends_nothing(h: Harness) -> None:
    preview = await preview_typed(h, "info to site:berlin via email: Oops | never mind", "cmd")
    token = button(preview["blocks"], "announce_cancel")["value"]
    await h.signed.interaction(
        block_action("announce_cancel", token, ANNOUNCER, CHANNEL, h.response_url("c"))
    )
    replaced = (await h.responses("c"))[0]
    assert replaced["replace_original"] is True and "nothing was sent" in replaced["text"]
    assert not notifications(h.db_url)


async def test_usage_errors_are_answered_in_the_ack(h: Harness) -> None:
    answer = await h.signed.command("loud to everyone via email: Hi", ANNOUNCER, CHANNEL, h.response_url("x"))
    assert answer.status_code == 200
    assert "unknown severity 'loud'" in answer.json()["text"]
    assert (
        "usage: /announce &lt;severity&gt; to &lt;audience&gt; via &lt;channels&gt;: "
        "&lt;title&gt; | &lt;body&gt;" in answer.json()["text"]  # escaped: Slack reads <...> as markup
    )
    helped = await h.signed.command("help", ANNOUNCER, CHANNEL, h.response_url("y"))
    assert "Usage" in texts(helped.json()["blocks"])


async def test_audience_that_matches_no_one_is_an_error_before_sending(h: Harness) -> None:
    reply = await preview_typed(h, "info to dept:nowhere via email: Hi | x", "cmd")
    assert "no one matches" in reply["text"]
    assert not notifications(h.db_url)


async def test_scheduled_announcement_is_listed_and_cancelled(h: Harness) -> None:
    await h.signed.command("", ANNOUNCER, CHANNEL, h.response_url("form"))
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("views.open")))
    view = h.slack.calls_to("views.open")[0].args["view"]
    later = int(time.time()) + 3600
    values = modal_values(
        audience="site:berlin", channels=("email",), severity="maintenance", title="Reboot", start_at=later
    )
    await h.signed.interaction(view_submission(view, values, ANNOUNCER))
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("chat.postEphemeral")))
    preview = h.slack.calls_to("chat.postEphemeral")[0].args["blocks"]
    assert "Starts <!date^" in texts(preview)
    send = button(preview, "announce_send")
    assert send["text"]["text"] == "Schedule"
    await h.signed.interaction(
        block_action("announce_send", send["value"], ANNOUNCER, CHANNEL, h.response_url("s"))
    )
    scheduled = (await h.responses("s"))[0]
    (row,) = notifications(h.db_url)
    assert row.state == "scheduled" and f"Scheduled `{row.id}`" in scheduled["text"]

    await h.signed.command("list", ANNOUNCER, CHANNEL, h.response_url("list"))
    listed = texts((await h.responses("list"))[0]["blocks"])
    assert row.id in listed and "[MAINTENANCE] Reboot" in listed

    await h.signed.command(f"cancel {row.id}", ANNOUNCER, CHANNEL, h.response_url("cancel"))
    cancelled = (await h.responses("cancel"))[0]
    assert f"Cancelled `{row.id}`: 2 messages will not be sent." in cancelled["text"]
    (row,) = notifications(h.db_url)
    assert row.state == "cancelled"
    await asyncio.sleep(1.0)  # a few scheduler ticks: nothing is posted for a cancelled announcement
    assert not h.slack.calls_to("chat.postMessage") and not h.smtp.messages


async def test_scheduled_announcement_posts_progress_when_it_starts(h: Harness) -> None:
    await h.signed.command("", ANNOUNCER, CHANNEL, h.response_url("form"))
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("views.open")))
    view = h.slack.calls_to("views.open")[0].args["view"]
    soon = int(time.time()) + 3
    values = modal_values(
        audience="site:berlin", channels=("email",), severity="info", title="Soon", start_at=soon
    )
    await h.signed.interaction(view_submission(view, values, ANNOUNCER))
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("chat.postEphemeral")))
    await press_send(h, h.slack.calls_to("chat.postEphemeral")[0].args["blocks"])
    await h.responses("s")
    assert not h.slack.calls_to("chat.postMessage")
    await eventually(lambda: progress_final(h), timeout=20)
    assert time.time() >= soon
    assert len(h.slack.calls_to("chat.postMessage")) == 1
    assert len(h.smtp.messages) == 2


async def test_everyone_needs_a_second_confirmation(h: Harness) -> None:
    preview = await preview_typed(h, "info to everyone via email: All hands | 10:00", "cmd")
    confirm = button(preview["blocks"], "announce_send")["confirm"]
    assert confirm["title"]["text"] == "Send to everyone?"
    assert "*5* people" in confirm["text"]["text"]


async def test_status_command_and_home_tab(h: Harness) -> None:
    preview = await preview_typed(h, "info to site:paris via email: Hello | Paris", "cmd")
    await press_send(h, preview["blocks"])
    await eventually(lambda: progress_final(h))
    (row,) = notifications(h.db_url)
    await h.signed.command(f"status {row.id}", GROUPED, CHANNEL, h.response_url("st"))
    status = texts((await h.responses("st"))[0]["blocks"])
    assert "[INFO] Hello" in status and "sent 1" in status and ":white_check_mark: met" in status
    await h.signed.command("status nnope", ANNOUNCER, CHANNEL, h.response_url("nope"))
    assert "no notification nnope" in (await h.responses("nope"))[0]["text"]

    opened = await h.signed.event(
        {"type": "app_home_opened", "user": ANNOUNCER, "channel": "D1", "tab": "home"}
    )
    assert opened.status_code == 200
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("views.publish")))
    (published,) = h.slack.calls_to("views.publish")
    assert published.args["user_id"] == ANNOUNCER
    home = texts(published.args["view"]["blocks"])
    assert published.args["view"]["type"] == "home" and row.id in home and ":white_check_mark: met" in home


async def test_bad_signature_is_401_and_nothing_happens(h: Harness) -> None:
    forged = await h.signed.command(TYPED, ANNOUNCER, CHANNEL, h.response_url("x"), secret="not-the-secret")
    assert forged.status_code == 401
    stale = await h.signed.command(
        TYPED.removeprefix("/announce "),
        ANNOUNCER,
        CHANNEL,
        h.response_url("y"),
        timestamp=int(time.time()) - 301,
    )
    assert stale.status_code == 401
    unsigned = await h.http.post(
        f"{h.server.url}/slack/events",
        content=b"command=%2Fannounce&text=help",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsigned.status_code == 401
    await asyncio.sleep(0.3)
    assert h.slack.calls == [] and h.slack.responses == []
    assert not notifications(h.db_url) and not audit_rows(h.db_url)


async def test_forged_send_creates_nothing(h: Harness) -> None:
    preview = await preview_typed(h, "info to site:berlin via email: Hi | x", "cmd")
    token = button(preview["blocks"], "announce_send")["value"]
    payload = block_action("announce_send", token, ANNOUNCER, CHANNEL, h.response_url("s"))
    forged = await h.signed.interaction(payload, secret="wrong")
    assert forged.status_code == 401
    await asyncio.sleep(0.3)
    assert not notifications(h.db_url) and not h.slack.responses_to("s")


async def test_chat_update_429_is_waited_out(h: Harness) -> None:
    h.slack.rate_limit("chat.update", times=1, retry_after=1)
    preview = await preview_typed(h, "info to site:berlin via email: Hi | x", "cmd")
    await press_send(h, preview["blocks"])
    await eventually(lambda: progress_final(h))
    updates = h.slack.calls_to("chat.update")
    assert [call.answered for call in updates[:2]] == ["ratelimited", "ok"]
    assert updates[1].at - updates[0].at >= 0.95
    scraped = (await h.http.get(f"{h.server.url}/metrics")).text
    assert 'herald_slack_rate_limited_total{method="chat.update"} 1.0' in scraped


async def test_cancel_button_on_the_progress_message_stops_the_rest(db_url: str, tmp_path: Path) -> None:
    from slack_signing import PEOPLE

    crowd = [
        {"id": f"h{i:02d}", "name": f"H {i}", "email": f"h{i:02d}@example.com", "site": "Hamburg"}
        for i in range(20)
    ]
    async with running_herald(
        db_url, tmp_path, smtp_extra="rate_per_second = 2\n", people=PEOPLE + crowd
    ) as h:
        preview = await preview_typed(h, "info to site:hamburg via email: Slow | one by one", "cmd")
        await press_send(h, preview["blocks"])
        await h.slack.wait_for(lambda: bool(h.slack.messages))
        (message,) = h.slack.messages.values()
        stop = button(message.blocks, "announce_cancel")
        assert "confirm" in stop
        (row,) = notifications(h.db_url)
        assert stop["value"] == row.id
        await h.signed.interaction(
            block_action("announce_cancel", row.id, GROUPED, CHANNEL, h.response_url("c"), ephemeral=False)
        )
        said = (await h.responses("c"))[0]["text"]
        assert f"Cancelled `{row.id}`" in said
        # Sends already handed to the SMTP connection finish; nothing else goes out.
        await eventually(lambda: "Cancelled" in texts(message.blocks))
        sent = len(h.smtp.messages)
        final = texts(message.blocks)
        assert f"sent {sent} · failed 0 · suppressed 0 · cancelled {20 - sent} · left 0" in final
        assert "announce_cancel" not in final
        await asyncio.sleep(1.5)
        assert len(h.smtp.messages) == sent < 20


async def test_progress_edits_are_spaced_by_the_minimum_interval(db_url: str, tmp_path: Path) -> None:
    from slack_signing import PEOPLE

    crowd = [
        {"id": f"k{i}", "name": f"K {i}", "email": f"k{i}@example.com", "site": "Kiel"} for i in range(8)
    ]
    async with running_herald(
        db_url, tmp_path, smtp_extra="rate_per_second = 2\n", progress_interval=1.0, people=PEOPLE + crowd
    ) as h:
        preview = await preview_typed(h, "info to site:kiel via email: Paced | x", "cmd")
        await press_send(h, preview["blocks"])
        await eventually(lambda: progress_final(h), timeout=30)
        post = h.slack.calls_to("chat.postMessage")[0]
        edits = [post, *h.slack.calls_to("chat.update")]
        assert len(edits) >= 3  # the bar moved at least once before the final counts
        gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(edits)]
        assert min(gaps) >= 0.95, gaps
        middle = [call.args["text"] for call in edits[1:-1]]
        assert any("%" in text for text in middle)
        assert "ETA" in texts(edits[1].args["blocks"])


async def test_a_restarted_serve_resumes_the_same_progress_message(db_url: str, tmp_path: Path) -> None:
    from slack_signing import PEOPLE

    from bot.server import HeraldServer

    crowd = [
        {"id": f"r{i}", "name": f"R {i}", "email": f"r{i}@example.com", "site": "Rome"} for i in range(10)
    ]
    async with running_herald(
        db_url, tmp_path, smtp_extra="rate_per_second = 2\n", people=PEOPLE + crowd
    ) as h:
        preview = await preview_typed(h, "info to site:rome via email: Restart | x", "cmd")
        await press_send(h, preview["blocks"])
        await h.slack.wait_for(lambda: bool(h.slack.messages))
        await h.server.stop()  # SIGTERM, in effect
        assert not progress_final(h) and len(h.smtp.messages) < 10
        async with HeraldServer(h.server.settings, progress_interval=0.3, tick_every=0.5):
            await eventually(lambda: progress_final(h), timeout=30)
        assert len(h.slack.calls_to("chat.postMessage")) == 1
        assert sorted({m.rcpt_tos[0] for m in h.smtp.messages}) == sorted(p["email"] for p in crowd)
        (row,) = notifications(h.db_url)
        assert json.loads(row.meta)["slack_done"] is True


def meet_at_notification_insert(engine: Engine, parties: int) -> threading.Barrier:
    """Hold the first ``parties`` INSERTs into ``notification`` until all of them are about to run, so
    concurrent writers of the same announcement surely race on the key (the database decides)."""
    barrier = threading.Barrier(parties, timeout=10)
    waiting = itertools.count()

    @event.listens_for(engine, "before_cursor_execute")
    def meet(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO NOTIFICATION ") and next(waiting) < parties:
            barrier.wait()

    return barrier


async def test_two_concurrent_sends_of_one_preview_store_one_notification(h: Harness) -> None:
    preview = await preview_typed(h, "info to site:berlin via email: Lunch | Cake in the kitchen", "cmd")
    token = button(preview["blocks"], "announce_send")["value"]
    meet_at_notification_insert(h.server.herald.store.engine, 2)
    clicks = [
        block_action("announce_send", token, ANNOUNCER, CHANNEL, h.response_url(key)) for key in ("a", "b")
    ]
    answers = await asyncio.gather(*(h.signed.interaction(click) for click in clicks))
    assert [answer.status_code for answer in answers] == [200, 200]
    replies = [(await h.responses(key))[0] for key in ("a", "b")]
    (row,) = notifications(h.db_url)
    assert [reply["text"] for reply in replies] == [
        f":outbox_tray: Sending `{row.id}`; progress is posted in <#{CHANNEL}>."
    ] * 2
    await eventually(lambda: progress_final(h))
    await h.server.slack.tasks.drain()  # type: ignore[union-attr]
    assert len(h.smtp.messages) == 2
