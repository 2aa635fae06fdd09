"""``POST /slack/events`` refuses what Slack did not sign before reading it, Slack text is escaped,
and status, list and the Home tab show notifications only to whom they concern.

Everything goes through signed (or unsigned) HTTP requests to ``HeraldServer`` with the Slack, SMTP
and Twilio stand-ins, as in ``test_slack_flows``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from slack_signing import (
    ANNOUNCER,
    CHANNEL,
    PEOPLE,
    SIGNING_SECRET,
    STRANGER,
    Harness,
    block_action,
    running_herald,
    sign,
)
from test_alert_webhooks import ALERT_CHANNEL, GENERIC_TOKEN, generic, post, running_alerts
from test_slack_flows import audit_rows, button, eventually, notifications, preview_typed, progress_final

from bot.alerts.messages import GroupFacts
from bot.alerts.slack_message import GroupView, alert_message

MIB = 1024 * 1024
MARKER = "BODYMARKER-7f3a"


@pytest.fixture
async def h(db_url: str, tmp_path: Path) -> Any:
    async with running_herald(db_url, tmp_path) as harness:
        yield harness


async def raw_post(h: Harness, headers: dict[str, str], first_bytes: bytes) -> tuple[int, bytes]:
    """Send the request line, ``headers`` and only ``first_bytes`` of the body; read the answer.

    The server answers without waiting for the rest: proof it refused before reading the body.
    """
    where = urlsplit(h.server.url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        writer.write(f"POST /slack/events HTTP/1.1\r\nHost: herald\r\n{head}\r\n".encode() + first_bytes)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


async def test_unsigned_16_mib_body_is_refused_before_it_is_read(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    huge = {"Content-Type": "application/json", "Content-Length": str(16 * MIB)}
    status, _ = await raw_post(h, huge, (MARKER + "\n").encode() * 100)
    assert status == 413  # the app-wide body cap (4 MiB) answers before any route reads
    # Under the app-wide cap but over Slack's 1 MiB: unsigned is 401 from the headers alone ...
    headers = {"Content-Type": "application/json", "Content-Length": str(2 * MIB)}
    status, body = await raw_post(h, headers, (MARKER + "\n").encode() * 100)
    assert status == 401 and b"signature" in body
    # ... and signed-looking headers with too large a declared length: 413, still before the body.
    signed = {**headers, **sign(SIGNING_SECRET, "whatever")}
    status, body = await raw_post(h, signed, MARKER.encode())
    assert status == 413 and b"larger than 1048576 bytes" in body
    assert MARKER not in caplog.text
    assert h.slack.calls == []


async def test_a_chunked_body_past_the_limit_is_413(h: Harness) -> None:
    big = b"{" + b" " * (2 * MIB) + b"}"

    async def chunks() -> Any:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    headers = {"Content-Type": "application/json", **sign(SIGNING_SECRET, big.decode())}
    answer = await h.http.post(f"{h.server.url}/slack/events", content=chunks(), headers=headers)
    assert answer.status_code == 413


FORM = "application/x-www-form-urlencoded"
MALFORMED = [
    (b"{not json", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b'"just a string"', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
    (b"[" * 100_000, "application/json"),
    (b"payload=%7Bnot-json", FORM),
    (b"payload=%5B1%5D", FORM),
    (b"payload=%FF%FE", FORM),
    (b'{"type": "event_callback", "event": "not an object"}', "application/json"),
    (b'{"type": "block_actions", "actions": "x", "user": 5}', "application/json"),
    (b'{"type": "view_submission", "view": {"callback_id": "announce_modal"}}', "application/json"),
    (b"payload=" + b"%7B%22type%22%3A%22view_submission%22%7D", FORM),
]


@pytest.mark.parametrize(("body", "content_type"), MALFORMED)
async def test_malformed_bodies_are_4xx_never_5xx_and_never_logged(
    h: Harness, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{h.server.url}/slack/events"
    unsigned = await h.http.post(url, content=body, headers={"Content-Type": content_type})
    assert unsigned.status_code == 401
    signed_headers = {"Content-Type": content_type, **_sign_bytes(body)}
    signed = await h.http.post(url, content=body, headers=signed_headers)
    assert 400 <= signed.status_code < 500, signed.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("timestamp", ["abc", "", "-5", "1e9", "99999999999999999999", "12.5", "stale"])
async def test_bad_timestamps_are_401(h: Harness, caplog: pytest.LogCaptureFixture, timestamp: str) -> None:
    caplog.set_level(logging.DEBUG)
    if timestamp == "stale":  # computed here: test ids must not change with the clock (pytest-xdist)
        timestamp = str(int(time.time()) - 301)
    body = f"command=%2Fannounce&text=help&user_id={MARKER}"
    headers = {"Content-Type": FORM, **sign(SIGNING_SECRET, body)}
    headers["X-Slack-Request-Timestamp"] = timestamp
    answer = await h.http.post(f"{h.server.url}/slack/events", content=body.encode(), headers=headers)
    assert answer.status_code == 401
    assert MARKER not in caplog.text and "Traceback" not in caplog.text


async def test_forged_signature_is_never_logged_with_its_body(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = f"command=%2Fannounce&text=help%0AINFO+forged+line+{MARKER}"
    answer = await h.signed.post(body, FORM, secret="not-the-secret")
    assert answer.status_code == 401
    assert MARKER not in caplog.text and "forged line" not in caplog.text
    # A signed one still works.
    assert (await h.signed.post(body.replace("%0A", "+"), FORM)).status_code == 200


async def test_a_signed_request_no_listener_handles_is_logged_without_its_body(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Bolt's "Unhandled request (...)" warning quotes the payload's value.
    suggestion = {"type": "block_suggestion", "action_id": "nope", "block_id": "b", "value": MARKER}
    answer = await h.signed.post(json.dumps(suggestion), "application/json")
    assert answer.status_code == 404
    assert "Unhandled request" in caplog.text and MARKER not in caplog.text


def _sign_bytes(body: bytes) -> dict[str, str]:
    import hashlib
    import hmac

    stamp = str(int(time.time()))
    digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def recorded_text(h: Harness) -> str:
    """Every text Herald sent to Slack: Web API calls and response_url posts, as JSON."""
    calls = [call.args for call in h.slack.calls]
    answers = [post.payload for post in h.slack.responses]
    return json.dumps([calls, answers], ensure_ascii=False)


# -- every text posted to Slack is escaped -----------------------------------------------------------

UNSAFE = ("<@U123>", "<!channel>", "<!here>", "<https://evil.example|click>")


def assert_escaped(recorded: str) -> None:
    for raw in UNSAFE:
        assert raw not in recorded, f"{raw} reached Slack unescaped"


async def test_announcement_text_is_escaped_in_every_slack_call(h: Harness) -> None:
    # Slack escapes what the user typed: "<" arrives as "&lt;" and the parser turns it back.
    typed = "info to site:berlin via email: Hi &lt;@U123&gt; &lt;!channel&gt; | see &lt;!here&gt; &amp; go"
    preview = await preview_typed(h, typed, "cmd")
    await h.signed.interaction(
        block_action(
            "announce_send",
            button(preview["blocks"], "announce_send")["value"],
            ANNOUNCER,
            CHANNEL,
            h.response_url("send"),
        )
    )
    await eventually(lambda: progress_final(h))
    (row,) = notifications(h.db_url)
    assert row.title == "Hi <@U123> <!channel>"
    await h.signed.command("list", ANNOUNCER, CHANNEL, h.response_url("list"))
    await h.signed.command(f"status {row.id}", ANNOUNCER, CHANNEL, h.response_url("status"))
    await h.signed.event({"type": "app_home_opened", "user": ANNOUNCER, "channel": "D1", "tab": "home"})
    await h.responses("list")
    await h.responses("status")
    await h.slack.wait_for(lambda: bool(h.slack.calls_to("views.publish")))
    recorded = recorded_text(h)
    assert_escaped(recorded)
    assert "Hi &lt;@U123&gt; &lt;!channel&gt;" in recorded
    (progress,) = h.slack.calls_to("chat.postMessage")
    assert progress.args["text"].startswith("[INFO] Hi &lt;@U123&gt; &lt;!channel&gt;")


async def test_alert_summary_is_escaped_in_the_alert_channel(db_url: str, tmp_path: Path) -> None:
    async with running_alerts(db_url, tmp_path, ack_within="1h") as a:
        summary = "<!channel> VPN <@U123> down & <https://evil.example|click>"
        answer = await post(a, "/hooks/alerts", generic(summary=summary), token=GENERIC_TOKEN)
        assert answer.status_code == 202
        await a.slack.wait_for(lambda: bool(a.slack.calls_to("chat.postMessage")))
        (call,) = [c for c in a.slack.calls_to("chat.postMessage") if c.args["channel"] == ALERT_CHANNEL]
        shown = json.dumps(call.args, ensure_ascii=False)
        assert_escaped(shown)
        assert "&lt;!channel&gt; VPN &lt;@U123&gt; down &amp;" in call.args["text"]


def _alert_view(acked_by: str | None, resolved_by: str | None = None) -> GroupView:
    facts = GroupFacts(
        id="g1",
        title="DB <!here>",
        severity="critical",
        route="core",
        audience="group:<!channel>",
        opened_at=1_767_225_600.0,
        firing=1,
    )
    return GroupView(
        facts=facts,
        state="firing",
        channels=("email",),
        acked_at=1_767_225_700.0 if acked_by else None,
        acked_by=acked_by,
        resolved_at=None,
        resolved_by=resolved_by,
        next_escalation_at=None,
        next_audience=None,
        held_back=0,
        notices=(),
        revision=1,
        slack_channel=None,
        slack_ts=None,
    )


@pytest.mark.parametrize(
    ("actor", "shown"),
    [
        ("slack:U42", "<@U42>"),  # a Slack user: a mention
        ("sms:+4915110000001 (<@U123> Mallory)", "&lt;@U123&gt; Mallory (SMS)"),  # a name: text
        ("<@U123>", "&lt;@U123&gt;"),
        ("slack:<!channel>", "&lt;!channel&gt;"),  # not a user id: text
    ],
)
def test_who_acknowledged_is_a_mention_only_for_a_slack_user(actor: str, shown: str) -> None:
    text, blocks = alert_message(_alert_view(actor))
    rendered = json.dumps([text, blocks], ensure_ascii=False)
    assert shown in rendered
    assert_escaped(rendered)
    assert "<!here>" not in rendered and "<!channel>" not in rendered


# -- status, list and the Home tab: only to whom they concern ----------------------------------------

MEMBER, BYSTANDER = "UALICE", "UERIN"
LINKED = [
    {**person, "slack_user_id": {"alice": MEMBER, "erin": BYSTANDER}.get(str(person["id"]))}
    for person in PEOPLE
]


async def _announce(h: Harness, typed: str, key: str) -> None:
    preview = await preview_typed(h, typed, key)
    send = button(preview["blocks"], "announce_send")
    await h.signed.interaction(
        block_action("announce_send", send["value"], ANNOUNCER, CHANNEL, h.response_url(f"{key}-send"))
    )
    await h.responses(f"{key}-send")


async def test_list_and_status_are_for_announcers_only(h: Harness) -> None:
    await _announce(h, "info to site:paris via email: Security: reset passwords | now", "a")
    (row,) = notifications(h.db_url)
    await h.signed.command("list", STRANGER, CHANNEL, h.response_url("list"))
    await h.signed.command(f"status {row.id}", STRANGER, CHANNEL, h.response_url("status"))
    for key in ("list", "status"):
        (answer,) = await h.responses(key)
        assert answer["response_type"] == "ephemeral"
        assert "not allowed to send announcements" in answer["text"]
        assert "Security" not in json.dumps(answer) and row.id not in json.dumps(answer)
    refused = [(r.actor, r.action) for r in audit_rows(h.db_url) if not r.allowed]
    assert (STRANGER, "slack.list") in refused and (STRANGER, "slack.status") in refused
    await h.signed.command("list", ANNOUNCER, CHANNEL, h.response_url("ok"))
    assert "Security" in json.dumps((await h.responses("ok"))[0])


async def test_home_tab_shows_a_member_only_their_notifications(db_url: str, tmp_path: Path) -> None:
    async with running_herald(db_url, tmp_path, people=LINKED) as h:
        await _announce(h, "info to site:paris via email: Security: Paris passwords | reset", "paris")
        await _announce(h, "info to site:berlin via email: Berlin lunch | cake", "berlin")
        await eventually(lambda: len(h.smtp.messages) == 3)

        async def home(user: str) -> str:
            before = len(h.slack.calls_to("views.publish"))
            await h.signed.event({"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home"})
            await h.slack.wait_for(lambda: len(h.slack.calls_to("views.publish")) > before)
            call = h.slack.calls_to("views.publish")[-1]
            assert call.args["user_id"] == user
            return json.dumps(call.args["view"]["blocks"], ensure_ascii=False)

        member = await home(MEMBER)
        assert "Berlin lunch" in member and "Paris passwords" not in member
        bystander = await home(BYSTANDER)
        assert "Paris passwords" in bystander and "Berlin lunch" not in bystander
        unlinked = await home(STRANGER)
        assert "Paris" not in unlinked and "Berlin" not in unlinked and "No notifications yet" in unlinked
        everything = await home(ANNOUNCER)
        assert "Paris passwords" in everything and "Berlin lunch" in everything
