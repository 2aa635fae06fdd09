"""Raw SMTP peers for the PIPELINING tests: a scripted server that can hold its replies until MAIL,
RCPT and DATA have all arrived, and a TCP proxy that records how the client's writes arrive.

``ScriptedSmtp(hold=True)`` answers nothing of an envelope before it holds all three commands, so a
client that waits for the MAIL reply before writing RCPT never gets one (its timeout fires): a send
that succeeds against it was pipelined. Replies are scripted per transaction (``script``), and
``held`` records, per transaction, how many envelope commands had been read when the first was
answered (3 with ``hold``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Replies:
    """One transaction's replies; ``None`` closes the connection instead of answering. The server awaits
    ``before_replies()`` before answering the envelope and ``before_final()`` before the final reply
    (a test holds a reply back with an event's ``wait``, or moves an injected clock on)."""

    mail: str | None = "250 2.1.0 Ok"
    rcpt: str | None = "250 2.1.5 Ok"
    data: str | None = "354 End data with <CR><LF>.<CR><LF>"
    final: str | None = "250 2.0.0 Ok: queued"
    before_replies: Callable[[], Awaitable[object]] | None = None
    before_final: Callable[[], Awaitable[object]] | None = None


@dataclass
class ScriptedSmtp:
    """See the module docstring. ``script`` is consumed one entry per MAIL; then every reply accepts."""

    advertise: bool = True
    hold: bool = False
    script: list[Replies] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # every command line, in order
    bodies: list[bytes] = field(default_factory=list)  # each message as received (dot-stuffed)
    held: list[int] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedSmtp:
        self._server, self.port = await _listen(self._session)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 scripted ESMTP\r\n")
        try:
            while line := await reader.readline():
                if not await self._command(line, reader, writer):
                    break
        finally:
            writer.close()

    async def _command(self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        self.commands.append(line.decode().strip())
        verb = line[:4].upper()
        if verb == b"EHLO":
            offers = b"250-PIPELINING\r\n" if self.advertise else b""
            writer.write(b"250-scripted\r\n" + offers + b"250 SIZE 1000000\r\n")
        elif verb == b"MAIL":
            return await self._transaction(line, reader, writer)
        elif verb == b"QUIT":
            writer.write(b"221 Bye\r\n")
            return False
        else:  # RSET, NOOP; RCPT or DATA out of turn
            writer.write(b"250 Ok\r\n" if verb in (b"RSET", b"NOOP") else b"503 5.5.1 Bad sequence\r\n")
        await writer.drain()
        return True

    async def _transaction(
        self, mail: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        replies = self.script.pop(0) if self.script else Replies()
        lines = [mail]
        if self.hold:
            while len(lines) < 3:
                lines.append(await reader.readline())
                self.commands.append(lines[-1].decode().strip())
        self.held.append(len(lines))
        if replies.before_replies is not None:
            await replies.before_replies()
        for index, reply in enumerate((replies.mail, replies.rcpt, replies.data)):
            if index >= len(lines):
                lines.append(await reader.readline())
                self.commands.append(lines[-1].decode().strip())
            if reply is None:
                return False
            writer.write(reply.encode() + b"\r\n")
            await writer.drain()
            if reply.startswith("421"):
                return False
        if replies.data is not None and replies.data.startswith("354"):
            self.bodies.append(await _body(reader))
            if replies.before_final is not None:
                await replies.before_final()
            if replies.final is None:
                return False
            writer.write(replies.final.encode() + b"\r\n")
            await writer.drain()
            return not replies.final.startswith("421")
        return True


async def _listen(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, int]:
    """A server for ``handler`` on 127.0.0.1 and the port it got."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _body(reader: asyncio.StreamReader) -> bytes:
    """The message up to the lone dot (not included)."""
    body = bytearray()
    while (line := await reader.readline()) not in (b".\r\n", b""):
        body += line
    return bytes(body)


@dataclass
class RecordingProxy:
    """Forwards 127.0.0.1:``port`` to ``target``; ``chunks`` holds what each client read delivered."""

    target: int
    chunks: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> RecordingProxy:
        self._server, self.port = await _listen(self._pair)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _pair(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target)
        for task in (self._pump(client_in, server_out, record=True), self._pump(server_in, client_out)):
            running = asyncio.create_task(task)
            self._tasks.add(running)
            running.add_done_callback(self._tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bool = False
    ) -> None:
        try:
            while chunk := await source.read(65536):
                if record:
                    self.chunks.append(chunk)
                sink.write(chunk)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()
