"""Each command imports only what it uses: `herald announce --wait` of an email never loads the Slack,
LDAP, IMAP, Twilio or web-server libraries, and `herald --help` not even the engine.

Every `herald` command starts a new interpreter, and what it imports is most of a short command's
wall time on a loaded machine (bench/README.md, "Start-up and the ends of the command"). These tests
run the real console entry point in a subprocess and read which modules it ended with; they fail
when a module-level import drags an integration back into a command that does not use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import Peers

# Run the console script's `main` and, once the command is over, write the modules it imported.
ENTRY = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["HERALD_MODULES_OUT"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "herald"
from bot.cli.app import main
main()
"""

# Integrations an email announcement has no use for (module name prefixes).
NOT_FOR_EMAIL = (
    "slack_bolt",
    "slack_sdk",
    "ldap3",
    "imapclient",
    "flufl",
    "twilio",
    "aiohttp",
    "httpx",
    "requests",
    "uvicorn",
    "starlette",
    "apscheduler",
    "prometheus_client",
    "phonenumbers",
    "email_validator",
    "rich",
    "alembic",  # the database is at the migrations' heads: one query tells (bot.store.is_current)
    "bot.server",
    "bot.web",
    "bot.slack.app",
    "bot.sync",
    "bot.cli.serving",
)
# Besides those, `herald --help` builds the command line only.
NOT_FOR_HELP = (
    "aiosmtplib",
    "jinja2",
    "bot.service",
    "bot.engine.dispatcher",
    "bot.alerts.lifecycle",
    "channels.email",
)


def imported_by(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "HERALD_MODULES_OUT": str(out)}
    env.pop("HERALD_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done, json.loads(out.read_text(encoding="utf-8"))


def loaded(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [name for name in modules if any(name == p or name.startswith(f"{p}.") for p in prefixes)]


def test_announce_wait_of_an_email_imports_no_other_integration(
    cli, peers: Peers, db_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    config.write_text(  # email only: no Twilio account, no Slack token
        f'[database]\nurl = "{db_url}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {peers.smtp.port}\nsecurity = "none"\n'
        'from_address = "Herald <herald@example.com>"\nrate_per_second = 0\n[quiet_hours]\nkinds = []\n',
        encoding="utf-8",
    )
    people = tmp_path / "people.csv"
    people.write_text("id,name,email\np1,Ada,ada@example.com\np2,Bo,bo@example.com\n", encoding="utf-8")
    assert cli("directory", "import", str(people), "--config", str(config)).exit_code == 0
    done, modules = imported_by(
        tmp_path,
        *("announce", "--config", str(config), "--yes", "--wait", "--json", "--audience", "everyone"),
        *("--channels", "email", "--title", "Patch Tuesday", "--body", "Servers reboot at 22:00."),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["channels"]["email"]["sent"] == 2
    assert "channels.email" in modules and "bot.engine.dispatcher" in modules  # it did dispatch
    assert loaded(modules, NOT_FOR_EMAIL) == []
    assert loaded(modules, ("bot.render",)) == []  # --json prints the status as it is
    if db_url.startswith("sqlite"):
        assert loaded(modules, ("psycopg",)) == []  # the PostgreSQL driver, for SQLite


def test_python_m_bot_runs_its_command_with_the_collector_on(tmp_path: Path) -> None:
    """``python -m bot`` imports with the garbage collector off (bot/__main__.py); it must be back on
    for the command itself (a long ``serve`` would otherwise never free a reference cycle)."""
    out = tmp_path / "gc.json"
    probe = (
        "import atexit, gc, json, runpy, sys\n"
        "atexit.register(lambda: open(sys.argv.pop(), 'w').write(json.dumps(gc.isenabled())))\n"
        "sys.argv[1:1] = ['--help']\n"
        "runpy.run_module('bot', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "announce" in done.stdout
    assert json.loads(out.read_text(encoding="utf-8")) is True


def test_help_imports_neither_the_engine_nor_an_integration(tmp_path: Path) -> None:
    done, modules = imported_by(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert "announce" in done.stdout
    assert loaded(modules, tuple(p for p in NOT_FOR_EMAIL if p != "rich") + NOT_FOR_HELP) == []
