"""The ``slack`` channel: a direct message to each person, through slack_sdk's AsyncWebClient.

::

    channel = SlackDmChannel(SlackDmSettings(bot_token="xoxb-..."), render=render_dm)
    prepared = channel.prepare(notice)            # once per notification: text and Block Kit
    receipt = await channel.send(prepared, Recipient("U024BE7LH"))   # once per person
    await channel.aclose()

A send is ``conversations.open(users=<id>)`` (skipped when the person's DM channel id is cached;
the cache is bounded, least recently used first out) then ``chat.postMessage`` to that channel
with the prepared blocks, the fallback ``text`` and ``metadata`` naming the notification and the
delivery (``message_key``), so that a later button on the message can say whose copy it was. The
receipt is ``<channel>/<ts>``, what ``chat.update`` needs to edit the DM in place.

The message itself is rendered outside this package (``render``: Herald escapes its mrkdwn in
:mod:`bot.slack.dm_blocks`); ``channels`` never imports ``bot``. ``preferences`` builds the block
that carries a recipient's signed preferences link, for the non-mandatory kinds that get one (unless
the prepared DM brings its own, in the notice's language).

Errors are those of :mod:`channels.base`, decided by :func:`classify_slack_error` (Slack's
``error`` codes and HTTP status) and :func:`classify_transport_error`. The SDK's retry handlers
are off: the dispatcher owns retries, and a 429's ``Retry-After`` becomes back-pressure.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from channels.base import (
    Channel,
    ChannelDownError,
    DeliveryError,
    Notice,
    PermanentError,
    Receipt,
    Recipient,
    TransientError,
    UncertainError,
    classify_http_failure,
    parse_retry_after,
)

JsonDict = dict[str, Any]
CONNECT_TIMEOUT = 5.0
METADATA_EVENT = "herald_notice"

# The bot token itself is refused: nobody can be sent to until an operator fixes it.
_CHANNEL_DOWN: dict[str, str] = {
    "not_authed": "auth",
    "invalid_auth": "auth",
    "token_revoked": "auth",
    "token_expired": "auth",
    "account_inactive": "auth",  # Slack: the token belongs to a deleted user or workspace
    "org_login_required": "auth",
    "ekm_access_denied": "auth",
    "missing_scope": "config",  # im:write or chat:write not granted
    "not_allowed_token_type": "config",
    "no_permission": "config",
    "team_access_not_granted": "config",
    "invalid_arguments": "config",
}
# This person cannot get a DM: permanent, and never suppressing (a token for the wrong workspace
# would otherwise suppress everyone; the person's other channels are untouched either way).
_PERMANENT: dict[str, str] = {
    "user_not_found": "invalid_address",
    "channel_not_found": "invalid_address",
    "user_disabled": "rejected_recipient",
    "cannot_dm_bot": "rejected_recipient",
    "is_archived": "rejected_recipient",
    "not_in_channel": "rejected_recipient",
    "restricted_action": "rejected_recipient",
    "messages_tab_disabled": "rejected_recipient",
    "too_many_users": "invalid_address",
    "msg_too_long": "rejected_message",
    "no_text": "rejected_message",
    "invalid_blocks": "rejected_message",
    "invalid_blocks_format": "rejected_message",
    "invalid_metadata_format": "rejected_message",
    "invalid_metadata_schema": "rejected_message",
}
_TRANSIENT: dict[str, str] = {
    "ratelimited": "rate_limited",
    "rate_limited": "rate_limited",
    "message_limit_exceeded": "rate_limited",
    "internal_error": "server_error",
    "fatal_error": "server_error",
    "service_unavailable": "server_error",
    "request_timeout": "timeout",
    "team_added_to_org": "server_error",
}


@dataclass(frozen=True)
class SlackDmSettings:
    """What the channel needs from ``[slack]`` and ``[slack_dm]``; ValueError names a bad field.

    ``api_url`` is the base of method URLs (``https://slack.com/api/``, trailing slash or none);
    ``timeout`` (seconds) bounds one request; ``dm_cache`` is how many people's DM channel ids
    are kept.
    """

    bot_token: str = field(repr=False)
    api_url: str = "https://slack.com/api/"
    max_concurrency: int = 4
    timeout: float = 10.0
    dm_cache: int = 10_000

    def __post_init__(self) -> None:
        if not self.bot_token:
            raise ValueError("slack.bot_token is required for the slack channel")
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"slack.api_url must be an http(s) URL, got {self.api_url!r}")
        if self.max_concurrency < 1:
            raise ValueError(f"slack_dm.max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.timeout <= 0:
            raise ValueError(f"slack_dm.timeout must be positive, got {self.timeout}")
        if self.dm_cache < 1:
            raise ValueError(f"slack_dm.dm_cache must be at least 1, got {self.dm_cache}")


@dataclass(frozen=True, slots=True)
class PreparedSlack:
    """One notification's DM, the same for every person: fallback text and Block Kit blocks."""

    text: str  # mrkdwn, escaped: the notification preview and what screen readers read
    blocks: tuple[JsonDict, ...]
    notification_id: str = ""
    # builds the block with a recipient's preferences link in the notice's language (else the
    # channel's ``preferences``)
    preferences: Callable[[str], JsonDict] | None = field(default=None, compare=False, repr=False)

    @property
    def cost(self) -> int:
        """One ``chat.postMessage`` per copy."""
        return 1


def classify_slack_error(status: int, error: str, retry_after: str | None, detail: str = "") -> DeliveryError:
    """Turn a Slack answer (HTTP status, the ``error`` code, ``Retry-After``) into a delivery error.

    Known codes decide first: a refused bot token is :class:`ChannelDownError` (``auth``/``config``);
    a person who cannot get a DM is permanent, never suppressing; ``ratelimited`` and Slack's own
    failures are transient. Then the status: 429 ``rate_limited`` with the peer's wait, 5xx
    ``server_error``, 401/403 channel down. Any other code is ``TransientError("unknown")``, which the
    dispatcher retries a few times only.
    """
    wait = parse_retry_after(retry_after)
    text = f"slack {error}" + (f": {detail}" if detail else "") if error else detail or f"HTTP {status}"
    if status == 429:
        return TransientError("rate_limited", text, retry_after=wait)
    if error in _CHANNEL_DOWN:
        return ChannelDownError(_CHANNEL_DOWN[error], text)
    if error in _PERMANENT:
        return PermanentError(_PERMANENT[error], text, suppress=False)
    if error in _TRANSIENT:
        return TransientError(_TRANSIENT[error], text, retry_after=wait)
    if status >= 500:
        return TransientError("server_error", text, retry_after=wait)
    if status in (401, 403):
        return ChannelDownError("auth", text)
    return TransientError("unknown", text, retry_after=wait)


def classify_transport_error(exc: BaseException) -> DeliveryError:
    """An aiohttp/asyncio failure, by whether the request may have reached Slack.

    A failed connect sent nothing and means Slack cannot be reached: ``ChannelDownError("network")``;
    a malformed api_url is ``ChannelDownError("config")``; a timeout or a connection lost once
    connected is :class:`UncertainError` (the DM may have been posted). A :class:`SlackApiError`
    is classified by its answer; the rest by :func:`channels.base.classify_http_failure`.
    """
    if isinstance(exc, SlackApiError):
        return _classify_api_error(exc)
    return classify_http_failure(exc)


def _answer_of(exc: SlackApiError) -> tuple[int, str, str | None]:
    """``(HTTP status, Slack's error code, Retry-After)`` of a failed call."""
    response = exc.response
    status = int(getattr(response, "status_code", 0) or getattr(response, "status", 0) or 0)
    data = getattr(response, "data", None)
    error = str(data.get("error") or "") if isinstance(data, Mapping) else ""
    headers = getattr(response, "headers", None) or {}
    retry_after = headers.get("Retry-After") if isinstance(headers, Mapping) else None
    return status, error, retry_after


def _classify_api_error(exc: SlackApiError) -> DeliveryError:
    status, error, retry_after = _answer_of(exc)
    if not error and status == 200:
        return UncertainError("server_error", "unreadable answer from Slack")
    return classify_slack_error(status, error, retry_after)


class DmChannels:
    """Each person's DM channel id, the most recently used ``most`` of them."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._ids: OrderedDict[str, str] = OrderedDict()

    def get(self, user_id: str) -> str | None:
        found = self._ids.get(user_id)
        if found is not None:
            self._ids.move_to_end(user_id)
        return found

    def put(self, user_id: str, channel_id: str) -> None:
        self._ids[user_id] = channel_id
        self._ids.move_to_end(user_id)
        while len(self._ids) > self.most:
            self._ids.popitem(last=False)

    def forget(self, user_id: str) -> None:
        self._ids.pop(user_id, None)

    def __len__(self) -> int:
        return len(self._ids)


class SlackDmChannel:
    """The ``slack`` channel: one Web API client and connection pool for the channel's lifetime."""

    name = "slack"

    def __init__(
        self,
        settings: SlackDmSettings,
        render: Callable[[Notice], PreparedSlack],
        preferences: Callable[[str], JsonDict] | None = None,
    ) -> None:
        self.settings = settings
        self.dm_channels = DmChannels(settings.dm_cache)
        self._render = render
        self._preferences = preferences
        self._client: AsyncWebClient | None = None
        self._session: aiohttp.ClientSession | None = None

    def prepare(self, notice: Notice) -> PreparedSlack:
        """The DM every recipient of ``notice`` gets (rendered by ``render``)."""
        return self._render(notice)

    async def send(self, prepared: PreparedSlack, to: Recipient) -> Receipt:
        """DM ``prepared`` to the Slack user ``to.address``; the receipt is ``<channel>/<ts>``.

        Raises only :class:`DeliveryError` subclasses, and TypeError when ``prepared`` did not come
        from :meth:`prepare` (a bug in the caller).
        """
        if not isinstance(prepared, PreparedSlack):
            raise TypeError(f"slack: expected PreparedSlack, got {type(prepared).__name__}")
        try:
            channel = await self._open(to.address)
            answer = await self._web().chat_postMessage(
                channel=channel,
                text=prepared.text,
                blocks=self._blocks(prepared, to),
                metadata=self._metadata(prepared, to),
                unfurl_links=False,
                unfurl_media=False,
            )
        except (SlackApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            if isinstance(exc, SlackApiError) and _answer_of(exc)[1] == "channel_not_found":
                self.dm_channels.forget(to.address)  # a stale DM id: open it afresh next time
            raise classify_transport_error(exc) from exc
        ts = str(answer.get("ts") or "")
        if not ts:
            raise UncertainError("server_error", "accepted without a message ts")
        return Receipt(provider_id=f"{answer.get('channel') or channel}/{ts}", detail="posted")

    async def _open(self, user_id: str) -> str:
        """The DM channel id with ``user_id``: cached, else ``conversations.open``."""
        cached = self.dm_channels.get(user_id)
        if cached is not None:
            return cached
        answer = await self._web().conversations_open(users=user_id, return_im=False)
        opened = answer.get("channel")
        channel_id = str(opened.get("id") or "") if isinstance(opened, Mapping) else ""
        if not channel_id:
            raise TransientError("server_error", "conversations.open answered no channel id")
        self.dm_channels.put(user_id, channel_id)
        return channel_id

    def _blocks(self, prepared: PreparedSlack, to: Recipient) -> list[JsonDict]:
        blocks = list(prepared.blocks)
        build = prepared.preferences or self._preferences
        if to.unsubscribe_url and build is not None:
            blocks.append(build(to.unsubscribe_url))
        return blocks

    @staticmethod
    def _metadata(prepared: PreparedSlack, to: Recipient) -> JsonDict:
        payload = {"notification_id": prepared.notification_id, "delivery": to.message_key}
        return {"event_type": METADATA_EVENT, "event_payload": payload}

    def _web(self) -> AsyncWebClient:
        """The client, built on first use: aiohttp sessions need a running event loop."""
        if self._client is None:
            settings = self.settings
            timeout = aiohttp.ClientTimeout(
                total=settings.timeout, connect=min(settings.timeout, CONNECT_TIMEOUT)
            )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=settings.max_concurrency), timeout=timeout
            )
            self._client = AsyncWebClient(
                token=settings.bot_token,
                base_url=settings.api_url if settings.api_url.endswith("/") else settings.api_url + "/",
                session=self._session,
                timeout=max(1, round(settings.timeout)),
                retry_handlers=[],
            )
        return self._client

    async def limit_connections(self, most: int) -> None:
        """Nothing to do: sends in flight are bounded per worker by ``max_concurrency``, and Slack
        limits a rate, not connections."""

    async def aclose(self) -> None:
        """Close the connection pool; a later send opens a new one (the DM ids stay cached)."""
        if self._session is not None:
            session, self._session, self._client = self._session, None, None
            await session.close()


if TYPE_CHECKING:

    def _is_a_channel(settings: SlackDmSettings) -> Channel[PreparedSlack]:
        return SlackDmChannel(settings, render=lambda notice: PreparedSlack("", ()))
