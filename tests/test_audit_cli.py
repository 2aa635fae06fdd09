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
