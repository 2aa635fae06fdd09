"""Local servers that follow third-party APIs' published contracts, for the demo and the tests."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

_S = TypeVar("_S")


async def serve_until_signalled(
    standin: AbstractAsyncContextManager[_S], started: Callable[[_S], str], stopped: Callable[[_S], str]
) -> None:
    """Run a stand-in from the command line until SIGINT or SIGTERM, saying when it starts and stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with standin as running:
        print(started(running), flush=True)
        await stop.wait()
    print(stopped(running), flush=True)
