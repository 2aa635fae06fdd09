"""``herald_sla_missed_notifications`` counts a notification that missed its reach target as missed
(SPEC "Truthful outcomes"): a permanent failure for one of six people is not late, yet misses a
critical SLA (reach target 1.0). Read from ``GET /metrics`` of the ASGI app, both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from conftest import Peers
from test_announce_cli import announce, setup
from test_reach import CRITICAL_TO_ENGINEERING

from bot.app import Herald
from bot.config import load_settings
from bot.metrics import HeraldMetrics
from bot.people import ReachTargets
from bot.web import build_web_app


async def _missed(config: Path) -> str:
    settings = load_settings(config)
    herald = Herald.build(settings)
    metrics = HeraldMetrics(herald.store, herald.clock, ("email",), ReachTargets.of(settings))
    try:
        app = build_web_app(herald, metrics)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as http:
            text = (await http.get("/metrics")).text
    finally:
        herald.store.dispose()
    return next(line for line in text.splitlines() if line.startswith("herald_sla_missed_notifications "))


async def test_a_reach_miss_counts_as_an_sla_miss(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = await asyncio.to_thread(setup, cli, peers, db_url, tmp_path)
    assert await _missed(Path(config)) == "herald_sla_missed_notifications 0.0"

    peers.smtp.fail("rcpt", "550 5.1.1 <p0@example.com>: user unknown", address="p0@example.com")
    result = await asyncio.to_thread(announce, cli, config, *CRITICAL_TO_ENGINEERING)
    assert result.exit_code == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["sla"]["met"] is False and report["sla"]["last_delivery_s"] < 120  # nothing late
    assert await _missed(Path(config)) == "herald_sla_missed_notifications 1.0"

    args = ["--audience", "dept:engineering", "--channels", "email", "--severity", "info", "--title", "x"]
    peers.smtp.fail("rcpt", "550 mailbox unavailable", address="p2@example.com")  # not suppressed
    info = await asyncio.to_thread(announce, cli, config, *args)  # p0 is suppressed now: 4 of 5 < 0.99
    assert json.loads(info.stdout)["people"]["unreachable"] == 1
    assert json.loads(info.stdout)["sla"]["reach"] == 0.8 and json.loads(info.stdout)["sla"]["met"] is False
    assert await _missed(Path(config)) == "herald_sla_missed_notifications 2.0"

    lenient = tmp_path / "lenient.toml"  # the same ledger, judged against lower targets
    lenient.write_text(
        peers.config(db_url, '[sla.critical]\ndeliver_within = "2m"\nreach = 0.8\n'), encoding="utf-8"
    )
    assert await _missed(lenient) == "herald_sla_missed_notifications 1.0"  # info still misses 0.99
