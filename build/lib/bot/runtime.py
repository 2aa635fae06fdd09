"""Running Herald's event loop: uvloop when it is installed (about half again faster on the SMTP and
HTTP hot paths, see PERF-FACTS), the standard loop otherwise."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the fastest loop available.

    The ledger's writes run in worker threads while the loop sends; a shorter GIL switch interval
    (0.5 ms instead of 5 ms) lets a finished write hand its result back without waiting behind the loop.
    """
    sys.setswitchinterval(0.0005)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
