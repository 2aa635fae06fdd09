"""One SMTP transaction with PIPELINING (RFC 2920) over an aiosmtplib connection.

:func:`pipelined_transaction` writes ``MAIL FROM``, ``RCPT TO`` and ``DATA`` in one write, reads
their three replies, then (after ``354``) writes the message and reads the final reply: two round
trips instead of four. It raises exactly what the one-command-at-a-time path raises:

- MAIL refused: :class:`aiosmtplib.SMTPSenderRefused`; else RCPT refused:
  :class:`aiosmtplib.SMTPRecipientRefused`; else DATA (or the message) refused:
  :class:`aiosmtplib.SMTPDataError`. The first refusal in that order is the outcome, although the
  server answers all three commands (after a refused MAIL it answers RCPT and DATA with 503).
- After a refusal the session is reset with RSET. A server that answered ``354`` to DATA although
  the recipient was refused gets an empty message (a lone ``.``) first, and the refusal stays the
  outcome.
- ``421`` (any reply) ends the reading at once and closes the connection, as aiosmtplib does.
- A lost connection is :class:`aiosmtplib.SMTPServerDisconnected` unless a refusal was already read
  (a ``421`` followed by the server hanging up is the refusal); a reply slower than the timeout is
  :class:`aiosmtplib.SMTPReadTimeoutError` (the caller drops the connection).

aiosmtplib has no pipelining, and its protocol keeps a single reply waiter (replies arriving
together would be lost), so for the length of the transaction the transport's protocol is swapped
(``transport.set_protocol``) for :class:`_ReplyReader`, which queues every complete reply and hands
connection loss and flow control on to aiosmtplib's protocol. Connect, EHLO, STARTTLS, AUTH, RSET
and NOOP stay aiosmtplib's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from typing import cast

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

__all__ = ["pipelined_transaction"]

_PERIOD = re.compile(rb"(?m)^\.")
_MAX_REPLY = 8192 * 4  # as aiosmtplib: a reply may not exceed this (bounds a babbling server)


class _ReplyReader(asyncio.Protocol):
    """The transport's protocol while a pipelined transaction runs: every complete reply is queued."""

    def __init__(self, owner: SMTPProtocol) -> None:
        self._owner = owner
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer.extend(data)
        try:
            while (reply := _take_reply(self._buffer)) is not None:
                self._replies.append(reply)
        except aiosmtplib.SMTPResponseException as exc:
            self._fail(exc)
        self._wake()

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._fail(lost)
        self._owner.connection_lost(exc)  # aiosmtplib's state follows, as if it had been listening

    def pause_writing(self) -> None:
        self._owner.pause_writing()

    def resume_writing(self) -> None:
        self._owner.resume_writing()

    async def next_reply(self, timeout: float | None) -> SMTPResponse:
        """The next reply in order; raises the connection's failure once the queue is empty."""
        while not self._replies:
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # a timer handle, not asyncio.wait_for: its second future and callbacks cost ~5 us a reply
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            except TimeoutError as exc:
                raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return self._replies.popleft()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def _take_reply(buffer: bytearray) -> SMTPResponse | None:
    """Remove and return the first complete (possibly multi-line) reply in ``buffer``, if any."""
    lines: list[bytes] = []
    offset = 0
    while (end := buffer.find(b"\n", offset)) != -1:
        line = bytes(buffer[offset : end + 1])
        offset = end + 1
        try:
            code = int(line[:3])
        except ValueError:
            text = line.decode("utf-8", "replace").strip()
            raise aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {text}") from None
        lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            del buffer[:offset]
            return SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape"))
    if len(buffer) > _MAX_REPLY:
        raise aiosmtplib.SMTPResponseException(-1, "Response too long")
    return None


async def pipelined_transaction(
    smtp: aiosmtplib.SMTP, mail: bytes, rcpt: bytes, data: bytes, *, sender: str, recipient: str
) -> str:
    """Send ``mail`` and ``rcpt`` (whole command lines with CRLF) and DATA together, then ``data``;
    the final reply's text. Raises as the module docstring says. The server must offer PIPELINING."""
    # a cast, not isinstance: uvloop's transports are not asyncio.Transport subclasses
    protocol, transport = smtp.protocol, cast(asyncio.Transport | None, smtp.transport)
    if protocol is None or transport is None or transport.is_closing():
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    reader = _ReplyReader(protocol)
    transport.set_protocol(reader)
    try:
        outcome = await _exchange(smtp, reader, transport, mail + rcpt + b"DATA\r\n", data, sender, recipient)
    except BaseException:  # cut off mid-exchange: what the server has read or will answer is unknown
        transport.set_protocol(protocol)
        smtp.close()
        raise
    transport.set_protocol(protocol)
    if isinstance(outcome, str):
        return outcome
    if outcome.code == 421:
        smtp.close()
    elif smtp.is_connected:
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await smtp.rset()
    raise outcome


async def _exchange(
    smtp: aiosmtplib.SMTP,
    reader: _ReplyReader,
    transport: asyncio.Transport,
    commands: bytes,
    data: bytes,
    sender: str,
    recipient: str,
) -> str | aiosmtplib.SMTPResponseException:
    """The final reply's text, or the refusal to raise once the reader is gone."""
    replies = await _envelope_replies(smtp, reader, transport, commands)
    refusal = _refusal(replies, sender, recipient)
    if refusal is not None:
        if len(replies) == 3 and replies[2].code == 354:
            await _end_empty_message(smtp, reader, transport)
        return refusal
    transport.write(_wire_message(data))
    final = await reader.next_reply(smtp.timeout)
    return final.message if final.code == 250 else aiosmtplib.SMTPDataError(final.code, final.message)


def _wire_message(data: bytes) -> bytes:
    """``data`` as aiosmtplib's ``data`` sends it: lone CR and LF made CRLF, a CRLF at the end, lines
    starting with a dot stuffed, then the end marker. The two regex substitutions cost about 45 us per
    2.5 KB message; a message that is CRLF throughout and starts no line with a dot (every one the
    renderer makes, unless the text has such a line) comes out unchanged, so it is checked for that
    with a few byte counts instead (about 5x cheaper) and sent as it is."""
    crlf = data.count(b"\r\n")
    if (
        crlf == data.count(b"\n") == data.count(b"\r")
        and data.endswith(b"\r\n")
        and not data.startswith(b".")
        and b"\n." not in data
    ):
        return data + b".\r\n"
    return _PERIOD.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


async def _envelope_replies(
    smtp: aiosmtplib.SMTP, reader: _ReplyReader, transport: asyncio.Transport, commands: bytes
) -> list[SMTPResponse]:
    """The replies to MAIL, RCPT and DATA, fewer when one is 421 or the connection is lost after a
    refusal (the refusal is then the outcome)."""
    transport.write(commands)
    replies: list[SMTPResponse] = []
    try:
        while len(replies) < 3:
            replies.append(await reader.next_reply(smtp.timeout))
            if replies[-1].code == 421:
                break
    except aiosmtplib.SMTPServerDisconnected:
        if all(reply.code in (250, 251) for reply in replies):
            raise
    return replies


def _refusal(
    replies: list[SMTPResponse], sender: str, recipient: str
) -> aiosmtplib.SMTPResponseException | None:
    """The first refusal among the envelope's replies, or None when all three accepted."""
    mail, rcpt, data = (replies + [SMTPResponse(-1, "")] * 3)[:3]
    if mail.code != 250:
        return aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
    if rcpt.code not in (250, 251):
        return aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, recipient)
    if data.code != 354:
        return aiosmtplib.SMTPDataError(data.code, data.message)
    return None


async def _end_empty_message(
    smtp: aiosmtplib.SMTP, reader: _ReplyReader, transport: asyncio.Transport
) -> None:
    """DATA was accepted although the envelope was refused: end the message with nothing in it. The
    refusal stays the outcome; a connection that does not answer this is closed."""
    transport.write(b".\r\n")
    try:
        await reader.next_reply(smtp.timeout)
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()
