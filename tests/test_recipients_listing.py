"""Per-recipient truth (issue 14 item 4): ``herald status ID --recipients [--csv | --json]`` and
``GET /api/notifications/{id}/deliveries`` list every person x channel of a notification with state,
reason and times, from one query, a page at a time. Through the CLI and the ASGI app, both databases,
with real SMTP (the stand-in refusing one recipient for good) and the Twilio stand-in."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
from conftest import Peers
from test_announce_cli import announce

from bot.app import Herald
from bot.config import load_settings
from bot.metrics import HeraldMetrics
from bot.web import build_web_app

API_TOKEN = "api-token-for-tests"
EVIL = "Eve \x1b[2J\x1b]0;pwned\x07\u202eevil"  # clears the screen, retitles the window, reverses text


def _setup(cli: Any, peers: Peers, db_url: str, tmp_path: Path, people: int = 4) -> str:
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, f'[server]\napi_token = "{API_TOKEN}"\n'), encoding="utf-8")
    rows = ["id,name,email,phone"]
    rows.append(f'p0,"{EVIL}",p0@example.com,+4915112300000')
    rows.extend(f"p{i},=cmd|' /C calc'!A0,p{i}@example.com,+49151123{i:05d}" for i in range(1, people))
    directory = tmp_path / "people.csv"
    directory.write_text("\n".join(rows) + "\n", encoding="utf-8")
    imported = cli("directory", "import", str(directory), "--config", str(config))
    assert imported.exit_code == 0, imported.stderr
    return str(config)


def _sent(cli: Any, peers: Peers, config: str) -> str:
    """Email and SMS to everyone; p1's address is refused for good (550 5.1.1)."""
    peers.smtp.fail("rcpt", "550 5.1.1 <p1@example.com>: user unknown", address="p1@example.com")
    args = ["--audience", "everyone", "--channels", "email,sms", "--severity", "maintenance"]
    result = announce(cli, config, *args, "--title", "Patch")
    assert result.exit_code == 0, result.stderr  # p1 is reached by SMS: the SLA is met
    return str(json.loads(result.stdout)["id"])


def test_status_recipients_lists_every_person_and_channel(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = _setup(cli, peers, db_url, tmp_path)
    notification_id = _sent(cli, peers, config)

    listed = cli("status", notification_id, "--recipients", "--json", "--config", config)
    assert listed.exit_code == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == 8  # four people x two channels
    assert {(r["person_id"], r["channel"]) for r in rows} == {
        (f"p{i}", c) for i in range(4) for c in ("email", "sms")
    }
    failed = next(r for r in rows if r["person_id"] == "p1" and r["channel"] == "email")
    assert failed["state"] == "failed" and failed["reason"] and failed["sent_at"] is None
    assert failed["address"] == "p1@example.com"
    ok = next(r for r in rows if r["person_id"] == "p0" and r["channel"] == "sms")
    assert ok["state"] == "sent" and ok["address"] == "+4915112300000" and ok["name"] == EVIL
    assert ok["created_at"].endswith("Z") and ok["sent_at"] >= ok["created_at"]

    table = cli("status", notification_id, "--recipients", "--config", config)
    assert table.exit_code == 0, table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout and "\u202e" not in table.stdout
    assert "Eve \\x1b[2J" in table.stdout  # shown, escaped
    lines = table.stdout.splitlines()
    assert "person_id" in lines[0] and "address" in lines[0] and "sent" in lines[0]
    p1_email = next(line for line in lines if "p1@example.com" in line)
    assert "failed" in p1_email.split() and p1_email.split()[0] == "p1"


def test_status_recipients_csv_has_a_header_and_safe_cells(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = _setup(cli, peers, db_url, tmp_path)
    notification_id = _sent(cli, peers, config)
    listed = cli("status", notification_id, "--recipients", "--csv", "--config", config)
    assert listed.exit_code == 0, listed.stderr
    assert "\x1b" not in listed.stdout and "\u202e" not in listed.stdout
    table = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert listed.stdout.splitlines()[0] == "person_id,name,channel,address,state,reason,created_at,sent_at"
    assert len(table) == 8
    p2 = next(r for r in table if r["person_id"] == "p2" and r["channel"] == "sms")
    assert p2["name"].startswith("'=cmd")  # a spreadsheet shows it as text, never runs it
    assert p2["address"] == "+4915112300002"  # addresses stay as stored
    assert p2["state"] == "sent" and p2["sent_at"].endswith("Z")


def test_status_recipients_pages_through_a_large_notification(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = _setup(cli, peers, db_url, tmp_path, people=1201)
    args = ["--audience", "everyone", "--channels", "email", "--title", "Later", "--at", "+1h", "--yes"]
    queued = cli("announce", "--config", config, *args)  # scheduled: nothing is sent
    assert queued.exit_code == 0, queued.stderr
    notification_id = queued.stdout.strip().splitlines()[-1]  # after the preview
    listed = cli("status", notification_id, "--recipients", "--csv", "--config", config)
    assert listed.exit_code == 0, listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert len(rows) == 1201 and len({r["person_id"] for r in rows}) == 1201  # two pages, none twice
    assert {r["state"] for r in rows} == {"queued"}
    table = cli("status", notification_id, "--recipients", "--config", config)
    assert table.stdout.count("person_id") == 1  # one header over both pages
    assert sum(1 for line in table.stdout.splitlines() if "@example.com" in line) == 1201


def test_status_recipients_bad_usage(cli: Any, peers: Peers, db_url: str, tmp_path: Path) -> None:
    config = _setup(cli, peers, db_url, tmp_path)
    unknown = cli("status", "nope", "--recipients", "--config", config)
    assert unknown.exit_code == 2 and "no notification 'nope'" in unknown.stderr
    alone = cli("status", "nope", "--csv", "--config", config)
    assert alone.exit_code == 2 and "--csv goes with --recipients" in alone.stderr


async def test_the_deliveries_api_pages_with_a_cursor(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = await asyncio.to_thread(_setup, cli, peers, db_url, tmp_path)
    notification_id = await asyncio.to_thread(_sent, cli, peers, config)
    herald = Herald.build(load_settings(Path(config)))
    app = build_web_app(herald, HeraldMetrics(herald.store, herald.clock))
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    path = f"/api/notifications/{notification_id}/deliveries"
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as http:
            seen: list[dict[str, Any]] = []
            cursor: str | None = None
            for _ in range(5):
                params = {"limit": "3", **({"after": cursor} if cursor else {})}
                answer = await http.get(path, params=params, headers=auth)
                assert answer.status_code == 200, answer.text
                seen.extend(answer.json()["deliveries"])
                cursor = answer.json()["next"]
                if cursor is None:
                    break
            whole = (await http.get(path, headers=auth)).json()
            refusals = {
                "no token": await http.get(path),
                "wrong token": await http.get(path, headers={"Authorization": "Bearer nope"}),
                "limit": await http.get(path, params={"limit": "1001"}, headers=auth),
                "zero": await http.get(path, params={"limit": "0"}, headers=auth),
                "after": await http.get(path, params={"after": "x1!"}, headers=auth),
                "unknown": await http.get("/api/notifications/nope/deliveries", headers=auth),
            }
            spec = (await http.get("/openapi.json")).json()
    finally:
        herald.store.dispose()
    assert len(seen) == 8 and seen == whole["deliveries"] and whole["next"] is None  # 3 + 3 + 2
    failed = next(r for r in seen if r["person_id"] == "p1" and r["channel"] == "email")
    assert failed["state"] == "failed" and failed["reason"]
    assert refusals["no token"].status_code == refusals["wrong token"].status_code == 401
    assert refusals["limit"].status_code == refusals["zero"].status_code == 400
    assert refusals["limit"].json()["parameter"] == "limit" and "limit" in refusals["limit"].json()["error"]
    assert refusals["after"].status_code == 400 and refusals["after"].json()["parameter"] == "after"
    assert refusals["unknown"].status_code == 404
    route = spec["paths"]["/api/notifications/{id}/deliveries"]["get"]
    assert {p["name"] for p in route["parameters"]} == {"limit", "after"}
    status_schema = spec["paths"]["/api/notifications/{id}"]["get"]["responses"]["200"]["content"]
    schema = status_schema["application/json"]["schema"]
    assert set(schema["properties"]["people"]["properties"]) >= {"reached", "unreached", "confirmed"}
    assert {"reach", "reach_target"} <= set(schema["properties"]["sla"]["properties"])
