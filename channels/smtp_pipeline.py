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

Riders: RFC 2920 lets the message (ending in ``.``) be followed in the same write by the next
transaction's ``MAIL``/``RCPT``/``DATA``. While a transaction (a :class:`Turn`) waits for its three
envelope replies, its connection offers a seat in the pool's :class:`Seats`; a send that takes it
(:meth:`Turn.board`) hands over its command bytes and waits. At ``354`` the seat closes and the message,
its end and the rider's commands go out in one write; the rider's turn then offers the next seat at
once. After its own final reply the host passes the connection (reader still installed) to the rider,
which reads its three replies and goes on like any pipelined transaction: in steady state one write
and one read per message. The rider is told "not boarded" and sends on its own when the host's
envelope is refused, the host is cancelled, its final reply is ``421`` or the connection is lost
before the hand-over: its envelope may have gone into a dead session but no message of it was
written, so nothing was delivered. A refused message with a rider aboard is not followed by RSET
(the rider's transaction has begun); the connection is handed over. A rider cancelled before its
commands went out leaves the seat; after, the host closes the connection instead of handing it over.
Seats are offered only on a connection whose last end of data was answered within
:data:`FAST_END_OF_DATA` (none before the first is measured): behind a slow relay a rider would wait
for it instead of going out on another connection. A rider's message is written only after its own
``354``, i.e. after the host's final reply, and riders hold the pool's permits like any send, so no
more messages than ``max_connections`` are ever written and unanswered at once (what may go twice
after a kill -9 is bounded as before).

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
import weakref
from collections import deque
from collections.abc import Callable
from typing import cast

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol, normalize_message_line_endings
from aiosmtplib.response import SMTPResponse

__all__ = ["FAST_END_OF_DATA", "Seats", "Turn", "pipelined_transaction", "wire_clean"]

_PERIOD = re.compile(rb"(?m)^\.")
_MAX_REPLY = 8192 * 4  # as aiosmtplib: a reply may not exceed this (bounds a babbling server)


# A seat is offered only on a connection whose last end of data was answered within this many seconds.
# Behind a relay that scans the content before it accepts (100s of ms), a rider would wait for the scan
# instead of going out at once on another connection; a fast relay answers within a few ms even with
# a busy event loop adding its delay to the measurement.
FAST_END_OF_DATA = 0.020


class Seats:
    """A pool's seats open for boarding, and each connection's last end-of-data time (``clock``)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._open: dict[Turn, None] = {}  # an ordered set
        self._end_of_data: weakref.WeakKeyDictionary[aiosmtplib.SMTP, float] = weakref.WeakKeyDictionary()

    def take(self) -> Turn | None:
        """The turn of an open seat without a rider, taken off the list; None when there is none."""
        return self._open.popitem()[0] if self._open else None

    def measured(self, smtp: aiosmtplib.SMTP, seconds: float) -> None:
        self._end_of_data[smtp] = seconds

    def offer(self, turn: Turn) -> bool:
        """List ``turn``'s seat when its connection is fast; whether it did."""
        seconds = self._end_of_data.get(turn.smtp)
        if seconds is None or seconds > FAST_END_OF_DATA:
            return False
        self._open[turn] = None
        return True

    def withdraw(self, turn: Turn) -> None:
        self._open.pop(turn, None)


class Turn:
    """One transaction's hold on a connection; see the module docstring on riders. ``reader`` is set
    while pipelined transactions run; ``handed_over`` turns true when the connection went to the rider."""

    def __init__(self, smtp: aiosmtplib.SMTP, seats: Seats, reader: _ReplyReader | None = None) -> None:
        self.smtp, self.seats, self.reader = smtp, seats, reader
        self.handed_over = False
        self._seat_open = False
        self._rider: asyncio.Future[Turn | None] | None = None
        self._commands = b""
        self._next: Turn | None = None  # the rider's turn, once its envelope is written

    def board(self, commands: bytes) -> asyncio.Future[Turn | None]:
        """Ride on this turn (taken from :meth:`Seats.take`): ``commands`` go out with its message. The
        future gives the rider's own turn once this one has its final reply, or None: not boarded."""
        self._rider = asyncio.get_running_loop().create_future()
        self._commands = commands
        return self._rider

    def leave(self, boarded: asyncio.Future[Turn | None]) -> bool:
        """The rider waiting on ``boarded`` was cancelled. True when it had been handed the connection
        (now closed; the caller gives up its place); a rider not yet written frees the seat."""
        if boarded.done() and not boarded.cancelled():
            mine = boarded.result()
            if mine is not None:
                mine.drop()
            return mine is not None
        if self._rider is boarded and self._next is None:
            self._rider = None
            if self._seat_open:
                self.seats.offer(self)
        return False

    def offer_seat(self) -> None:
        if self._rider is None:
            self._seat_open = self.seats.offer(self)

    def close_seat(self) -> bytes:
        """No more boarding; the commands of a rider still waiting (b"" when there is none)."""
        self._seat_open = False
        self.seats.withdraw(self)
        if self._rider is not None and self._rider.cancelled():
            self._rider = None
        return b"" if self._rider is None else self._commands

    def seat_rider(self) -> None:
        """The rider's envelope went out with this turn's message: its turn starts and offers a seat."""
        if self._rider is not None:
            self._next = Turn(self.smtp, self.seats, self.reader)
            self._next.offer_seat()

    def hand_over(self) -> None:
        """This turn has its final reply (not 421): the connection goes on to the rider. A rider that
        was cancelled after its envelope went out leaves the session in an unknown state: closed."""
        if self._rider is None or self._next is None:
            return
        if self._rider.cancelled():
            self.drop()
        else:
            self.handed_over = True
            self._rider.set_result(self._next)

    def abandon(self) -> None:
        """The connection will not go on to a rider (nor to its rider's rider): they send on their own."""
        self.close_seat()
        rider, self._rider = self._rider, None
        if rider is not None and not rider.done():
            rider.set_result(None)
        if self._next is not None:
            self._next.abandon()

    def restore(self) -> None:
        """aiosmtplib's protocol back on the transport."""
        if self.reader is not None and self.smtp.transport is not None:
            self.smtp.transport.set_protocol(self.reader.owner)

    def drop(self) -> None:
        """Give the connection up: no rider, aiosmtplib's protocol back, closed."""
        self.abandon()
        self.restore()
        self.smtp.close()


class _ReplyReader(asyncio.Protocol):
    """The transport's protocol while a pipelined transaction runs: every complete reply is queued."""

    def __init__(self, owner: SMTPProtocol) -> None:
        self.owner = owner
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
        self.owner.connection_lost(exc)  # aiosmtplib's state follows, as if it had been listening

    def pause_writing(self) -> None:
        self.owner.pause_writing()

    def resume_writing(self) -> None:
        self.owner.resume_writing()

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
    turn: Turn, commands: bytes | None, data: bytes, *, sender: str, recipient: str, clean: bool = False
) -> str:
    """Send ``commands`` (MAIL, RCPT and DATA lines; None when they rode with the message before),
    then ``data`` (``clean``: see :func:`_wire_message`); the final reply's text. Raises as the module
    docstring says. The server must offer PIPELINING. ``turn.handed_over`` tells afterwards whether the
    connection went on to a rider."""
    smtp = turn.smtp
    if turn.reader is None:
        # a cast, not isinstance: uvloop's transports are not asyncio.Transport subclasses
        protocol, transport = smtp.protocol, cast(asyncio.Transport | None, smtp.transport)
        if protocol is None or transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        turn.reader = _ReplyReader(protocol)
        transport.set_protocol(turn.reader)
    try:
        outcome = await _exchange(turn, commands, data, sender, recipient, clean)
    except BaseException:  # cut off mid-exchange: what the server has read or will answer is unknown
        turn.drop()
        raise
    if not turn.handed_over:
        turn.restore()
    if isinstance(outcome, str):
        return outcome
    if not turn.handed_over:
        if outcome.code == 421:
            smtp.close()
        elif smtp.is_connected:
            with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
                await smtp.rset()
    raise outcome


async def _exchange(
    turn: Turn, commands: bytes | None, data: bytes, sender: str, recipient: str, clean: bool
) -> str | aiosmtplib.SMTPResponseException:
    """The final reply's text, or the refusal to raise once the reader is gone."""
    smtp, reader = turn.smtp, cast(_ReplyReader, turn.reader)
    transport = cast(asyncio.Transport, smtp.transport)
    if commands is not None:
        transport.write(commands)
    turn.offer_seat()
    try:
        replies = await _envelope_replies(smtp, reader)
    finally:
        rider = turn.close_seat()
    refusal = _refusal(replies, sender, recipient)
    if refusal is not None:
        turn.abandon()
        if len(replies) == 3 and replies[2].code == 354:
            await _end_empty_message(smtp, reader, transport)
        return refusal
    transport.write(_wire_message(data, clean) + rider)  # the rider's envelope, if any, in the same write
    turn.seat_rider()
    started = turn.seats.clock()
    final = await reader.next_reply(smtp.timeout)
    turn.seats.measured(smtp, turn.seats.clock() - started)
    if final.code == 421:
        turn.abandon()
    else:
        turn.hand_over()
    return final.message if final.code == 250 else aiosmtplib.SMTPDataError(final.code, final.message)


def wire_clean(data: bytes) -> bool:
    """Whether ``data`` goes into DATA as it is: CR and LF only as CRLF pairs, and no line (nor
    ``data`` itself) starting with a dot. About 13 us for a 5 KB message: the renderer checks the
    parts it splices instead (:func:`channels.email_render.personalise`)."""
    crlf = data.count(b"\r\n")
    return crlf == data.count(b"\n") == data.count(b"\r") and not data.startswith(b".") and b"\n." not in data


def _wire_message(data: bytes, clean: bool) -> bytes:
    """``data`` as aiosmtplib's ``data`` sends it: lone CR and LF made CRLF, a CRLF at the end, lines
    starting with a dot stuffed, then the end marker. ``clean``: the caller knows that ``data`` ends
    in CRLF and is :func:`wire_clean` (every message the renderer makes, unless a template or the
    text starts a line with a dot); else it is checked here (the two regex substitutions cost about
    45 us per 2.5 KB message, the check about a quarter of that)."""
    if clean or (data.endswith(b"\r\n") and wire_clean(data)):
        return data + b".\r\n"
    return _PERIOD.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


async def _envelope_replies(smtp: aiosmtplib.SMTP, reader: _ReplyReader) -> list[SMTPResponse]:
    """The replies to MAIL, RCPT and DATA, fewer when one is 421 or the connection is lost after a
    refusal (the refusal is then the outcome)."""
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
