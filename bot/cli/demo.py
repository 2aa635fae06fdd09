"""``herald demo``: the whole job on one machine, with no accounts.

SQLite in a temporary directory, an in-process SMTP server that captures mail, a local stand-in for
Twilio's Messages API, a generated sample directory, one announcement over email and SMS sent end to
end through the real dispatcher and channels, and the delivery/SLA report at the end.
"""

from __future__ import annotations

import asyncio
import csv
import random
import sys
import tempfile
from pathlib import Path

from bot import reports, service
from bot.alerts.escalation import alert_tick
from bot.alerts.intake import parse_generic
from bot.alerts.lifecycle import ingest
from bot.app import Herald
from bot.cli.wait import wait_for
from bot.config import load_settings
from bot.directory.store import import_file
from bot.engine.dispatcher import Dispatcher
from bot.render import format_preview, format_report, format_status
from bot.standins.smtp import SmtpStandIn
from bot.standins.twilio import TwilioStandIn

DEMO_TOKEN = "demo-token"  # noqa: S105 - the local Twilio stand-in's made-up credential
FIRST = [
    "Ada",
    "Grace",
    "Linus",
    "Ken",
    "Barbara",
    "Edsger",
    "Frances",
    "Donald",
    "Margaret",
    "Dennis",
    "Radia",
    "Vint",
    "Anita",
    "Tim",
    "Hedy",
    "Alan",
    "Katherine",
    "John",
    "Sophie",
    "Bjarne",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Thompson",
    "Liskov",
    "Dijkstra",
    "Allen",
    "Knuth",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Cerf",
    "Borg",
    "Berners-Lee",
    "Lamarr",
    "Turing",
    "Johnson",
    "Backus",
    "Wilson",
    "Stroustrup",
]
DEPARTMENTS = ["Engineering", "Finance", "HR", "Sales", "IT", "Support"]
# Phone prefixes and how many random digits follow (drama/fiction ranges where they exist).
SITES = [
    ("Berlin", "Europe/Berlin", "+49151", 8),
    ("London", "Europe/London", "+447400", 6),
    ("New York", "America/New_York", "+121255501", 2),
]


def write_sample_directory(path: Path, people: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "name", "email", "phone", "department", "site", "title", "groups", "timezone", "active"]
        )
        for index in range(people):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            site, zone, prefix, digits = SITES[index % len(SITES)]
            phone = prefix + "".join(str(rng.randrange(10)) for _ in range(digits))
            has_phone = rng.random() > 0.1
            groups = "oncall-network" if index % 25 == 0 else ""
            writer.writerow(
                [
                    f"e{index:05d}",
                    f"{first} {last}",
                    f"{first}.{last}.{index}@example.com".lower(),
                    phone if has_phone else "",
                    rng.choice(DEPARTMENTS),
                    site,
                    "IT Manager" if index % 40 == 0 else "Engineer",
                    groups,
                    zone,
                    "yes",
                ]
            )


async def demo_alert(herald: Herald) -> None:
    """One alert to the network on-call group; nobody acknowledges, so managers are paged next."""
    batch = parse_generic(
        {
            "summary": "Core switch sw-ber-01 is down",
            "severity": "critical",
            "status": "firing",
            "labels": {"alertname": "SwitchDown", "team": "network", "instance": "sw-ber-01"},
            "description": "No response to ICMP or SNMP for 2 minutes.",
        },
        tuple(herald.settings.sla),
        source="demo",
    )
    result = ingest(herald, batch)
    print(
        f"alert raised: {len(result.notifications)} notification(s) to group:oncall-network; "
        "ack_within is 3s in this demo and nobody acknowledges..."
    )
    stop = asyncio.Event()
    dispatcher = asyncio.create_task(Dispatcher(herald, "demo", registered=False).run(stop))
    tick = alert_tick(herald)
    try:
        async with asyncio.timeout(60):
            while True:
                await tick()
                items = service.recent(herald, limit=20)
                escalations = [i for i in items if i["kind"] == "escalation"]
                if escalations and all(i["state"] == "done" for i in items if i["kind"] != "announcement"):
                    break
                await asyncio.sleep(0.5)
    finally:
        stop.set()
        await dispatcher
    for item in sorted(service.recent(herald, limit=20), key=lambda i: i["created_at"]):
        if item["kind"] != "announcement":
            print(format_status(item))


async def run_demo(people: int = 300) -> int:
    with tempfile.TemporaryDirectory(prefix="herald-demo-") as tmp:
        root = Path(tmp)
        async with SmtpStandIn() as smtp, TwilioStandIn(account_sid="ACdemo", auth_token=DEMO_TOKEN) as sms:
            settings = load_settings(
                None,
                database={"url": f"sqlite:///{root / 'herald.db'}"},
                smtp={
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "security": "none",
                    "from_address": "Herald Demo <herald@example.com>",
                    "rate_per_second": 200,
                    "max_connections": 4,
                },
                twilio={
                    "account_sid": "ACdemo",
                    "auth_token": DEMO_TOKEN,
                    "from_number": "+15005550006",
                    "api_url": sms.url,
                    "rate_per_second": 100,
                    "max_concurrency": 8,
                },
                quiet_hours={"kinds": []},
                routes=[
                    {
                        "match": {"team": "network"},
                        "audience": "group:oncall-network",
                        "channels": ["email", "sms"],
                        "severity": "critical",
                    }
                ],
                sla={"critical": {"ack_within": "3s", "escalate": ["title:manager"]}},
            )
            herald = Herald.build(settings)
            try:
                directory = root / "people.csv"
                write_sample_directory(directory, people)
                loaded = import_file(herald.store, directory)
                print(f"directory: imported {loaded.result.imported} people from a sample file")
                request = service.AnnounceRequest(
                    audience="everyone",
                    channels=("email", "sms"),
                    severity="maintenance",
                    title="Patch Tuesday: servers reboot tonight",
                    body="Servers in every site reboot between 22:00 and 23:00 local time.\n"
                    "Save your work before you leave. Questions: reply to this mail.",
                    created_by="demo",
                )
                print(format_preview(service.preview(herald, request), request))
                notification_id = service.announce(herald, request)
                print(f"announcement {notification_id} queued; delivering...")
                final = await wait_for(herald, notification_id, sys.stderr.isatty())
                print(format_status(final))
                print(
                    f"captured: {len(smtp.messages)} emails at the SMTP server, "
                    f"{len(sms.messages)} SMS at the Twilio stand-in"
                )
                print()
                await demo_alert(herald)
                print()
                print(format_report(reports.report(herald, herald.clock.now() - 3600)))
            finally:
                await herald.aclose()
    return 0
