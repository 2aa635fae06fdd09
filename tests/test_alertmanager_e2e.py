"""The real ``prometheus-alertmanager`` posting to ``herald serve``: alerts injected through its v2 API,
deliveries observed at the SMTP and Twilio stand-ins, acks sent as signed Slack block_actions.

Alertmanager runs on 127.0.0.1 (a free port, ``--cluster.listen-address=`` so it does not cluster),
with a webhook receiver pointed at Herald's ``/hooks/alertmanager`` carrying the bearer token through
``http_config.authorization``, and short ``group_wait``/``group_interval`` so a test takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import require_program
from server_process import free_port, stop_process
from sqlalchemy import func, select
from test_alert_webhooks import AM_TOKEN, AlertHarness, button_value, eventually, running_alerts

from bot.alerts.tables import AlertInstance
from bot.store import open_store
from bot.tables import Notification, table_of

pytestmark = pytest.mark.slow

AM_CONFIG = """
route:
  receiver: herald
  group_by: [alertname]
  group_wait: {group_wait}
  group_interval: 1s
  repeat_interval: {repeat_interval}
receivers:
  - name: herald
    webhook_configs:
      - url: {herald_url}/hooks/alertmanager
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
"""


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def am_alert(name: str, ends_at: float | None = None, **labels: str) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} on {labels.get('instance', 'the network')}"},
        # Now: an alert that started more than group_wait ago is flushed at once (no batching).
        "startsAt": rfc3339(time.time() if ends_at is None else ends_at - 30),
        "generatorURL": "http://prometheus.test:9090/graph",
    }
    if ends_at is not None:
        alert["endsAt"] = rfc3339(ends_at)
    return alert


@dataclass
class Alertmanager:
    url: str
    http: httpx.AsyncClient

    async def post(self, *alerts: dict[str, Any]) -> None:
        """Push alerts through the v2 API, as Prometheus does."""
        response = await self.http.post(f"{self.url}/api/v2/alerts", json=list(alerts))
        assert response.status_code == 200, response.text


@asynccontextmanager
async def running_alertmanager(
    tmp_path: Path,
    herald_url: str,
    repeat_interval: str = "1h",
    group_wait: str = "1s",
    config_text: str | None = None,
) -> AsyncIterator[Alertmanager]:
    """Alertmanager on a free port with :data:`AM_CONFIG`, or with ``config_text`` when given."""
    binary = require_program("prometheus-alertmanager")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    if config_text is None:
        config_text = AM_CONFIG.format(
            group_wait=group_wait, repeat_interval=repeat_interval, herald_url=herald_url, token=AM_TOKEN
        )
    config.write_text(config_text, encoding="utf-8")
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = time.monotonic() + 15
            while True:
                try:
                    if (await http.get(f"{url}/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "alertmanager did not start: " + (tmp_path / "alertmanager.log").read_text()[-2000:]
                    )
                time.sleep(0.05)
            yield Alertmanager(url, http)
    finally:
        stop_process(process)
        log.close()


def resent(db_url: str, name_part: str) -> bool:
    """Herald saw the alert again after it was first stored (Alertmanager re-sent the group)."""
    store = open_store(db_url)
    try:
        with store.begin() as connection:
            table = table_of(AlertInstance)
            value = connection.execute(
                select(func.max(table.c.last_seen_at - table.c.first_seen_at)).where(
                    table.c.labels.contains(name_part)
                )
            ).scalar()
        return bool(value and value > 1.5)
    finally:
        store.dispose()


def kinds(db_url: str) -> list[str]:
    store = open_store(db_url)
    try:
        with store.begin() as connection:
            table = table_of(Notification)
            return [
                str(k)
                for k in connection.execute(select(table.c.kind).order_by(table.c.created_at)).scalars()
            ]
    finally:
        store.dispose()


def group_of(h: AlertHarness, title: str) -> str:
    message = next(m for m in h.alert_messages() if title in m.text)
    value = button_value(message, "alert_ack") or button_value(message, "alert_resolve")
    assert value is not None
    return value


async def test_firing_resend_storm_and_resolution(db_url: str, tmp_path: Path) -> None:
    async with (
        running_alerts(db_url, tmp_path) as h,
        running_alertmanager(tmp_path, h.url, repeat_interval="2s") as am,
    ):
        await am.post(am_alert("LinkDown", team="net", instance="sw1"))
        await eventually(lambda: h.mail_to("alice") != [] and h.sms_to("alice") != [], what="the page")
        assert h.mail_to("alice") == ["[OUTAGE] [FIRING:1] LinkDown"]
        assert h.sms_to("alice")[0].startswith("[OUTAGE] [FIRING:1] LinkDown: Reply ACK to acknowledge")
        message = h.smtp.messages[0].message
        assert "http://prometheus.test:9090/graph" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]

        # Alertmanager re-sends the group (its repeat_interval is 2s): Herald does not page again.
        await eventually(lambda: resent(db_url, "LinkDown"), timeout=10, what="a re-sent webhook")
        assert len(h.mail_to("alice")) == 1 and len(h.sms_to("alice")) == 1

        # A storm: 500 alerts of one alertname become one notification.
        await am.post(*[am_alert("HighLatency", team="web", instance=f"api-{i:03d}") for i in range(500)])
        await eventually(lambda: any("HighLatency" in s for s in h.mail_to("alice")), what="the storm page")
        await eventually(lambda: resent(db_url, "HighLatency"), timeout=10, what="the storm re-sent")
        storm = [s for s in h.mail_to("alice") if "HighLatency" in s]
        assert storm == ["[INFO] [FIRING:500] HighLatency"]
        body = next(m for m in h.smtp.messages if "HighLatency" in str(m.message["Subject"])).message
        assert "and 490 more." in body.get_body(("plain",)).get_content()  # type: ignore[union-attr]

        # Resolved: everyone who was notified hears it, by the same channels.
        await am.post(am_alert("LinkDown", ends_at=time.time() - 1, team="net", instance="sw1"))
        await eventually(lambda: any("RESOLVED" in s for s in h.mail_to("alice")), what="the resolution")
        assert "[OUTAGE] [RESOLVED] LinkDown" in h.mail_to("alice")
        await eventually(
            lambda: any("[RESOLVED] LinkDown" in s for s in h.sms_to("alice")), what="resolution SMS"
        )
        await eventually(
            lambda: any("[RESOLVED] LinkDown" in m.text for m in h.alert_messages()), what="Slack"
        )
        assert h.mail_to("bob") == [] and h.mail_to("dave") == []
        assert kinds(db_url).count("alert") == 2


async def test_no_ack_escalates_and_ack_stops_it(db_url: str, tmp_path: Path) -> None:
    async with (
        running_alerts(db_url, tmp_path, ack_within="3s") as h,
        running_alertmanager(tmp_path, h.url) as am,
    ):
        await am.post(am_alert("CoreAcked", team="core"), am_alert("CoreIgnored", team="core"))
        await eventually(lambda: len(h.alert_messages()) == 2, what="both alerts in Slack")
        clicked = await h.click("alert_ack", group_of(h, "CoreAcked"))
        assert clicked.status_code == 200
        acked = next(m for m in h.alert_messages() if "CoreAcked" in m.text)
        await eventually(
            lambda: "Acknowledged by <@UONCALL>" in json.dumps(acked.blocks), what="the ack in place"
        )
        await eventually(lambda: h.sms_to("bob") != [], timeout=10, what="tier 1 for the ignored alert")
        assert all("CoreIgnored" in body for body in h.sms_to("bob"))
        assert "[ESCALATED tier 1]" in h.sms_to("bob")[0]
        await eventually(lambda: h.sms_to("carol") != [], timeout=10, what="tier 2 for the ignored alert")
        assert all("CoreIgnored" in body for body in h.sms_to("carol"))
        assert not any("CoreAcked" in body for body in h.sms_to("bob") + h.sms_to("carol"))
        pages = sorted(body.split(":")[0] for body in h.sms_to("alice"))
        assert pages == ["[CRITICAL] [FIRING", "[CRITICAL] [FIRING"]  # both paged tier 0, once
        await h.click("alert_ack", group_of(h, "CoreIgnored"))
        ignored = next(m for m in h.alert_messages() if "CoreIgnored" in m.text)
        await eventually(lambda: "Acknowledged by" in json.dumps(ignored.blocks), what="second ack shown")
        assert "Escalated to tier 2" in json.dumps(ignored.blocks)


async def test_restart_mid_chain_neither_skips_nor_repeats_a_tier(db_url: str, tmp_path: Path) -> None:
    async with (
        running_alerts(db_url, tmp_path, ack_within="2s") as h,
        running_alertmanager(tmp_path, h.url) as am,
    ):
        await am.post(am_alert("CoreDown", team="core", instance="core1"))
        await eventually(lambda: h.sms_to("bob") != [], timeout=10, what="tier 1")
        await h.restart()  # herald serve stops after tier 1; a new one takes over from the database
        await eventually(lambda: h.sms_to("carol") != [], timeout=10, what="tier 2 after the restart")
        await h.click("alert_ack", group_of(h, "CoreDown"))
        await eventually(lambda: "Acknowledged by" in json.dumps(h.alert_messages()[0].blocks), what="ack")
        assert [b.split("]")[1] for b in h.sms_to("bob")] == [" [ESCALATED tier 1"]
        assert [b.split("]")[1] for b in h.sms_to("carol")] == [" [ESCALATED tier 2"]
        assert kinds(db_url).count("escalation") == 2
        assert len(h.sms_to("alice")) == 1
