"""The ``slack`` channel: one direct message per person through the Slack stand-in, driven by
``herald announce --channels slack --wait --json`` as a user runs it, on both databases.

Covers: one DM each (``conversations.open`` then ``chat.postMessage``), people without a Slack user
unreachable with the reason, a 429 with ``Retry-After`` slowing the channel with nothing lost,
``user_not_found`` failing that delivery only, a refused bot token holding the channel (deferred
``channel_down``), the preview and ``directory show``; and the adapter's DM cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Peers

from bot.app import Herald
from bot.config import load_settings
from bot.metrics import HeraldMetrics
from bot.slack.dm_blocks import preferences_block, render_dm
from bot.standins.slack import SlackStandIn
from channels.base import ChannelDownError, Notice, PermanentError, Recipient, TransientError
from channels.slack import SlackDmChannel, SlackDmSettings

TOKEN = "xoxb-dm-test"
PEOPLE = 8
GHOST = "U0GHOST99"  # a slack_user_id the workspace does not know


def slack_id(index: int) -> str:
    return f"U0PERSON{index:02d}"


@pytest.fixture
def slack(peers: Peers) -> Iterator[SlackStandIn]:
    """The Slack stand-in on the peers' loop; it knows everyone in the directory but the ghost."""
    users = {slack_id(i): {"id": slack_id(i), "name": f"p{i}"} for i in range(PEOPLE)}
    standin = SlackStandIn(token=TOKEN, users=users)
    peers.call(standin.start())
    try:
        yield standin
    finally:
        peers.call(standin.close())


def write_people(path: Path, ghost: int | None = None) -> Path:
    """Every 4th person has no Slack user; person ``ghost`` has one Slack does not know."""
    lines = ["id,name,email,phone,slack_user_id,department"]
    for i in range(PEOPLE):
        user = "" if i % 4 == 3 else (GHOST if i == ghost else slack_id(i))
        lines.append(f"p{i},Person {i},p{i}@example.com,+4915112345{i:03d},{user},Engineering")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def setup(cli: Any, peers: Peers, slack: SlackStandIn, db_url: str, tmp_path: Path, **opts: Any) -> str:
    token = opts.get("token", TOKEN)
    config = tmp_path / "herald.toml"
    config.write_text(
        peers.config(
            db_url,
            f'[slack]\nbot_token = "{token}"\nsigning_secret = "s3cret"\napi_url = "{slack.api_url}"\n'
            "[slack_dm]\nrate_per_second = 0\n"
            '[sla.maintenance]\ndeliver_within = "3s"\n[dispatcher]\npoll_interval = "0.05s"\n',
        ),
        encoding="utf-8",
    )
    people = write_people(tmp_path / "people.csv", opts.get("ghost"))
    imported = cli("directory", "import", str(people), "--config", str(config))
    assert imported.exit_code == 0, imported.stderr
    return str(config)


def announce(cli: Any, config: str, channels: str, severity: str = "critical") -> Any:
    return cli(
        "announce", "--config", config, "--yes", "--wait", "--json", "--audience", "everyone",
        "--channels", channels, "--severity", severity, "--title", "Core <!channel> & switch",
        "--body", "Down *now*; see <https://evil.example|this>",
    )  # fmt: skip


def reachable_ids() -> list[str]:
    return [slack_id(i) for i in range(PEOPLE) if i % 4 != 3]


def test_each_person_with_a_slack_user_gets_one_dm(
    cli: Any, peers: Peers, slack: SlackStandIn, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, slack, db_url, tmp_path)
    result = announce(cli, config, "slack")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["channels"]["slack"]["sent"] == 6
    assert report["channels"]["slack"]["suppressed"] == 2  # p3, p7: no Slack user
    assert report["people"] == {**report["people"], "reached": 6, "unreachable": 2}
    opened = [call.args["users"] for call in slack.calls_to("conversations.open")]
    assert sorted(opened) == reachable_ids()  # once per user
    for user in reachable_ids():
        [dm] = slack.dms_to(user)
        assert dm.channel == slack.dm_channels[user] and dm.channel.startswith("D")
        assert dm.text.startswith("[CRITICAL] Core &lt;!channel&gt; &amp; switch")
        header, body, about = dm.blocks
        assert header["text"]["text"] == "[CRITICAL] Core &lt;!channel&gt; &amp; switch"
        assert body["text"]["text"] == "Down *now*; see &lt;https://evil.example|this&gt;"
        assert report["id"] in about["elements"][0]["text"]
    posts = slack.calls_to("chat.postMessage")
    assert {call.args["metadata"]["event_payload"]["notification_id"] for call in posts} == {report["id"]}


def test_slack_and_email_together_and_the_preview(
    cli: Any, peers: Peers, slack: SlackStandIn, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, slack, db_url, tmp_path, ghost=5)
    shown = cli("directory", "show", "everyone", "--json", "--config", config)
    reach = json.loads(shown.stdout)
    assert reach["reachable"]["slack"] == 6 and reach["unreachable"]["no_slack_user"] == 2
    preview = cli(
        "announce", "--config", config, "--audience", "everyone", "--channels", "slack,email",
        "--title", "T", "--severity", "maintenance",
    )  # fmt: skip
    assert "slack: 6 reachable; unreachable: no_slack_user 2" in preview.stdout
    result = announce(cli, config, "slack,email", severity="maintenance")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # The ghost's DM fails permanently; their email (and everybody else's) goes out.
    assert report["channels"]["slack"] == {**report["channels"]["slack"], "sent": 5, "failed": 1}
    assert report["channels"]["email"]["sent"] == PEOPLE
    assert len(peers.smtp.messages) == PEOPLE
    assert [c.answered for c in slack.calls_to("conversations.open") if c.args["users"] == GHOST] == [
        "user_not_found"
    ]
    assert report["people"]["reached"] == PEOPLE  # everyone had at least one channel
    listed = cli("suppressions", "list", "--json", "--config", config)
    assert GHOST not in listed.stdout and "p5@example.com" not in listed.stdout
    # Maintenance is not mandatory: each DM carries the person's preferences link.
    [dm] = slack.dms_to(slack_id(0))
    assert dm.blocks[-1]["block_id"] == "preferences" and "/u/" in dm.blocks[-1]["elements"][0]["text"]


def test_a_429_slows_the_channel_and_loses_nothing(
    cli: Any, peers: Peers, slack: SlackStandIn, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, slack, db_url, tmp_path)
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    result = announce(cli, config, "slack")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["channels"]["slack"]["sent"] == 6
    for user in reachable_ids():
        assert len(slack.dms_to(user)) == 1  # the rate-limited one was sent again, once
    posts = slack.calls_to("chat.postMessage")
    limited = next(i for i, call in enumerate(posts) if call.answered == "ratelimited")
    # Back-pressure: no post started within Retry-After of the 429 (those in flight may answer).
    later = [call.at for call in posts[limited + 1 :]]
    in_flight = 4  # [slack_dm] max_concurrency
    assert len(later) == 6 and min(later[in_flight - 1 :]) >= posts[limited].at + 1.0 - 0.05


def test_a_refused_bot_token_holds_the_channel(
    cli: Any, peers: Peers, slack: SlackStandIn, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, slack, db_url, tmp_path, token="xoxb-revoked")
    result = announce(cli, config, "slack", severity="maintenance")
    assert result.exit_code == 1
    assert "slack channel is down (auth" in result.stderr and "xoxb-revoked" not in result.stderr
    report = json.loads(result.stdout)
    slack_counts = report["channels"]["slack"]
    assert slack_counts.get("failed", 0) == 0 and "slack" in report["channels_down"]
    assert slack_counts.get("deferred", 0) + slack_counts.get("sending", 0) == 6
    assert slack.dm_channels == {} and slack.messages == {}
    assert {call.answered for call in slack.calls} == {"invalid_auth"}
    herald = Herald.build(load_settings(Path(config)))
    try:
        metrics = HeraldMetrics(herald.store, herald.clock, herald.configured_channels()).render().decode()
    finally:
        herald.store.dispose()
    assert 'herald_channel_up{channel="slack"} 0.0' in metrics
    assert 'herald_channel_up{channel="email"} 1.0' in metrics


async def test_the_adapter_opens_each_dm_once_and_classifies_answers() -> None:
    users = {u: {"id": u} for u in ("U01", "U02", "U03")} | {"UOLD": {"id": "UOLD", "deleted": True}}
    async with SlackStandIn(token=TOKEN, users=users) as slack:
        channel = SlackDmChannel(
            SlackDmSettings(bot_token=TOKEN, api_url=slack.api_url, dm_cache=2), render_dm, preferences_block
        )
        try:
            first = channel.prepare(Notice("n1", "info", "Hello", "World"))
            second = channel.prepare(Notice("n2", "info", "Again", ""))
            for prepared in (first, second):
                for user in ("U01", "U02"):
                    receipt = await channel.send(prepared, Recipient(user, message_key="k"))
                    assert receipt.provider_id.startswith(slack.dm_channels[user] + "/")
            assert len(slack.calls_to("conversations.open")) == 2  # cached per user
            await channel.send(first, Recipient("U03"))  # the cache holds two: U01 drops out
            await channel.send(first, Recipient("U01"))
            assert len(slack.calls_to("conversations.open")) == 4 and len(channel.dm_channels) == 2
            for user, reason in (("UNKNOWN", "invalid_address"), ("UOLD", "rejected_recipient")):
                with pytest.raises(PermanentError) as raised:
                    await channel.send(first, Recipient(user))
                assert raised.value.reason == reason and not raised.value.suppress
            slack.rate_limit("conversations.open", retry_after=7)
            with pytest.raises(TransientError) as limited:
                await channel.send(first, Recipient("UNEW"))
            assert limited.value.reason == "rate_limited" and limited.value.retry_after == 7.0
            slack.fail("chat.postMessage", "account_inactive")
            with pytest.raises(ChannelDownError):
                await channel.send(first, Recipient("U01"))
        finally:
            await channel.aclose()


def test_the_dm_body_follows_the_slack_template_of_each_persons_language(
    cli: Any, peers: Peers, slack: SlackStandIn, db_url: str, tmp_path: Path
) -> None:
    config = setup(cli, peers, slack, db_url, tmp_path)
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "critical.slack.j2").write_text("Ops <!here> says: {{ body }}\n", encoding="utf-8")
    (folder / "critical.slack.de.j2").write_text("Betrieb meldet: {{ body }}\n", encoding="utf-8")
    # one phrase for German readers of this kind; the header keeps the built-in German `label`
    (folder / "critical.phrases.de.j2").write_text("{% block dm_about %}Betrieb{% endblock %}\n", "utf-8")
    Path(config).write_text(Path(config).read_text() + f'[templates]\ndir = "{folder}"\n', encoding="utf-8")
    people = write_people(tmp_path / "people.csv")
    lines = people.read_text().splitlines()
    languages = ["language", "de", "de-AT", "en"] + [""] * (PEOPLE - 3)
    people.write_text("\n".join(f"{line},{lang}" for line, lang in zip(lines, languages, strict=True)) + "\n")
    assert cli("directory", "import", str(people), "--config", config).exit_code == 0
    result = announce(cli, config, "slack")
    assert result.exit_code == 0, result.stderr
    evil = "Down *now*; see &lt;https://evil.example|this&gt;"
    for index, expected in ((0, f"Betrieb meldet: {evil}"), (1, f"Betrieb meldet: {evil}")):
        [dm] = slack.dms_to(slack_id(index))
        assert dm.blocks[1]["text"]["text"] == expected
        assert dm.text == f"[KRITISCH] Core &lt;!channel&gt; &amp; switch: {expected}"
        assert dm.blocks[0]["text"]["text"] == "[KRITISCH] Core &lt;!channel&gt; &amp; switch"
        assert dm.blocks[2]["elements"][0]["text"].startswith(":rotating_light: *Kritisch* · Betrieb `")
    [dm] = slack.dms_to(slack_id(2))
    assert dm.blocks[1]["text"]["text"] == f"Ops &lt;!here&gt; says: {evil}"  # escaped like the body
    assert dm.text == f"[CRITICAL] Core &lt;!channel&gt; &amp; switch: Ops &lt;!here&gt; says: {evil}"
    about = dm.blocks[2]["elements"][0]["text"]
    assert about.startswith(":rotating_light: *critical* · Herald notification `")
    assert [b["block_id"] for b in dm.blocks] == ["title", "body", "about"]

    window = ["--severity", "maintenance", "--window", "2099-01-01T22:00..2099-01-01T23:00"]
    base = ["announce", "--config", config, "--yes", "--wait", "--json", "--audience", "everyone"]
    done = cli(*base, "--channels", "slack", "--title", "Patch", "--body", "Reboots", *window)
    assert done.exit_code == 0, done.stderr
    german = slack.dms_to(slack_id(1))[-1].blocks[1]["text"]["text"]
    assert german == "Zeitfenster: 2099-01-01 22:00 bis 2099-01-01 23:00 UTC\n\nReboots"
    english = slack.dms_to(slack_id(4))[-1].blocks[1]["text"]["text"]
    assert english == "Window: 2099-01-01 22:00 to 2099-01-01 23:00 UTC\n\nReboots"
