"""The pure webhook parsers and webhook auth, as tables: Alertmanager v4, Grafana, the generic shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from bot.alerts.auth import WebhookAuthError, sign_body, verify_webhook
from bot.alerts.intake import (
    fingerprint_of,
    load_json,
    parse_alertmanager,
    parse_generic,
    parse_grafana,
    parse_timestamp,
)
from bot.alerts.models import PayloadError
from bot.config import SEVERITIES, WebhookAuth

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def am_payload(**changes: Any) -> dict[str, Any]:
    """An Alertmanager 0.25 webhook body, as it sends one (firing endsAt is Go's zero time)."""
    body: dict[str, Any] = {
        "receiver": "herald",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighLatency", "instance": "api-1", "severity": "critical"},
                "annotations": {"summary": "p99 latency above 2s", "description": "for 5 minutes"},
                "startsAt": "2026-01-01T12:00:00.123456789Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                "fingerprint": "c0ffee0123456789",
            }
        ],
        "groupLabels": {"alertname": "HighLatency"},
        "commonLabels": {"alertname": "HighLatency"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="HighLatency"}',
        "truncatedAlerts": 0,
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T12:00:00Z", T0),
        ("2026-01-01T12:00:00.5Z", T0 + 0.5),
        ("2026-01-01T12:00:00.123456789Z", T0 + 0.123456789),
        ("2026-01-01T14:00:00+02:00", T0),
        ("2026-01-01T07:30:00-0430", T0),
        ("2026-01-01t12:00:00z", T0),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_timestamps_are_read_robustly(text: str | None, expected: float | None) -> None:
    value = parse_timestamp(text, "startsAt")
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "text", ["yesterday", "2026-01-01", "2026-13-01T00:00:00Z", "2026-01-01T12:00:00", 17]
)
def test_bad_timestamps_name_the_field(text: object) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_timestamp(text, "alerts[0].startsAt")
    assert caught.value.field == "alerts[0].startsAt"
    assert caught.value.status == 422


def test_alertmanager_v4_is_read() -> None:
    batch = parse_alertmanager(am_payload())
    assert batch.source == "alertmanager"
    assert batch.external_url == "http://alertmanager:9093"
    (alert,) = batch.alerts
    assert alert.status == "firing"
    assert alert.fingerprint == "c0ffee0123456789"
    assert alert.name == "HighLatency"
    assert alert.summary == "p99 latency above 2s"
    assert alert.ends_at is None
    assert alert.starts_at == pytest.approx(T0 + 0.123456789)
    assert alert.generator_url == "http://prometheus:9090/graph?g0.expr=up"


def _alert(**changes: Any) -> dict[str, Any]:
    alert = dict(am_payload()["alerts"][0])
    alert.update(changes)
    return alert


@pytest.mark.parametrize(
    ("payload", "field", "status"),
    [
        (am_payload(version="3"), "version", 422),
        (am_payload(alerts="nope"), "alerts", 422),
        (am_payload(alerts=["nope"]), "alerts[0]", 422),
        (am_payload(alerts=[_alert(labels={})]), "alerts[0].labels", 422),
        (am_payload(alerts=[_alert(labels=["a"])]), "alerts[0].labels", 422),
        (am_payload(alerts=[_alert(), _alert(labels={"alertname": 5})]), "alerts[1].labels.alertname", 422),
        (am_payload(alerts=[_alert(status="pending")]), "alerts[0].status", 422),
        (am_payload(alerts=[_alert(startsAt="now")]), "alerts[0].startsAt", 422),
        (am_payload(alerts=[_alert(annotations={"summary": None})]), "alerts[0].annotations.summary", 422),
        (am_payload(alerts=[_alert(fingerprint="x" * 200)]), "alerts[0].fingerprint", 422),
        (am_payload(truncatedAlerts=-1), "truncatedAlerts", 422),
        (am_payload(status="burning"), "status", 422),
    ],
)
def test_alertmanager_errors_name_the_field(payload: dict[str, Any], field: str, status: int) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_alertmanager(payload)
    assert caught.value.field == field
    assert caught.value.status == status
    assert caught.value.as_json() == {"error": str(caught.value), "field": field}


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b"[1, 2]", 400), (b"\xff\xfe", 400), (b'"text"', 400)],
)
def test_unreadable_bodies_are_400(body: bytes, status: int) -> None:
    with pytest.raises(PayloadError) as caught:
        load_json(body)
    assert caught.value.status == status
    assert caught.value.field is None


def test_resolved_alertmanager_alert_and_missing_fingerprint() -> None:
    alert = _alert(status="resolved", endsAt="2026-01-01T12:05:00Z")
    del alert["fingerprint"]
    (parsed,) = parse_alertmanager(am_payload(status="resolved", alerts=[alert])).alerts
    assert parsed.status == "resolved"
    assert parsed.ends_at == T0 + 300
    assert parsed.fingerprint == fingerprint_of(parsed.labels)


def test_grafana_unified_alerting_is_read() -> None:
    body = {
        "receiver": "herald",
        "status": "firing",
        "orgId": 1,
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "DiskFull", "grafana_folder": "infra", "host": "db1"},
                "annotations": {"summary": "disk 95% full"},
                "startsAt": "2026-01-01T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://grafana:3000/alerting/grafana/abc/view",
                "fingerprint": "a1b2c3d4e5f60718",
                "silenceURL": "http://grafana:3000/alerting/silence/new",
                "dashboardURL": "",
                "panelURL": "",
                "values": {"B": 95.2},
                "valueString": "[ var='B' value=95.2 ]",
            }
        ],
        "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": {"alertname": "DiskFull"},
        "commonAnnotations": {},
        "externalURL": "http://grafana:3000/",
        "version": "1",
        "groupKey": '{}:{alertname="DiskFull"}',
        "truncatedAlerts": 0,
        "title": "[FIRING:1] DiskFull (infra db1)",
        "state": "alerting",
        "message": "**Firing**\n\nValue: B=95.2",
    }
    batch = parse_grafana(body)
    assert batch.source == "grafana"
    (alert,) = batch.alerts
    assert alert.fingerprint == "a1b2c3d4e5f60718"
    assert alert.summary == "disk 95% full"


def test_generic_alert_gets_alertname_severity_and_a_stable_fingerprint() -> None:
    body = {"summary": "VPN down", "severity": "Outage", "labels": {"site": "berlin", "port": 443}}
    (alert,) = parse_generic(body, SEVERITIES).alerts
    assert alert.labels == {"site": "berlin", "port": "443", "alertname": "VPN down", "severity": "outage"}
    assert alert.status == "firing"
    again = parse_generic({**body, "labels": {"port": 443, "site": "berlin"}}, SEVERITIES).alerts[0]
    assert again.fingerprint == alert.fingerprint
    resolved = parse_generic({**body, "status": "resolved"}, SEVERITIES).alerts[0]
    assert resolved.fingerprint == alert.fingerprint
    other = parse_generic({**body, "labels": {"site": "paris"}}, SEVERITIES).alerts[0]
    assert other.fingerprint != alert.fingerprint


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"severity": "critical"}, "summary"),
        ({"summary": " ", "severity": "critical"}, "summary"),
        ({"summary": "x"}, "severity"),
        ({"summary": "x", "severity": "urgent"}, "severity"),
        ({"summary": "x", "severity": "info", "labels": {"a": {"b": 1}}}, "labels.a"),
        ({"summary": "x", "severity": "info", "labels": "a=b"}, "labels"),
        ({"summary": "x", "severity": "info", "status": "ok"}, "status"),
        ({"summary": "x", "severity": "info", "description": 5}, "description"),
        ({"summary": "x", "severity": "info", "fingerprint": 5}, "fingerprint"),
    ],
)
def test_generic_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_generic(body, SEVERITIES)
    assert caught.value.field == field


# -- auth ----------------------------------------------------------------------------------------------

BODY = json.dumps({"summary": "x", "severity": "info"}).encode()
TOKEN = WebhookAuth(token=SecretStr("s3cret-token"))
HMAC = WebhookAuth(hmac_secret=SecretStr("hmac-key"), signature_header="X-Signature")
BOTH = WebhookAuth(token=SecretStr("s3cret-token"), hmac_secret=SecretStr("hmac-key"))
GOOD_SIG = sign_body("hmac-key", BODY)


@pytest.mark.parametrize(
    ("auth", "source", "headers", "passes"),
    [
        (TOKEN, "alerts", {"authorization": "Bearer s3cret-token"}, "token"),
        (TOKEN, "alerts", {"authorization": "bearer   s3cret-token "}, "token"),
        (TOKEN, "alerts", {"authorization": "Bearer s3cret-tokeN"}, None),
        (TOKEN, "alerts", {"authorization": "Basic czNjcmV0"}, None),
        (TOKEN, "alerts", {}, None),
        (HMAC, "alerts", {"x-signature": GOOD_SIG}, "hmac"),
        (HMAC, "alerts", {"x-signature": f"sha256={GOOD_SIG.upper()}"}, "hmac"),
        (HMAC, "alerts", {"x-signature": GOOD_SIG[:-1] + "0"}, None),
        (HMAC, "alerts", {"x-herald-signature": GOOD_SIG}, None),
        (HMAC, "grafana", {"x-grafana-alerting-signature": GOOD_SIG}, "hmac"),
        (HMAC, "alerts", {"x-grafana-alerting-signature": GOOD_SIG}, None),
        (BOTH, "alerts", {"x-herald-signature": GOOD_SIG}, "hmac"),
        (BOTH, "alerts", {"authorization": "Bearer s3cret-token"}, "token"),
        (BOTH, "alerts", {"authorization": "Bearer nope", "x-herald-signature": "00"}, None),
        (None, "alerts", {"authorization": "Bearer anything"}, None),
        (WebhookAuth(), "alerts", {"authorization": "Bearer anything"}, None),
    ],
)
def test_webhook_auth(
    auth: WebhookAuth | None, source: str, headers: dict[str, str], passes: str | None
) -> None:
    if passes is None:
        with pytest.raises(WebhookAuthError):
            verify_webhook(auth, source, headers, BODY)
    else:
        assert verify_webhook(auth, source, headers, BODY) == passes


def test_unconfigured_source_says_how_to_configure_it_and_no_secret_leaks() -> None:
    with pytest.raises(WebhookAuthError, match=r"webhooks\.grafana\.token or hmac_secret"):
        verify_webhook(None, "grafana", {}, BODY)
    with pytest.raises(WebhookAuthError) as caught:
        verify_webhook(TOKEN, "alerts", {"authorization": "Bearer wrong"}, BODY)
    assert "s3cret" not in str(caught.value)
