"""Receipts by default: Twilio status callbacks are asked for when ``server.public_url`` is https (Twilio
can reach it), unless ``twilio.status_callbacks`` says otherwise; seen at the Twilio stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Peers
from test_announce_cli import setup
from test_recipients_web import announce_json


@pytest.mark.parametrize(
    ("server", "callbacks", "expected"),
    [
        ('public_url = "https://herald.example.com"\n', "", "https://herald.example.com/hooks/twilio/status"),
        ('public_url = "http://herald.example.com"\n', "", None),
        ('public_url = "https://herald.example.com"\n', "status_callbacks = false\n", None),
        (
            'public_url = "http://10.0.0.5:8080"\n',
            "status_callbacks = true\n",
            "http://10.0.0.5:8080/hooks/twilio/status",
        ),
    ],
)
def test_status_callbacks_default_on_for_https(  # type: ignore[no-untyped-def]
    cli, peers: Peers, db_url: str, tmp_path: Path, server: str, callbacks: str, expected: str | None
) -> None:
    config = setup(cli, peers, db_url, tmp_path, people=4, extra=f"[server]\n{server}")
    if callbacks:
        path = Path(config)
        path.write_text(path.read_text().replace("[twilio]\n", f"[twilio]\n{callbacks}", 1))
    report = announce_json(cli, config, "everyone", "sms", "info", "Receipts")
    assert report["channels"]["sms"]["sent"] == len(peers.twilio.messages) > 0
    assert {message.status_callback for message in peers.twilio.messages} == {expected}
