"""``herald serve`` and ``herald worker``: health, readiness, metrics, the notification API, and the
processes themselves (started as a user starts them, stopped with SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from slack_signing import (
    ANNOUNCER,
    API_TOKEN,
    CHANNEL,
    Harness,
    block_action,
    running_herald,
)
from test_slack_flows import button, eventually, notifications, preview_typed, progress_final

from bot.app import Herald
from bot.clock import SystemClock
from bot.config import load_settings
from bot.metrics import HeraldMetrics
from bot.server import HeraldServer, ServeError
from bot.store import Store, make_engine
from bot.web import build_web_app


async def announce_and_finish(h: Harness) -> str:
    preview = await preview_typed(h, "info to site:berlin via email: Hi | there", "cmd")
    send = button(preview["blocks"], "announce_send")
    await h.signed.interaction(
        block_action("announce_send", send["value"], ANNOUNCER, CHANNEL, h.response_url("s"))
    )
    await eventually(lambda: progress_final(h))
    (row,) = notifications(h.db_url)
    return row.id


async def test_health_readiness_metrics_and_openapi(db_url: str, tmp_path: Path) -> None:
    async with running_herald(db_url, tmp_path) as h:
        notification_id = await announce_and_finish(h)
        base = h.server.url
        assert (await h.http.get(f"{base}/healthz")).json() == {"status": "ok"}
        ready = await h.http.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["database"] == "ok"

        scraped = await h.http.get(f"{base}/metrics")
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        text = scraped.text
        for line in (
            "herald_database_up 1.0",
            'herald_deliveries{channel="email",state="sent"} 2.0',
            'herald_deliveries{channel="email",state="suppressed"} 2.0',
            'herald_queue_depth{channel="email"} 0.0',
            "herald_sla_missed_notifications 0.0",
            'herald_notifications{state="done"} 1.0',
            'herald_sends_total{channel="email",outcome="sent",reason=""} 2.0',
            'herald_send_seconds_count{channel="email"} 2.0',
            'herald_announcements_total{source="slack"} 1.0',
            'herald_http_requests_total{method="POST",route="/slack/events",status="200"} 2.0',
        ):
            assert line in text, line
        assert 'route="/api/notifications/{id}"' not in text  # labels are route templates, never raw ids

        document = (await h.http.get(f"{base}/openapi.json")).json()
        assert document["openapi"].startswith("3.")
        for path in (  # every route of SPEC's table
            "/slack/events",
            "/hooks/alertmanager",
            "/hooks/grafana",
            "/hooks/alerts",
            "/hooks/twilio/status",
            "/hooks/twilio/inbound",
            "/hooks/bounces",
            "/u/{token}",
            "/c/{token}",
            "/api/notifications/{id}",
            "/api/notifications/{id}/deliveries",
            "/healthz",
            "/readyz",
            "/metrics",
        ):
            assert path in document["paths"], path

        api = f"{base}/api/notifications/{notification_id}"
        assert (await h.http.get(api)).status_code == 401
        assert (await h.http.get(api, headers={"Authorization": "Bearer wrong"})).status_code == 401
        found = await h.http.get(api, headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert found.status_code == 200
        body = found.json()
        assert body["id"] == notification_id and body["state"] == "done" and body["recipients"] == 4
        assert body["channels"]["email"]["sent"] == 2 and body["sla"]["met"] is True
        delays = body["sla"]["delays"]  # why it took as long as it did: over the slowest 1 % here
        assert list(delays) == ["queue", "throttle", "quiet_hours", "retry", "provider", "channel_down"]
        assert body["sla"]["delays_over"] == {"basis": "slowest", "deliveries": 1} and delays["provider"] > 0
        missing = await h.http.get(
            f"{base}/api/notifications/nnothing", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        assert missing.status_code == 404


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = load_settings(None)
    dead = Store(engine=make_engine("postgresql://herald@127.0.0.1:1/herald"), url="postgresql://127.0.0.1:1")
    herald = Herald(settings=settings, store=dead, clock=SystemClock())
    app = build_web_app(herald, HeraldMetrics(dead, herald.clock))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://herald") as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
        scraped = await http.get("/metrics")
        assert scraped.status_code == 200 and "herald_database_up 0.0" in scraped.text
        off = await http.post("/slack/events", content=b"{}")
        assert off.status_code == 404 and "slack" in off.json()["error"]
        assert (await http.get("/api/notifications/n1")).status_code == 404  # api_token unset: off
    dead.dispose()


async def test_serve_without_slack_still_serves_health(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n[server]\nport = 0\n', encoding="utf-8")
    server = HeraldServer(load_settings(config))
    async with server, httpx.AsyncClient() as http:
        assert server.slack is None and server.slack_mode.startswith("off")
        assert (await http.get(f"{server.url}/healthz")).status_code == 200
        assert (await http.post(f"{server.url}/slack/events", content=b"x")).status_code == 404


async def test_a_second_dispatcher_on_sqlite_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/h.db"\n[server]\nport = 0\n', encoding="utf-8"
    )
    first = HeraldServer(load_settings(config), worker_id="serve-first")
    async with first:
        second = HeraldServer(load_settings(config), worker_id="serve-second")
        try:
            with pytest.raises(ServeError, match="SQLite runs one dispatcher"):
                await second.start()
        finally:
            await second.stop()


# -- the processes -----------------------------------------------------------------------------------


def _spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _first_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    assert proc.stdout is not None
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        raise AssertionError(f"no output in {timeout}s; stderr: {proc.communicate()[1]}")
    return found[0]


def _stop(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"did not stop on SIGTERM; stderr: {err}") from None
    return proc.returncode, out, err


def test_herald_serve_prints_its_url_serves_and_stops_on_sigterm(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[server]\nhost = "127.0.0.1"\nport = 0\n', encoding="utf-8"
    )
    proc = _spawn("serve", "--config", str(config))
    line = _first_line(proc)
    assert line.startswith("herald serve: listening on http://127.0.0.1:"), line
    assert "Slack: off" in line
    url = line.split("listening on ")[1].split()[0]
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200
    code, out, err = _stop(proc)
    assert code == 0, err
    assert "herald serve: stopped" in out


def test_herald_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "herald.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path}/h.db"\n[server]\nhost = "127.0.0.1"\nport = {port}\n',
            encoding="utf-8",
        )
        proc = _spawn("serve", "--config", str(config))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_herald_worker_runs_until_sigterm(db_url: str, tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n', encoding="utf-8")
    proc = _spawn("worker", "--config", str(config), "--id", "w-test-1")
    line = _first_line(proc)
    assert line.startswith("herald worker w-test-1: dispatching email"), line
    code, out, err = _stop(proc)
    assert code == 0, err
    assert "herald worker w-test-1: stopped" in out


def test_herald_worker_refuses_an_id_of_a_commands_own_dispatching(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``cli-...`` names what ``announce --wait`` registers; SQLite lets it run beside a worker."""
    config = tmp_path / "herald.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/h.db"\n', encoding="utf-8")
    refused = cli("worker", "--config", str(config), "--id", "cli-mine")
    assert refused.exit_code == 2 and "--id: cli-..." in refused.stderr


async def test_signed_slack_requests_dispatched_in_process(db_url: str, tmp_path: Path) -> None:
    """The same app without a socket: httpx's ASGI transport straight into Starlette and Bolt."""
    from slack_signing import BOT_TOKEN, SIGNING_SECRET, SignedSlack, seed_directory

    from bot.slack.app import build_slack
    from bot.standins.slack import SlackStandIn

    seed_directory(db_url)
    async with SlackStandIn(token=BOT_TOKEN) as slack:
        config = tmp_path / "herald.toml"
        config.write_text(
            f'[database]\nurl = "{db_url}"\n[slack]\nbot_token = "{BOT_TOKEN}"\n'
            f'signing_secret = "{SIGNING_SECRET}"\napi_url = "{slack.api_url}"\n'
            f'announcers = ["{ANNOUNCER}"]\n',
            encoding="utf-8",
        )
        herald = Herald.build(load_settings(config))
        metrics = HeraldMetrics(herald.store, herald.clock)
        front = build_slack(herald, metrics, owner="in-process")
        assert front is not None
        app = build_web_app(herald, metrics, front)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://herald") as http:
            signed = SignedSlack(http, "http://herald/slack/events", SIGNING_SECRET)
            helped = await signed.command("help", ANNOUNCER, CHANNEL, slack.response_url("h"))
            assert helped.status_code == 200 and "Usage" in helped.text
            forged = await signed.command("help", ANNOUNCER, CHANNEL, slack.response_url("h"), secret="nope")
            assert forged.status_code == 401
            await signed.command(
                "info to site:berlin via email: Hi | x", ANNOUNCER, CHANNEL, slack.response_url("p")
            )
            await front.tasks.drain()
            assert "*4* people" in str(slack.responses_to("p")[0]["blocks"])
        await front.aclose()
        await herald.aclose()
