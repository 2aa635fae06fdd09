"""Hostile requests against the real ASGI app (and one real ``herald serve``): a malformed body gets a
4xx naming the field, never a 5xx or a traceback; one bad alert never stops the next; bodies are
refused before they are read in full; ``/metrics`` labels stay bounded (tracker issue 15)."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_signing import BOT_TOKEN, SIGNING_SECRET
from sqlalchemy import select, update
from test_alert_webhooks import AM_TOKEN, GENERIC_TOKEN, generic, post, running_alerts

from bot.alerts.auth import sign_body
from bot.alerts.notify import GROUP, INSTANCE
from bot.alerts.web import alert_routes
from bot.app import Herald
from bot.config import load_settings
from bot.metrics import HeraldMetrics
from bot.recipients.web import recipient_routes
from bot.slack.app import build_slack
from bot.standins.slack import SlackStandIn
from bot.web import MAX_REQUEST_BODY, build_web_app

GRAFANA_SECRET = "grafana-hmac-secret"
TOKENS = {"/hooks/alertmanager": AM_TOKEN, "/hooks/alerts": GENERIC_TOKEN}
HOOKS = ["/hooks/alertmanager", "/hooks/grafana", "/hooks/alerts"]
MIB = 1024 * 1024

CONFIG = """
[database]
url = "{db_url}"
[slack]
bot_token = "{bot_token}"
signing_secret = "{signing_secret}"
api_url = "{api_url}"
[webhooks.alertmanager]
token = "{am_token}"
[webhooks.alerts]
token = "{generic_token}"
[webhooks.grafana]
hmac_secret = "{grafana_secret}"
signature_header = "X-Grafana-Alerting-Signature"
[[routes]]
match = {{ team = "core" }}
audience = "everyone"
channels = ["email"]
severity = "critical"
"""


@dataclass
class App:
    herald: Herald
    http: httpx.AsyncClient

    async def hook(self, path: str, body: bytes | dict[str, Any], signed: bool = True) -> httpx.Response:
        """POST ``body`` to a webhook, authenticated as its sender would (token or HMAC signature)."""
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if signed and path == "/hooks/grafana":
            headers["X-Grafana-Alerting-Signature"] = sign_body(GRAFANA_SECRET, content)
        elif signed:
            headers["Authorization"] = f"Bearer {TOKENS[path]}"
        return await self.http.post(path, content=content, headers=headers)

    def stored(self) -> list[dict[str, Any]]:
        """Every stored alert: its group's fingerprint, labels and the group's truncated count."""
        with self.herald.store.begin() as connection:
            rows = connection.execute(
                select(INSTANCE.c.fingerprint, INSTANCE.c.labels, GROUP.c.truncated).join(
                    GROUP, GROUP.c.id == INSTANCE.c.group_id
                )
            ).mappings()
            return [dict(row) for row in rows]


@pytest.fixture
async def app(db_url: str, tmp_path: Path) -> AsyncIterator[App]:
    """The app ``herald serve`` builds (Slack over HTTP, recipient and alert routes), over ASGI."""
    async with SlackStandIn(token=BOT_TOKEN) as slack:
        config = tmp_path / "herald.toml"
        config.write_text(
            CONFIG.format(
                db_url=db_url,
                bot_token=BOT_TOKEN,
                signing_secret=SIGNING_SECRET,
                api_url=slack.api_url,
                am_token=AM_TOKEN,
                generic_token=GENERIC_TOKEN,
                grafana_secret=GRAFANA_SECRET,
            ),
            encoding="utf-8",
        )
        herald = Herald.build(load_settings(config))
        metrics = HeraldMetrics(herald.store, herald.clock)
        front = build_slack(herald, metrics, owner="hardening")
        web = build_web_app(herald, metrics, front, [*recipient_routes(herald), *alert_routes(herald)])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web), base_url="http://herald"
        ) as http:
            yield App(herald, http)
        if front is not None:
            await front.aclose()
        await herald.aclose()


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert "Traceback" not in caplog.text


def alert_body(path: str, label: str = '"db1"', **top: str) -> bytes:
    """A valid body for ``path`` as raw JSON, the ``host`` label's value given as raw JSON text."""
    if path == "/hooks/alerts":
        labels = f'{{"team": "core", "host": {label}}}'
        return f'{{"summary": "disk full", "severity": "critical", "labels": {labels}}}'.encode()
    alert = {"status": "firing", "labels": {"alertname": "DiskFull", "team": "core", "host": "@"}}
    alert.update(top)
    text = json.dumps({"version": "4", "status": "firing", "alerts": [alert]})
    return text.replace('"@"', label).encode()


def labels_field(path: str) -> str:
    return "labels.host" if path == "/hooks/alerts" else "alerts[0].labels.host"


BAD_TEXT = [
    pytest.param(r'"\ud800"', id="lone-high-surrogate"),
    pytest.param(r'"db\udfff1"', id="lone-low-surrogate"),
    pytest.param(r'"db\u00001"', id="nul"),
]


@pytest.mark.parametrize("path", HOOKS)
@pytest.mark.parametrize("label", BAD_TEXT)
async def test_a_bad_character_is_refused_naming_the_field_and_the_next_alert_is_stored(
    app: App, path: str, label: str, caplog: pytest.LogCaptureFixture
) -> None:
    refused = await app.hook(path, alert_body(path, label))
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == labels_field(path)
    assert "surrogate" in refused.json()["error"]
    accepted = await app.hook(path, alert_body(path))
    assert accepted.status_code == 202, accepted.text
    assert len(accepted.json()["notifications"]) == 1
    assert [json.loads(row["labels"])["host"] for row in app.stored()] == ["db1"]
    assert_no_traceback(caplog)


async def test_a_bad_name_or_annotation_is_refused_naming_it(app: App) -> None:
    body = alert_body("/hooks/alertmanager").replace(b'"host"', b'"ho\\ud800st"')
    refused = await app.hook("/hooks/alertmanager", body)
    assert refused.status_code == 422
    assert refused.json()["field"] == "alerts[0].labels.ho\\ud800st"
    body = alert_body("/hooks/grafana").replace(
        b'"labels"', b'"annotations": {"summary": "\\ud83d"}, "labels"'
    )
    refused = await app.hook("/hooks/grafana", body)
    assert refused.status_code == 422 and refused.json()["field"] == "alerts[0].annotations.summary"
    refused = await app.hook("/hooks/alerts", generic(description="a\udc00b"))
    assert refused.status_code == 422 and refused.json()["field"] == "description"


async def test_a_stored_row_that_cannot_be_processed_is_skipped_with_one_error_line(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """A group stored before intake refused bad text (an unpaired surrogate in its labels) owes a
    notification no database can hold: it is skipped with one ERROR line, the next alert goes on."""
    first = await app.hook("/hooks/alertmanager", alert_body("/hooks/alertmanager"))
    assert first.status_code == 202
    (poisoned,) = first.json()["groups"]
    with app.herald.store.begin() as connection:
        connection.execute(update(INSTANCE).values(labels='{"alertname": "\\ud800", "team": "core"}'))
        connection.execute(update(GROUP).values(pending="repeat", pending_at=app.herald.clock.now() - 1))
    caplog.clear()
    other = generic(summary="VPN down", labels={"team": "core", "site": "berlin"})
    accepted = await app.hook("/hooks/alerts", other)
    assert accepted.status_code == 202, accepted.text
    assert len(accepted.json()["notifications"]) == 1 and accepted.json()["groups"] != [poisoned]
    errors = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and poisoned in r.getMessage()
    ]
    errors = [e for e in errors if "selects no reachable person" not in e]  # the unrouted ERROR is its own
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert_no_traceback(caplog)


DEEP = b'{"summary": "x", "nested": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
HUGE = "9" * 5_000


@pytest.mark.parametrize("path", HOOKS)
async def test_malformed_bodies_get_a_4xx_naming_the_field(
    app: App, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    cases: list[tuple[bytes, int, str | None]] = [
        (DEEP, 400, None),
        (b'{"summary": ' + b"[" * 40 + b"]" * 40 + b"}", 422, "summary" + "[0]" * 31),
        (alert_body(path, HUGE), 422, labels_field(path)),
        (alert_body(path, "NaN"), 400, None),
        (b'{"summary": "\xff\xfe"}', 400, None),
    ]
    if path != "/hooks/alerts":
        cases += [
            (alert_body(path, startsAt=at), 422, "alerts[0].startsAt")
            for at in (
                "2026-01-01T00:00:00+25:00",
                "2026-01-01T00:00:00+24:00",
                "2026-01-01T00:00:00-24:00",
                "2026-01-01T00:00:00+23:60",
                "2026-02-30T00:00:00Z",
            )
        ]
        cases.append(
            (
                alert_body(path).replace(
                    b'"version"', b'"truncatedAlerts": ' + HUGE.encode() + b', "version"'
                ),
                422,
                "truncatedAlerts",
            )
        )
    for body, status, field in cases:
        answer = await app.hook(path, body)
        assert (answer.status_code, answer.json().get("field")) == (status, field), (body[:80], answer.text)
        assert answer.json()["error"]
    assert app.stored() == []
    assert_no_traceback(caplog)


@pytest.mark.parametrize("path", ["/hooks/alertmanager", "/hooks/grafana"])
async def test_a_huge_truncated_alerts_count_is_clamped_not_a_503(
    app: App, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = alert_body(path).replace(b'"version"', b'"truncatedAlerts": 9223372036854775808, "version"')
    accepted = await app.hook(path, body)
    assert accepted.status_code == 202, accepted.text
    assert [row["truncated"] for row in app.stored()] == [2**31 - 1]
    assert_no_traceback(caplog)


class Stream:
    """A request body of ``total`` bytes, handed over chunk by chunk; ``sent`` counts what was taken."""

    def __init__(self, total: int = 16 * MIB, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b"x" * self.chunk


async def test_unauthenticated_bodies_are_refused_unread(app: App, caplog: pytest.LogCaptureFixture) -> None:
    for path, headers in [
        ("/hooks/alertmanager", {}),
        ("/hooks/alerts", {"Authorization": "Bearer wrong"}),
        ("/hooks/grafana", {}),  # HMAC only, and no signature: nothing to check the body against
    ]:
        body = Stream()
        answer = await app.http.post(path, content=body, headers=headers)
        assert answer.status_code == 401, (path, answer.text)
        assert body.sent == 0, path
    assert_no_traceback(caplog)


@pytest.mark.parametrize(
    ("path", "headers", "unread"),
    [
        ("/hooks/alertmanager", {"Authorization": f"Bearer {AM_TOKEN}"}, None),
        ("/hooks/grafana", {"X-Grafana-Alerting-Signature": "00" * 32}, None),  # HMAC needs the body
        # a stale timestamp: refused from the headers (401), the body never read
        ("/slack/events", {"X-Slack-Signature": "v0=00", "X-Slack-Request-Timestamp": "1"}, 401),
        ("/u/sometoken", {"Content-Type": "application/x-www-form-urlencoded"}, 404),  # no such link
        ("/hooks/twilio/inbound", {}, 404),  # SMS is not configured: answered unread
        ("/healthz", {}, 200),
    ],
)
async def test_oversized_bodies_are_refused_before_they_are_read_in_full(
    app: App, path: str, headers: dict[str, str], unread: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """16 MiB streamed (no Content-Length): 413 once the cap is passed, or an answer that never read
    it; declared in Content-Length: 413 before a byte is read."""
    method = "GET" if path == "/healthz" else "POST"
    streamed = Stream()
    answer = await app.http.request(method, path, content=streamed, headers=headers)
    assert answer.status_code == (unread or 413), answer.text
    assert streamed.sent <= MAX_REQUEST_BODY + streamed.chunk, path
    declared = Stream()
    answer = await app.http.request(
        method,
        path,
        content=declared,
        headers={**headers, "Content-Length": str(declared.total)},
    )
    assert answer.status_code == 413 and declared.sent == 0, (path, answer.text)
    assert_no_traceback(caplog)


async def test_a_content_length_of_thousands_of_digits_is_a_413(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    for path in ("/healthz", "/hooks/alerts"):
        answer = await app.http.post(path, content=b"{}", headers={"Content-Length": "9" * 5_000})
        assert answer.status_code == 413, answer.text
    assert_no_traceback(caplog)


async def test_metrics_fold_unknown_methods_and_never_grow_with_them(app: App) -> None:
    for _ in range(200):
        method = "X" + secrets.token_hex(6_000).upper()
        answer = await app.http.request(method, "/healthz")
        assert answer.status_code == 405
    await app.http.request("OPTIONS", "/no/such/path/" + secrets.token_hex(8))
    text = (await app.http.get("/metrics")).text
    assert len(text) < 100_000
    assert 'herald_http_requests_total{method="other",route="/healthz",status="405"} 200.0' in text
    assert 'method="OPTIONS",route="unmatched"' in text and "/no/such/path" not in text


async def test_herald_serve_answers_every_bad_request_with_a_4xx_on_one_connection(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through uvicorn: the keep-alive connection carries on after each refusal; no 5xx, no traceback."""
    async with running_alerts(db_url, tmp_path) as h:
        h.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=1))
        async with h.http:
            bad = [
                DEEP,
                alert_body("/hooks/alerts", HUGE),
                alert_body("/hooks/alerts", r'"\ud800"'),
                json.dumps(generic(description="x")).encode().replace(b'"x"', b'"\\u0000"'),
            ]
            for body in bad:
                answer = await post(h, "/hooks/alerts", body, token=GENERIC_TOKEN)
                assert answer.status_code in (400, 422), answer.text
            dated = alert_body("/hooks/alertmanager", startsAt="2026-01-01T00:00:00+25:00")
            assert (await post(h, "/hooks/alertmanager", dated, token=AM_TOKEN)).status_code == 422
            huge = b"x" * (16 * MIB)
            assert (await post(h, "/hooks/alerts", huge)).status_code == 413  # refused on Content-Length
            assert (await post(h, "/hooks/alerts", huge, token=GENERIC_TOKEN)).status_code == 413
            accepted = await post(h, "/hooks/alerts", generic(labels={"team": "core"}), token=GENERIC_TOKEN)
            assert accepted.status_code == 202, accepted.text
    assert_no_traceback(caplog)
