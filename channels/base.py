"""The one contract every delivery channel follows.

A channel sends one message to one address and answers with a :class:`Receipt`,
or raises one of the delivery errors below. Anything else escaping a channel is a bug.

Exception tree::

    DeliveryError                 base; carries ``reason`` and ``detail``
    ├── TransientError            try again later; ``retry_after`` (seconds) when the peer said so
    │   │                         reasons: network, timeout, rate_limited, server_error, busy, unknown
    │   ├── UncertainError        the request may have reached the provider (see below)
    │   └── ChannelDownError      the channel itself cannot send, whoever the recipient: credentials
    │                             refused, a sender the account does not own, the provider
    │                             unreachable. reasons: auth, config, tls, network, timeout
    └── PermanentError            never retry this message to this address
                                  ``suppress=True`` when the address itself is bad or opted out
                                  reasons: rejected_recipient, invalid_address, opted_out,
                                  rejected_message, auth, config

A send that may or may not have reached the provider (a timeout after the request
was written) raises :class:`UncertainError`, a ``TransientError`` whose caller decides
whether a duplicate is worse than a miss.

Reasons are the :class:`Reason` enum (a ``str``, so it compares, stores and labels metrics as its
value). ``channels`` never imports ``bot``: a channel can be tested with nothing but its fake server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol, TypeVar

_DELTA_SECONDS = re.compile(r"\s*(\d+(?:\.\d+)?)\s*")


class Reason(StrEnum):
    """Why a send failed, as the channel's classifier decided."""

    NETWORK = "network"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BUSY = "busy"
    UNKNOWN = "unknown"
    REJECTED_RECIPIENT = "rejected_recipient"
    INVALID_ADDRESS = "invalid_address"
    OPTED_OUT = "opted_out"
    REJECTED_MESSAGE = "rejected_message"
    AUTH = "auth"
    CONFIG = "config"
    TLS = "tls"


BACK_PRESSURE = frozenset({Reason.RATE_LIMITED, Reason.BUSY})
"""Reasons that say the provider wants the whole channel to slow down, not just this message."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in delta-seconds form; None when absent or an HTTP-date.

    An HTTP-date would need the clock; the caller's own backoff applies instead. The one parser for
    every provider (Twilio, Slack).
    """
    match = _DELTA_SECONDS.fullmatch(value) if value else None
    return float(match.group(1)) if match else None


def classify_http_failure(exc: BaseException) -> DeliveryError:
    """An aiohttp/asyncio failure of an HTTP provider, by whether the request may have reached it.

    A failed connect (refused, reset during the handshake, DNS, TLS, connect timeout) sent nothing:
    ``ChannelDownError("network")`` (the provider cannot be reached). A timeout once connected is
    ``UncertainError("timeout")``; a connection lost once connected is ``UncertainError("network")``.
    A malformed api_url is ``ChannelDownError("config")``.
    """
    import aiohttp  # loaded already by the HTTP channel that failed; email never needs it

    detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, aiohttp.InvalidURL):
        return ChannelDownError("config", detail)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return ChannelDownError("network", detail)
    if isinstance(exc, TimeoutError):
        return UncertainError("timeout", detail)
    return UncertainError("network", detail)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that the provider accepted the message: its id or reply, as recorded in the ledger."""

    provider_id: str
    detail: str = ""


class DeliveryError(Exception):
    """A message could not be handed to the provider."""

    transient: bool = False

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TransientError(DeliveryError):
    """Try again later; ``retry_after`` is the peer's own wait in seconds, when it gave one."""

    transient = True

    def __init__(self, reason: str, detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(reason, detail)
        self.retry_after = retry_after


class UncertainError(TransientError):
    """The request may have reached the provider; re-sending may duplicate the message."""


class ChannelDownError(TransientError):
    """The channel cannot send to anyone until an operator or the provider fixes it.

    Never the recipient's fault: the caller holds the channel's deliveries (it neither fails them nor
    suppresses the address) and probes until the channel answers again.
    """


class PermanentError(DeliveryError):
    """Never retry this message to this address; ``suppress`` marks the address itself bad."""

    def __init__(self, reason: str, detail: str = "", suppress: bool = False) -> None:
        super().__init__(reason, detail)
        self.suppress = suppress


class Recipient(NamedTuple):
    """Who one message goes to: the address for the channel and the bits templates personalise
    (a tuple: one is made per message sent)."""

    address: str
    name: str = ""
    person_id: str = ""
    unsubscribe_url: str = ""
    message_key: str = ""  # stable per delivery; the email channel derives Message-ID from it
    delivery_id: int | None = None  # the ledger's id; the email channel's VERP token names it

    thread_key: str = ""  # a follow-up: the message_key of the message it answers (email threads it)
    confirm_url: str = ""  # the recipient's signed confirmation link, when the notice asks to confirm


@dataclass(frozen=True, slots=True)
class Notice:
    """What one notification says, channel-neutral. Rendered once per notification and language."""

    notification_id: str
    severity: str
    title: str
    body: str
    mandatory: bool = True
    links: dict[str, str] = field(default_factory=dict)
    reply: bool = False  # a follow-up of an earlier notice (email subject "Re: ...")

    language: str = ""  # BCP 47 (de, pt-BR): picks the templates' language; "" for the default one
    deadline: float | None = None  # epoch seconds: when every copy should be out (the SLA deadline)
    window: tuple[float, float] | None = None  # epoch seconds: a maintenance window's start and end
    confirm: bool = False  # ask the recipient to confirm (Slack button, email link, SMS reply OK)


class Prepared(Protocol):
    """What :meth:`Channel.prepare` returns: a message rendered once for all recipients."""

    @property
    def cost(self) -> int:
        """Throttle units one copy takes: SMS segments, 1 for an email."""
        ...


PreparedT = TypeVar("PreparedT", bound=Prepared)


class Channel(Protocol[PreparedT]):
    """A delivery adapter. ``prepare`` runs once per notification, ``send`` once per recipient."""

    name: str

    def prepare(self, notice: Notice) -> PreparedT:
        """Render what is shared by every recipient of ``notice``; the result is passed to send."""
        ...

    async def send(self, prepared: PreparedT, to: Recipient) -> Receipt:
        """Send one message; raise only :class:`DeliveryError` subclasses."""
        ...

    async def limit_connections(self, most: int) -> None:
        """Keep at most ``most`` connections open from now on, counting busy ones: close idle ones
        above it (the caller starts no more sends than ``most`` at once). For a cluster's share."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
