"""Pure pieces of the recipient controls, as tables: inbound SMS keywords, status-callback ranks,
the preferences form, form bodies (urlencoded and multipart), Twilio signatures."""

from __future__ import annotations

import itertools

import pytest
from twilio.request_validator import RequestValidator

from bot.recipients.preferences import Choices, QuietChoice, parse_choices
from bot.recipients.sms import Command, StatusReport, advance, ledger_state, predecessors, read_inbound
from bot.recipients.web import parse_form, signature_ok


@pytest.mark.parametrize(
    ("body", "command"),
    [
        ("STOP", Command.OPT_OUT),
        ("stop", Command.OPT_OUT),
        ("  Stop!  ", Command.OPT_OUT),
        ("STOPALL", Command.OPT_OUT),
        ("unsubscribe", Command.OPT_OUT),
        ("Cancel", Command.OPT_OUT),
        ("end.", Command.OPT_OUT),
        ("QUIT", Command.OPT_OUT),
        ("START", Command.OPT_IN),
        ("yes", Command.OPT_IN),
        ("Unstop", Command.OPT_IN),
        ("HELP", Command.HELP),
        ("help?", Command.OTHER),
        ("ACK", Command.ACK),
        ("ack n123abc", Command.ACK),
        ("Please stop", Command.OTHER),
        ("stop it", Command.OTHER),
        ("", Command.OTHER),
        ("thanks", Command.OTHER),
    ],
)
def test_read_inbound(body: str, command: Command) -> None:
    assert read_inbound(body) is command


@pytest.mark.parametrize(
    ("current", "reported", "new"),
    [
        ("sent", "sent", None),
        ("sent", "delivered", "delivered"),
        ("sent", "failed", "failed"),
        ("sending", "sent", "sent"),
        ("delivered", "sent", None),
        ("delivered", "delivered", None),
        ("delivered", "failed", None),  # failed overrides sent, not delivered
        ("failed", "delivered", None),  # terminal
        ("failed", "failed", None),
        ("queued", "delivered", "delivered"),
        ("suppressed", "delivered", None),  # not a state a callback can touch
    ],
)
def test_advance(current: str, reported: str, new: str | None) -> None:
    assert advance(current, reported) == new


def test_any_order_of_callbacks_ends_in_the_same_state() -> None:
    for reports in itertools.permutations(["sent", "delivered", "sent", "queued"]):
        state = "sent"
        for reported in reports:
            state = advance(state, reported) or state
        assert state == "delivered"
    for reports in itertools.permutations(["sent", "failed", "sending"]):
        state = "sent"
        for reported in reports:
            state = advance(state, reported) or state
        assert state == "failed"


def test_status_mapping_and_guards() -> None:
    assert ledger_state("undelivered") == "failed" and ledger_state("read") == "delivered"
    assert ledger_state("accepted") == "queued" and ledger_state("receiving") is None
    assert set(predecessors("delivered")) == {"queued", "sending", "sent"}
    assert set(predecessors("failed")) == {"queued", "sending", "sent"}
    assert StatusReport("SM1", "undelivered", "+1", "30005").suppresses
    assert not StatusReport("SM1", "undelivered", "+1", "30007").suppresses
    assert not StatusReport("SM1", "delivered", "+1", "30003").suppresses
    assert not StatusReport("SM1", "undelivered", "+1", "30003").suppresses  # handset off: soft


KINDS, CHANNELS = ("maintenance", "info"), ("email", "sms")


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        ([], Choices(frozenset())),
        (
            [("pref", "info:email"), ("pref", "maintenance:sms"), ("pref", "critical:email"), ("pref", "x")],
            Choices(frozenset({("info", "email"), ("maintenance", "sms")})),
        ),
        ([("quiet", "off")], Choices(frozenset(), QuietChoice("off"))),
        (
            [("quiet", "custom"), ("quiet_start", "21:30"), ("quiet_end", " 06:00 ")],
            Choices(frozenset(), QuietChoice("custom", "21:30", "06:00")),
        ),
    ],
)
def test_parse_choices(form: list[tuple[str, str]], expected: Choices) -> None:
    assert parse_choices(form, KINDS, CHANNELS) == expected


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ([("quiet", "sometimes")], "choose company quiet hours"),
        ([("quiet", "custom")], "need a start and an end"),
        ([("quiet", "custom"), ("quiet_start", "22:00"), ("quiet_end", "7am")], "need a start and an end"),
        ([("quiet", "custom"), ("quiet_start", "22:00"), ("quiet_end", "22:00")], "the same time"),
    ],
)
def test_parse_choices_refuses(form: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_choices(form, KINDS, CHANNELS)


def test_parse_form_bodies() -> None:
    assert parse_form("application/x-www-form-urlencoded", b"List-Unsubscribe=One-Click&a=&a=%C3%A9") == [
        ("List-Unsubscribe", "One-Click"),
        ("a", ""),
        ("a", "é"),
    ]
    multipart = (
        b'--b0undary\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n'
        b'--b0undary\r\nContent-Disposition: form-data; name="f"; filename="x.txt"\r\n\r\nfile\r\n'
        b"--b0undary--\r\n"
    )
    assert parse_form("multipart/form-data; boundary=b0undary", multipart) == [
        ("List-Unsubscribe", "One-Click")
    ]
    assert parse_form("multipart/form-data; boundary=nope", b"garbage") == []


def test_signature_ok_matches_twilios_own_signer() -> None:
    url = "https://herald.example.com/hooks/twilio/inbound"
    params = [("Body", "STOP"), ("From", "+15551230000"), ("To", "+15005550006")]
    signature = RequestValidator("secret").compute_signature(url, dict(params))
    assert signature_ok("secret", url, params, signature, "")
    assert not signature_ok("secret", url, params, "", "")
    assert not signature_ok("other", url, params, signature, "")
    assert not signature_ok("secret", url + "?x=1", params, signature, "")
    sha256 = RequestValidator("secret").compute_signature(url, dict(params), "HMAC_SHA256")
    assert signature_ok("secret", url, params, sha256, "key=k1,algorithm=HMAC_SHA256")
    assert not signature_ok("secret", url, params, sha256, "")
