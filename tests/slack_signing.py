"""How Slack talks to an app, for the tests: signed requests and the payloads Slack sends.

Slack signs every request: ``X-Slack-Request-Timestamp: T`` and
``X-Slack-Signature: v0=HEX``, where HEX is HMAC-SHA256 with the signing secret over
``v0:{T}:{raw body}``. Slash commands arrive form-encoded, interactions as a form with one
``payload`` field holding JSON, events as JSON. :class:`SignedSlack` posts them to a running app.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from bot.standins.slack import SlackStandIn
from bot.standins.smtp import SmtpStandIn
from bot.standins.twilio import TwilioStandIn

if TYPE_CHECKING:
    from bot.clock import Clock
    from bot.server import HeraldServer

TEAM_ID = "T0HERALD"


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds to a request with this ``body``."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def command_body(
    text: str,
    user_id: str,
    channel_id: str,
    response_url: str,
    trigger_id: str = "",
    command: str = "/announce",
) -> str:
    """A slash command, form-encoded as Slack posts it."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "herald",
            "channel_id": channel_id,
            "channel_name": "it-ops",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0HERALD",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or f"trigger.{time.time_ns()}",
        }
    )


def interaction_body(payload: dict[str, Any]) -> str:
    """An interaction (block_actions, view_submission), as Slack posts it: ``payload=<json>``."""
    return urlencode({"payload": json.dumps(payload)})


def block_action(
    action_id: str,
    value: str,
    user_id: str,
    channel_id: str,
    response_url: str,
    ephemeral: bool = True,
    message_ts: str = "1767225600.000100",
) -> dict[str, Any]:
    """A button click in a message (ephemeral preview, or the progress message)."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "herald"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0HERALD",
        "token": "deprecated-verification-token",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": ephemeral,
        },
        "trigger_id": f"trigger.{time.time_ns()}",
        "channel": {"id": channel_id, "name": "it-ops"},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "announce_preview",
                "text": {"type": "plain_text", "text": "Send", "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(view: dict[str, Any], values: dict[str, Any], user_id: str) -> dict[str, Any]:
    """The modal ``view`` (as the app opened it) submitted with ``values`` as its state."""
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "herald"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": TEAM_ID},
        "api_app_id": "A0HERALD",
        "token": "deprecated-verification-token",
        "trigger_id": f"trigger.{time.time_ns()}",
        "view": {
            **view,
            "id": "V0MODAL",
            "team_id": TEAM_ID,
            "state": {"values": values},
            "hash": "1767225600.abcdef",
            "app_id": "A0HERALD",
            "bot_id": "BHERALDBOT",
        },
        "response_urls": [],
    }


def modal_values(
    audience: str = "",
    channels: tuple[str, ...] = (),
    severity: str | None = None,
    title: str = "",
    body: str = "",
    start_at: int | None = None,
) -> dict[str, Any]:
    """``view.state.values`` of the ``/announce`` modal as Slack fills it in."""
    return {
        "audience": {"value": {"type": "plain_text_input", "value": audience or None}},
        "channels": {
            "value": {
                "type": "checkboxes",
                "selected_options": [
                    {"text": {"type": "plain_text", "text": c}, "value": c} for c in channels
                ],
            }
        },
        "severity": {
            "value": {
                "type": "static_select",
                "selected_option": {"text": {"type": "plain_text", "text": severity}, "value": severity}
                if severity
                else None,
            }
        },
        "title": {"value": {"type": "plain_text_input", "value": title or None}},
        "body": {"value": {"type": "plain_text_input", "value": body or None}},
        "start_at": {"value": {"type": "datetimepicker", "selected_date_time": start_at}},
    }


def event_body(event: dict[str, Any]) -> str:
    """An Events API callback wrapping ``event``."""
    return json.dumps(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0HERALD",
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": "UHERALDBOT", "is_bot": True}],
        }
    )


class SignedSlack:
    """Posts signed requests to an app's ``/slack/events`` over HTTP, as Slack does.

    Requests are stamped with the wall clock, or with ``clock`` when Herald runs on an injected one
    (it checks the stamp against ``herald.clock``)."""

    def __init__(self, http: httpx.AsyncClient, url: str, secret: str, clock: Clock | None = None) -> None:
        self.http = http
        self.url = url
        self.secret = secret
        self.clock = clock

    async def post(
        self,
        body: str,
        content_type: str,
        timestamp: int | None = None,
        secret: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if timestamp is None and self.clock is not None:
            timestamp = int(self.clock.now())
        signed = sign(secret or self.secret, body, timestamp)
        return await self.http.post(
            self.url,
            content=body.encode(),
            headers={"Content-Type": content_type, **signed, **(headers or {})},
        )

    async def command(
        self, text: str, user_id: str, channel_id: str, response_url: str, **extra: Any
    ) -> httpx.Response:
        body = command_body(
            text,
            user_id,
            channel_id,
            response_url,
            trigger_id=extra.pop("trigger_id", ""),
            command=extra.pop("command", "/announce"),
        )
        return await self.post(body, "application/x-www-form-urlencoded", **extra)

    async def interaction(self, payload: dict[str, Any], **extra: Any) -> httpx.Response:
        return await self.post(interaction_body(payload), "application/x-www-form-urlencoded", **extra)

    async def event(self, event: dict[str, Any], **extra: Any) -> httpx.Response:
        return await self.post(event_body(event), "application/json", **extra)


# -- Herald running against stand-ins (shared by the Slack and serve tests) --------------------------

BOT_TOKEN = "xoxb-test-bot-token"
SIGNING_SECRET = "test-signing-secret"
API_TOKEN = "test-api-token"
APP_TOKEN = "xapp-1-test-app-token"
TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "test-twilio-token"
ANNOUNCER = "UANNOUNCER"
GROUP = "SOPSTEAM"
GROUPED = "UGROUPED"
STRANGER = "USTRANGER"
CHANNEL = "CITOPS"

# site:berlin selects 4 active people: email reaches alice and bob (carol has no email, dave's is
# suppressed); sms reaches alice, carol and dave (bob has no phone). Erin is in Paris, frank inactive.
PEOPLE = [
    {
        "id": "alice",
        "name": "Alice",
        "email": "alice@example.com",
        "phone": "+4915110000001",
        "site": "Berlin",
    },
    {"id": "bob", "name": "Bob", "email": "bob@example.com", "phone": None, "site": "Berlin"},
    {"id": "carol", "name": "Carol", "email": None, "phone": "+4915110000003", "site": "Berlin"},
    {"id": "dave", "name": "Dave", "email": "dave@example.com", "phone": "+4915110000004", "site": "Berlin"},
    {"id": "erin", "name": "Erin", "email": "erin@example.com", "phone": "+4915110000005", "site": "Paris"},
    {
        "id": "frank",
        "name": "Frank",
        "email": "frank@example.com",
        "phone": None,
        "site": "Berlin",
        "active": False,
    },
]


def seed_directory(db_url: str, people: list[dict[str, Any]] | None = None) -> None:
    """Insert the test directory (and dave's suppressed email) straight into the database."""
    from bot.store import open_store
    from bot.tables import Person, Suppression

    store = open_store(db_url)
    try:
        with store.session() as session:
            for row in people if people is not None else PEOPLE:
                session.add(Person(**row))
            session.add(
                Suppression(channel="email", address="dave@example.com", reason="bounced", source="test")
            )
            session.commit()
    finally:
        store.dispose()


def herald_toml(
    db_url: str,
    slack_api_url: str,
    smtp_port: int,
    twilio_url: str,
    slack_extra: str = "",
    smtp_extra: str = "rate_per_second = 0\n",
    extra: str = "",
) -> str:
    """A settings file pointing Herald at the stand-ins (all on 127.0.0.1) and ``db_url``."""
    return (
        f'[database]\nurl = "{db_url}"\n'
        f'[server]\nhost = "127.0.0.1"\nport = 0\napi_token = "{API_TOKEN}"\n'
        f'[slack]\nbot_token = "{BOT_TOKEN}"\n'
        f'api_url = "{slack_api_url}"\nannouncers = ["{ANNOUNCER}", "{GROUP}"]\n{slack_extra}'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        f'from_address = "Herald <herald@example.com>"\n{smtp_extra}'
        f'[twilio]\naccount_sid = "{TWILIO_SID}"\nauth_token = "{TWILIO_TOKEN}"\n'
        f'from_number = "+15005550006"\napi_url = "{twilio_url}"\nrate_per_second = 0\n'
        "[quiet_hours]\nkinds = []\n" + extra
    )


async def sms_from(
    http: httpx.AsyncClient, url: str, phone: str, text: str, token: str = TWILIO_TOKEN
) -> httpx.Response:
    """An inbound SMS from ``phone`` posted to the Herald at ``url``, signed with the auth ``token`` as
    Twilio signs it (X-Twilio-Signature, for the default ``server.public_url``)."""
    params = {"From": phone, "To": "+15005550006", "Body": text, "MessageSid": "SM" + uuid.uuid4().hex}
    signed_url = "http://127.0.0.1:8080/hooks/twilio/inbound"  # server.public_url + path
    signature = RequestValidator(token).compute_signature(signed_url, params)
    return await http.post(
        f"{url}/hooks/twilio/inbound", data=params, headers={"X-Twilio-Signature": signature}
    )


@dataclass
class Harness:
    """Herald serving on 127.0.0.1 with Slack, SMTP and Twilio stand-ins, and a signed Slack client."""

    server: HeraldServer
    slack: SlackStandIn
    smtp: SmtpStandIn
    twilio: TwilioStandIn
    http: httpx.AsyncClient
    signed: SignedSlack
    db_url: str

    def response_url(self, key: str) -> str:
        return self.slack.response_url(key)

    async def responses(self, key: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` posts reached ``response_url(key)``; return them."""
        await self.slack.wait_for(lambda: len(self.slack.responses_to(key)) >= count, timeout)
        return self.slack.responses_to(key)


@asynccontextmanager
async def running_herald(
    db_url: str,
    tmp_path: Path,
    slack_extra: str = "",
    smtp_extra: str = "rate_per_second = 0\n",
    progress_interval: float = 0.3,
    people: list[dict[str, Any]] | None = None,
    socket_mode: bool = False,
    clock: Clock | None = None,
    dispatch: bool = True,
) -> AsyncIterator[Harness]:
    """Seed the directory, start the stand-ins and ``HeraldServer`` (dispatcher included).

    ``socket_mode``: Slack reaches Herald over Socket Mode (an app token, no signing secret).
    ``clock``: Herald's injected clock (signed requests are stamped with it). ``dispatch=False``: no
    dispatcher in the server; the test sends in steps (``conftest.dispatch_until``).
    """
    from bot.config import load_settings
    from bot.server import HeraldServer

    seed_directory(db_url, people)
    async with (
        SlackStandIn(
            token=BOT_TOKEN, usergroups={GROUP: [GROUPED]}, app_token=APP_TOKEN if socket_mode else None
        ) as slack,
        SmtpStandIn() as smtp,
        TwilioStandIn(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio,
    ):
        path = tmp_path / "herald.toml"
        slack_auth = (
            f'app_token = "{APP_TOKEN}"\n' if socket_mode else f'signing_secret = "{SIGNING_SECRET}"\n'
        )
        path.write_text(
            herald_toml(db_url, slack.api_url, smtp.port, twilio.url, slack_auth + slack_extra, smtp_extra),
            encoding="utf-8",
        )
        server = HeraldServer(
            load_settings(path),
            clock=clock,
            dispatch=dispatch,
            progress_interval=progress_interval,
            tick_every=0.5,
        )
        async with server, httpx.AsyncClient(timeout=15) as http:
            signed = SignedSlack(http, f"{server.url}/slack/events", SIGNING_SECRET, clock)
            yield Harness(server, slack, smtp, twilio, http, signed, db_url)
