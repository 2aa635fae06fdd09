"""A local stand-in for Slack's Web API, for the tests and the demo.

It follows the published contract of ``https://slack.com/api/{method}`` for the methods Herald
calls: arguments arrive as a query string, a form (``application/x-www-form-urlencoded``) or JSON
(``application/json``), the token as ``Authorization: Bearer xoxb-...`` (or a ``token`` argument);
every answer is HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``, except
rate limiting, which is HTTP 429 with a ``Retry-After`` header (seconds) and ``error: ratelimited``.

Methods: ``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``,
``conversations.open``, ``views.open``, ``views.update``, ``views.publish``, ``usergroups.users.list``,
``users.info``, ``users.list``. Anything else answers ``unknown_method``. Errors it gives as Slack does:
``not_authed`` (no token), ``invalid_auth`` (another token), ``channel_not_found`` (no channel),
``message_not_found`` (``chat.update`` of a ts it never issued), ``no_text`` (neither text nor
blocks), ``invalid_arguments`` (a required argument missing), ``no_such_subteam``, ``user_not_found``.

Direct messages: ``conversations.open(users=U…)`` answers the person's DM channel (``D…``, the same
one every time) for a user in ``users``; ``user_not_found`` for anyone else, ``user_disabled`` for a
user with ``deleted: true``, ``cannot_dm_bot`` for a bot user (``is_bot: true``). ``chat.postMessage``
to a ``D…`` channel it never opened answers ``channel_not_found``; :meth:`SlackStandIn.dms_to`
lists what a person received.

Failures on demand, per method and consumed in order: :meth:`SlackStandIn.rate_limit` answers 429
with ``Retry-After`` the next N calls; :meth:`SlackStandIn.fail` answers ``{"ok": false, "error": E}``.

A ``response_url`` endpoint, ``POST /response/{key}``, records what an app posts back to a slash
command or an interaction (:meth:`SlackStandIn.response_url` builds one); Slack answers it ``ok``.

Socket Mode, with ``app_token`` (``xapp-…``): ``apps.connections.open`` (the app token only; the
bot token gets ``not_allowed_token_type``) answers a ``ws://`` URL; a client that connects gets
``{"type": "hello"}``; :meth:`SlackStandIn.send_envelope` pushes ``slash_commands``, ``interactive``
or ``events_api`` envelopes and the app's acks (``{"envelope_id", "payload"?}``) land in ``acks``.

::

    async with SlackStandIn(token="xoxb-test") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url, retry_handlers=[])
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.calls_to("chat.postMessage")[0].args["text"] == "hi"

Run alone: ``python -m bot.standins.slack --port 8091``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

from bot import runtime
from bot.standins import serve_until_signalled

JsonDict = dict[str, Any]
_JSON_ARGS = ("blocks", "attachments", "view", "metadata")


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One Web API request as it arrived (arguments decoded; ``blocks``/``view`` parsed from JSON)."""

    method: str
    args: JsonDict
    at: float
    answered: str  # "ok", an error code, or "ratelimited"


@dataclass(frozen=True, slots=True)
class ResponsePost:
    """One POST an app made to a ``response_url``."""

    key: str
    payload: JsonDict


@dataclass(slots=True)
class PostedMessage:
    """A message ``chat.postMessage`` created; ``chat.update`` appends to ``history``."""

    channel: str
    ts: str
    text: str
    blocks: list[JsonDict]
    history: list[JsonDict] = field(default_factory=list)


@dataclass(slots=True)
class _Fault:
    kind: str  # "ratelimited" | "error"
    error: str
    retry_after: int


class SlackStandIn:
    """Slack's Web API on 127.0.0.1 (port 0 picks a free port); see the module docstring.

    ``calls`` records every request to ``/api/``, ``responses`` every post to a response URL,
    ``messages`` the channel messages by ``(channel, ts)``. ``usergroups`` (id → member ids) and
    ``users`` (id → user object) feed the user and user-group methods and may change while it runs.
    """

    def __init__(
        self,
        *,
        token: str = "xoxb-stand-in",  # noqa: S107 - a fake server's own token
        host: str = "127.0.0.1",
        port: int = 0,
        team_id: str = "T0HERALD",
        bot_user_id: str = "UHERALDBOT",
        usergroups: Mapping[str, list[str]] | None = None,
        users: Mapping[str, JsonDict] | None = None,
        app_token: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token = token
        self.app_token = app_token
        self.acks: dict[str, JsonDict] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self.host, self.port = host, port
        self.team_id, self.bot_user_id = team_id, bot_user_id
        self.usergroups: dict[str, list[str]] = dict(usergroups or {})
        self.users: dict[str, JsonDict] = dict(users or {})
        self.calls: list[ApiCall] = []
        self.responses: list[ResponsePost] = []
        self.messages: dict[tuple[str, str], PostedMessage] = {}
        self.api_url = ""
        self.url = ""
        self._clock = clock
        self._faults: defaultdict[str, deque[_Fault]] = defaultdict(deque)
        self._ts_counter = 0
        self.dm_channels: dict[str, str] = {}  # user id -> DM channel id, as conversations.open made them
        self._dm_ids: set[str] = set()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._methods: dict[str, Callable[[JsonDict], JsonDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "conversations.open": self._conversations_open,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "users.list": self._users_list,
        }

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> str:
        """Listen; return ``api_url`` (``http://127.0.0.1:PORT/api/``, ending in a slash)."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{key}", self._response)
        app.router.add_get("/socket-mode", self._socket_mode)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"
        self.api_url = f"{self.url}/api/"
        return self.api_url

    async def close(self) -> None:
        """Stop listening and close connections (Socket Mode ones with a ``disconnect`` first)."""
        for socket in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await socket.send_json({"type": "disconnect", "reason": "warning"})
            await socket.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SlackStandIn:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- what tests ask for ----------------------------------------------------------------------

    def response_url(self, key: str) -> str:
        """A ``response_url`` for a slash-command or interaction payload; posts land in ``responses``."""
        return f"{self.url}/response/{key}"

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with HTTP 429 and ``Retry-After``."""
        for _ in range(times):
            self._faults[method].append(_Fault("ratelimited", "ratelimited", retry_after))

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, "error": error}``."""
        for _ in range(times):
            self._faults[method].append(_Fault("error", error, 0))

    def calls_to(self, method: str) -> list[ApiCall]:
        """The recorded calls of one method, oldest first."""
        return [call for call in self.calls if call.method == method]

    def dms_to(self, user_id: str) -> list[PostedMessage]:
        """The messages posted in ``user_id``'s DM channel, oldest first."""
        channel = self.dm_channels.get(user_id)
        return [m for (where, _), m in self.messages.items() if channel is not None and where == channel]

    def responses_to(self, key: str) -> list[JsonDict]:
        """What was posted to ``response_url(key)``, oldest first."""
        return [post.payload for post in self.responses if post.key == key]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` holds, re-checking after every request; TimeoutError if not."""

        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)

    # -- HTTP ------------------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args = await _read_args(request)
        try:
            status, body, headers = self._answer(method, args, request.headers.get("Authorization", ""))
            self.calls.append(ApiCall(method, args, self._clock(), body.get("error", "ok")))
        finally:
            await self._notify()
        return web.json_response(body, status=status, headers=headers)

    def _answer(
        self, method: str, args: JsonDict, authorization: str
    ) -> tuple[int, JsonDict, dict[str, str]]:
        given = authorization.removeprefix("Bearer ").strip() if authorization else str(args.get("token", ""))
        if not given:
            return 200, _error("not_authed"), {}
        is_bot = hmac.compare_digest(given.encode(), self.token.encode())
        is_app = self.app_token is not None and hmac.compare_digest(given.encode(), self.app_token.encode())
        if not (is_bot or is_app):
            return 200, _error("invalid_auth"), {}
        if is_app != (method == "apps.connections.open"):
            return 200, _error("not_allowed_token_type"), {}
        if self._faults[method]:
            fault = self._faults[method].popleft()
            if fault.kind == "ratelimited":
                return 429, _error("ratelimited"), {"Retry-After": str(fault.retry_after)}
            return 200, _error(fault.error), {}
        if method == "apps.connections.open":
            return (
                200,
                {"ok": True, "url": f"ws://{self.host}:{self.port}/socket-mode?ticket={uuid.uuid4()}"},
                {},
            )
        handler = self._methods.get(method)
        if handler is None:
            return 200, _error("unknown_method"), {}
        return 200, handler(args), {}

    async def _response(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = await request.json()
        except ValueError:
            payload = dict(await request.post())
        self.responses.append(ResponsePost(request.match_info["key"], dict(payload)))
        await self._notify()
        return web.Response(text="ok")

    # -- Socket Mode -----------------------------------------------------------------------------

    async def _socket_mode(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "stand-in", "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A0HERALD"},
            }
        )
        await self._notify()
        try:
            async for frame in socket:
                if frame.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError):
                    ack = json.loads(frame.data)
                    if isinstance(ack, dict) and "envelope_id" in ack:
                        self.acks[str(ack["envelope_id"])] = dict(ack.get("payload") or {})
                        await self._notify()
        finally:
            self._sockets.remove(socket)
        return socket

    @property
    def socket_connections(self) -> int:
        """Socket Mode connections open now."""
        return len(self._sockets)

    async def send_envelope(self, kind: str, payload: JsonDict, retry_attempt: int = 0) -> str:
        """Push one envelope (``slash_commands``, ``interactive``, ``events_api``); its envelope id."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode connection")
        envelope_id = str(uuid.uuid4())
        envelope: JsonDict = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":
            envelope.update(retry_attempt=retry_attempt, retry_reason="timeout" if retry_attempt else "")
        await self._sockets[-1].send_json(envelope)
        return envelope_id

    # -- methods ---------------------------------------------------------------------------------

    def _auth_test(self, args: JsonDict) -> JsonDict:
        return {
            "ok": True,
            "url": "https://herald-stand-in.slack.com/",
            "team": "Herald Stand-in",
            "user": "herald",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "BHERALDBOT",
            "is_enterprise_install": False,
        }

    def _next_ts(self) -> str:
        self._ts_counter += 1
        return f"{int(self._clock())}.{self._ts_counter:06d}"

    def _conversations_open(self, args: JsonDict) -> JsonDict:
        users = [u.strip() for u in str(args.get("users") or "").split(",") if u.strip()]
        if not users:
            return _error("users_list_not_supplied")
        if len(users) > 1:
            return _error("not_implemented")  # group DMs: Herald opens one person's DM at a time
        user = self.users.get(users[0])
        if user is None:
            return _error("user_not_found")
        if user.get("deleted"):
            return _error("user_disabled")
        if user.get("is_bot") or users[0] == self.bot_user_id:
            return _error("cannot_dm_bot")
        channel = self.dm_channels.setdefault(users[0], f"D{len(self.dm_channels) + 1:08d}")
        self._dm_ids.add(channel)
        return {"ok": True, "channel": {"id": channel}}

    def _chat_post_message(self, args: JsonDict) -> JsonDict:
        channel = str(args.get("channel") or "")
        if not channel or (channel.startswith("D") and channel not in self._dm_ids):
            return _error("channel_not_found")
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        ts = self._next_ts()
        message = PostedMessage(channel, ts, str(args.get("text", "")), list(args.get("blocks") or []))
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": _message_body(message, self.bot_user_id)}

    def _chat_update(self, args: JsonDict) -> JsonDict:
        channel, ts = str(args.get("channel") or ""), str(args.get("ts") or "")
        if not channel:
            return _error("channel_not_found")
        message = self.messages.get((channel, ts))
        if message is None:
            return _error("message_not_found")
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        message.text = str(args.get("text", ""))
        message.blocks = list(args.get("blocks") or [])
        message.history.append({"text": message.text, "blocks": message.blocks})
        return {"ok": True, "channel": channel, "ts": ts, "text": message.text}

    def _chat_post_ephemeral(self, args: JsonDict) -> JsonDict:
        if not args.get("channel"):
            return _error("channel_not_found")
        if not args.get("user"):
            return _error("user_not_in_channel")
        if not args.get("text") and not args.get("blocks"):
            return _error("no_text")
        return {"ok": True, "message_ts": self._next_ts()}

    def _views_open(self, args: JsonDict) -> JsonDict:
        if not args.get("trigger_id") or not isinstance(args.get("view"), dict):
            return _error("invalid_arguments")
        return {"ok": True, "view": {"id": f"V{self._ts_counter:08d}", **args["view"]}}

    def _views_update(self, args: JsonDict) -> JsonDict:
        if not (args.get("view_id") or args.get("external_id")) or not isinstance(args.get("view"), dict):
            return _error("invalid_arguments")
        return {"ok": True, "view": {"id": args.get("view_id", ""), **args["view"]}}

    def _views_publish(self, args: JsonDict) -> JsonDict:
        view = args.get("view")
        if not args.get("user_id") or not isinstance(view, dict):
            return _error("invalid_arguments")
        if view.get("type") != "home":
            return _error("invalid_arguments")
        return {"ok": True, "view": {"id": f"V{args['user_id']}", **view}}

    def _usergroups_users_list(self, args: JsonDict) -> JsonDict:
        group = str(args.get("usergroup") or "")
        if not group:
            return _error("invalid_arguments")
        if group not in self.usergroups:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[group])}

    def _users_info(self, args: JsonDict) -> JsonDict:
        user = self.users.get(str(args.get("user") or ""))
        if user is None:
            return _error("user_not_found")
        return {"ok": True, "user": user}

    def _users_list(self, args: JsonDict) -> JsonDict:
        members = list(self.users.values())
        limit = int(args.get("limit") or 0) or len(members) or 1
        start = int(args.get("cursor") or 0)
        page = members[start : start + limit]
        if str(args.get("include_locale") or "").lower() not in ("true", "1"):
            page = [{k: v for k, v in member.items() if k != "locale"} for member in page]  # as Slack does
        following = start + limit
        cursor = str(following) if following < len(members) else ""
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": cursor}}


def _error(code: str) -> JsonDict:
    return {"ok": False, "error": code}


def _message_body(message: PostedMessage, bot_user_id: str) -> JsonDict:
    return {"type": "message", "user": bot_user_id, "text": message.text, "ts": message.ts}


async def _read_args(request: web.Request) -> JsonDict:
    """Query string, then a JSON or form body, as Slack merges them; JSON-valued arguments parsed."""
    args: JsonDict = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        else:
            form = await request.post()
            args.update({key: value for key, value in form.items() if isinstance(value, str)})
    for key in _JSON_ARGS:
        value = args.get(key)
        if isinstance(value, str) and value.strip().startswith(("{", "[")):
            # Left as sent when it is not JSON: the method then answers invalid_arguments.
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)
    return args


def numbered_users(n: int) -> list[str]:
    """The ids ``--users N`` makes known: ``U00000001`` ... ``U{N:08d}``."""
    return [f"U{index:08d}" for index in range(1, n + 1)]


async def _serve(args: argparse.Namespace) -> None:
    users = {
        user: {"id": user, "name": f"user{index}"} for index, user in enumerate(numbered_users(args.users))
    }
    standin = SlackStandIn(
        token=args.token, host=args.host, port=args.port, app_token=args.app_token, users=users
    )
    await serve_until_signalled(
        standin,
        lambda s: f"slack stand-in listening on {s.api_url}",
        lambda s: f"slack stand-in stopped after {len(s.calls)} calls",
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m bot.standins.slack``: serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.standins.slack", description="Local stand-in for Slack's Web API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed at start)")
    parser.add_argument("--token", default="xoxb-stand-in")
    parser.add_argument("--app-token", default=None, help="xapp-... token: enables Socket Mode")
    parser.add_argument("--users", type=int, default=0, help="N known users U00000001... (DM targets)")
    runtime.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
