"""The deployment files in ``deploy/``: Alertmanager's config through ``amtool`` and the real
Alertmanager into Herald, the Grafana dashboard's metric names against a running ``herald serve``,
the Grafana contact point, and the compose file with its env file (docker itself is not run)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import require_program
from test_alert_webhooks import AM_TOKEN, eventually, running_alerts
from test_alertmanager_e2e import am_alert, running_alertmanager

from bot.alerts.web import MAX_BODY
from bot.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
METRIC = re.compile(r"\bherald_[a-z0-9_]+\b")


def load_yaml(name: str) -> Any:
    return yaml.safe_load((DEPLOY / name).read_text(encoding="utf-8"))


# --- Alertmanager ------------------------------------------------------------------------------


def test_amtool_accepts_the_alertmanager_config() -> None:
    amtool = require_program("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(DEPLOY / "alertmanager.yml")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "1 receivers" in result.stdout


def test_the_herald_receiver_is_bearer_resolved_and_bounded() -> None:
    (receiver,) = load_yaml("alertmanager.yml")["receivers"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"].endswith("/hooks/alertmanager")
    assert hook["send_resolved"] is True
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    # The comment's budget: 16 KiB per alert still leaves room for the envelope under Herald's cap.
    assert 0 < hook["max_alerts"] * 16 * 1024 < MAX_BODY * 0.9


def deploy_config_for(herald_url: str, token_file: Path) -> str:
    """deploy/alertmanager.yml pointed at this Herald and its token; short timers for a test."""
    config = load_yaml("alertmanager.yml")
    (hook,) = config["receivers"][0]["webhook_configs"]
    hook["url"] = f"{herald_url}/hooks/alertmanager"
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    config["route"].update(group_wait="1s", group_interval="1s")
    return yaml.safe_dump(config)


async def test_the_real_alertmanager_pages_through_herald_with_the_deploy_config(
    db_url: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "herald-token"
    token_file.write_text(AM_TOKEN + "\n", encoding="utf-8")
    async with running_alerts(db_url, tmp_path) as h:
        config_text = deploy_config_for(h.url, token_file)
        async with running_alertmanager(tmp_path, h.url, config_text=config_text) as am:
            await am.post(am_alert("DiskFull", team="net", instance="db1"))
            await eventually(lambda: h.mail_to("alice") != [], what="the page")
            assert h.mail_to("alice") == ["[OUTAGE] [FIRING:1] DiskFull"]
            # send_resolved: the resolution reaches the people paged.
            await am.post(am_alert("DiskFull", ends_at=time.time() - 1, team="net", instance="db1"))
            await eventually(lambda: "[OUTAGE] [RESOLVED] DiskFull" in h.mail_to("alice"), what="resolution")


# --- Grafana -----------------------------------------------------------------------------------


def test_the_grafana_contact_point_posts_to_herald_with_a_bearer_token() -> None:
    document = load_yaml("grafana-contact-point.yaml")
    assert document["apiVersion"] == 1
    (point,) = document["contactPoints"]
    (receiver,) = point["receivers"]
    settings = receiver["settings"]
    assert receiver["type"] == "webhook" and receiver["disableResolveMessage"] is False
    assert settings["url"].endswith("/hooks/grafana") and settings["httpMethod"] == "POST"
    assert settings["authorization_scheme"] == "Bearer"
    assert settings["authorization_credentials"].startswith("$")  # from Grafana's environment
    assert 0 < settings["maxAlerts"] <= 200


def dashboard_metrics() -> set[str]:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text(encoding="utf-8"))
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(dashboard["panels"]) >= 9
    return {name for expr in expressions for name in METRIC.findall(expr)}


def exposed_names(text: str) -> set[str]:
    """Series names a scrape offers, including those of families with no sample yet."""
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("herald_")}
    for line in text.splitlines():
        if line.startswith("# TYPE herald_"):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
            if kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
    return names


def test_every_dashboard_metric_is_exposed_by_a_running_serve(db_url: str, tmp_path: Path) -> None:
    wanted = dashboard_metrics()
    for panel_metric in (
        "herald_deliveries",
        "herald_queue_depth",
        "herald_throttle_wait_seconds_total",
        "herald_sla_missed_notifications",
        "herald_channel_up",
        "herald_send_seconds_bucket",
        "herald_dispatcher_up",
        "herald_alerts_unrouted_total",
    ):
        assert panel_metric in wanted
    config = tmp_path / "herald.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[server]\nhost = "127.0.0.1"\nport = 0\n', encoding="utf-8"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on " in line, proc.stderr.read() if proc.stderr else line
        url = line.split("listening on ")[1].split()[0]
        scraped = httpx.get(f"{url}/metrics", timeout=30)
        assert scraped.status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    missing = wanted - exposed_names(scraped.text)
    assert not missing, f"the dashboard queries metrics serve does not expose: {sorted(missing)}"


# --- docker compose ----------------------------------------------------------------------------


def test_compose_runs_postgres_one_serve_and_two_workers_from_the_dockerfile() -> None:
    compose = load_yaml("docker-compose.yml")
    services = compose["services"]
    assert sorted(services) == ["postgres", "serve", "worker-1", "worker-2"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name in ("serve", "worker-1", "worker-2"):
        service = services[name]
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert service["env_file"] == ["herald.env"]
        assert service["depends_on"]
        assert service["environment"]["HERALD_CONFIG"] == "/etc/herald/herald.toml"
    assert services["serve"]["command"] == ["herald", "serve"]
    assert "/readyz" in " ".join(services["serve"]["healthcheck"]["test"])
    assert services["serve"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for number in (1, 2):
        worker = services[f"worker-{number}"]
        assert worker["command"] == ["herald", "worker", "--id", f"worker-{number}"]
        assert worker["environment"]["WORKER_ID"] == f"worker-{number}"
        assert "herald_dispatcher_up" in " ".join(worker["healthcheck"]["test"])
        assert worker["depends_on"]["serve"]["condition"] == "service_healthy"


def env_example() -> dict[str, str]:
    lines = (DEPLOY / "herald.env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key: value for key, value in pairs}


def test_the_env_file_example_holds_real_settings_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every HERALD_ variable of herald.env.example is a settings key (an unknown one is refused)."""
    variables = env_example()
    for key in [key for key in os.environ if key.startswith("HERALD_")]:
        monkeypatch.delenv(key)
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.database.url == variables["HERALD_DATABASE__URL"]
    assert variables["POSTGRES_PASSWORD"] in settings.database.url
    assert {"HERALD_WEBHOOKS__ALERTMANAGER__TOKEN", "HERALD_SLACK__SIGNING_SECRET"} <= set(variables)
