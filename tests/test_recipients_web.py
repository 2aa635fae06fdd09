"""The preferences page over real HTTP: ``herald serve``'s web app (``HeraldServer`` with the recipient
routes, uvicorn on 127.0.0.1 port 0), the CLI announcing through the SMTP and Twilio stand-ins, both
databases. A GET never writes; a saved form and a one-click POST (RFC 8058, from the very
List-Unsubscribe header of a sent email) hold for the next announcement and for queued deliveries."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Peers
from sqlalchemy import create_engine, text
from test_announce_cli import announce, setup

from bot.app import Herald
from bot.clock import Clock
from bot.config import load_settings
from bot.recipients.web import recipient_routes
from bot.server import HeraldServer
from bot.store import normalise_url
from bot.tokens import TOKEN_LIFETIME, make_token

PUBLIC_URL = "https://herald.example.com"
SERVER_TOML = (
    f'[server]\nhost = "127.0.0.1"\nport = 0\npublic_url = "{PUBLIC_URL}"\nsecret_key = "page-test-key"\n'
)


class WebServer:
    """``HeraldServer`` (no dispatcher) with the recipient routes, on its own event loop in a thread,
    so synchronous tests can drive the CLI and plain httpx against it."""

    def __init__(self, config: str, clock: Clock | None = None) -> None:
        settings = load_settings(config)
        self.herald = Herald.build(settings, clock=clock)
        self.server = HeraldServer(
            settings, herald=self.herald, dispatch=False, routes=recipient_routes(self.herald)
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url = self.call(self.server.start())
        self.http = httpx.Client(base_url=self.url, timeout=15, follow_redirects=False)

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def page_path(self, person_id: str) -> str:
        """The person's link as Herald mails it, made relative to this server."""
        return self.local(self.herald.unsubscribe_url(person_id))

    def local(self, public: str) -> str:
        assert public.startswith(PUBLIC_URL), public
        return public[len(PUBLIC_URL) :]

    def close(self) -> None:
        self.http.close()
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def start_web(cli, peers: Peers, db_url: str, tmp_path: Path, extra: str = "") -> tuple[str, WebServer]:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path, extra=SERVER_TOML + extra)
    return config, WebServer(config)


@pytest.fixture
def web(cli, peers: Peers, db_url: str, tmp_path: Path) -> Iterator[tuple[str, WebServer]]:  # type: ignore[no-untyped-def]
    config, server = start_web(cli, peers, db_url, tmp_path)
    try:
        yield config, server
    finally:
        server.close()


def rows(db_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(normalise_url(db_url))
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params).all())
    finally:
        engine.dispose()


def deliveries(db_url: str, notification_id: str) -> dict[tuple[str, str], tuple[str, str | None]]:
    found = rows(
        db_url,
        "SELECT person_id, channel, state, reason FROM delivery WHERE notification_id = :n",
        n=notification_id,
    )
    return {(p, c): (s, r) for p, c, s, r in found}


def announce_json(  # type: ignore[no-untyped-def]
    cli,
    config: str,
    audience: str,
    channels: str,
    severity: str,
    title: str,
    codes: tuple[int, ...] = (0,),
    body: str | None = None,
) -> dict[str, Any]:
    """``announce --wait --json`` (with ``body`` when given); its report."""
    result = announce(
        cli,
        config,
        "--audience",
        audience,
        "--channels",
        channels,
        "--severity",
        severity,
        "--title",
        title,
        *(["--body", body] if body is not None else []),
    )
    assert result.exit_code in codes, result.stderr
    return dict(json.loads(result.stdout))


def test_get_shows_the_page_and_changes_nothing(web: tuple[str, WebServer], db_url: str) -> None:
    _, server = web
    path = server.page_path("p2")
    for _ in range(3):  # a mail scanner prefetching the link, then the person
        page = server.http.get(path)
        assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert "Person 2" in html
    for kind in ("maintenance", "info"):
        for channel in ("email", "sms"):
            assert f'value="{kind}:{channel}" checked' in html
    assert "cannot be turned off" in html and "critical, outage and security" in html
    assert "turned quiet hours off" in html  # peers' config has quiet_hours.kinds = []
    assert "<script" not in html and "http" not in html.split("<body>", 1)[1].replace(PUBLIC_URL, "")
    assert server.http.head(path).status_code == 200
    assert rows(db_url, "SELECT count(*) FROM preference")[0][0] == 0
    assert rows(db_url, "SELECT count(*) FROM person_settings")[0][0] == 0


def test_saved_form_holds_for_the_next_announcement(cli, web: tuple[str, WebServer], db_url: str) -> None:  # type: ignore[no-untyped-def]
    config, server = web
    path = server.page_path("p0")
    saved = server.http.post(
        path,
        data={"pref": ["info:email", "maintenance:sms"], "quiet": "off"},
    )
    assert saved.status_code == 200
    assert "Your preferences are saved" in saved.text
    assert 'value="info:email" checked' in saved.text
    assert 'value="info:sms" checked' not in saved.text
    assert 'value="maintenance:email" checked' not in saved.text
    again = server.http.get(path).text
    assert 'value="maintenance:sms" checked' in again and 'value="info:sms" checked' not in again

    info = announce_json(cli, config, "person:p0@example.com", "email,sms", "info", "News")
    assert info["channels"]["email"]["sent"] == 1
    assert info["channels"]["sms"]["suppressed"] == 1
    assert info["channels"]["sms"]["failed"] == 0
    assert deliveries(db_url, info["id"])[("p0", "sms")] == ("suppressed", "opted_out")
    critical = announce_json(cli, config, "person:p0@example.com", "email,sms", "critical", "Down")
    assert critical["channels"]["email"]["sent"] == 1 and critical["channels"]["sms"]["sent"] == 1


def test_bad_quiet_hours_are_refused_and_nothing_is_saved(web: tuple[str, WebServer], db_url: str) -> None:
    _, server = web
    refused = server.http.post(server.page_path("p0"), data={"quiet": "custom", "quiet_start": "25:00"})
    assert refused.status_code == 400
    assert "your quiet hours need a start and an end time" in refused.text
    assert rows(db_url, "SELECT count(*) FROM preference")[0][0] == 0


def test_one_click_from_the_mailed_header_unsubscribes_at_once(
    cli, peers: Peers, web: tuple[str, WebServer], db_url: str
) -> None:  # type: ignore[no-untyped-def]
    config, server = web
    first = announce_json(cli, config, "dept:engineering", "email", "maintenance", "Patch")
    assert first["channels"]["email"]["sent"] == 6
    mail = next(m for m in peers.smtp.messages if m.rcpt_tos == ["p2@example.com"]).message
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = mail["List-Unsubscribe"].strip("<>")
    clicked = server.http.post(
        server.local(link),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert clicked.status_code == 200  # no redirect, no confirmation step
    assert "You are unsubscribed" in clicked.text

    before = len(peers.smtp.messages)
    second = announce_json(cli, config, "dept:engineering", "email", "info", "News")
    assert second["channels"]["email"] == {
        **second["channels"]["email"],
        "sent": 5,
        "suppressed": 1,
        "failed": 0,
    }
    assert deliveries(db_url, second["id"])[("p2", "email")] == ("suppressed", "opted_out")
    assert all(m.rcpt_tos != ["p2@example.com"] for m in peers.smtp.messages[before:])
    page = server.http.get(server.local(link)).text
    assert 'value="info:email" checked' not in page and 'value="info:sms" checked' in page

    outage = announce_json(cli, config, "person:p2@example.com", "email", "outage", "Mail down")
    assert outage["channels"]["email"]["sent"] == 1  # mandatory kinds still reach them


def test_one_click_as_multipart_and_queued_deliveries(cli, web: tuple[str, WebServer], db_url: str) -> None:  # type: ignore[no-untyped-def]
    config, server = web
    queued = cli(
        "announce", "--config", config, "--yes", "--json", "--audience", "person:p4@example.com",
        "--channels", "email", "--severity", "info", "--title", "Later",
    )  # fmt: skip
    notification_id = json.loads(queued.stdout)["id"]
    assert deliveries(db_url, notification_id)[("p4", "email")] == ("queued", None)
    clicked = server.http.post(server.page_path("p4"), files={"List-Unsubscribe": (None, "One-Click")})
    assert clicked.status_code == 200
    assert deliveries(db_url, notification_id)[("p4", "email")] == ("suppressed", "opted_out")
    status = json.loads(cli("status", notification_id, "--json", "--config", config).stdout)
    assert status["state"] == "done" and status["left"] == 0


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: "not-a-token",
        lambda token: token.split(".")[0],
    ],
)
def test_bad_links_get_a_plain_404(web: tuple[str, WebServer], mangle: Any) -> None:
    _, server = web
    token = server.page_path("p1").rsplit("/", 1)[1]
    for method in ("GET", "POST"):
        answer = server.http.request(method, f"/u/{mangle(token)}", data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 404
        assert "This preferences link is not valid or has expired." in answer.text


def test_expired_and_unknown_person_links_get_404(web: tuple[str, WebServer]) -> None:
    _, server = web
    key = b"page-test-key"
    expired = make_token(key, "p1", time.time() - TOKEN_LIFETIME - 60)
    assert server.http.get(f"/u/{expired}").status_code == 404
    nobody = make_token(key, "no-such-person", time.time())
    assert server.http.get(f"/u/{nobody}").status_code == 404


def test_names_are_escaped(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, server = start_web(cli, peers, db_url, tmp_path)
    try:
        people = tmp_path / "odd.csv"
        people.write_text(
            'id,name,email\nodd,"<b>Bold</b> & ""Co"" <script>x</script>",odd@example.com\n', encoding="utf-8"
        )
        assert cli("directory", "import", str(people), "--config", config).exit_code == 0
        html = server.http.get(server.page_path("odd")).text
        assert "&lt;b&gt;Bold&lt;/b&gt; &amp;" in html and "<script>x" not in html
    finally:
        server.close()


def test_herald_serve_mounts_the_recipient_routes(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from test_serve import _first_line, _spawn, _stop

    config = setup(cli, peers, db_url, tmp_path, extra=SERVER_TOML)
    proc = _spawn("serve", "--config", config)
    line = _first_line(proc)
    url = line.split("listening on ")[1].split()[0]
    try:
        settings = load_settings(config)
        herald = Herald.build(settings)
        try:
            link = herald.unsubscribe_url("p1")
        finally:
            herald.store.dispose()
        page = httpx.get(url + link[len(PUBLIC_URL) :], timeout=10)
        assert page.status_code == 200 and "Person 1" in page.text
        assert httpx.get(f"{url}/u/nope", timeout=10).status_code == 404
        assert httpx.post(f"{url}/hooks/twilio/inbound", data={"Body": "STOP"}, timeout=10).status_code == 403
        assert (
            httpx.post(f"{url}/hooks/twilio/status", data={"MessageSid": "SM1"}, timeout=10).status_code
            == 403
        )
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
