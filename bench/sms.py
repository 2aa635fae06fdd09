"""SMS throughput: SmsChannel (official twilio client) against raw aiohttp, same stand-in, same run.

    .venv/bin/python bench/sms.py [--n 5000] [--concurrency 32] [--runs 3]

The Twilio stand-in runs in its own process (``python -m bot.standins.twilio``) so it does not
share the event loop with the client under test. Each run sends ``n`` messages both ways, in
alternating order; the medians of the runs are compared. CPU columns are CPU seconds per wall
second: a stand-in near 1.0 is saturated and caps both figures. The client's CPU per message
(milliseconds) is the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

from channels.base import Notice, Recipient
from channels.sms import SmsChannel, SmsSettings

SID = "AC" + "0" * 32
TOKEN = "bench-token"
FROM = "+15005550006"
NOTICE = Notice(
    "bench", "maintenance", "Patch Tuesday", "Servers in Berlin reboot at 22:00 CET.", mandatory=False
)


def recipients(n: int) -> list[str]:
    return [f"+491510{i:07d}" for i in range(n)]


async def drive(n: int, send: Callable[[str], Awaitable[object]]) -> float:
    """Send to n numbers (concurrency is the sender's business) and return messages per second."""
    numbers = recipients(n)
    started = time.perf_counter()
    await asyncio.gather(*(send(number) for number in numbers))
    return n / (time.perf_counter() - started)


async def raw_aiohttp(url: str, n: int, concurrency: int, body: str) -> float:
    """The same form posts with plain aiohttp: keep-alive, ``concurrency`` requests in flight."""
    endpoint = f"{url}/2010-04-01/Accounts/{SID}/Messages.json"
    headers = {"Authorization": aiohttp.encode_basic_auth(SID, TOKEN), "Accept": "application/json"}
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def send(to: str) -> object:
            async with (
                slots,
                http.post(endpoint, data={"To": to, "From": FROM, "Body": body}, headers=headers) as r,
            ):
                answer = await r.json()
                assert r.status == 201, answer
                return answer["sid"]

        return await drive(n, send)


async def channel(url: str, n: int, concurrency: int) -> float:
    """SmsChannel with max_concurrency = concurrency."""
    settings = SmsSettings(SID, TOKEN, from_number=FROM, api_url=url, max_concurrency=concurrency)
    async with SmsChannel(settings) as sms:
        prepared = sms.prepare(NOTICE)
        return await drive(n, lambda to: sms.send(prepared, Recipient(to)))


class CpuMeter:
    """CPU seconds per wall second of this process and of the stand-in (Linux /proc; else nan)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _standin_cpu(self) -> float:
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return float("nan")

    async def measure(self, work: Awaitable[float]) -> tuple[float, float, float]:
        wall, own, other = time.perf_counter(), time.process_time(), self._standin_cpu()
        rate = await work
        wall = time.perf_counter() - wall
        return rate, (time.process_time() - own) / wall, (self._standin_cpu() - other) / wall


def start_standin() -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "bot.standins.twilio", "--account-sid", SID, "--auth-token", TOKEN]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    return process, line.rsplit(" ", 1)[-1].strip()


async def bench(url: str, meter: CpuMeter, n: int, concurrency: int, runs: int) -> None:
    body = SmsChannel(SmsSettings(SID, TOKEN, from_number=FROM)).prepare(NOTICE).text
    await raw_aiohttp(url, 200, concurrency, body)  # warm up both paths (imports, first connections)
    await channel(url, 200, concurrency)
    raw_rates, channel_rates, raw_cpus, channel_cpus = [], [], [], []
    print(
        f"{'run':<4} {'raw msg/s':>10} {'channel msg/s':>14} {'ratio':>6}   CPU client/stand-in: raw, channel"
        "   client CPU ms/msg: raw, channel"
    )
    for run in range(1, runs + 1):
        first_raw = run % 2 == 1
        results = {}
        for name in ("raw", "channel") if first_raw else ("channel", "raw"):
            work = raw_aiohttp(url, n, concurrency, body) if name == "raw" else channel(url, n, concurrency)
            results[name] = await meter.measure(work)
        (raw, raw_own, raw_other), (sms, sms_own, sms_other) = results["raw"], results["channel"]
        raw_rates.append(raw)
        channel_rates.append(sms)
        raw_cpus.append(raw_own / raw * 1000)  # CPU s per wall s / (msg per wall s) = CPU s per msg
        channel_cpus.append(sms_own / sms * 1000)
        print(
            f"{run:<4} {raw:>10,.0f} {sms:>14,.0f} {sms / raw:>6.2f}   "
            f"{raw_own:.2f}/{raw_other:.2f}, {sms_own:.2f}/{sms_other:.2f}"
            f"   {raw_cpus[-1]:.3f}, {channel_cpus[-1]:.3f}"
        )
    raw_median, channel_median = statistics.median(raw_rates), statistics.median(channel_rates)
    ratios = [sms / raw for sms, raw in zip(channel_rates, raw_rates, strict=True)]
    print(
        f"median: raw aiohttp {raw_median:,.0f} msg/s, SmsChannel {channel_median:,.0f} msg/s, "
        f"ratio {channel_median / raw_median:.2f}x (median of per-run ratios "
        f"{statistics.median(ratios):.2f}x; target >= 0.6x)"
    )
    print(
        f"client CPU per message (median): raw aiohttp {statistics.median(raw_cpus):.3f} ms, "
        f"SmsChannel {statistics.median(channel_cpus):.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=5000, help="messages per run and path")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    process, url = start_standin()
    try:
        print(
            f"sms bench: {args.n} messages x {args.runs} runs, concurrency {args.concurrency}, stand-in {url}"
        )
        asyncio.run(bench(url, CpuMeter(process.pid), args.n, args.concurrency, args.runs))
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
