"""``herald alert`` end to end: the CLI, the same intake as the generic webhook, delivery over real
SMTP and the Twilio stand-in (``--wait``), dedup, resolution, and usage errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from conftest import Peers

ROUTES = """
[[routes]]
match = { team = "net" }
audience = "group:oncall"
channels = ["email", "sms"]
"""


def setup(cli, peers: Peers, db_url: str, tmp_path: Path, extra: str = "") -> str:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, ROUTES + extra), encoding="utf-8")
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,phone,groups\n"
        "alice,Alice,alice@example.com,+4915110000001,oncall\n"
        "bob,Bob,bob@example.com,+4915110000002,oncall;netops\n"
        "carol,Carol,carol@example.com,+4915110000003,\n",
        encoding="utf-8",
    )
    imported = cli("directory", "import", str(people), "--config", str(config))
    assert imported.exit_code == 0, imported.stderr
    return str(config)


def test_alert_wait_delivers_then_dedups_then_resolves(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    args = ["alert", "--config", config, "--severity", "critical", "--summary", "Core router down"]
    labels = ["--label", "team=net", "--label", "site=berlin"]
    first = cli(*args, *labels, "--description", "both uplinks lost", "--wait", "--json")
    assert first.exit_code == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["state"] == "done"
    assert report["kind"] == "alert"
    assert report["recipients"] == 2
    assert report["channels"]["email"]["sent"] == 2
    assert report["channels"]["sms"]["sent"] == 2
    assert report["sla"]["met"] is True
    assert report["alert_group"].startswith("a")
    assert sorted(m.rcpt_tos[0] for m in peers.smtp.messages) == ["alice@example.com", "bob@example.com"]
    subject = peers.smtp.messages[0].message["Subject"]
    assert subject == "[CRITICAL] [FIRING:1] Core router down"
    assert all(
        m.body.startswith("[CRITICAL] [FIRING:1] Core router down: Reply ACK") for m in peers.twilio.messages
    )

    again = cli(*args, *labels, "--json")
    assert again.exit_code == 0, again.stderr
    repeated = json.loads(again.stdout)
    assert repeated["state"] == "deduplicated" and repeated["id"] is None
    assert repeated["alert_group"] == report["alert_group"]
    assert len(peers.smtp.messages) == 2

    resolved = cli(*args, *labels, "--resolve", "--wait", "--json")
    assert resolved.exit_code == 0, resolved.stderr
    notice = json.loads(resolved.stdout)
    assert notice["kind"] == "resolution"
    assert notice["title"] == "[RESOLVED] Core router down"
    assert notice["recipients"] == 2
    assert notice["alert_group"] == report["alert_group"]

    nothing = cli(*args, *labels, "--resolve")
    assert nothing.exit_code == 0
    assert "nothing to resolve" in nothing.stdout


def test_unrouted_alert_goes_to_the_default_route(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    result = cli("alert", "--config", config, "-s", "security", "--summary", "Odd login", "--json")
    assert result.exit_code == 0, result.stderr
    queued = json.loads(result.stdout)
    assert queued["state"] == "queued" and queued["recipients"] == 2  # group:oncall
    assert "no dispatcher is running" in result.stderr


def test_usage_errors_exit_2_naming_the_option(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    bad_severity = cli("alert", "--config", config, "--severity", "urgent", "--summary", "x")
    assert bad_severity.exit_code == 2
    assert bad_severity.stderr.strip() == (
        "herald: --severity: expected one of critical, outage, security, maintenance, info"
    )
    bad_label = cli("alert", "--config", config, "--severity", "info", "--summary", "x", "--label", "oops")
    assert bad_label.exit_code == 2
    assert "--label: expected name=value" in bad_label.stderr
    empty = cli("alert", "--config", config, "--severity", "info", "--summary", " ")
    assert empty.exit_code == 2
    assert "--summary: a summary is required" in empty.stderr


def test_herald_serve_mounts_the_webhooks_and_delivers(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from test_serve import _first_line, _spawn, _stop

    extra = '[server]\nhost = "127.0.0.1"\nport = 0\n[webhooks.alerts]\ntoken = "serve-token"\n'
    config = setup(cli, peers, db_url, tmp_path, extra)
    proc = _spawn("serve", "--config", config)
    url = _first_line(proc).split("listening on ")[1].split()[0]
    try:
        body = {"summary": "Printer on fire", "severity": "critical", "labels": {"team": "net"}}
        assert httpx.post(f"{url}/hooks/alerts", json=body, timeout=10).status_code == 401
        assert (
            httpx.post(f"{url}/hooks/grafana", json=body, timeout=10).status_code == 401
        )  # no auth configured
        accepted = httpx.post(
            f"{url}/hooks/alerts", json=body, headers={"Authorization": "Bearer serve-token"}, timeout=10
        )
        assert accepted.status_code == 202, accepted.text
        deadline = time.monotonic() + 45  # generous: a loaded machine, not a timing claim
        while len(peers.smtp.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(m.rcpt_tos[0] for m in peers.smtp.messages) == ["alice@example.com", "bob@example.com"]
    finally:
        code, _, err = _stop(proc)
    assert code == 0, err
