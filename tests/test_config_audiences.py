"""``herald config check`` warns about every route audience and escalation tier that selects nobody in
the directory (issue 14 item 5), keeps its exit code, and never creates a database to find out.
Through the CLI, both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect

from bot.store import normalise_url

ROUTES = """
[[routes]]
match = { team = "net" }
audience = "group:netops"
[[routes]]
match = { team = "db" }
audience = "group:dba"
[[routes]]
match_re = { service = "pay.*" }
audience = "dept:nowhere"
[[routes]]
audience = "group:oncall"
[sla.critical]
deliver_within = "2m"
ack_within = "10m"
escalate = ["group:dba", "group:managers"]
"""


def _config(tmp_path: Path, db_url: str) -> str:
    config = tmp_path / "herald.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n' + ROUTES, encoding="utf-8")
    return str(config)


def _import(cli: Any, tmp_path: Path, config: str) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,department,groups,active\n"
        "alice,Alice,alice@example.com,IT,oncall,true\n"
        "bob,Bob,bob@example.com,IT,dba,true\n",
        encoding="utf-8",
    )
    imported = cli("directory", "import", str(people), "--config", config)
    assert imported.exit_code == 0, imported.stderr


def test_config_check_warns_about_audiences_that_select_nobody(cli: Any, db_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path, db_url)
    _import(cli, tmp_path, config)
    checked = cli("config", "check", "--config", config)
    assert checked.exit_code == 0, checked.stderr  # warnings never change the exit code
    warnings = [line for line in checked.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: routes[0] (match team=net): audience 'group:netops' selects nobody in the directory",
        "warning: routes[2] (match service=~pay.*): audience 'dept:nowhere' selects nobody in the directory",
        "warning: [sla.critical] escalate[1]: audience 'group:managers' selects nobody in the directory",
    ]
    assert "ok: " in checked.stdout


def test_an_inactive_person_does_not_count(cli: Any, db_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path, db_url)
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,groups,active\n"
        "alice,Alice,alice@example.com,oncall,true\n"
        "carl,Carl,carl@example.com,netops;dba;managers,false\n",
        encoding="utf-8",
    )
    assert cli("directory", "import", str(people), "--config", config).exit_code == 0
    checked = cli("config", "check", "--config", config)
    assert checked.exit_code == 0
    assert "routes[1] (match team=db): audience 'group:dba' selects nobody" in checked.stderr
    assert "[sla.critical] escalate[0]: audience 'group:dba' selects nobody" in checked.stderr
    assert "audience 'group:oncall'" not in checked.stderr


def test_config_check_creates_no_database_to_check_audiences(cli: Any, db_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path, db_url)
    checked = cli("config", "check", "--config", config)
    assert checked.exit_code == 0, checked.stderr
    assert "warning:" not in checked.stderr
    assert "note: route and escalation audiences not checked: " in checked.stdout
    if db_url.startswith("sqlite"):
        assert "does not exist" in checked.stdout
        assert not (tmp_path / "herald.db").exists()
        return
    assert "no schema yet (run 'herald db upgrade')" in checked.stdout
    engine = create_engine(normalise_url(db_url))
    try:
        assert inspect(engine).get_table_names() == []  # no table was created
    finally:
        engine.dispose()


def test_config_check_without_routes_does_not_touch_the_database(cli: Any, tmp_path: Path) -> None:
    config = tmp_path / "herald.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x" / "h.db"}"\n', encoding="utf-8")
    checked = cli("config", "check", "--config", str(config))
    assert checked.exit_code == 0
    assert "audiences" not in checked.stdout + checked.stderr
    assert not (tmp_path / "x").exists()
