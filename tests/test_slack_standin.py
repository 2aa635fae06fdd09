"""The Slack stand-in follows the Web API contract, driven by the real AsyncWebClient over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.progress import rate_limit_wait
from bot.standins.slack import SlackStandIn

TOKEN = "xoxb-standin-test"


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    users = {
        f"U{i}": {"id": f"U{i}", "name": f"user{i}", "profile": {"email": f"u{i}@example.com"}}
        for i in range(5)
    }
    async with SlackStandIn(token=TOKEN, usergroups={"S1": ["U1", "U2"]}, users=users) as standin:
        yield standin


def client(slack: SlackStandIn, token: str = TOKEN) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=slack.api_url, retry_handlers=[])


async def test_api_url_ends_in_a_slash_and_auth_test_answers(slack: SlackStandIn) -> None:
    assert slack.api_url.startswith("http://127.0.0.1:") and slack.api_url.endswith("/api/")
    answer = await client(slack).auth_test()
    assert answer["ok"] is True and answer["user_id"] == "UHERALDBOT" and answer["team_id"] == "T0HERALD"


async def test_wrong_or_missing_token(slack: SlackStandIn) -> None:
    with pytest.raises(SlackApiError) as caught:
        await client(slack, "xoxb-wrong").auth_test()
    assert caught.value.response["error"] == "invalid_auth"
    async with aiohttp.ClientSession() as http, http.post(f"{slack.api_url}auth.test") as response:
        assert (await response.json()) == {"ok": False, "error": "not_authed"}


async def test_post_update_ephemeral_and_views(slack: SlackStandIn) -> None:
    web = client(slack)
    posted = await web.chat_postMessage(
        channel="C1", text="hi", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    )
    ts = posted["ts"]
    await web.chat_update(channel="C1", ts=ts, text="bye")
    message = slack.messages[("C1", ts)]
    assert message.text == "bye" and message.history == [{"text": "bye", "blocks": []}]
    with pytest.raises(SlackApiError) as caught:
        await web.chat_update(channel="C1", ts="1.2", text="x")
    assert caught.value.response["error"] == "message_not_found"
    assert (await web.chat_postEphemeral(channel="C1", user="U1", text="psst"))["ok"]
    with pytest.raises(SlackApiError) as caught:
        await web.views_open(trigger_id="", view={"type": "modal"})
    assert caught.value.response["error"] == "invalid_arguments"
    opened = await web.views_open(trigger_id="t", view={"type": "modal", "callback_id": "m"})
    assert opened["view"]["callback_id"] == "m"
    await web.views_publish(user_id="U1", view={"type": "home", "blocks": []})
    assert [call.method for call in slack.calls] == [
        "chat.postMessage",
        "chat.update",
        "chat.update",
        "chat.postEphemeral",
        "views.open",
        "views.open",
        "views.publish",
    ]
    assert slack.calls[0].args["blocks"][0]["type"] == "section"  # JSON arguments arrive decoded


async def test_groups_and_users(slack: SlackStandIn) -> None:
    web = client(slack)
    assert (await web.usergroups_users_list(usergroup="S1"))["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError) as caught:
        await web.usergroups_users_list(usergroup="S404")
    assert caught.value.response["error"] == "no_such_subteam"
    assert (await web.users_info(user="U3"))["user"]["name"] == "user3"
    pages = [page["members"] async for page in await web.users_list(limit=2)]
    assert [len(page) for page in pages] == [2, 2, 1]


async def test_rate_limits_and_errors_on_demand(slack: SlackStandIn) -> None:
    web = client(slack)
    slack.rate_limit("chat.postMessage", times=1, retry_after=7)
    slack.fail("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError) as caught:
        await web.chat_postMessage(channel="C1", text="x")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert rate_limit_wait(caught.value) == 7.0
    with pytest.raises(SlackApiError) as caught:
        await web.chat_postMessage(channel="C1", text="x")
    assert caught.value.response["error"] == "channel_not_found" and rate_limit_wait(caught.value) is None
    assert (await web.chat_postMessage(channel="C1", text="x"))["ok"]
    assert [call.answered for call in slack.calls] == ["ratelimited", "channel_not_found", "ok"]


async def test_response_url_records_posts(slack: SlackStandIn) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(slack.response_url("k1"), json={"text": "hello", "response_type": "ephemeral"}) as r,
    ):
        assert r.status == 200 and await r.text() == "ok"
    assert slack.responses_to("k1") == [{"text": "hello", "response_type": "ephemeral"}]
    await slack.wait_for(lambda: len(slack.responses) == 1, timeout=1)
