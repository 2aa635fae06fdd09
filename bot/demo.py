"""``herald demo``: the whole job on one machine, with no accounts.

SQLite in a temporary directory, an in-process SMTP server that captures mail, a local stand-in for
Twilio's Messages API, a generated sample directory, one announcement over email and SMS sent end to
end through the real dispatcher and channels, and the delivery/SLA report at the end.
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
from pathlib import Path

from bot import service
from bot.app import Herald
from bot.cli_delivery import wait_for
from bot.config import load_settings
from bot.directory_store import import_file
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
                print(format_report(service.report(herald, herald.clock.now() - 3600)))
            finally:
                await herald.aclose()
    return 0
