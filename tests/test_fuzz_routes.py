"""Every POST route of SPEC's HTTP API table, fuzzed through the real ASGI app (``herald serve``'s,
over httpx's ASGI transport): random and adversarial bodies (wrong types, deep nesting, huge numbers,
bad dates, invalid UTF-8, lone surrogates, oversized), signed and unsigned, with missing or odd
``Authorization``. The property: a 2xx, or a 4xx in the route's documented form (a JSON error; Twilio's
plain-text refusal or TwiML; the preferences and confirmation pages' HTML); never a 5xx; nothing stored
on a 4xx; no traceback in the log. Bounded and derandomized so CI is deterministic; the requests per route are
printed (run with ``-s``) for the issue's note.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_signing import ANNOUNCER, API_TOKEN, BOT_TOKEN, SIGNING_SECRET, TWILIO_TOKEN, herald_toml, sign
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bot.alerts.auth import sign_body
from bot.alerts.tables import AlertGroup, AlertInstance
from bot.alerts.web import alert_routes
from bot.app import Herald
from bot.config import load_settings
from bot.recipients.bounce_web import bounce_routes
from bot.recipients.confirmations import make_confirm_token
from bot.recipients.tables import Confirmation
from bot.recipients.web import recipient_routes
from bot.server import HeraldServer
from bot.standins.slack import SlackStandIn
from bot.tables import Delivery, Notification, Person, Suppression, table_of
from bot.tokens import make_token

AM_TOKEN = "am-fuzz-token"
GENERIC_TOKEN = "generic-fuzz-token"
GRAFANA_SECRET = "grafana-fuzz-secret"
BOUNCE_TOKEN = "bounce-fuzz-token"
PUBLIC_URL = "http://127.0.0.1:8080"
OVERSIZED = 4 * 1024 * 1024 + 1
STORED = [table_of(t) for t in (AlertGroup, AlertInstance, Notification, Delivery, Suppression, Confirmation)]

EXTRA_TOML = f"""
[webhooks.alertmanager]
token = "{AM_TOKEN}"
[webhooks.alerts]
token = "{GENERIC_TOKEN}"
[webhooks.grafana]
hmac_secret = "{GRAFANA_SECRET}"
[webhooks.bounces]
token = "{BOUNCE_TOKEN}"
[[routes]]
match = {{ team = "core" }}
audience = "everyone"
channels = ["email", "sms"]
severity = "critical"
"""

ALERTMANAGER: dict[str, Any] = {
    "version": "4",
    "groupKey": '{}:{alertname="Disk"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "herald",
    "groupLabels": {"alertname": "Disk"},
    "commonLabels": {"team": "core"},
    "commonAnnotations": {"summary": "disk full"},
    "externalURL": "http://alertmanager.example:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "Disk", "team": "core", "instance": "db1"},
            "annotations": {"summary": "disk full", "description": "97 %"},
            "startsAt": "2026-12-04T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "fingerprint": "c0ffee",
        }
    ],
}
GRAFANA: dict[str, Any] = {
    **ALERTMANAGER,
    "orgId": 1,
    "title": "[FIRING:1] Disk",
    "state": "alerting",
    "message": "disk full",
}
GENERIC: dict[str, Any] = {
    "summary": "disk full",
    "severity": "critical",
    "labels": {"team": "core", "host": "db1"},
    "description": "97 %",
    "status": "firing",
    "fingerprint": "f-1",
}
BOUNCE: dict[str, Any] = {
    "recipient": "alice@example.com",
    "status": "5.1.1",
    "action": "failed",
    "message_id": "<fuzz-1@herald>",
    "diagnostic": "550 5.1.1 user unknown",
}

# Values that broke parsers before (issue 15): deep nesting, huge numbers, bad dates, surrogates.
NASTY_VALUES: list[Any] = [
    None,
    True,
    -1,
    2**63,
    -(2**64),
    10**300,
    1e308,
    "",
    "\ud800",
    "x\udfffy",
    "\x00",
    "\u2028\u2029\r\n",
    "2026-12-04T10:00:00+24:00",
    "2026-12-04T10:00:00-99:99",
    "9999-12-31T23:59:59Z",
    "0000-00-00T00:00:00Z",
    "2026-02-30T10:00:00Z",
    "yesterday",
    "=?utf-8?q?=0D=0ABcc:_a@evil.test?=",
    "<!channel>",
    "a" * 70_000,
    [],
    {},
    [[[[[[[[]]]]]]]],
    {"a": {"b": {"c": {"d": {}}}}},
]
NASTY_RAW = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"a string"',
    b"1" * 5000,
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff\xfe\xfd",
    b'{"summary": "\xc3\x28", "severity": "critical"}',
    b'{"summary": "\\ud800", "severity": "critical", "labels": {"k": "\\udc00"}}',
    b'{"summary": "s", "severity": "critical", "summary": "dup"}',
    b"NaN",
    b'{"truncatedAlerts": 1e999}',
    b'{"version": "4", "truncatedAlerts": ' + b"9" * 5000 + b', "alerts": []}',
    b'{"summary": "s", "severity": "critical", "labels": {"n": ' + b"7" * 4400 + b"}}",
    b"\x00" * 1000,
    "\ufeff{}".encode(),
    "{}".encode("utf-16"),
]

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(NASTY_VALUES),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON document (dict keys and list indexes)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def _dump(value: Any) -> bytes:
    try:
        return json.dumps(value).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return b"{}"


def mutated(template: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """A valid payload with one field (or the whole) replaced by a random value, or a raw nasty body."""
    paths = list(_paths(template))
    replaced = st.builds(_replaced, st.just(template), st.sampled_from(paths), JSON_VALUE).map(_dump)
    return st.one_of(replaced, replaced, st.sampled_from(NASTY_RAW), st.binary(max_size=200))


@dataclass(frozen=True)
class Call:
    route: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


AUTH_ODDITIES = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": AM_TOKEN},  # no scheme
    {"Authorization": f"Basic {AM_TOKEN}"},
    {"Authorization": f"Bearer {AM_TOKEN}x"},
    {"Authorization": "Bearer " + "a" * 8000},
    {"Authorization": f"Bearer {GENERIC_TOKEN}, Bearer {AM_TOKEN}"},
    {"X-Grafana-Alerting-Signature": "00" * 32},
    {"X-Grafana-Alerting-Signature": "sha256="},
    {"X-Herald-Signature": "not hex at all"},
]


def hook_calls(route: str, template: dict[str, Any]) -> st.SearchStrategy[Call]:
    token = {"/hooks/alertmanager": AM_TOKEN, "/hooks/bounces": BOUNCE_TOKEN}.get(route, GENERIC_TOKEN)

    def signed(body: bytes, how: str, odd: dict[str, str]) -> Call:
        if how == "token":
            return Call(route, body, {"Authorization": f"Bearer {token}"})
        if how == "hmac":
            return Call(route, body, {"X-Grafana-Alerting-Signature": sign_body(GRAFANA_SECRET, body)})
        return Call(route, body, odd)

    hows = ["hmac", "odd"] if route == "/hooks/grafana" else ["token", "token", "odd"]
    return st.builds(signed, mutated(template), st.sampled_from(hows), st.sampled_from(AUTH_ODDITIES))


TWILIO_KEYS = ["From", "To", "Body", "MessageSid", "MessageStatus", "SmsStatus", "ErrorCode", "AccountSid"]
TWILIO_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["+4915110000001", "STOP", "START", "HELP", "ACK", "ACK 1", "ack zzz", "delivered"]),
    st.sampled_from(["ACK \x00", "+49\x00151", "SM" + "0" * 32, "STOP\x00", "ACK a\u202eb"]),
    st.sampled_from(["undelivered", "failed", "30005", "\ud800", "\x00", "9" * 400]),
)


def twilio_calls(route: str) -> st.SearchStrategy[Call]:
    def build(params: dict[str, str], signed: bool, raw: bytes | None) -> Call:
        body = (
            raw if raw is not None else urlencode(params, encoding="utf-8", errors="surrogatepass").encode()
        )
        unsigned = Call(route, body, {"Content-Type": "application/x-www-form-urlencoded"})
        if not signed or raw is not None:
            return unsigned
        try:
            signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + route, params)
        except UnicodeEncodeError:  # a lone surrogate: Twilio sends UTF-8, so it stays unsigned here
            return unsigned
        return Call(route, body, {"X-Twilio-Signature": signature})

    params = st.dictionaries(st.sampled_from(TWILIO_KEYS), TWILIO_VALUES, max_size=6)
    raw = st.one_of(st.none(), st.none(), st.sampled_from(NASTY_RAW), st.binary(max_size=100))
    return st.builds(build, params, st.booleans(), raw)


def page_calls(token: str, prefix: str = "/u/") -> st.SearchStrategy[Call]:
    tokens = st.one_of(
        st.just(token),
        st.just(token),
        st.text(alphabet="abcXYZ019-_.=%", max_size=60),
        st.sampled_from(["a.b.c", "a.1.!!!!", "..", "x" * 3000, token[:-2], token + "A"]),
    )
    forms = st.one_of(
        st.just(b"List-Unsubscribe=One-Click"),
        st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=5).map(
            lambda d: urlencode(d, errors="surrogatepass").encode()
        ),
        st.sampled_from(NASTY_RAW),
        st.binary(max_size=100),
    )
    types = st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "text/plain",
            "application/json",
        ]
    )
    return st.builds(lambda t, b, c: Call(f"{prefix}{t}", b, {"Content-Type": c}), tokens, forms, types)


def slack_calls() -> st.SearchStrategy[Call]:
    def build(body: bytes, how: str, stamp: str) -> Call:
        route = "/slack/events"
        if how == "signed":
            return Call(route, body, sign(SIGNING_SECRET, body.decode("utf-8", "replace")))
        if how == "stamp":
            return Call(route, body, {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=00"})
        return Call(route, body, {})

    bodies = st.one_of(
        st.dictionaries(
            st.sampled_from(["payload", "command", "text", "type", "token"]), st.text(max_size=30)
        ).map(lambda d: urlencode(d).encode()),
        st.builds(lambda v: _dump({"type": "event_callback", "event": v}), JSON_VALUE),
        st.just(b'{"type": "url_verification", "challenge": "c"}'),
        st.sampled_from(NASTY_RAW),
        st.binary(max_size=100),
    )
    stamps = st.sampled_from(["", "abc", "-1", "9" * 40, "1e10", "\u0661\u0662"])
    return st.builds(build, bodies, st.sampled_from(["signed", "unsigned", "stamp"]), stamps)


@dataclass
class Fuzzed:
    """The app under test, its loop and client, and what was counted."""

    loop: asyncio.AbstractEventLoop
    http: httpx.AsyncClient
    herald: Herald
    token: str
    confirm_token: str
    requests: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0

    def stored(self) -> tuple[int, ...]:
        with self.herald.store.begin() as connection:
            return tuple(
                int(connection.execute(select(func.count()).select_from(t)).scalar_one()) for t in STORED
            )

    def send(self, call: Call) -> httpx.Response:
        before = self.stored()
        headers = {name: value.encode("utf-8", "surrogatepass") for name, value in call.headers.items()}
        posted = self.http.post(call.route, content=call.body, headers=headers)
        response = self.loop.run_until_complete(posted)
        label = next((f"{p}{{token}}" for p in ("/u/", "/c/") if call.route.startswith(p)), call.route)
        self.requests[label] += 1
        if response.status_code >= 500:
            self.server_errors += 1
        assert response.status_code < 500, (call, response.status_code, response.text[:300])
        if 400 <= response.status_code < 500:
            assert self.stored() == before, (call, response.status_code)
            assert_refusal_form(label, response)
        return response


def assert_refusal_form(route: str, response: httpx.Response) -> None:
    kind = response.headers.get("content-type", "")
    if route.startswith("/hooks/twilio"):
        assert kind.startswith(("text/plain", "text/xml", "application/json")), (route, kind)
    elif route in ("/u/{token}", "/c/{token}"):
        assert kind.startswith(("text/html", "application/json")), (route, kind)
    else:
        assert kind.startswith("application/json"), (route, kind, response.text[:200])
        assert isinstance(response.json().get("error"), str), response.text[:200]


@pytest.fixture
def fuzzed(db_url: str, tmp_path: Path) -> Iterator[Fuzzed]:
    loop = asyncio.new_event_loop()
    slack = SlackStandIn(token=BOT_TOKEN)
    loop.run_until_complete(slack.__aenter__())
    config = tmp_path / "herald.toml"
    text = herald_toml(
        db_url, slack.api_url, 9, "http://127.0.0.1:9",
        slack_extra=f'signing_secret = "{SIGNING_SECRET}"\nalert_channel = "CALERTS"\n', extra=EXTRA_TOML,
    )  # fmt: skip
    config.write_text(text, encoding="utf-8")
    settings_ = load_settings(config)
    herald = Herald.build(settings_)
    with herald.store.session() as session:
        session.add(Person(id="alice", name="Alice", email="alice@example.com", phone="+4915110000001"))
        session.add(Notification(id="nfuzz", severity="high", title="Fuzz", meta='{"confirm": true}'))
        session.commit()
        session.add(
            Delivery(
                notification_id="nfuzz", person_id="alice", channel="email", address="alice@example.com",
                state="sent", provider_id="<fuzz-1@herald>",
            )
        )  # fmt: skip
        session.commit()
    routes = [*recipient_routes(herald), *alert_routes(herald), *bounce_routes(herald)]
    server = HeraldServer(settings_, herald=herald, routes=routes, dispatch=False)
    transport = httpx.ASGITransport(app=server.app)
    http = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080", timeout=60)
    token = make_token(herald.token_key(), "alice", herald.clock.now())
    confirm_token = make_confirm_token(herald.token_key(), "nfuzz", "alice", herald.clock.now())
    try:
        yield Fuzzed(loop, http, herald, token, confirm_token)
    finally:
        loop.run_until_complete(http.aclose())
        loop.run_until_complete(server.stop())
        loop.run_until_complete(slack.__aexit__(None, None, None))
        loop.close()


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, [f"{r.name}: {r.getMessage()[:200]}" for r in bad]


ROUTES = [
    "/hooks/alertmanager",
    "/hooks/grafana",
    "/hooks/alerts",
    "/hooks/twilio/status",
    "/hooks/twilio/inbound",
    "/u/{token}",
    "/slack/events",
    "/hooks/bounces",
    "/c/{token}",
]


def test_adversarial_corpus_on_every_post_route(fuzzed: Fuzzed, caplog: pytest.LogCaptureFixture) -> None:
    """The fixed corpus (every nasty raw body, oversized bodies, every odd Authorization) on every route."""
    caplog.set_level(logging.INFO)
    for route in ROUTES:
        token = fuzzed.confirm_token if route.startswith("/c/") else fuzzed.token
        path = route.replace("{token}", token)
        for body in [*NASTY_RAW, b"x" * OVERSIZED]:
            for headers in AUTH_ODDITIES[:4]:
                fuzzed.send(Call(path, body, headers))
        refused = fuzzed.send(Call(path, b"{" * OVERSIZED, {"Authorization": f"Bearer {AM_TOKEN}"}))
        if route != "/c/{token}":  # the Confirm button's POST carries no body: it is never read
            assert refused.status_code in (401, 403, 404, 413), (route, refused.status_code)
    assert_no_traceback(caplog)
    print(f"\nadversarial corpus: {dict(fuzzed.requests)}; 5xx: {fuzzed.server_errors}")
    assert fuzzed.server_errors == 0


def test_random_bodies_on_every_post_route(fuzzed: Fuzzed, caplog: pytest.LogCaptureFixture) -> None:
    """Hypothesis-generated requests (mutated valid payloads, signed and unsigned) on every route."""
    caplog.set_level(logging.INFO)
    calls = st.one_of(
        hook_calls("/hooks/alertmanager", ALERTMANAGER),
        hook_calls("/hooks/grafana", GRAFANA),
        hook_calls("/hooks/alerts", GENERIC),
        twilio_calls("/hooks/twilio/status"),
        twilio_calls("/hooks/twilio/inbound"),
        page_calls(fuzzed.token),
        slack_calls(),
        hook_calls("/hooks/bounces", BOUNCE),
        page_calls(fuzzed.confirm_token, "/c/"),
    )

    @settings(
        max_examples=720,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(call=calls)
    def property_holds(call: Call) -> None:
        fuzzed.send(call)

    property_holds()
    assert_no_traceback(caplog)
    print(f"\nrandom requests: {dict(fuzzed.requests)}; 5xx: {fuzzed.server_errors}")
    assert set(fuzzed.requests) == set(ROUTES)
    assert fuzzed.server_errors == 0


# -- Found by probing a running serve (round "no input that breaks a route") ---------------------------

API = {"Authorization": f"Bearer {API_TOKEN}"}


def _cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


def _get(fuzzed: Fuzzed, path: str) -> httpx.Response:
    response = fuzzed.loop.run_until_complete(fuzzed.http.get(path, headers=API))
    assert response.status_code < 500, (path, response.status_code, response.text[:200])
    return response


def test_notification_ids_and_cursors_no_database_can_compare_are_a_4xx(
    fuzzed: Fuzzed, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL in the id, or a forged ``after`` cursor holding a NUL or a lone surrogate, was a 500
    (PostgreSQL refuses NUL; neither driver encodes a surrogate); an empty ``after=`` is page one."""
    for path in ["/api/notifications/%00", "/api/notifications/a%00b/deliveries"]:
        assert _get(fuzzed, path).status_code == 404
    for forged in [_cursor("\x00", "a"), _cursor("\ud800", "a"), _cursor("alice", "\udc00")]:
        refused = _get(fuzzed, f"/api/notifications/nfuzz/deliveries?after={forged}")
        assert refused.status_code == 400 and refused.json()["parameter"] == "after"
    first = _get(fuzzed, "/api/notifications/nfuzz/deliveries?after=")
    assert first.status_code == 200 and [d["person_id"] for d in first.json()["deliveries"]] == ["alice"]
    assert_no_traceback(caplog)


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"1." + b"1" * 200])
def test_a_float_beyond_a_double_is_refused_naming_the_field(fuzzed: Fuzzed, number: bytes) -> None:
    """``1e999`` read as Infinity and was stored as the label "Infinity", though NaN/Infinity are refused."""
    body = b'{"summary": "s", "severity": "critical", "labels": {"load": ' + number + b"}}"
    refused = fuzzed.send(Call("/hooks/alerts", body, {"Authorization": f"Bearer {GENERIC_TOKEN}"}))
    assert refused.status_code == 422 and refused.json()["field"] == "labels.load"


@pytest.mark.parametrize(
    ("route", "params", "field"),
    [
        (
            "/hooks/twilio/status",
            {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "9" * 5000},
            "ErrorCode",
        ),
        ("/hooks/twilio/inbound", {"From": "+" + "4" * 5000, "Body": "STOP"}, "From"),
        (
            "/hooks/twilio/status",
            {"MessageSid": "SM" + "0" * 500, "MessageStatus": "delivered"},
            "MessageSid",
        ),
    ],
)
def test_signed_twilio_fields_longer_than_twilio_sends_are_a_400_naming_them(
    fuzzed: Fuzzed, route: str, params: dict[str, str], field: str
) -> None:
    """Over-long values went into varchar columns: a 500 on PostgreSQL."""
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + route, params)
    refused = fuzzed.send(Call(route, urlencode(params).encode(), {"X-Twilio-Signature": signature}))
    assert refused.status_code == 400 and refused.text.startswith(f"{field}: longer than")


def _command(text: str, **fields: str) -> bytes:
    form = {"command": "/announce", "text": text, "user_id": ANNOUNCER, "channel_id": "CIT", "team_id": "T1"}
    form |= {"response_url": "http://127.0.0.1:9/response", "trigger_id": "t.1", **fields}
    return urlencode({k: v for k, v in form.items() if v}, errors="surrogatepass").encode()


@pytest.mark.parametrize(
    "body",
    [
        _command("status n\x00"),
        _command("list", user_id="U" * 5000),
        b"payload="
        + json.dumps(
            {
                "type": "block_actions",
                "user": {"id": ANNOUNCER},
                "actions": [{"action_id": "alert_ack", "value": "\ud800"}],
            }
        ).encode(),
    ],
    ids=["nul-in-text", "long-user-id", "surrogate-in-action"],
)
def test_signed_slack_payloads_no_database_can_store_are_a_400(
    fuzzed: Fuzzed, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    """Signed, so Bolt ran them: the listeners then failed in the database with a traceback."""
    headers = sign(SIGNING_SECRET, body.decode())
    refused = fuzzed.send(
        Call("/slack/events", body, {**headers, "Content-Type": "application/x-www-form-urlencoded"})
    )
    assert refused.status_code == 400
    assert_no_traceback(caplog)


def test_a_slack_command_without_a_response_url_loses_only_its_reply(
    fuzzed: Fuzzed, caplog: pytest.LogCaptureFixture
) -> None:
    """Bolt's ``respond`` raised without a response_url, and again in the error path: two tracebacks."""
    caplog.set_level(logging.INFO)
    body = _command("list", response_url="")
    answered = fuzzed.send(Call("/slack/events", body, {**sign(SIGNING_SECRET, body.decode())}))
    assert answered.status_code == 200

    async def reply_dropped() -> None:
        while not any("without a response_url" in r.getMessage() for r in caplog.records):
            await asyncio.sleep(0.05)

    fuzzed.loop.run_until_complete(asyncio.wait_for(reply_dropped(), 20))
    assert_no_traceback(caplog)


def test_every_status_a_route_answers_is_in_the_openapi_document(fuzzed: Fuzzed) -> None:
    """schemathesis flagged 403/404/413 answers the document did not list."""
    paths = _get(fuzzed, "/openapi.json").json()["paths"]
    for route in ("/hooks/twilio/status", "/hooks/twilio/inbound"):
        assert {"400", "403", "404", "413"} <= set(paths[route]["post"]["responses"])
    assert {"400", "404", "413"} <= set(paths["/u/{token}"]["post"]["responses"])
    assert "404" in paths["/u/{token}"]["get"]["responses"]
    assert {"400", "401", "413"} <= set(paths["/slack/events"]["post"]["responses"])
