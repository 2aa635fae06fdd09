"""Socket Mode: with ``slack.app_token`` and no signing secret, Slack reaches Herald over a WebSocket
the app opens (the stand-in plays Slack's side); /slack/events is off, health and metrics stay up."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from slack_signing import ANNOUNCER, CHANNEL, block_action, command_body, running_herald
from test_slack_flows import button, eventually, progress_final


async def test_announce_over_socket_mode(db_url: str, tmp_path: Path) -> None:
    async with running_herald(db_url, tmp_path, socket_mode=True) as h:
        assert h.server.slack_mode == "Socket Mode"
        await h.slack.wait_for(lambda: h.slack.socket_connections == 1)
        assert [call.method for call in h.slack.calls][:1] == ["apps.connections.open"]
        assert (await h.http.post(f"{h.server.url}/slack/events", content=b"x")).status_code == 404
        assert (await h.http.get(f"{h.server.url}/healthz")).status_code == 200

        text = "maintenance to site:berlin via email: Patch | Tonight"
        command = dict(parse_qsl(command_body(text, ANNOUNCER, CHANNEL, h.response_url("cmd"))))
        envelope = await h.slack.send_envelope("slash_commands", command)
        await h.slack.wait_for(lambda: envelope in h.slack.acks)
        assert h.slack.acks[envelope] == {}  # acked at once, empty
        preview = (await h.responses("cmd"))[0]
        assert "*4* people" in str(preview["blocks"])

        helped = await h.slack.send_envelope(
            "slash_commands", dict(parse_qsl(command_body("help", ANNOUNCER, CHANNEL, h.response_url("h"))))
        )
        await h.slack.wait_for(lambda: helped in h.slack.acks)
        assert "Usage" in str(h.slack.acks[helped]["blocks"])

        send = button(preview["blocks"], "announce_send")
        action = block_action("announce_send", send["value"], ANNOUNCER, CHANNEL, h.response_url("s"))
        clicked = await h.slack.send_envelope("interactive", action)
        await h.slack.wait_for(lambda: clicked in h.slack.acks)
        await eventually(lambda: progress_final(h))
        assert len(h.smtp.messages) == 2
