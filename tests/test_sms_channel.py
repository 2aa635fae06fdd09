"""SmsChannel with the official twilio client against the Twilio stand-in, over loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from bot.standins.twilio import Fault, TwilioStandIn
from channels.base import (
    Channel,
    ChannelDownError,
    DeliveryError,
    Notice,
    PermanentError,
    Recipient,
    TransientError,
    UncertainError,
)
from channels.gsm import Encoding, count_segments
from channels.sms import OPT_OUT_HINT, PreparedSms, SmsChannel, SmsSettings, render_sms
from channels.templating import Templates

SID = "AC" + "c" * 32
TOKEN = "channel-token"
FROM = "+15005550006"
SERVICE = "MG" + "d" * 32
TO = "+4915112345678"
NOTICE = Notice("n-1", "maintenance", "Patch Tuesday", "Servers reboot at 22:00 CET.", mandatory=False)
ALERT = Notice("n-2", "critical", "Core switch down", "Berlin office offline.", mandatory=True)


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioStandIn]:
    async with TwilioStandIn(account_sid=SID, auth_token=TOKEN) as standin:
        yield standin


@pytest.fixture
def settings(twilio: TwilioStandIn) -> SmsSettings:
    return SmsSettings(SID, TOKEN, from_number=FROM, api_url=twilio.url, timeout=2.0)


@pytest.fixture
async def sms(settings: SmsSettings) -> AsyncIterator[SmsChannel]:
    async with SmsChannel(settings) as channel:
        yield channel


def test_is_a_channel(settings: SmsSettings) -> None:
    channel: Channel = SmsChannel(settings)  # mypy checks the protocol; the runtime checks the name
    assert channel.name == "sms"


async def test_send_with_from_number(sms: SmsChannel, twilio: TwilioStandIn) -> None:
    prepared = sms.prepare(NOTICE)
    receipt = await sms.send(prepared, Recipient(TO))
    assert receipt.provider_id.startswith("SM") and len(receipt.provider_id) == 34
    assert receipt.detail == "queued"
    [message] = twilio.messages
    assert (message.sid, message.to, message.from_, message.body) == (
        receipt.provider_id,
        TO,
        FROM,
        prepared.text,
    )
    assert message.messaging_service_sid is None
    assert message.status_callback is None


async def test_send_with_messaging_service_and_status_callback(
    twilio: TwilioStandIn, settings: SmsSettings
) -> None:
    callback = "https://herald.example/hooks/twilio/status"
    settings = replace(
        settings, from_number=None, messaging_service_sid=SERVICE, status_callback_url=callback
    )
    async with SmsChannel(settings) as sms:
        receipt = await sms.send(sms.prepare(ALERT), Recipient(TO))
    assert receipt.detail == "accepted"
    [message] = twilio.messages
    assert (message.from_, message.messaging_service_sid, message.status_callback) == (
        None,
        SERVICE,
        callback,
    )


@pytest.mark.parametrize("suffix", ["", "/"])
async def test_api_url_with_or_without_trailing_slash(
    twilio: TwilioStandIn, settings: SmsSettings, suffix: str
) -> None:
    async with SmsChannel(replace(settings, api_url=twilio.url + suffix)) as sms:
        await sms.send(sms.prepare(ALERT), Recipient(TO))
    assert len(twilio.messages) == 1


@pytest.mark.parametrize(
    ("fault", "kind", "reason", "suppress", "retry_after"),
    [
        (21610, PermanentError, "opted_out", True, None),
        (21211, PermanentError, "invalid_address", True, None),
        (21614, PermanentError, "invalid_address", True, None),
        (21408, PermanentError, "config", False, None),
        (21612, PermanentError, "rejected_recipient", False, None),
        (20003, ChannelDownError, "auth", None, None),
        (500, TransientError, "server_error", None, None),
        (503, TransientError, "server_error", None, None),
        (502, TransientError, "server_error", None, None),  # plain-text body
        (429, TransientError, "rate_limited", None, 1.0),  # Retry-After reaches the classifier
        (21999, TransientError, "unknown", None, None),
        ("disconnect", UncertainError, "network", None, None),
    ],
)
async def test_failures_through_the_wire(
    sms: SmsChannel,
    twilio: TwilioStandIn,
    fault: Fault,
    kind: type[DeliveryError],
    reason: str,
    suppress: bool | None,
    retry_after: float | None,
) -> None:
    twilio.faults[TO] = fault
    with pytest.raises(DeliveryError) as caught:
        await sms.send(sms.prepare(NOTICE), Recipient(TO))
    error = caught.value
    assert (type(error), error.reason) == (kind, reason)
    if isinstance(error, PermanentError):
        assert error.suppress is suppress
    else:
        assert isinstance(error, TransientError)
        assert error.retry_after == retry_after
    assert twilio.requests == 1  # exactly one attempt: the library does not retry
    assert await sms.send(sms.prepare(NOTICE), Recipient("+4915199999999"))  # the pool survives


async def test_invalid_number_answered_by_twilio(sms: SmsChannel) -> None:
    with pytest.raises(PermanentError) as caught:
        await sms.send(sms.prepare(NOTICE), Recipient("0151 1234567"))
    assert (caught.value.reason, caught.value.suppress) == ("invalid_address", True)
    assert "21211" in caught.value.detail


async def test_timeout_after_sending_is_uncertain(twilio: TwilioStandIn, settings: SmsSettings) -> None:
    twilio.faults[TO] = "timeout"
    async with SmsChannel(replace(settings, timeout=0.3)) as sms:
        with pytest.raises(UncertainError) as caught:
            await sms.send(sms.prepare(ALERT), Recipient(TO))
    assert caught.value.reason == "timeout"
    assert twilio.requests == 1


async def test_rate_limit_of_the_server(settings: SmsSettings) -> None:
    async with (
        TwilioStandIn(account_sid=SID, auth_token=TOKEN, max_rate=1) as twilio,
        SmsChannel(replace(settings, api_url=twilio.url)) as sms,
    ):
        await sms.send(sms.prepare(ALERT), Recipient(TO))
        with pytest.raises(TransientError) as caught:
            await sms.send(sms.prepare(ALERT), Recipient(TO))
    assert (caught.value.reason, caught.value.retry_after) == ("rate_limited", 1.0)


async def test_wrong_token_is_the_channel_down(settings: SmsSettings) -> None:
    async with SmsChannel(replace(settings, auth_token="wrong")) as sms:
        with pytest.raises(ChannelDownError) as caught:
            await sms.send(sms.prepare(ALERT), Recipient(TO))
    assert caught.value.reason == "auth" and "20003" in caught.value.detail


async def test_connection_refused_was_never_sent(settings: SmsSettings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the send: nothing listens there
    async with SmsChannel(replace(settings, api_url=f"http://127.0.0.1:{port}")) as sms:
        with pytest.raises(TransientError) as caught:
            await sms.send(sms.prepare(ALERT), Recipient(TO))
    assert type(caught.value) is ChannelDownError  # not UncertainError: nothing reached Twilio
    assert caught.value.reason == "network"


async def test_max_concurrency_bounds_requests_in_flight(settings: SmsSettings) -> None:
    async with (
        TwilioStandIn(account_sid=SID, auth_token=TOKEN, latency=0.05) as twilio,
        SmsChannel(replace(settings, api_url=twilio.url, max_concurrency=3)) as sms,
    ):
        prepared = sms.prepare(NOTICE)
        receipts = await asyncio.gather(
            *(sms.send(prepared, Recipient(f"+4915100000{i:02d}")) for i in range(12))
        )
    assert len({receipt.provider_id for receipt in receipts}) == 12
    assert twilio.max_in_flight == 3
    assert twilio.requests == 12


async def test_long_text_fits_max_segments_on_the_wire(sms: SmsChannel, twilio: TwilioStandIn) -> None:
    notice = replace(NOTICE, body="Rolling restart of every file server in the Berlin office. " * 20)
    prepared = sms.prepare(notice)
    assert prepared.truncated and prepared.segments == 3 and prepared.encoding is Encoding.GSM7
    await sms.send(prepared, Recipient(TO))
    [message] = twilio.messages
    assert message.num_segments == 3
    assert message.body.endswith("..." + OPT_OUT_HINT)


async def test_close_then_send_opens_a_new_pool(sms: SmsChannel, twilio: TwilioStandIn) -> None:
    await sms.send(sms.prepare(ALERT), Recipient(TO))
    await sms.aclose()
    await sms.aclose()  # idempotent
    await sms.send(sms.prepare(ALERT), Recipient(TO))
    assert len(twilio.messages) == 2


async def test_rejects_what_prepare_did_not_make(sms: SmsChannel) -> None:
    with pytest.raises(TypeError):
        await sms.send("plain text", Recipient(TO))


@pytest.mark.parametrize(
    ("notice", "max_segments", "expected"),
    [
        (ALERT, 3, "[CRITICAL] Core switch down: Berlin office offline."),
        (NOTICE, 3, "[MAINTENANCE] Patch Tuesday: Servers reboot at 22:00 CET.\nReply STOP to opt out."),
        (replace(ALERT, body=""), 1, "[CRITICAL] Core switch down"),
        (
            replace(ALERT, title="  VPN   down ", body="Use  the\n\n  backup\tlink. "),
            1,
            "[CRITICAL] VPN down: Use the\nbackup link.",
        ),
        (
            replace(ALERT, body="It\u2019s \u201cfixed\u201d \u2013 thanks\u2026"),
            1,
            '[CRITICAL] Core switch down: It\'s "fixed" - thanks...',
        ),
    ],
)
def test_render_sms(notice: Notice, max_segments: int, expected: str) -> None:
    prepared = render_sms(notice, max_segments)
    assert prepared == PreparedSms(expected, Encoding.GSM7, 1, truncated=False)


@pytest.mark.parametrize("max_segments", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "body", ["Disk full on fs01. " * 50, "Диск заполнен на fs01. " * 50, "Build 😀 done. " * 60]
)
def test_render_sms_fits_and_keeps_the_hint_only_when_optional(max_segments: int, body: str) -> None:
    for notice in (replace(NOTICE, body=body), replace(ALERT, body=body)):
        prepared = render_sms(notice, max_segments)
        assert prepared.truncated
        assert prepared.segments == count_segments(prepared.text).segments <= max_segments
        assert prepared.text.endswith(OPT_OUT_HINT) is (not notice.mandatory)
        assert ("STOP" in prepared.text) is (not notice.mandatory)


GERMAN_HINTS = "\nAntworten Sie OK zur Bestätigung.\nAntworten Sie STOP zum Abbestellen."


@pytest.mark.parametrize("max_segments", [1, 2, 3])
@pytest.mark.parametrize(
    "body", ["Platte voll auf fs01. " * 40, "Für Größe: ü ö ä ß. " * 40, "Диск fs01. " * 50]
)
def test_german_hints_count_in_the_segments_and_survive_the_cut(max_segments: int, body: str) -> None:
    notice = replace(NOTICE, body=body, language="de", confirm=True)
    prepared = render_sms(notice, max_segments)
    assert prepared.text.startswith("[WARTUNG] Patch Tuesday") and prepared.text.endswith(GERMAN_HINTS)
    cost = count_segments(prepared.text)
    assert (prepared.segments, prepared.encoding) == (cost.segments, cost.encoding)
    assert prepared.truncated and prepared.segments <= max_segments
    # umlauts and ß are GSM-7: the German hints never push a Latin text into UCS-2
    assert prepared.encoding == (Encoding.UCS2 if "Д" in prepared.text else Encoding.GSM7)
    short = render_sms(replace(notice, body="Kurz."), 1)
    assert short == PreparedSms("[WARTUNG] Patch Tuesday: Kurz." + GERMAN_HINTS, Encoding.GSM7, 1, False)


def test_an_operators_hint_is_cleaned_like_the_text(tmp_path: Any) -> None:
    (tmp_path / "default.phrases.j2").write_text(
        "{% block sms_opt_out %}  Text \u201cSTOP\u201d   to\x07 stop.{% endblock %}", encoding="utf-8"
    )
    prepared = render_sms(NOTICE, 1, Templates(tmp_path))
    assert prepared.text.endswith('\nText "STOP" to stop.') and prepared.encoding == Encoding.GSM7


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"from_number": None}, "exactly one"),
        ({"messaging_service_sid": SERVICE}, "exactly one"),
        ({"auth_token": ""}, "required"),
        ({"api_url": "api.twilio.com"}, "api_url"),
        ({"max_segments": 0}, "max_segments"),
        ({"max_segments": 11}, "max_segments"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_settings_are_validated(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmsSettings(**{"account_sid": SID, "auth_token": TOKEN, "from_number": FROM, **changes})


def test_settings_defaults() -> None:
    settings = SmsSettings(SID, TOKEN, messaging_service_sid=SERVICE)
    assert (settings.api_url, settings.max_segments, settings.max_concurrency, settings.timeout) == (
        "https://api.twilio.com",
        3,
        8,
        15.0,
    )
