"""The preferences page in a real browser: headless Chromium (Debian's ``chromium`` package) against
``herald serve``'s web app on 127.0.0.1. A screenshot of the page as a phone shows it, then a person's
clicks (boxes, quiet hours, Save) driven over the DevTools protocol, and the database afterwards.
Screenshots are kept in ``artifacts/`` at the top of the repository."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
from conftest import Peers, require_program
from test_recipients_web import SERVER_TOML, WebServer, rows

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=420,900",
]


def serve_with_quiet_hours(cli, peers: Peers, db_url: str, tmp_path: Path) -> WebServer:  # type: ignore[no-untyped-def]
    config = tmp_path / "herald.toml"
    # The company default quiet hours (22:00-07:00 for maintenance and info) stay on here.
    config.write_text(peers.config(db_url, SERVER_TOML).replace("[quiet_hours]\nkinds = []\n", ""), "utf-8")
    people = tmp_path / "people.csv"
    people.write_text(
        "id,name,email,phone,timezone\nada,Ada Lovelace,ada@example.com,+4915112345000,Europe/London\n",
        encoding="utf-8",
    )
    assert cli("directory", "import", str(people), "--config", str(config)).exit_code == 0
    return WebServer(str(config))


def keep(path: Path, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(path, ARTIFACTS / name)


def test_screenshot_of_the_page_on_a_phone(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chromium = require_program("chromium")
    server = serve_with_quiet_hours(cli, peers, db_url, tmp_path)
    try:
        shot = tmp_path / "page.png"
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'chromium'}",
                f"--screenshot={shot}",
                server.url + server.page_path("ada"),
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 5000  # a rendered page, not a blank one
        keep(shot, f"preferences-page-{db_url.split(':')[0]}.png")
        assert rows(db_url, "SELECT count(*) FROM preference")[0][0] == 0  # the browser's GET changed nothing
    finally:
        server.close()


class DevTools:
    """The smallest DevTools-protocol client: one page target over a WebSocket (aiohttp)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        await self.socket.send_json({"id": message_id, "method": method, "params": params})
        while True:
            message = json.loads((await asyncio.wait_for(self.socket.receive(), 30)).data)
            if message.get("id") == message_id:
                assert "error" not in message, message
                return dict(message.get("result", {}))
            self.events.append(message)

    async def wait_for(self, event: str) -> None:
        while True:
            if any(e.get("method") == event for e in self.events):
                self.events = [e for e in self.events if e.get("method") != event]
                return
            message = json.loads((await asyncio.wait_for(self.socket.receive(), 30)).data)
            self.events.append(message)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


def devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().splitlines()[0])
        assert process.poll() is None, "chromium exited early"
        time.sleep(0.05)
    raise AssertionError("chromium did not open its DevTools port")


async def click_through(port: int, url: str, tmp_path: Path) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = await answer.json()
        page = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            tools = DevTools(socket)
            await tools.send("Page.enable")
            await tools.send("Page.navigate", url=url)
            await tools.wait_for("Page.loadEventFired")
            # What a person does: untick two boxes, choose their own quiet hours, press Save.
            await tools.evaluate("document.getElementById('pref-maintenance-email').click()")
            await tools.evaluate("document.getElementById('pref-info-sms').click()")
            await tools.evaluate("document.getElementById('quiet-custom').click()")
            await tools.evaluate("document.getElementById('quiet-start').value = '21:30'")
            await tools.evaluate("document.getElementById('quiet-end').value = '06:45'")
            await tools.evaluate("document.querySelector('button[type=submit]').scrollIntoView()")
            rect = json.loads(
                await tools.evaluate(
                    "JSON.stringify(document.querySelector('button[type=submit]').getBoundingClientRect())"
                )
            )
            x, y = rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2
            for kind in ("mousePressed", "mouseReleased"):
                await tools.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
            await tools.wait_for("Page.loadEventFired")
            await tools.screenshot(tmp_path / "saved.png")
            return str(await tools.evaluate("document.body.innerText"))


def test_a_person_clicks_save_in_chromium(cli, peers: Peers, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chromium = require_program("chromium")
    server = serve_with_quiet_hours(cli, peers, db_url, tmp_path)
    profile = tmp_path / "chromium"
    process = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = devtools_port(profile, process)
        text = asyncio.run(click_through(port, server.url + server.page_path("ada"), tmp_path))
        keep(tmp_path / "saved.png", f"preferences-saved-{db_url.split(':')[0]}.png")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        server.close()
    assert "Your preferences are saved" in text
    prefs = {
        (kind, channel): bool(enabled)
        for kind, channel, enabled in rows(db_url, "SELECT kind, channel, enabled FROM preference")
    }
    assert prefs == {
        ("maintenance", "email"): False,
        ("maintenance", "sms"): True,
        ("info", "email"): True,
        ("info", "sms"): False,
    }
    assert rows(db_url, "SELECT quiet_mode, quiet_start, quiet_end FROM person_settings") == [
        ("custom", "21:30", "06:45")
    ]
