"""`herald audit [--since] [--json]`, through the CLI, after an announcement (through the CLI, the
dispatcher and the SMTP/Twilio stand-ins) and a suppression removal."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Peers
from test_announce_cli import announce, setup
from test_recipients_web import start_web
from test_twilio_webhooks import INBOUND, PHONE, post_signed, sms_in

from bot.cli.audit import short_detail
from bot.store import Store, open_store
from bot.tables import AuditEntry, Suppression


def add_rows(db_url: str, *rows: Any) -> None:
    store: Store = open_store(db_url)
    try:
        with store.session() as session:
            for row in rows:
                session.add(row)
            session.commit()
    finally:
        store.dispose()


def test_audit_lists_an_announcement_and_a_suppression_removal(
    cli: Any, peers: Peers, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, db_url, tmp_path)
    eight_days_ago = time.time() - 8 * 86400
    add_rows(
        db_url,
        Suppression(channel="email", address="p1@example.com", reason="bounced", source="delivery"),
        AuditEntry(at=eight_days_ago, actor="U0OLD", action="announce", subject="n-old", detail="{}"),
    )
    sent = announce(
        cli,
        config,
        "--audience",
        "dept:engineering",
        "--channels",
        "email",
        "--title",
        "Patch",
        "--body",
        "Tonight.",
    )
    assert sent.exit_code == 0, sent.stderr
    notification = json.loads(sent.stdout)["id"]
    assert cli("suppressions", "remove", "email", "P1@example.com", "--config", config).exit_code == 0

    listed = cli("audit", "--config", config)
    assert (listed.exit_code, listed.stderr) == (0, "")
    lines = listed.stdout.splitlines()
    assert lines[-1] == "2 audit entries in the last 7d"
    assert lines[0].endswith("  cli  suppression.remove  p1@example.com  channel=email")
    assert f'  cli  announce  {notification}  audience=dept:engineering, channels=["email"]' in lines[1]
    assert "recipients=6" in lines[1]
    assert lines[0][:4].isdigit() and lines[0][19:24] == " UTC "

    as_json = cli("audit", "--json", "--since", "30d", "--config", config)
    assert as_json.exit_code == 0
    rows = json.loads(as_json.stdout)
    assert [(row["actor"], row["action"], row["subject"]) for row in rows] == [
        ("cli", "suppression.remove", "p1@example.com"),
        ("cli", "announce", notification),
        ("U0OLD", "announce", "n-old"),
    ]
    assert rows[1]["allowed"] is True
    assert rows[1]["detail"]["recipients"] == 6 and rows[1]["detail"]["title"] == "Patch"
    assert rows[0]["at"] >= rows[1]["at"] > rows[2]["at"] == pytest.approx(eight_days_ago)


def test_audit_shows_refusals_and_shortens_details(cli: Any, db_url: str) -> None:
    detail = json.dumps({"reason": "not an announcer", "text": "x" * 300})
    add_rows(
        db_url, AuditEntry(at=time.time(), actor="U9", action="slack.refused", allowed=False, detail=detail)
    )
    result = cli("audit", env={"HERALD_DATABASE__URL": db_url})
    assert result.exit_code == 0
    line = result.stdout.splitlines()[0]
    assert "  U9  slack.refused  -  REFUSED  reason=not an announcer, text=xxx" in line
    assert line.endswith("…") and len(line.split("  REFUSED  ")[1]) == 100


def test_empty_log_and_bad_since(cli: Any, db_url: str) -> None:
    env = {"HERALD_DATABASE__URL": db_url}
    empty = cli("audit", "--json", env=env)
    assert (empty.exit_code, json.loads(empty.stdout)) == (0, [])
    bad = cli("audit", "--since", "a week", env=env)
    assert (bad.exit_code, bad.stdout) == (2, "")
    assert bad.stderr.startswith("herald: --since: ") and bad.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("detail", "short"),
    [
        ({}, ""),
        ({"a": "b c", "n": 2}, "a=b c, n=2"),
        ({"lines": "one\ntwo"}, "lines=one two"),
        ({"nested": {"k": [1, 2]}}, 'nested={"k":[1,2]}'),
    ],
)
def test_short_detail(detail: dict[str, Any], short: str) -> None:
    assert short_detail(detail) == short


def test_a_persons_own_changes_are_audited(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 4: a form saved on the preferences page, a one-click unsubscribe and SMS STOP/START
    (signed, over HTTP) each write an audit entry that ``herald audit`` shows."""
    config, server = start_web(cli, peers, db_url, tmp_path)
    try:
        _change_and_check(cli, config, server)
    finally:
        server.close()


def _change_and_check(cli, config: str, server) -> None:  # type: ignore[no-untyped-def]
    path = server.page_path("p2")
    form = {
        "pref": ["critical:email", "info:sms"],
        "quiet": "custom",
        "quiet_start": "22:00",
        "quiet_end": "06:30",
    }
    assert server.http.post(path, data=form).status_code == 200
    assert server.http.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    for word in ("STOP", "START"):
        assert post_signed(server, INBOUND, sms_in(word)).status_code == 200
    entries = json.loads(cli("audit", "--json", "--config", config).stdout)
    mine = [e for e in entries if e["action"].startswith(("preferences.", "sms."))]
    assert [(e["actor"], e["action"], e["subject"]) for e in reversed(mine)] == [
        ("person:p2", "preferences.save", "p2"),
        ("person:p2", "preferences.unsubscribe", "p2"),
        (f"sms:{PHONE}", "sms.stop", PHONE),
        (f"sms:{PHONE}", "sms.start", PHONE),
    ]
    saved = mine[-1]["detail"]
    assert "info:email" in saved["off"] and "info:sms" not in saved["off"] and saved["quiet"] == "22:00-06:30"
    assert all(e["allowed"] for e in mine)
    text = cli("audit", "--config", config).stdout
    assert "person:p2  preferences.unsubscribe  p2" in text and f"sms:{PHONE}  sms.stop  {PHONE}" in text
