"""`herald announce --wait`, `status` and `report` end to end: the CLI, the ledger on both databases,
the dispatcher, the real aiosmtplib client into a real SMTP server over TCP, and the real twilio client
into the Twilio stand-in over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Peers


def write_directory(path: Path, people: int = 12) -> Path:
    lines = ["id,name,email,phone,department,site,timezone"]
    for index in range(people):
        phone = f"+4915112345{index:03d}" if index % 4 != 3 else ""  # every 4th has no phone
        dept = "Engineering" if index % 2 == 0 else "Finance"
        lines.append(f"p{index},Person {index},p{index}@example.com,{phone},{dept},Berlin,Europe/Berlin")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def setup(cli, peers: Peers, db_url: str, tmp_path: Path, people: int = 12, extra: str = "") -> str:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text(peers.config(db_url, extra), encoding="utf-8")
    imported = cli(
        "directory", "import", str(write_directory(tmp_path / "people.csv", people)), "--config", str(config)
    )
    assert imported.exit_code == 0, imported.stderr
    return str(config)


def announce(cli, config: str, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return cli("announce", "--config", config, "--yes", "--wait", "--json", *args, env=env)


def test_announce_wait_delivers_email_and_sms(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    result = announce(
        cli,
        config,
        "--audience",
        "dept:engineering",
        "--channels",
        "email,sms",
        "--severity",
        "maintenance",
        "--title",
        "Patch Tuesday",
        "--body",
        "Servers reboot at 22:00 CET.",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "done"
    assert report["recipients"] == 6
    assert report["channels"]["email"]["sent"] == 6
    # p0..p10 even: p3/p7/p11 lack phones but are odd, so every engineer has one
    assert report["channels"]["sms"]["sent"] == 6
    assert report["sla"]["met"] is True
    assert report["sla"]["deliver_within_s"] == 4 * 3600
    assert len(peers.smtp.messages) == 6
    message = peers.smtp.messages[0].message
    assert message["Subject"] == "[MAINTENANCE] Patch Tuesday"
    assert message["List-Unsubscribe"].startswith("<http://127.0.0.1:8080/u/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert {m.to for m in peers.twilio.messages} == {f"+4915112345{i:03d}" for i in range(0, 12, 2)}
    assert all(m.body.startswith("[MAINTENANCE] Patch Tuesday") for m in peers.twilio.messages)
    assert all("STOP" in m.body for m in peers.twilio.messages)

    status = cli("status", report["id"], "--json", "--config", config)
    assert status.exit_code == 0
    assert json.loads(status.stdout)["channels"] == report["channels"]


def test_people_without_phone_are_suppressed_not_failed(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    result = announce(
        cli,
        config,
        "--audience",
        "dept:finance",
        "--channels",
        "sms",
        "--severity",
        "critical",
        "--title",
        "Down",
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["channels"]["sms"]["sent"] == 3
    assert report["channels"]["sms"]["suppressed"] == 3
    assert report["channels"]["sms"]["failed"] == 0
    assert all("STOP" not in m.body for m in peers.twilio.messages)  # critical is mandatory: no opt-out hint


def test_hard_bounces_fail_then_suppress_the_address(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("rcpt", "550 5.1.1 <p0@example.com>: user unknown", address="p0@example.com")
    peers.twilio.opted_out.add("+4915112345002")
    args = [
        "--audience",
        "dept:engineering",
        "--channels",
        "email,sms",
        "--severity",
        "info",
        "--title",
        "One",
    ]
    first = json.loads(announce(cli, config, *args).stdout)
    assert first["channels"]["email"]["failed"] == 1
    assert first["channels"]["email"]["sent"] == 5
    assert first["channels"]["sms"]["failed"] == 1
    assert first["channels"]["sms"]["sent"] == 5

    second_result = announce(cli, config, *args[:-1], "Two")
    second = json.loads(second_result.stdout)
    assert second["channels"]["email"]["suppressed"] == 1
    assert second["channels"]["email"]["sent"] == 5
    assert second["channels"]["sms"]["suppressed"] == 1
    assert sum(1 for m in peers.smtp.messages if "p0@example.com" in m.rcpt_tos) == 0


def test_transient_failure_is_retried_until_sent(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    peers.smtp.fail("rcpt", "451 4.3.0 try again later", address="p2@example.com", times=1)
    result = announce(
        cli,
        config,
        "--audience",
        "person:p2@example.com",
        "--channels",
        "email",
        "--severity",
        "critical",
        "--title",
        "Retry me",
        env={"HERALD_DISPATCHER__POLL_INTERVAL": "0.1s", "HERALD_DISPATCHER__RETRY_BASE": "0.2s"},
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["channels"]["email"]["sent"] == 1
    assert sum(1 for m in peers.smtp.messages if "p2@example.com" in m.rcpt_tos) == 1
    assert report["sla"]["met"] is True


def test_bad_input_is_exit_2_and_nothing_is_stored(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    bad_query = announce(cli, config, "--audience", "dept:", "--title", "x")
    assert bad_query.exit_code == 2
    assert bad_query.stderr.startswith("herald: audience: at ")
    nobody = announce(cli, config, "--audience", "site:atlantis", "--title", "x")
    assert nobody.exit_code == 2
    assert nobody.stderr == "herald: no one matches 'site:atlantis'\n"
    # Without --json the refusal comes from the preview it prints (--json checks without counting).
    text = cli("announce", "--config", config, "--yes", "--audience", "site:atlantis", "--title", "x")
    assert (text.exit_code, text.stderr) == (2, nobody.stderr)
    severity = announce(cli, config, "--audience", "everyone", "--title", "x", "--severity", "urgent")
    assert severity.exit_code == 2
    assert "unknown severity 'urgent'" in severity.stderr
    no_yes = cli("announce", "--config", config, "--audience", "everyone", "--title", "x")
    assert no_yes.exit_code == 2
    assert "not sending without --yes" in no_yes.stderr
    report = cli("report", "--json", "--config", config)
    assert json.loads(report.stdout)["notifications"] == 0
    assert peers.smtp.messages == []


def test_without_wait_prints_id_and_warns_when_no_dispatcher(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    result = cli(
        "announce", "--config", config, "--yes", "--json", "--audience", "everyone", "--title", "Later"
    )
    assert result.exit_code == 0
    queued = json.loads(result.stdout)
    assert queued["state"] == "queued"
    assert queued["recipients"] == 12
    assert "no dispatcher is running" in result.stderr
    status = json.loads(cli("status", queued["id"], "--json", "--config", config).stdout)
    assert status["left"] == 12
    assert status["sla"]["met"] is None
    assert peers.smtp.messages == []


def test_report_counts_every_notification(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = setup(cli, peers, db_url, tmp_path)
    for title in ("one", "two"):
        assert announce(cli, config, "--audience", "dept:finance", "--title", title).exit_code == 0
    result = cli("report", "--since", "1h", "--json", "--config", config)
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["notifications"] == 2
    assert report["channels"]["email"]["sent"] == 12
    assert report["sla"] == {"judged": 2, "met": 2, "missed": 0, "met_pct": 100.0, "causes": {}}
    text = cli("report", "--since", "1h", "--config", config)
    assert "SLA: 2 met, 0 missed of 2 finished (100.0%)" in text.stdout
