"""Slack's live progress message tells a channel outage holding deliveries ("held: the email channel
is down (auth: ...)") and ends with the people reached against the reach target: a signed ``/announce``
over HTTP to ``HeraldServer``, the real AsyncWebClient talking to the Slack stand-in, email to the SMTP
stand-in refusing Herald's credentials until it is fixed. Both databases."""

from __future__ import annotations

import json
from pathlib import Path

from slack_signing import running_herald
from test_slack_flows import eventually, press_send, preview_typed, progress_final


async def test_progress_shows_the_outage_holding_email_then_the_people_reached(
    db_url: str, tmp_path: Path
) -> None:
    async with running_herald(db_url, tmp_path) as h:
        h.smtp.fail("mail", "535 5.7.8 Authentication credentials invalid")  # every MAIL, until cleared
        preview = await preview_typed(h, "maintenance to site:berlin via email: Held | x", "cmd")
        await press_send(h, preview["blocks"])
        await h.slack.wait_for(lambda: bool(h.slack.messages))
        (message,) = h.slack.messages.values()
        await eventually(lambda: "held: the email channel is down (auth" in json.dumps(message.blocks))
        held = json.dumps(message.blocks)
        assert "535 5.7.8" in held and "Finished" not in held
        assert h.smtp.messages == []

        h.smtp.clear()  # the credentials are fixed: the next probe gets through
        await eventually(lambda: progress_final(h), timeout=45)
        final = json.dumps(message.blocks, ensure_ascii=False)
        assert "held:" not in final
        assert ":white_check_mark: met · reached 2 of 2 people (100%, target 99%)" in final
        assert sorted(m.rcpt_tos[0] for m in h.smtp.messages) == ["alice@example.com", "bob@example.com"]
