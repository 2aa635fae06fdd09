"""Maintenance in Slack: the typed form's ``window … silence …``, and ``/announce update|done ID: text``
as threaded follow-ups (signed requests to ``HeraldServer``, the SMTP and Twilio stand-ins)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from slack_signing import (
    ANNOUNCER,
    CHANNEL,
    STRANGER,
    Harness,
    block_action,
    modal_values,
    running_herald,
    view_submission,
)
from sqlalchemy import select
from test_slack_flows import button, eventually, notifications, press_send, preview_typed

from bot.alerts.maintenance import window_status
from bot.store import open_store
from bot.tables import Notification, table_of

NOTIFICATION = table_of(Notification)


@pytest.fixture
async def h(db_url: str, tmp_path: Path) -> Any:
    async with running_herald(db_url, tmp_path) as harness:
        yield harness


TYPED = (
    "maintenance to site:berlin via email,sms window 22:00-23:30 silence service=db,env=prod: "
    "Patch Tuesday | Reboots"
)


async def send_typed(h: Harness, text: str) -> str:
    preview = await preview_typed(h, text, "cmd")
    assert "Maintenance window" in json.dumps(preview["blocks"])
    assert "alerts with `service=db,env=prod` page nobody" in json.dumps(preview["blocks"])
    send = button(preview["blocks"], "announce_send")
    clicked = await h.signed.interaction(
        block_action("announce_send", send["value"], ANNOUNCER, CHANNEL, h.response_url("send"))
    )
    assert clicked.status_code == 200
    replaced = (await h.responses("send"))[0]
    return str(replaced["text"].split("`")[1])


def window_of(h: Harness, nid: str) -> dict[str, Any] | None:
    store = open_store(h.db_url)
    try:
        return window_status(store, nid)
    finally:
        store.dispose()


def progress_ts(h: Harness, nid: str) -> str:
    store = open_store(h.db_url)
    try:
        with store.begin() as connection:
            meta = connection.execute(
                select(NOTIFICATION.c.meta).where(NOTIFICATION.c.id == nid)
            ).scalar_one()
    finally:
        store.dispose()
    return str(json.loads(meta).get("slack_ts", ""))


async def command(h: Harness, text: str, key: str, user: str = ANNOUNCER) -> dict[str, Any]:
    response = await h.signed.command(text, user, CHANNEL, h.response_url(key))
    assert response.status_code == 200
    return (await h.responses(key))[0]


async def test_typed_window_then_done_sends_a_threaded_all_clear(h: Harness, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nid = await send_typed(h, TYPED)
    window = window_of(h, nid)
    assert window is not None and window["silence"] == {"service": "db", "env": "prod"}
    assert window["start"].endswith("T22:00:00Z") and window["end"].endswith("T23:30:00Z")
    await eventually(lambda: len(h.smtp.messages) == 2 and len(h.twilio.messages) == 3, timeout=40)
    originals = {m.rcpt_tos[0]: m.message for m in h.smtp.messages}

    refused = await command(h, f"update {nid}: not yours", "stranger", user=STRANGER)
    assert "announcers" in json.dumps(refused)

    config = str(tmp_path / "herald.toml")  # the CLI runs its own event loop: in a thread
    update = await asyncio.to_thread(cli, "followup", nid, "--body", "Half way", "--yes", "--config", config)
    assert update.exit_code == 0, update.stderr
    await eventually(lambda: len(h.smtp.messages) == 4 and len(h.twilio.messages) == 6, timeout=40)
    answer = await command(h, f"done {nid}: All clear, servers are back", "done")
    assert "All-clear" in answer["text"] and "window has ended" in answer["text"]
    await eventually(lambda: len(h.smtp.messages) == 6 and len(h.twilio.messages) == 9, timeout=40)
    replies = [m for m in h.smtp.messages if "All clear" in m.message.get_body().get_content()]
    assert sorted(m.rcpt_tos[0] for m in replies) == sorted(originals)
    for reply in replies:
        assert reply.message["Subject"] == "Re: [MAINTENANCE] Patch Tuesday"
        parent = originals[reply.rcpt_tos[0]]["Message-ID"]
        assert reply.message["In-Reply-To"] == parent and reply.message["References"] == parent
    threaded = [c.args for c in h.slack.calls_to("chat.postMessage") if "thread_ts" in c.args]
    assert [(c["channel"], c["thread_ts"]) for c in threaded] == [(CHANNEL, progress_ts(h, nid))] * 2
    assert threaded[0]["text"].startswith(":speech_balloon: *Update*: Half way")
    assert threaded[1]["text"].startswith(":white_check_mark: *All clear*: All clear, servers are back")
    texts = [m.body for m in h.twilio.messages[6:]]
    assert all(text.startswith("[MAINTENANCE] Patch Tuesday: All clear, servers are back") for text in texts)
    ended = window_of(h, nid)
    assert ended is not None and ended["ended_early"] is not None
    listed = json.dumps(await command(h, "list", "list"), ensure_ascii=False)
    shown = f"`{nid}` [MAINTENANCE] Patch Tuesday · :wrench: window {window['start']} to {window['end']}"
    assert shown in listed
    status = json.dumps(await command(h, f"status {nid}", "status"))
    assert "silences `env=prod,service=db`" in status and "ended early at" in status


async def test_typed_window_errors_name_the_field(h: Harness) -> None:
    bad = await preview_typed(h, TYPED.replace("22:00-23:30", "25:00-23:30"), "bad")
    assert "window" in bad["text"] and "not a time of day" in bad["text"]
    wrong = await preview_typed(h, TYPED.replace("maintenance", "info", 1), "info")
    assert "window: only for the maintenance severity" in wrong["text"]
    unknown = await command(h, "done nope123: text", "unknown")
    assert "no notification" in unknown["text"]


def with_window(values: dict[str, Any], window: str | None, silence: str | None) -> dict[str, Any]:
    """The modal's optional window fields, as Slack fills them in."""
    for block, value in (("window", window), ("silence", silence)):
        values[block] = {"value": {"type": "plain_text_input", "value": value}}
    return values


async def test_modal_window_fields_are_checked_and_stored(h: Harness) -> None:
    opened = await h.signed.command("", ANNOUNCER, CHANNEL, h.response_url("cmd"), trigger_id="trig.1")
    assert opened.status_code == 200
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("views.open")))
    view = h.slack.calls_to("views.open")[0].args["view"]
    assert {"window", "silence"} <= {b.get("block_id") for b in view["blocks"]}

    base = {"audience": "site:berlin", "channels": ("email",), "title": "Patch"}
    wrong = with_window(modal_values(severity="info", **base), "22:00-23:30", "service=db")  # type: ignore[arg-type]
    answer = await h.signed.interaction(view_submission(view, wrong, ANNOUNCER))
    assert answer.json() == {
        "response_action": "errors",
        "errors": {"window": "window: only for the maintenance severity (not 'info')"},
    }
    bad = with_window(modal_values(severity="maintenance", **base), "22:00-23:30", "db")  # type: ignore[arg-type]
    answer = await h.signed.interaction(view_submission(view, bad, ANNOUNCER))
    assert answer.json()["errors"] == {"silence": "silence: expected key=value[,key=value], not 'db'"}

    good = with_window(modal_values(severity="maintenance", **base), "22:00-23:30", "service=db")  # type: ignore[arg-type]
    answer = await h.signed.interaction(view_submission(view, good, ANNOUNCER))
    assert answer.status_code == 200 and answer.content == b""
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("chat.postEphemeral")))
    preview = h.slack.calls_to("chat.postEphemeral")[0].args["blocks"]
    assert "alerts with `service=db` page nobody" in json.dumps(preview)
    await press_send(h, preview)
    await h.responses("s")
    (row,) = [n for n in notifications(h.db_url) if n.kind == "announcement"]
    window = window_of(h, row.id)
    assert (
        window is not None and window["silence"] == {"service": "db"} and window["end"].endswith("T23:30:00Z")
    )


async def test_done_button_on_the_progress_message_sends_the_all_clear_once(h: Harness) -> None:
    nid = await send_typed(h, TYPED)
    await eventually(lambda: len(h.smtp.messages) == 2 and len(h.twilio.messages) == 3, timeout=40)
    await eventually(lambda: bool(progress_ts(h, nid)), timeout=40)  # the progress message is posted
    ts = progress_ts(h, nid)
    progress = h.slack.messages[(CHANNEL, ts)]
    await eventually(lambda: "announce_done" in json.dumps(progress.blocks), timeout=40)
    done = button(progress.blocks, "announce_done")
    assert done["value"] == nid and "confirm" in done

    payload = block_action(
        "announce_done", nid, ANNOUNCER, CHANNEL, h.response_url("done"), ephemeral=False, message_ts=ts
    )
    assert (await h.signed.interaction(payload)).status_code == 200
    answer = (await h.responses("done"))[0]
    assert "All-clear" in answer["text"] and "window has ended" in answer["text"]
    await eventually(lambda: len(h.smtp.messages) == 4, timeout=40)
    assert {str(m.message["Subject"]) for m in h.smtp.messages[2:]} == {"Re: [MAINTENANCE] Patch Tuesday"}
    await eventually(lambda: "announce_done" not in json.dumps(progress.blocks), timeout=40)

    again = block_action(
        "announce_done", nid, ANNOUNCER, CHANNEL, h.response_url("again"), ephemeral=False, message_ts=ts
    )
    assert (await h.signed.interaction(again)).status_code == 200
    assert "has ended" in (await h.responses("again"))[0]["text"]
    assert [n.kind for n in notifications(h.db_url)].count("followup") == 1  # no second all-clear
