"""The email channel: SMTP through a small pool of long-lived aiosmtplib connections.

``EmailChannel.prepare(notice)`` renders a notification once (:mod:`channels.email_render`);
``EmailChannel.send(prepared, to)`` fills in one recipient with byte splices and sends it
with MAIL/RCPT/DATA over a pooled connection; when the server offers PIPELINING (RFC 2920) and
``pipelining`` is on, the three go out together (:mod:`channels.smtp_pipeline`). ``send``
returns a :class:`Receipt` whose ``provider_id`` is the Message-ID and whose ``detail`` is the
server's reply to DATA, or raises a :class:`DeliveryError` classified by
:mod:`channels.smtp_classify`; nothing else escapes it (a ``prepared`` that did not come from
``prepare`` is a bug: ``TypeError``).

When a pipelined transaction waits for its envelope replies on a connection whose last end of data
was answered within 20 ms, the next send rides with it instead of taking a connection: its envelope
goes out in the same write as that transaction's message, and it gets the connection after that
message's final reply (:mod:`channels.smtp_pipeline`, "Riders"). Riders hold a ``max_connections``
permit like every send, and their message is only written after their own ``354``, so the number
of messages that may go twice after a kill -9 stays bounded by ``max_connections``.

Connections: at most ``max_connections``, opened lazily and reused most-recent-first.
A connection that answered 421, was dropped, timed out or was cancelled mid-transaction
is discarded, and a new one is opened by the next send. One left idle longer than
``probe_idle_after`` seconds is probed with NOOP before reuse, so a connection the server
closed while idle does not fail a message. No retries happen here: the dispatcher retries.

With ``return_path`` (and ``verp_key``), a recipient with a ``delivery_id`` gets a VERP envelope
sender (:mod:`channels.verp`); the header From stays ``from_address``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import aiosmtplib

from channels.base import Channel, Notice, PermanentError, Receipt, Recipient, TransientError
from channels.email_render import (
    PreparedEmail,
    build_message,
    format_date,
    parse_mailbox,
    personalise,
    prepare_email,
)
from channels.smtp_classify import classify_smtp_exception, drops_connection
from channels.smtp_pipeline import Seats, Turn, pipelined_transaction
from channels.templating import Templates
from channels.verp import Verp

__all__ = ["EmailChannel", "EmailSettings", "PreparedEmail", "Security", "SmtpPool", "build_message"]

Security = Literal["none", "starttls", "tls"]
_DEFAULT_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}
_QUIT_TIMEOUT = 2.0
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x20<>\x7f-\U0010ffff]")  # what could end or extend the command


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    """How to reach the SMTP server and who the mail is from. ValueError names a bad field.

    ``port`` 0 means the default for ``security`` (25, 587 for STARTTLS, 465 for implicit
    TLS). ``timeout`` bounds each SMTP command, in seconds. ``cert_bundle`` adds trusted
    CA certificates (a private CA, a test's self-signed certificate). ``local_hostname`` is
    the EHLO name (default: this host's FQDN). ``password`` never shows in ``repr``.
    """

    host: str
    from_address: str
    port: int = 0
    security: Security = "starttls"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    reply_to: str | None = None
    max_connections: int = 4
    timeout: float = 30.0
    validate_certs: bool = True
    cert_bundle: str | None = None
    local_hostname: str | None = None
    probe_idle_after: float = 10.0
    return_path: str | None = None  # VERP: each message's envelope sender is local+<token>@domain
    verp_key: bytes | None = field(default=None, repr=False)
    pipelining: bool = True  # RFC 2920 when the server offers it (channels.smtp_pipeline)

    def __post_init__(self) -> None:
        if self.security not in _DEFAULT_PORTS:
            raise ValueError(f"smtp.security: must be none, starttls or tls, not {self.security!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"smtp.port: out of range: {self.port}")
        if self.max_connections < 1:
            raise ValueError("smtp.max_connections: must be at least 1")
        if self.timeout <= 0:
            raise ValueError("smtp.timeout: must be positive")
        for key in ("from_address", "reply_to"):
            value = getattr(self, key)
            if value is not None:
                try:
                    parse_mailbox(value)
                except ValueError as exc:
                    raise ValueError(f"smtp.{key}: {exc}") from exc
        if self.return_path is not None and not self.verp_key:
            raise ValueError("bounces.return_path: needs a signing key (server.secret_key)")

    @property
    def effective_port(self) -> int:
        """``port``, or the default port for ``security`` when it is 0."""
        return self.port or _DEFAULT_PORTS[self.security]


class EmailChannel:
    """Herald's email channel; satisfies :class:`channels.base.Channel`."""

    name = "email"

    def __init__(
        self,
        settings: EmailSettings,
        *,
        clock: Callable[[], float] = time.time,
        templates: Templates | None = None,
    ) -> None:
        self.settings = settings
        self.pool = SmtpPool(settings, clock=clock)
        self._clock = clock
        self.templates = templates or Templates()
        self._date_second = -1
        self._date = ""
        self._verp: Verp | None = None
        if settings.return_path and settings.verp_key:
            try:
                self._verp = Verp(settings.return_path, settings.verp_key)
            except ValueError as exc:
                raise ValueError(f"bounces.return_path: {exc}") from exc

    def prepare(self, notice: Notice) -> PreparedEmail:
        """Render ``notice`` once for all its recipients of ``notice.language``. Pure apart from the clock."""
        return prepare_email(
            notice,
            from_address=self.settings.from_address,
            reply_to=self.settings.reply_to,
            date=self._now_date(),
            templates=self.templates,
        )

    async def send(self, prepared: PreparedEmail, to: Recipient) -> Receipt:
        """Send ``prepared`` to ``to``; raise only :class:`DeliveryError` subclasses (TypeError for a
        ``prepared`` that :meth:`prepare` did not make: a bug in the caller)."""
        if not isinstance(prepared, PreparedEmail):
            raise TypeError(f"EmailChannel.send needs a PreparedEmail, not {type(prepared).__name__}")
        outgoing = personalise(prepared, to, date=self._now_date())
        sender = prepared.envelope_from
        if self._verp is not None and to.delivery_id is not None:
            sender = self._verp.address(to.delivery_id)
        reply = await self.pool.sendmail(sender, outgoing.address, outgoing.data, clean=outgoing.clean)
        return Receipt(provider_id=outgoing.message_id, detail=reply)

    async def limit_connections(self, most: int) -> None:
        """Close idle connections until at most ``most`` are open, busy ones included."""
        await self.pool.trim(most)

    async def aclose(self) -> None:
        """Say QUIT on every idle connection and refuse further sends."""
        await self.pool.aclose()

    def _now_date(self) -> str:
        now = self._clock()
        if int(now) != self._date_second:  # formatting a date per message costs more than this
            self._date_second, self._date = int(now), format_date(now)
        return self._date


class SmtpPool:
    """Up to ``settings.max_connections`` reusable SMTP connections; see the module docstring.

    ``opened`` counts connections opened so far (for tests and metrics).
    """

    def __init__(self, settings: EmailSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.opened = 0
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # most recently used last
        self._busy = 0  # connections checked out for a send
        self._tls_context: ssl.SSLContext | None = None
        self._closed = False
        self._seats = Seats(clock)

    async def sendmail(self, sender: str, recipient: str, data: bytes, *, clean: bool = False) -> str:
        """Send ``data`` from ``sender`` to ``recipient``; the DATA reply, or a DeliveryError.
        ``clean``: ``data`` is CRLF throughout, ends in CRLF and starts no line with a dot
        (:func:`channels.smtp_pipeline.wire_clean`), so it is not checked again."""
        if self._closed:
            raise TransientError("unknown", "email channel is closed")
        async with self._slots:
            turn = await self._ride(sender, recipient, data)
            if turn is None:
                turn = Turn(await self._checkout(), self._seats)
                self._busy += 1
            try:
                message = await _transaction(turn, sender, recipient, data, self.settings.pipelining, clean)
            except (aiosmtplib.SMTPException, OSError) as exc:
                self._checkin(turn, reuse=not drops_connection(exc))
                raise classify_smtp_exception(exc) from exc
            except ValueError as exc:  # aiosmtplib refused an address before sending anything
                self._checkin(turn, reuse=True)
                raise PermanentError("invalid_address", str(exc), suppress=True) from exc
            except BaseException:  # cancelled mid-transaction: the session state is unknown
                self._busy -= 1
                turn.smtp.close()
                raise
            self._checkin(turn, reuse=True)
        return f"250 {message}".strip()

    async def _ride(self, sender: str, recipient: str, data: bytes) -> Turn | None:
        """The connection handed over by a pipelined transaction that carried this message's envelope
        with its own message; None when no seat was open or the host could not hand it over."""
        unsafe = _UNSAFE_ADDRESS.search(sender) or _UNSAFE_ADDRESS.search(recipient)
        if not self.settings.pipelining or unsafe:
            return None  # an unsafe address is refused on the usual path, with its usual outcome
        if (host := self._seats.take()) is None:
            return None
        mail, rcpt = _envelope(host.smtp, sender, recipient, data)
        boarded = host.board(mail + rcpt + b"DATA\r\n")
        try:
            return await boarded
        except BaseException:
            if host.leave(boarded):  # cancelled although it held the connection, now closed
                self._busy -= 1
            raise

    async def trim(self, most: int) -> None:
        """Say QUIT on the longest-idle connections until at most ``most`` are open (busy included)."""
        extra = max(0, self._busy + len(self._idle) - most)
        if extra:
            closing, self._idle = self._idle[:extra], self._idle[extra:]
            await asyncio.gather(*(self._quit(smtp) for smtp, _ in closing))

    async def aclose(self) -> None:
        """Close every idle connection politely; busy ones close when their send ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(smtp) for smtp, _ in idle))

    async def _checkout(self) -> aiosmtplib.SMTP:
        while self._idle:
            smtp, idle_since = self._idle.pop()
            if not smtp.is_connected:
                continue
            if self._clock() - idle_since > self.settings.probe_idle_after and not await self._alive(smtp):
                continue
            return smtp
        return await self._open()

    def _checkin(self, turn: Turn, *, reuse: bool) -> None:
        if turn.handed_over:  # the rider has it now, busy
            return
        self._busy -= 1
        smtp = turn.smtp
        if reuse and smtp.is_connected and not self._closed:
            self._idle.append((smtp, self._clock()))
        else:
            smtp.close()

    async def _alive(self, smtp: aiosmtplib.SMTP) -> bool:
        try:
            response = await smtp.noop()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()
            return False
        return response.code == 250

    async def _open(self) -> aiosmtplib.SMTP:
        settings = self.settings
        try:
            smtp = aiosmtplib.SMTP(
                hostname=settings.host,
                port=settings.effective_port,
                username=settings.username,
                password=settings.password,
                local_hostname=settings.local_hostname,
                timeout=settings.timeout,
                use_tls=settings.security == "tls",
                start_tls=settings.security == "starttls",
                tls_context=await self._tls() if settings.security != "none" else None,
            )
        except (OSError, ValueError) as exc:  # an unreadable cert_bundle, a bad EHLO name
            raise PermanentError("config", f"smtp settings: {exc}") from exc
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise classify_smtp_exception(exc, connecting=True) from exc
        self.opened += 1
        return smtp

    async def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:  # loading CA files blocks: build it once, off the loop
            self._tls_context = await asyncio.to_thread(_client_tls_context, self.settings)
        return self._tls_context

    async def _quit(self, smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.quit(timeout=_QUIT_TIMEOUT)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()


async def _transaction(
    turn: Turn, sender: str, recipient: str, data: bytes, pipelining: bool, clean: bool
) -> str:
    """MAIL, RCPT and DATA for one recipient; the DATA reply's text. Like aiosmtplib's ``sendmail``
    (RSET after a refusal) without its four ``parseaddr`` calls per message: the addresses are plain
    ``local@domain`` already (``personalise``, ``parse_mailbox``, VERP), checked here only for what
    could break the command line. With ``pipelining`` and a server that offers it, the three commands
    go out together (:mod:`channels.smtp_pipeline`), with the same outcomes; a rider's went out with
    the message before it (``turn.reader`` is set)."""
    if turn.reader is not None:
        return await pipelined_transaction(turn, None, data, sender=sender, recipient=recipient, clean=clean)
    smtp = turn.smtp
    if _UNSAFE_ADDRESS.search(sender) or _UNSAFE_ADDRESS.search(recipient):
        raise ValueError(f"address not permitted in an SMTP command: {recipient!r} from {sender!r}")
    if smtp.is_ehlo_or_helo_needed:
        await _greet(smtp)
    mail, rcpt = _envelope(smtp, sender, recipient, data)
    if pipelining and smtp.supports_extension("pipelining"):
        return await pipelined_transaction(
            turn, mail + rcpt + b"DATA\r\n", data, sender=sender, recipient=recipient, clean=clean
        )
    try:
        reply = await smtp.execute_command(mail[:-2])
        if reply.code != 250:
            raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
        reply = await smtp.execute_command(rcpt[:-2])
        if reply.code not in (250, 251):
            raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
        reply = await smtp.data(data)
    except aiosmtplib.SMTPResponseException:
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await smtp.rset()
        raise
    return reply.message


def _envelope(smtp: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes) -> tuple[bytes, bytes]:
    """The MAIL and RCPT command lines (CRLF ended) for addresses already checked. ``data`` has CRLF
    line endings, so its length is its SIZE."""
    mail = b"MAIL FROM:<%s>" % sender.encode("ascii")
    if smtp.supports_extension("size"):
        mail += b" SIZE=%d" % len(data)
    return mail + b"\r\n", b"RCPT TO:<%s>\r\n" % recipient.encode("ascii")


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not smtp.is_connected:
            raise
        await smtp.helo()


def _client_tls_context(settings: EmailSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.cert_bundle)
    if not settings.validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


if TYPE_CHECKING:

    def _is_a_channel(settings: EmailSettings) -> Channel[PreparedEmail]:
        return EmailChannel(settings)  # mypy checks EmailChannel against the Channel protocol
