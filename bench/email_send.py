"""Email throughput: Herald's EmailChannel against baselines in the same run, into Postfix's smtp-sink.

    .venv/bin/python bench/email_send.py [--n 5000] [--connections 8] [--runs 3] [--apprise-python PATH]

Paths, each sending ``n`` personalised ~2 KB messages (one recipient per transaction):

- ``herald``: ``EmailChannel.prepare`` once, ``send`` per recipient, ``connections`` workers
  over a pool of ``connections`` connections;
- ``a``: bare aiosmtplib, ``connections`` connections, one pre-rendered message (bytes);
- ``a2``: aiosmtplib building and flattening an ``email.message.EmailMessage`` per message
  (templates rendered once; the per-recipient link substituted into the strings);
- ``c``: Postfix ``smtp-source``, 10 sessions, connections reused (the sink's own limit);
- ``b``: Apprise ``mailto://``, one ``notify()`` per recipient, only with ``--apprise-python``
  (an interpreter of a separate venv with apprise installed) and on fewer messages.

Each path runs ``runs`` times; the median msg/s is reported with Herald's ratio to ``a``.
The sink is ``/usr/sbin/smtp-sink`` (Debian package postfix); without it, Herald's aiosmtpd
stand-in runs in a separate process instead, which is far slower, so the ratios still hold
but the absolute figures do not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, TypeVar

import aiosmtplib
from markupsafe import escape

from channels.base import Notice, Recipient
from channels.email import EmailChannel, EmailSettings, build_message
from channels.email_render import format_date, make_environment

FROM = "Herald <herald@example.com>"
ENVELOPE_FROM = "herald@example.com"
EHLO = "bench.localhost"
BODY = (
    "Servers in the Berlin data centre reboot tonight between 22:00 and 23:30 CET.\n"
    "Save your work and log off remote sessions before 22:00."
)
NOTICE = Notice(
    notification_id="n-bench",
    severity="maintenance",
    title="Patch Tuesday: Berlin servers reboot tonight",
    body=BODY,
    mandatory=False,
)

Runner = Callable[[], Coroutine[None, None, int]]
T = TypeVar("T")


def recipients(n: int) -> list[Recipient]:
    return [
        Recipient(
            address=f"user{i}@example.com",
            name=f"Person Number{i}",
            person_id=f"p{i}",
            unsubscribe_url=f"https://herald.example.com/u/{i:08d}-3f9a1c7e5b2d4f60a8c1e9b7d3f5a2c4",
            message_key=f"n-bench.p{i}.email",
        )
        for i in range(n)
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def postfix_program(name: str) -> str | None:
    """Path of a Postfix tool (they live in /usr/sbin, often not on PATH), or None."""
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}",) if os.path.exists(p)), None)


@contextlib.contextmanager
def sink(kind: str) -> Iterator[tuple[int, str]]:
    """A running SMTP sink (``auto``: smtp-sink when installed, else the stand-in): (port, description).

    The sink process is stopped on the way out, also after an error or Ctrl-C."""
    port = free_port()
    binary = postfix_program("smtp-sink")
    if kind == "smtp-sink" and binary is None:
        raise SystemExit("smtp-sink is not installed (Debian: apt-get install postfix)")
    if binary and kind != "standin":
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        command = [binary, *user, "-m", "512", f"127.0.0.1:{port}", "1024"]
        label = "Postfix smtp-sink"
    else:
        command = [sys.executable, "-m", "bot.standins.smtp", "--quiet", "--port", str(port)]
        label = "aiosmtpd stand-in in a separate process" + ("" if binary else " (smtp-sink not installed)")
        if not binary:
            print(
                "note: smtp-sink not found (Debian: apt-get install postfix); using the much slower "
                "aiosmtpd stand-in, so absolute figures are not comparable",
                file=sys.stderr,
            )
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    RUNNING[port] = process
    try:
        wait_for_port(port, process)
        yield port, label
    finally:
        del RUNNING[port]
        stop(process)


RUNNING: dict[int, subprocess.Popen[bytes]] = {}  # the sinks open now, by port


def sink_gone(port: int) -> str | None:
    """Why the sink on ``port`` (from ``sink``) is no longer running, or None while it is."""
    process = RUNNING.get(port)
    if process is None or process.poll() is None:
        return None
    code = process.returncode
    return f"the sink on port {port} exited " + (f"(signal {-code})" if code < 0 else f"with status {code}")


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate ``process`` and reap it; kill it if it does not go within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(
                f"the sink exited with status {process.returncode} before listening: {process.args!r}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise SystemExit(f"the sink did not listen on port {port}")


async def in_parallel(workers: int, items: list[T], send: Callable[[int, T], Awaitable[None]]) -> None:
    """``workers`` coroutines taking items from one shared iterator; worker i is ``send(i, item)``."""
    shared = iter(items)

    async def worker(index: int) -> None:
        for item in shared:
            await send(index, item)

    await asyncio.gather(*(worker(i) for i in range(workers)))


def herald(port: int, people: list[Recipient], connections: int, pipelining: bool = True) -> Runner:
    async def run() -> int:
        channel = EmailChannel(
            EmailSettings(
                host="127.0.0.1",
                port=port,
                security="none",
                from_address=FROM,
                max_connections=connections,
                local_hostname=EHLO,
                pipelining=pipelining,
            )
        )
        prepared = channel.prepare(NOTICE)

        async def send(_: int, person: Recipient) -> None:
            await channel.send(prepared, person)

        try:
            await in_parallel(connections, people, send)
        finally:
            await channel.aclose()
        return len(people)

    return run


async def connect(port: int, count: int) -> list[aiosmtplib.SMTP]:
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname=EHLO, start_tls=False)
        for _ in range(count)
    ]
    await asyncio.gather(*(client.connect() for client in clients))
    return clients


def bare(port: int, people: list[Recipient], connections: int, data: bytes) -> Runner:
    async def run() -> int:
        clients = await connect(port, connections)

        async def send(index: int, person: Recipient) -> None:
            try:
                await clients[index].sendmail(ENVELOPE_FROM, [person.address], data)
            except aiosmtplib.SMTPServerDisconnected:  # seen once from smtp-sink under load 17: resend
                print(f"  (bare loop: connection {index} lost; reconnected, message resent)", flush=True)
                clients[index] = (await connect(port, 1))[0]
                await clients[index].sendmail(ENVELOPE_FROM, [person.address], data)

        await in_parallel(connections, people, send)
        await asyncio.gather(*(client.quit() for client in clients))
        return len(people)

    return run


def grouped(port: int, people: list[Recipient], connections: int, data: bytes, k: int) -> Runner:
    """Bare aiosmtplib, ``k`` recipients per transaction: MAIL once, RCPT per recipient (each reply
    read, as per-recipient tracking would need), DATA once, as Herald's ``SmtpPool`` writes the
    commands (no ``sendmail`` address parsing). Returns the recipients accepted."""

    async def run() -> int:
        clients = await connect(port, connections)
        groups = [people[i : i + k] for i in range(0, len(people), k)]
        accepted = 0

        async def send(index: int, group: list[Recipient]) -> None:
            nonlocal accepted
            got = await transaction(clients[index], [person.address for person in group], data)
            accepted += got  # not `accepted += await ...`: that reads `accepted` before awaiting

        await in_parallel(connections, groups, send)
        await asyncio.gather(*(client.quit() for client in clients))
        if accepted != len(people):
            raise SystemExit(f"the sink accepted {accepted} of {len(people)} recipients")
        return accepted

    return run


async def transaction(smtp: aiosmtplib.SMTP, addresses: list[str], data: bytes) -> int:
    """One SMTP transaction to ``addresses``; how many RCPTs were accepted (DATA needs at least one)."""
    if smtp.is_ehlo_or_helo_needed:
        await smtp.ehlo()
    reply = await smtp.execute_command(b"MAIL", b"FROM:<%s>" % ENVELOPE_FROM.encode(), b"SIZE=%d" % len(data))
    if reply.code != 250:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, ENVELOPE_FROM)
    accepted = 0
    for address in addresses:
        reply = await smtp.execute_command(b"RCPT", b"TO:<%s>" % address.encode())
        accepted += reply.code in (250, 251)
    if accepted == 0:
        await smtp.rset()
        return 0
    await smtp.data(data)
    return accepted


def per_transaction(port: int, people: list[Recipient], sample: bytes, args: argparse.Namespace) -> None:
    """``--recipients-per-transaction``: recipients/s for each k, round-robin, on Herald's event loop."""
    from bot import runtime  # the loop Herald runs on (uvloop when installed)

    factory = runtime.loop_factory()
    sizes = sorted({int(k) for k in args.recipients_per_transaction.split(",")})
    c = args.connections
    print(f"event loop: {'uvloop' if factory else 'asyncio'}; k = recipients per transaction", flush=True)
    rates: dict[int, list[float]] = {k: [] for k in sizes}
    for run in range(args.runs):
        for k in sizes[run % len(sizes) :] + sizes[: run % len(sizes)]:  # each k leads once in turn
            rates[k].append(once(grouped(port, people, c, sample, k), factory)())
            print(f"  run {run + 1}  k={k:<3} {rates[k][-1]:9,.0f} recipients/s", flush=True)
    first = statistics.median(rates[sizes[0]])
    print()
    print(f"| k | recipients/s (median) | transactions/s | ratio to k={sizes[0]} | runs |")
    print("| ---: | ---: | ---: | ---: | --- |")
    for k in sizes:
        median = statistics.median(rates[k])
        each = ", ".join(f"{rate:,.0f}" for rate in rates[k])
        print(f"| {k} | {median:,.0f} | {median / k:,.0f} | {median / first:.2f}x | {each} |")


def stdlib_message(people: list[Recipient], port: int, connections: int) -> Runner:
    environment, token = make_environment(), "HERALDLINKTOKEN"
    context = {
        "severity": "MAINTENANCE",
        "title": NOTICE.title,
        "color": "#b54708",
        "paragraphs": [p.split("\n") for p in BODY.split("\n\n")],
        "links": [],
        "notification_id": NOTICE.notification_id,
        "unsubscribe_url": token,
    }
    text = environment.get_template("default.email.txt.j2").render(context)
    html = environment.get_template("default.email.html.j2").render(context)
    subject = f"[MAINTENANCE] {NOTICE.title}"

    def build(person: Recipient) -> EmailMessage:
        message = EmailMessage()
        message["From"] = FROM
        message["To"] = Address(person.name, addr_spec=person.address)
        message["Subject"] = subject
        message["Date"] = format_date(time.time())
        message["Message-ID"] = f"<{person.message_key}@example.com>"
        message["Auto-Submitted"] = "auto-generated"
        message["List-Unsubscribe"] = f"<{person.unsubscribe_url}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(text.replace(token, person.unsubscribe_url))
        message.add_alternative(html.replace(token, str(escape(person.unsubscribe_url))), subtype="html")
        return message

    async def run() -> int:
        clients = await connect(port, connections)

        async def send(index: int, person: Recipient) -> None:
            await clients[index].send_message(build(person))

        await in_parallel(connections, people, send)
        await asyncio.gather(*(client.quit() for client in clients))
        return len(people)

    return run


def smtp_source(port: int, n: int, size: int, sessions: int = 10) -> Callable[[], float] | None:
    """Postfix ``smtp-source``: ``n`` messages of ``size`` bytes over ``sessions`` reused connections,
    msg/s of the whole process (None when it is not installed)."""
    binary = postfix_program("smtp-source")
    if binary is None:
        return None
    command = [binary, "-s", str(sessions), "-m", str(n), "-l", str(size), "-d", "-M", EHLO]
    command += ["-f", ENVELOPE_FROM]
    command += ["-t", "user@example.com", f"127.0.0.1:{port}"]

    def run() -> float:
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return n / (time.perf_counter() - start)

    return run


APPRISE_SCRIPT = """
import sys, time, apprise
port, n = int(sys.argv[1]), int(sys.argv[2])
body = sys.stdin.read()
start = time.perf_counter()
for i in range(n):
    a = apprise.Apprise()
    a.add(f"mailto://127.0.0.1:{port}/user{i}@example.com?from=herald@example.com&mode=insecure&name=Herald")
    if not a.notify(title="[MAINTENANCE] Patch Tuesday", body=body):
        raise SystemExit("apprise notify failed")
print(n / (time.perf_counter() - start))
"""


def apprise(python: str, port: int, n: int) -> Callable[[], float]:
    def run() -> float:
        done = subprocess.run(
            [python, "-c", APPRISE_SCRIPT, str(port), str(n)],
            input=BODY,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(done.stdout.strip().splitlines()[-1])

    return run


def once(
    runner: Runner, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
) -> Callable[[], float]:
    """One timed run of ``runner`` in a fresh event loop (from ``loop_factory``, asyncio's default
    without one): msg/s (or recipients/s), connection set-up included."""

    def run() -> float:
        start = time.perf_counter()
        with asyncio.Runner(loop_factory=loop_factory) as loop:
            sent = loop.run(runner())
        return sent / (time.perf_counter() - start)

    return run


def build_rate(people: list[Recipient]) -> float:
    channel = EmailChannel(EmailSettings(host="127.0.0.1", from_address=FROM, security="none"))
    prepared = channel.prepare(NOTICE)
    start = time.perf_counter()
    for person in people:
        build_message(prepared, person)
    return len(people) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="messages per run (default 5000)")
    parser.add_argument("--connections", type=int, default=8, help="SMTP connections (default 8)")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per path; the median is reported (default 3)"
    )
    parser.add_argument(
        "--sink", choices=["auto", "smtp-sink", "standin"], default="auto", help="SMTP server"
    )
    parser.add_argument("--no-a2", action="store_true", help="skip path a2 (slow)")
    parser.add_argument("--apprise-python", help="python of a venv with apprise installed: adds path (b)")
    parser.add_argument("--apprise-n", type=int, default=200, help="messages per Apprise run (default 200)")
    parser.add_argument(
        "--recipients-per-transaction",
        metavar="K,K,...",
        help="instead of the paths above: bare aiosmtplib with K recipients per SMTP transaction "
        "(e.g. 1,10,50), recipients/s and the ratio to the smallest K",
    )
    args = parser.parse_args()

    people = recipients(args.n)
    channel = EmailChannel(EmailSettings(host="127.0.0.1", from_address=FROM, security="none"))
    sample = build_message(channel.prepare(NOTICE), people[0])
    c = args.connections
    with sink(args.sink) as (port, label):
        print(
            f"sink: {label}; {args.n} messages of {len(sample)} bytes, {args.connections} connections, "
            f"{args.runs} runs; python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if args.recipients_per_transaction:
            per_transaction(port, people, sample, args)
            return
        paths: list[tuple[str, str, Callable[[], float]]] = [
            ("herald", f"Herald EmailChannel, {c} connections", once(herald(port, people, c))),
            (
                "herald1",
                "the same, [smtp] pipelining = false",
                once(herald(port, people, c, pipelining=False)),
            ),
            ("a", f"aiosmtplib, {c} connections, pre-rendered bytes", once(bare(port, people, c, sample))),
            (
                "a2",
                f"aiosmtplib, {c} connections, EmailMessage per message",
                (lambda: 0.0) if args.no_a2 else once(stdlib_message(people, port, c)),
            ),
        ]
        if args.no_a2:
            paths = [path for path in paths if path[0] != "a2"]
        source = smtp_source(port, args.n, len(sample))
        if source is not None:
            paths.append(("c", "smtp-source, 10 sessions, reused", source))
        if args.apprise_python:
            description = f"Apprise mailto://, notify() per recipient ({args.apprise_n} msgs)"
            paths.append(("b", description, apprise(args.apprise_python, port, args.apprise_n)))
        rates: dict[str, list[float]] = {key: [] for key, _, _ in paths}
        for run in range(args.runs):  # round-robin, so drifting machine load hits every path alike
            for key, description, measure in paths:
                rates[key].append(measure())
                print(f"  run {run + 1}  {key:6} {description:60} {rates[key][-1]:9,.0f} msg/s", flush=True)
        results = {key: (description, rates[key]) for key, description, _ in paths}

    print()
    print("| path | msg/s (median) | runs |")
    print("| --- | ---: | --- |")
    for key, (description, measured) in results.items():
        each = ", ".join(f"{rate:,.0f}" for rate in measured)
        print(f"| {key}: {description} | {statistics.median(measured):,.0f} | {each} |")
    ratio = statistics.median(results["herald"][1]) / statistics.median(results["a"][1])
    print(f"\nherald / a = {ratio:.2f} (target >= 0.5)")
    if "herald1" in results:
        gain = statistics.median(results["herald"][1]) / statistics.median(results["herald1"][1])
        print(f"herald / herald1 (PIPELINING on / off) = {gain:.2f}")
    print(f"build_message alone: {build_rate(people):,.0f} msg/s")
    if "b" not in results:
        print("Apprise (b) skipped: pass --apprise-python PATH (a venv with apprise installed)")


if __name__ == "__main__":
    main()
