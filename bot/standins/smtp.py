"""An in-process SMTP server that captures mail, for ``herald demo``, the tests and the benchmarks.

It is aiosmtpd's SMTP protocol served by ``loop.create_server`` in the caller's running
event loop (127.0.0.1, port 0 by default), so tests need no threads::

    async with SmtpStandIn() as smtp:
        settings = EmailSettings(host="127.0.0.1", port=smtp.port, security="none", ...)
        ...
        assert smtp.messages[0].rcpt_tos == ["alice@example.com"]
        assert smtp.messages[0].message["Subject"] == "[INFO] Hello"

Failures on demand, matched in the order they were added:

- ``smtp.fail("rcpt", "550 5.1.1 user unknown", address="gone@example.com")``: a reply
  at RCPT TO for that address (``address=None``: any);
- ``smtp.fail("data", "451 4.3.0 try later", times=1)``: a reply after DATA instead of
  accepting the message (``address`` matches any recipient of the transaction);
- ``smtp.fail("mail", "421 4.3.2 shutting down")``: any reply starting ``421`` is sent and
  then the connection is closed, as RFC 5321 requires;
- a ``reply`` of ``None`` drops the connection without answering; ``smtp.drop_after(n)``
  accepts ``n`` more messages and then drops the connection at the next MAIL FROM;
- ``after=k`` lets ``k`` matching commands pass before a fault fires, ``times`` bounds how
  often it fires (``None``: for ever), ``delay`` waits before answering;
- ``smtp.stall("data", 2.0)`` waits 2 s and then handles the command as usual.

``username``/``password`` offer AUTH PLAIN and LOGIN (also without TLS: this is a test
server) and answer MAIL FROM with ``530 5.7.0`` until the client has authenticated.
``tls_context`` (a server context) offers STARTTLS, ``require_starttls`` refuses mail
before it, and ``implicit_tls`` speaks TLS from the first byte (SMTPS) instead. ``pipelining``
advertises PIPELINING (RFC 2920); aiosmtpd answers pipelined commands in order either way.

Run alone: ``python -m bot.standins.smtp --port 2525 [--quiet]`` prints one line per message.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.policy
import functools
import hmac
import itertools
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any, AnyStr, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bot import runtime

Stage = Literal["mail", "rcpt", "data"]

_DROP = "\x00drop"  # a handler's answer that means: close the connection, say nothing


@dataclass
class CapturedMessage:
    """One message the stand-in accepted: the envelope, the raw bytes and, on demand, the parse."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated_as: str | None = None
    tls: bool = False

    @functools.cached_property
    def message(self) -> EmailMessage:
        """``data`` parsed with the modern email policy (parsed once, on first use)."""
        parsed = BytesParser(policy=email.policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Fault:
    """A scripted reply (or, with ``reply=None``, a dropped connection) at one stage.

    ``delay`` seconds pass before the answer; with ``proceed`` the command is then handled
    as usual (a stall). ``fired`` counts how often the fault has fired so far.
    """

    stage: Stage
    reply: str | None
    address: str | None = None
    times: int | None = None
    after: int = 0
    delay: float = 0.0
    proceed: bool = False
    fired: int = 0


@dataclass
class _State:
    messages: list[CapturedMessage] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    connections: int = 0
    most_open: int = 0


class SmtpStandIn:
    """A capturing SMTP server in the running loop; see the module docstring."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        hostname: str = "smtp-standin.localhost",
        on_message: Callable[[CapturedMessage], None] | None = None,
        keep_messages: bool = True,
        pipelining: bool = False,
    ) -> None:
        if (require_starttls or implicit_tls) and tls_context is None:
            raise ValueError("require_starttls and implicit_tls need a tls_context")
        self.host = host
        self.port = port
        self._username = username
        self._password = password
        self._tls_context = tls_context
        self._require_starttls = require_starttls
        self._implicit_tls = implicit_tls
        self._hostname = hostname
        self._on_message = on_message
        self._keep_messages = keep_messages
        self._pipelining = pipelining
        self._state = _State()
        self._queue_ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._live: set[_ServerProtocol] = set()

    @property
    def messages(self) -> list[CapturedMessage]:
        """Every message accepted so far, in order (none kept with ``keep_messages=False``)."""
        return self._state.messages

    @property
    def connections(self) -> int:
        """How many connections clients have opened so far."""
        return self._state.connections

    @property
    def most_open(self) -> int:
        """The most connections that were open at the same time so far."""
        return self._state.most_open

    def fail(
        self,
        stage: Stage,
        reply: str | None,
        *,
        address: str | None = None,
        times: int | None = None,
        after: int = 0,
        delay: float = 0.0,
    ) -> Fault:
        """Script a fault (see the module docstring); returns it so a test can inspect or remove it."""
        fault = Fault(stage, reply, address.lower() if address else None, times, after, delay)
        self._state.faults.append(fault)
        return fault

    def stall(self, stage: Stage, seconds: float, *, times: int | None = 1) -> Fault:
        """Wait ``seconds`` before handling the command at ``stage`` as usual."""
        fault = Fault(stage, None, times=times, delay=seconds, proceed=True)
        self._state.faults.append(fault)
        return fault

    def drop_after(self, messages: int) -> Fault:
        """Accept ``messages`` more messages, then drop the connection unanswered at the next MAIL."""
        return self.fail("mail", None, times=1, after=messages)

    async def disconnect_all(self) -> None:
        """Close every open session unannounced, as a server does with idle clients."""
        live = list(self._live)
        for protocol in live:
            protocol.hang_up()
        await asyncio.gather(*(protocol.finished() for protocol in live))

    def clear(self) -> None:
        """Forget captured messages and scripted faults."""
        self._state.messages.clear()
        self._state.faults.clear()

    async def start(self) -> None:
        """Listen; ``port`` then holds the port actually bound."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_protocol, self.host, self.port, ssl=self._tls_context if self._implicit_tls else None
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every open session."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self.disconnect_all()

    async def __aenter__(self) -> SmtpStandIn:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _new_protocol(self) -> _ServerProtocol:
        self._state.connections += 1
        return _ServerProtocol(
            _PipeliningHandler(self) if self._pipelining else _Handler(self),
            live=self._live,
            state=self._state,
            hostname=self._hostname,
            ident="Herald SMTP stand-in",
            tls_context=None if self._implicit_tls else self._tls_context,
            require_starttls=self._require_starttls,
            auth_require_tls=False,
            authenticator=self._authenticate if self._username is not None else None,
            loop=asyncio.get_running_loop(),
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self._username is not None
            and hmac.compare_digest(auth_data.login, self._username.encode())
            and hmac.compare_digest(auth_data.password, (self._password or "").encode())
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def _fault(self, stage: Stage, addresses: list[str]) -> str | None:
        """The scripted answer at ``stage`` for ``addresses``, or None to handle the command as usual."""
        wanted = {a.lower() for a in addresses}
        for fault in list(self._state.faults):
            if fault.stage != stage or (fault.address is not None and fault.address not in wanted):
                continue
            if fault.after > 0:
                fault.after -= 1
                continue
            fault.fired += 1
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._state.faults.remove(fault)
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)  # a slow server, on purpose
            if fault.proceed:
                return None
            return _DROP if fault.reply is None else fault.reply
        return None

    def _capture(self, session: Session, envelope: Envelope) -> str:
        login = getattr(session.auth_data, "login", None)
        captured = CapturedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=envelope.original_content or b"",
            authenticated_as=login.decode() if isinstance(login, bytes) else None,
            tls=session.ssl is not None or self._implicit_tls,
        )
        if self._keep_messages:
            self._state.messages.append(captured)
        if self._on_message is not None:
            self._on_message(captured)
        return f"250 2.0.0 Ok: queued as S{next(self._queue_ids):08d}"


class _Handler:
    """aiosmtpd hooks: authentication gate, scripted faults, capture."""

    def __init__(self, standin: SmtpStandIn) -> None:
        self._standin = standin

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self._standin._username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        scripted = await self._standin._fault("mail", [address])
        if scripted is not None:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        scripted = await self._standin._fault("rcpt", [address])
        if scripted is not None:
            return scripted
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        scripted = await self._standin._fault("data", envelope.rcpt_tos)
        if scripted is not None:
            return scripted
        return self._standin._capture(session, envelope)


class _PipeliningHandler(_Handler):
    """Also advertises PIPELINING (aiosmtpd's five-argument EHLO hook)."""

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # the hook takes this over from aiosmtpd
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class _ServerProtocol(SMTP):
    """aiosmtpd's SMTP that hangs up after a 421 or a scripted drop, and can be awaited closed."""

    def __init__(
        self, handler: _Handler, *, live: set[_ServerProtocol], state: _State, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self._live = live
        self._state = state
        self._closed_future: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._live.add(self)
        self._state.most_open = max(self._state.most_open, len(self._live))
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._live.discard(self)
        if not self._closed_future.done():
            self._closed_future.set_result(None)

    async def push(self, status: AnyStr) -> None:
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        if text == _DROP:
            self.hang_up()
            return
        await super().push(status)
        if text.startswith("421"):
            self.hang_up()

    def hang_up(self) -> None:
        """Close the connection now, without a word."""
        if self.transport is not None:
            self.transport.close()

    async def finished(self) -> None:
        """Wait until the connection is closed and its session task has ended."""
        await self._closed_future
        task = self._handler_coroutine
        if task is not None:
            await asyncio.wait([task])  # it was cancelled by connection_lost; let it unwind


async def _serve(host: str, port: int, quiet: bool) -> None:
    def show(message: CapturedMessage) -> None:
        print(
            f"{message.mail_from} -> {', '.join(message.rcpt_tos)}: {message.message['Subject']}", flush=True
        )

    on_message = None if quiet else show
    async with SmtpStandIn(host=host, port=port, on_message=on_message, keep_messages=False) as smtp:
        print(f"SMTP stand-in listening on {smtp.host}:{smtp.port}", flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m bot.standins.smtp [--host H] [--port P] [--quiet]``: accept mail until interrupted."""
    parser = argparse.ArgumentParser(description="Herald's capturing SMTP stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--quiet", action="store_true", help="print nothing per message")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        runtime.run(_serve(args.host, args.port, args.quiet))


if __name__ == "__main__":
    main()
