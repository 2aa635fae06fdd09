"""SMS over Twilio's Messages API, sent through the official twilio library's async HTTP client.

::

    channel = SmsChannel(SmsSettings(account_sid, auth_token, from_number="+15005550006"))
    prepared = channel.prepare(notice)       # once per notification: text and segment count
    receipt = await channel.send(prepared, Recipient("+4915112345678"))  # once per recipient
    await channel.aclose()

A send is one ``POST {api_url}/2010-04-01/Accounts/{account_sid}/Messages.json``; the receipt
carries the message SID and Twilio's status (``queued``, or ``accepted`` for a Messaging Service).
At most ``max_concurrency`` requests are in flight; one aiohttp session, created on the first
send, keeps connections alive for the channel's lifetime. The request is the one twilio's
``client.messages.create_async`` sends (its headers, Basic auth, the form fields in its order),
built once but for ``To``; the answer is read for the SID and status only, and refusals go
through twilio's own error reader (see :func:`read_answer`), without a ``MessageInstance``.

Errors are those of :mod:`channels.base`, decided by two pure functions:
:func:`classify_twilio_error` for Twilio's answers, :func:`classify_transport_error` for what
went wrong on the way. Exactly one attempt is made per send: twilio's ``max_retries`` stays
unset (no aiohttp-retry wrapper) and aiohttp never re-sends a POST. The caller's retry layer
owns retries. Twilio has no idempotency key, so a send that may have reached Twilio raises
:class:`UncertainError` and the caller decides, by severity, whether a duplicate beats a miss.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, urlencode

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.base.version import Version
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

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
from channels.sms_text import OPT_OUT_HINT as OPT_OUT_HINT  # re-exported
from channels.sms_text import PreparedSms, render_sms
from channels.templating import Templates

CONNECT_TIMEOUT = 5.0  # seconds; a connect that fails sent nothing, so it stays a plain transient error
FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FORMS = 64  # prepared texts whose encoded form tail is kept

# Twilio error code -> (reason, suppress the address). https://www.twilio.com/docs/api/errors
_PERMANENT: dict[int, tuple[str, bool]] = {
    21211: ("invalid_address", True),  # invalid 'To' number
    21217: ("invalid_address", True),  # number does not appear to be valid
    21265: ("invalid_address", True),  # 'To' is a short code
    21614: ("invalid_address", True),  # 'To' is not a mobile number
    21635: ("invalid_address", True),  # 'To' is a landline
    30005: ("invalid_address", True),  # unknown destination handset
    30006: ("invalid_address", True),  # landline or unreachable carrier
    21610: ("opted_out", True),  # recipient replied STOP
    21604: ("invalid_address", False),  # 'To' missing
    21612: ("rejected_recipient", False),  # this To/From pair cannot be routed
    30003: ("rejected_recipient", False),  # handset unreachable (switched off, no coverage)
    30004: ("rejected_recipient", False),  # blocked by the recipient or carrier
    21408: ("config", False),  # the region of 'To' is not enabled for this account
    21608: ("config", False),  # trial account: 'To' is not a verified number
    21606: ("config", False),  # 'From' cannot send to this destination
    21602: ("rejected_message", False),  # body missing
    21617: ("rejected_message", False),  # body longer than 1,600 characters
    30007: ("rejected_message", False),  # filtered by the carrier as spam
}
# The account or its sender cannot send at all: the channel is down, whoever the recipient.
_CHANNEL_DOWN: dict[int, str] = {
    20003: "auth",  # authentication failed
    20005: "auth",  # account not active
    20404: "config",  # no such resource: wrong account SID or api_url
    21212: "config",  # invalid 'From' number
    21601: "config",  # 'From' cannot send SMS
    21603: "config",  # neither 'From' nor 'MessagingServiceSid'
    21659: "config",  # 'From' is not a Twilio number
    21660: "config",  # 'From' belongs to another account
    30032: "config",  # toll-free sender not verified
    30034: "config",  # US A2P 10DLC sender not registered
}
_TRANSIENT: dict[int, str] = {
    20429: "rate_limited",
    20500: "server_error",
    20503: "server_error",
    30001: "busy",  # Twilio's queue for the sender overflowed
}


@dataclass(frozen=True)
class SmsSettings:
    """The ``[twilio]`` settings the channel needs; exactly one of from_number and messaging_service_sid.

    ``api_url`` replaces ``https://api.twilio.com`` (with or without a trailing slash);
    ``status_callback_url``, when set, is sent as each message's StatusCallback; ``timeout`` (seconds)
    bounds one request, from connect to the last byte of the answer.
    """

    account_sid: str
    auth_token: str
    from_number: str | None = None
    messaging_service_sid: str | None = None
    api_url: str = "https://api.twilio.com"
    max_segments: int = 3
    max_concurrency: int = 8
    status_callback_url: str | None = None
    timeout: float = 15.0

    def __post_init__(self) -> None:
        if not self.account_sid or not self.auth_token:
            raise ValueError("twilio.account_sid and twilio.auth_token are required")
        if (self.from_number is None) == (self.messaging_service_sid is None):
            raise ValueError("twilio: set exactly one of from_number and messaging_service_sid")
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"twilio.api_url must be an http(s) URL, got {self.api_url!r}")
        if not 1 <= self.max_segments <= 10:
            raise ValueError(f"twilio.max_segments must be 1..10, got {self.max_segments}")
        if self.max_concurrency < 1:
            raise ValueError(f"twilio.max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.timeout <= 0:
            raise ValueError(f"twilio.timeout must be positive, got {self.timeout}")


def classify_twilio_error(
    status: int, code: int | None, retry_after: str | None, detail: str = ""
) -> DeliveryError:
    """Turn a Twilio error answer (HTTP status, Twilio error code, Retry-After header) into an error.

    Known codes decide first (see ``_CHANNEL_DOWN``/``_PERMANENT``/``_TRANSIENT``): account and
    sender problems mean the channel is down (``auth``, ``config``); bad or opted-out numbers are
    permanent with ``suppress=True``; region problems are permanent ``config``. Then the status:
    429 ``rate_limited`` (with the peer's ``retry_after``), 5xx ``server_error``, 401/403 channel
    down ``auth``, 404 channel down ``config``. Any other 4xx is
    ``TransientError("unknown")``: a new Twilio code should not suppress anyone, and the
    dispatcher caps retries of reason ``unknown`` at a small number.
    """
    wait = parse_retry_after(retry_after)
    text = f"twilio {code}: {detail}" if code is not None and code != status else detail
    if code in _CHANNEL_DOWN:
        return ChannelDownError(_CHANNEL_DOWN[code], text)
    if code in _PERMANENT:
        reason, suppress = _PERMANENT[code]
        return PermanentError(reason, text, suppress=suppress)
    if code in _TRANSIENT:
        return TransientError(_TRANSIENT[code], text, retry_after=wait)
    if status == 429:
        return TransientError("rate_limited", text, retry_after=wait)
    if status >= 500:
        return TransientError("server_error", text, retry_after=wait)
    if status in (401, 403):
        return ChannelDownError("auth", text)
    if status == 404:
        return ChannelDownError("config", text)
    return TransientError("unknown", text, retry_after=wait)


def classify_transport_error(exc: BaseException) -> DeliveryError:
    """Turn an aiohttp/asyncio failure into an error, by whether the request may have reached Twilio
    (:func:`channels.base.classify_http_failure`)."""
    return classify_http_failure(exc)


class _TwilioHttp(AsyncTwilioHttpClient):  # type: ignore[misc]  # twilio ships no type hints
    """twilio's aiohttp client with a pooled, bounded session and three fixes.

    - The session timeout applies: ``AsyncTwilioHttpClient.request`` (9.13) passes only the
      per-call timeout to aiohttp, so its constructor's ``timeout`` is silently ignored.
    - The response is released even when reading its body fails.
    - Credentials go in an ``Authorization`` header: ``aiohttp.BasicAuth`` is deprecated in
      aiohttp 3.14 and warns on every request.

    ``max_retries`` stays None, so the session is not wrapped in aiohttp-retry: one attempt.
    The answer's headers stay on the returned ``Response`` (``Retry-After`` for the classifier).
    """

    def __init__(self, timeout: float, max_connections: int) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, CONNECT_TIMEOUT))
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections), timeout=self._timeout
        )
        self.session = self._session

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None = None,
        data: dict[str, Any] | bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        if auth is not None:
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        async with self._session.request(
            method.upper(),
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout),
            allow_redirects=allow_redirects,
        ) as response:
            text = await response.text("utf-8", "replace")  # JSON is UTF-8; a proxy page need not be
        return Response(response.status, text, response.headers)

    async def close(self) -> None:
        await self._session.close()


class SmsChannel:
    """The ``sms`` channel: one Twilio HTTP client and connection pool for the channel's lifetime.

    Every part of a request but the recipient is built once: the URL, twilio's headers with the
    credentials (when the pool opens), and the form's StatusCallback/From/MessagingServiceSid/Body
    (per prepared text, see :func:`form_tail`). A send encodes ``To``, posts through the twilio
    HTTP client and reads only the SID and status from the answer (:func:`read_answer`).
    """

    name = "sms"

    def __init__(self, settings: SmsSettings, *, templates: Templates | None = None) -> None:
        self.settings = settings
        self.templates = templates or Templates()
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._url = f"{settings.api_url.rstrip('/')}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
        self._forms: dict[str, bytes] = {}  # prepared text -> the form after To
        self._http: _TwilioHttp | None = None
        self._headers: dict[str, str] = {}

    def prepare(self, notice: Notice) -> PreparedSms:
        """The text every recipient of ``notice`` (in its language) gets, within ``max_segments``
        (see render_sms)."""
        prepared = render_sms(notice, self.settings.max_segments, self.templates)
        self._form_tail(prepared.text)
        return prepared

    async def send(self, prepared: PreparedSms, to: Recipient) -> Receipt:
        """Send ``prepared`` to ``to.address`` (E.164); one request, at most max_concurrency at once.

        Returns the message SID and Twilio's status. Raises only :class:`DeliveryError`
        subclasses (see the classifiers), and TypeError when ``prepared`` did not come from
        :meth:`prepare` (a bug in the caller).
        """
        if not isinstance(prepared, PreparedSms):
            raise TypeError(f"sms: expected PreparedSms, got {type(prepared).__name__}")
        form = b"To=" + quote_plus(to.address).encode() + self._form_tail(prepared.text)
        async with self._slots:
            http = self._http or self._open()
            try:
                answer = await http.request("POST", self._url, data=form, headers=self._headers)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise classify_transport_error(exc) from exc
        return read_answer(answer.status_code, answer.text, answer.headers.get("Retry-After"), self._url)

    async def limit_connections(self, most: int) -> None:
        """Nothing to do: requests in flight are bounded per worker by ``max_concurrency``, and
        Twilio limits a rate, not connections."""

    async def aclose(self) -> None:
        """Close the connection pool; a later send opens a new one."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    async def __aenter__(self) -> SmsChannel:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _form_tail(self, text: str) -> bytes:
        tail = self._forms.get(text)
        if tail is None:
            if len(self._forms) >= _MAX_FORMS:  # a bound for long-running processes
                self._forms.clear()
            tail = self._forms[text] = form_tail(self.settings, text)
        return tail

    def _open(self) -> _TwilioHttp:
        """The HTTP client, built on first use (aiohttp sessions need a running event loop), and
        twilio's request headers for a form POST with the account's credentials."""
        settings = self.settings
        self._http = _TwilioHttp(settings.timeout, settings.max_concurrency)
        client = Client(settings.account_sid, settings.auth_token, http_client=self._http)
        headers = client.get_headers("POST", {"Content-Type": FORM_TYPE, "Accept": "application/json"})
        headers["Authorization"] = aiohttp.encode_basic_auth(*client.auth)
        self._headers = headers
        return self._http


def form_tail(settings: SmsSettings, body: str) -> bytes:
    """The form fields after ``To``, in twilio's order (StatusCallback, From, MessagingServiceSid,
    Body), URL-encoded as aiohttp encodes twilio's form, with the leading ``&``."""
    fields = {
        "StatusCallback": settings.status_callback_url or None,
        "From": settings.from_number,
        "MessagingServiceSid": None if settings.from_number is not None else settings.messaging_service_sid,
        "Body": body,
    }
    return ("&" + urlencode({key: value for key, value in fields.items() if value is not None})).encode()


def read_answer(status: int, text: str, retry_after: str | None, url: str = "") -> Receipt:
    """Twilio's answer to a message POST -> a receipt (the SID and Twilio's status), or raise.

    A 2xx answer must carry a JSON object with a ``sid``, else the message may have been sent and
    :class:`UncertainError` says so. Any other status is parsed by twilio's own error reader
    (``Version.exception``: RFC 9457 or the legacy ``code``/``message`` body, or a non-JSON body
    whose code is the status) and classified by :func:`classify_twilio_error`.
    """
    if 200 <= status < 300:
        try:
            payload = json.loads(text) if text else {}
        except ValueError as exc:
            raise UncertainError("server_error", "unreadable answer to an accepted request") from exc
        sid = payload.get("sid") if isinstance(payload, dict) else None
        if not sid:
            raise UncertainError("server_error", "accepted without a message sid")
        return Receipt(provider_id=str(sid), detail=str(payload.get("status") or ""))
    refusal = Version.exception("POST", url, Response(status, text), "Unable to create record")
    raise classify_twilio_error(
        refusal.status, _as_int(refusal.code), retry_after, _message_of(refusal)
    ) from refusal


def _as_int(code: object) -> int | None:
    try:
        return int(str(code))
    except ValueError:
        return None


def _message_of(exc: TwilioRestException | TwilioServiceException) -> str:
    if isinstance(exc, TwilioServiceException):
        return " - ".join(part for part in (exc.title, exc.detail) if part)
    return str(exc.msg).removeprefix("Unable to create record: ")


if TYPE_CHECKING:

    def _is_a_channel(settings: SmsSettings) -> Channel[PreparedSms]:
        return SmsChannel(settings)  # mypy checks SmsChannel against the Channel protocol
