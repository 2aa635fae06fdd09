"""Slack DM throughput: SlackDmChannel (slack_sdk) against raw aiohttp, same stand-in, same run.

    .venv/bin/python bench/slack_dm.py [--n 2000] [--concurrency 4] [--runs 3]

The Slack stand-in runs in its own process (``python -m bot.standins.slack --users N``), unthrottled
and without latency, so it does not share the event loop with the client under test. Each DM is two
calls when the person's DM is not cached (``conversations.open``, ``chat.postMessage``): a run sends
``n`` DMs with a fresh channel (cold: two calls each), then the same ``n`` again (warm: the DM ids
cached, one call each). The baseline is raw aiohttp making the same JSON calls, ``concurrency`` in
flight, keep-alive. Paths alternate which goes first; the medians of the runs are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from bot.slack.dm_blocks import render_dm
from bot.standins.slack import numbered_users
from channels.base import Notice, Recipient
from channels.slack import SlackDmChannel, SlackDmSettings

TOKEN = "xoxb-bench"
NOTICE = Notice("nbench", "critical", "Core switch down", "Berlin office offline; we are on it.")


async def drive(users: list[str], send: Callable[[str], Awaitable[object]]) -> float:
    """DM every user (concurrency is the sender's business); DMs per second."""
    started = time.perf_counter()
    await asyncio.gather(*(send(user) for user in users))
    return len(users) / (time.perf_counter() - started)


async def raw_aiohttp(url: str, users: list[str], concurrency: int) -> tuple[float, float]:
    """The same calls with plain aiohttp: (cold, warm) DMs per second."""
    prepared = render_dm(NOTICE)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    slots = asyncio.Semaphore(concurrency)
    opened: dict[str, str] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def call(method: str, body: dict[str, Any]) -> dict[str, Any]:
            async with http.post(f"{url}{method}", json=body, headers=headers) as answer:
                data: dict[str, Any] = await answer.json()
            assert data["ok"], data
            return data

        async def send(user: str) -> object:
            async with slots:
                if user not in opened:
                    opened[user] = (await call("conversations.open", {"users": user}))["channel"]["id"]
                body = {"channel": opened[user], "text": prepared.text, "blocks": list(prepared.blocks)}
                return (await call("chat.postMessage", body))["ts"]

        return await drive(users, send), await drive(users, send)


async def channel(url: str, users: list[str], concurrency: int) -> tuple[float, float]:
    """SlackDmChannel with max_concurrency = concurrency, as the dispatcher runs it: (cold, warm)."""
    settings = SlackDmSettings(bot_token=TOKEN, api_url=url, max_concurrency=concurrency)
    dm = SlackDmChannel(settings, render_dm)
    slots = asyncio.Semaphore(concurrency)  # the dispatcher's send slots
    prepared = dm.prepare(NOTICE)

    async def send(user: str) -> object:
        async with slots:
            return await dm.send(prepared, Recipient(user, message_key=f"nbench.{user}"))

    try:
        return await drive(users, send), await drive(users, send)
    finally:
        await dm.aclose()


def start_standin(users: int) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "bot.standins.slack", "--token", TOKEN, "--users", str(users)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.rsplit(" ", 1)[-1].strip()


async def bench(url: str, n: int, concurrency: int, runs: int) -> None:
    users = numbered_users(n)
    await raw_aiohttp(url, users[:100], concurrency)  # warm up both paths
    await channel(url, users[:100], concurrency)
    rates: dict[str, list[tuple[float, float]]] = {"raw": [], "channel": []}
    print(f"{'run':<4} {'raw cold/warm DM/s':>20} {'channel cold/warm DM/s':>24}")
    for run in range(1, runs + 1):
        for name in ("raw", "channel") if run % 2 else ("channel", "raw"):
            path = raw_aiohttp if name == "raw" else channel
            rates[name].append(await path(url, users, concurrency))
        (raw_cold, raw_warm), (ch_cold, ch_warm) = rates["raw"][-1], rates["channel"][-1]
        print(f"{run:<4} {raw_cold:>9,.0f}/{raw_warm:<10,.0f} {ch_cold:>11,.0f}/{ch_warm:<12,.0f}")
    for index, label in ((0, "cold (open + post)"), (1, "warm (post only)")):
        raw = statistics.median(r[index] for r in rates["raw"])
        mine = statistics.median(r[index] for r in rates["channel"])
        print(
            f"median {label}: raw aiohttp {raw:,.0f} DM/s, SlackDmChannel {mine:,.0f} DM/s, {mine / raw:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="DMs per run and path")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight ([slack_dm] max_concurrency)"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    process, url = start_standin(args.n)
    try:
        print(
            f"slack dm bench: {args.n} DMs x {args.runs} runs, concurrency {args.concurrency}, stand-in {url}"
        )
        asyncio.run(bench(url, args.n, args.concurrency, args.runs))
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
