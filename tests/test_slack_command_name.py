"""``[slack] command``: the slash command under another name, driven by signed requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from slack_signing import ANNOUNCER, CHANNEL, running_herald
from test_slack_flows import button, texts

from bot.config import ConfigError, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"


async def test_a_renamed_command_is_answered_and_names_itself(db_url: str, tmp_path: Path) -> None:
    async with running_herald(db_url, tmp_path, slack_extra='command = "/notify"\n') as h:
        helped = await h.signed.command("help", ANNOUNCER, CHANNEL, h.response_url("help"), command="/notify")
        assert helped.status_code == 200
        shown = helped.json()["text"] + texts(helped.json()["blocks"])
        assert "usage: /notify &lt;severity&gt;" in shown and "`/notify list`" in shown
        assert "/announce" not in shown

        bad = await h.signed.command(
            "loud to everyone via email: x", ANNOUNCER, CHANNEL, "", command="/notify"
        )
        assert "unknown severity 'loud'" in bad.json()["text"] and "usage: /notify " in bad.json()["text"]

        typed = "info to site:paris via email: Hello | Paris"
        await h.signed.command(typed, ANNOUNCER, CHANNEL, h.response_url("cmd"), command="/notify")
        (preview,) = await h.responses("cmd")
        assert button(preview["blocks"], "announce_send")  # the same preview as /announce gives

        # The old name is no longer Herald's: Bolt has no listener for it and nothing is answered.
        old = await h.signed.command("help", ANNOUNCER, CHANNEL, h.response_url("old"))
        assert old.status_code == 404
        assert "usage" not in old.text.lower()

        opened = await h.signed.event(
            {"type": "app_home_opened", "user": ANNOUNCER, "channel": "D1", "tab": "home"}
        )
        assert opened.status_code == 200
        await h.slack.wait_for(lambda: bool(h.slack.calls_to("views.publish")))
        home = texts(h.slack.calls_to("views.publish")[0].args["view"]["blocks"])
        assert "Type `/notify` in any channel" in home


def test_the_default_is_announce_and_a_bad_name_is_refused_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(EXAMPLE).slack.command == "/announce"
    for bad in ("announce", "/Announce", "/two words", "/" + "x" * 32, ""):
        monkeypatch.setenv("HERALD_SLACK__COMMAND", bad)
        with pytest.raises(ConfigError) as caught:
            load_settings(EXAMPLE)
        assert "slack.command" in str(caught.value)
    monkeypatch.setenv("HERALD_SLACK__COMMAND", "/it-notify")
    assert load_settings(EXAMPLE).slack.command == "/it-notify"
