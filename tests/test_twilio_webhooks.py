"""Twilio's webhooks over real HTTP, signed by twilio's own ``RequestValidator``: inbound STOP/START/
HELP/ACK and status callbacks; then announcements and alerts through the CLI and the Twilio stand-in
show the effect (no SMS after STOP, SMS again after START, 21610 suppressing the number, ACK
acknowledging the alert that paged the number)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TWILIO_TOKEN, Peers
from test_recipients_web import PUBLIC_URL, WebServer, announce_json, deliveries, rows, start_web
from twilio.request_validator import RequestValidator

from bot.config import TwilioSettings

PHONE = "+4915112345002"  # p2, in Engineering
INBOUND = "/hooks/twilio/inbound"
STATUS = "/hooks/twilio/status"
NOTHING_PAGED = "Herald: no open alert waiting for an acknowledgement paged this number."


@pytest.fixture
def twilio_web(cli, peers: Peers, db_url: str, tmp_path: Path) -> Iterator[tuple[str, WebServer]]:  # type: ignore[no-untyped-def]
    config, server = start_web(cli, peers, db_url, tmp_path)
    try:
        yield config, server
    finally:
        server.close()


def post_signed(server: WebServer, path: str, params: dict[str, str], algorithm: str | None = None):  # type: ignore[no-untyped-def]
    """POST as Twilio does: the signature covers the public URL and every parameter."""
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + path, params, algorithm)
    headers = {"X-Twilio-Signature": signature}
    if algorithm:
        headers["X-Twilio-Webhooks-Signature-Settings"] = f"key=webhooks_sharedkey_1,algorithm={algorithm}"
    return server.http.post(path, data=params, headers=headers)


def sms_in(body: str, phone: str = PHONE) -> dict[str, str]:
    return {
        "MessageSid": "SM" + uuid.uuid4().hex,  # each message its own, as Twilio names them
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "NumSegments": "1",
    }


def suppressed_numbers(db_url: str) -> dict[str, str]:
    return dict(rows(db_url, "SELECT address, source FROM suppression WHERE channel = 'sms'"))


def test_unsigned_and_badly_signed_requests_are_refused(
    twilio_web: tuple[str, WebServer], db_url: str
) -> None:
    _, server = twilio_web
    params = sms_in("STOP")
    good = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_URL + INBOUND, params)
    local_url = RequestValidator(TWILIO_TOKEN).compute_signature(server.url + INBOUND, params)
    wrong_key = RequestValidator("another-token").compute_signature(PUBLIC_URL + INBOUND, params)
    for path in (INBOUND, STATUS):
        assert server.http.post(path, data=params).status_code == 403
    for signature, data in (
        (local_url, params),  # signed over the URL Herald listens on, not the public one
        (wrong_key, params),
        (good, {**params, "Body": "START"}),  # a parameter changed after signing
        (good, {**params, "Extra": "1"}),  # a parameter added
    ):
        refused = server.http.post(INBOUND, data=data, headers={"X-Twilio-Signature": signature})
        assert refused.status_code == 403
    assert suppressed_numbers(db_url) == {}
    assert post_signed(server, INBOUND, params).status_code == 200


@pytest.mark.parametrize(
    "body", ["STOP", "stop", " Stop. ", "UNSUBSCRIBE", "cancel", "END", "quit", "StopAll"]
)
def test_opt_out_keywords(twilio_web: tuple[str, WebServer], db_url: str, body: str) -> None:
    _, server = twilio_web
    answer = post_signed(server, INBOUND, sms_in(body))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.text.endswith("<Response/>")
    assert suppressed_numbers(db_url) == {PHONE: "sms-stop"}


def test_stop_then_announcement_sends_no_sms_and_start_restores(
    cli, peers: Peers, twilio_web: tuple[str, WebServer], db_url: str
) -> None:  # type: ignore[no-untyped-def]
    config, server = twilio_web
    assert post_signed(server, INBOUND, sms_in("STOP")).status_code == 200
    for severity in ("info", "critical"):  # STOP is about the number: every kind
        report = announce_json(
            cli, config, "dept:engineering", "email,sms", severity, f"After STOP {severity}"
        )
        assert report["channels"]["sms"]["sent"] == 5
        assert report["channels"]["sms"]["suppressed"] == 1
        assert report["channels"]["sms"]["failed"] == 0
        assert report["channels"]["email"]["sent"] == 6
        assert deliveries(db_url, report["id"])[("p2", "sms")] == ("suppressed", "suppressed")
    assert PHONE not in {m.to for m in peers.twilio.messages}
    preview = cli(
        "announce", "--config", config, "--audience", "dept:engineering", "--channels", "sms", "--title", "x",
    )  # fmt: skip
    assert "unreachable: suppressed 1" in preview.stdout  # the preview shows it as suppressed

    assert post_signed(server, INBOUND, sms_in("start")).text.endswith("<Response/>")
    assert suppressed_numbers(db_url) == {}
    again = announce_json(cli, config, "dept:engineering", "sms", "info", "After START")
    assert again["channels"]["sms"]["sent"] == 6
    assert PHONE in {m.to for m in peers.twilio.messages}


def test_stop_also_holds_for_queued_messages(cli, twilio_web: tuple[str, WebServer], db_url: str) -> None:  # type: ignore[no-untyped-def]
    config, server = twilio_web
    queued = cli(
        "announce", "--config", config, "--yes", "--json", "--audience", "person:p2@example.com",
        "--channels", "sms", "--title", "Queued",
    )  # fmt: skip
    notification_id = json.loads(queued.stdout)["id"]
    post_signed(server, INBOUND, sms_in("STOP"))
    assert deliveries(db_url, notification_id)[("p2", "sms")] == ("suppressed", "opted_out")
    status = json.loads(cli("status", notification_id, "--json", "--config", config).stdout)
    assert status["state"] == "done"


def test_help_and_other_text(twilio_web: tuple[str, WebServer], db_url: str) -> None:
    _, server = twilio_web
    help_answer = post_signed(server, INBOUND, sms_in("help"))
    help_text = TwilioSettings().help_text
    assert help_answer.text.endswith(f"<Response><Message>{help_text}</Message></Response>")
    assert post_signed(server, INBOUND, sms_in("stop please")).text.endswith("<Response/>")
    assert suppressed_numbers(db_url) == {}


ENGINEERING_PAGES = """
[[routes]]
match = { team = "build" }
audience = "dept:engineering"
channels = ["sms"]
"""


def test_ack_acknowledges_the_latest_open_alert_that_paged_the_number(  # type: ignore[no-untyped-def]
    cli, db_url: str, peers: Peers, tmp_path: Path
) -> None:
    config, server = start_web(cli, peers, db_url, tmp_path, extra=ENGINEERING_PAGES)
    try:
        nothing = post_signed(server, INBOUND, sms_in("ACK"), algorithm="HMAC_SHA256")
        assert nothing.status_code == 200
        assert nothing.text.endswith(f"<Response><Message>{NOTHING_PAGED}</Message></Response>")
        paged = cli(
            "alert", "--config", config, "--severity", "critical", "--summary", "Build farm down",
            "--label", "team=build", "--wait", "--json",
        )  # fmt: skip
        assert paged.exit_code == 0, paged.stderr
        group_id = json.loads(paged.stdout)["alert_group"]
        assert PHONE in {m.to for m in peers.twilio.messages}

        ack = post_signed(server, INBOUND, sms_in("ACK"), algorithm="HMAC_SHA256")
        assert ack.status_code == 200
        reply = f"Herald: Acknowledged Build farm down (alert {group_id}); escalation stopped."
        assert ack.text.endswith(f"<Response><Message>{reply}</Message></Response>")
        ((acked_at, acked_by),) = rows(
            db_url, "SELECT acked_at, acked_by FROM alert_group WHERE id = :g", g=group_id
        )
        assert acked_at is not None and acked_by == f"sms:{PHONE} (Person 2)"
        again = post_signed(server, INBOUND, sms_in("ACK"))  # nothing left to acknowledge
        assert again.text.endswith(f"<Response><Message>{NOTHING_PAGED}</Message></Response>")
    finally:
        server.close()
    assert suppressed_numbers(db_url) == {}


def test_a_replayed_signed_ack_changes_nothing_and_answers_as_before(  # type: ignore[no-untyped-def]
    cli, db_url: str, peers: Peers, tmp_path: Path
) -> None:
    """A captured, validly signed ACK posted again (same MessageSid) must not acknowledge the next
    alert that pages the number: it gets the first answer back and no state changes."""
    config, server = start_web(cli, peers, db_url, tmp_path, extra=ENGINEERING_PAGES)

    def page(summary: str) -> str:
        paged = cli(
            "alert", "--config", config, "--severity", "critical", "--summary", summary,
            "--label", "team=build", "--label", f"alertname={summary}", "--wait", "--json",
        )  # fmt: skip
        assert paged.exit_code == 0, paged.stderr
        return str(json.loads(paged.stdout)["alert_group"])

    try:
        first = page("Build farm down")
        captured = sms_in("ACK")
        ack = post_signed(server, INBOUND, captured)
        reply = f"Herald: Acknowledged Build farm down (alert {first}); escalation stopped."
        assert ack.text.endswith(f"<Response><Message>{reply}</Message></Response>")
        second = page("Artifact store down")
        acks_before = rows(db_url, "SELECT count(*) FROM audit_log WHERE action = 'alert.ack'")
        replayed = post_signed(server, INBOUND, captured)  # the same signed request, again
        assert replayed.status_code == 200
        assert replayed.text == ack.text  # answered normally, as the first time
        ((acked_at,),) = rows(db_url, "SELECT acked_at FROM alert_group WHERE id = :g", g=second)
        assert acked_at is None  # the replay did not acknowledge the alert paged since
        assert rows(db_url, "SELECT count(*) FROM audit_log WHERE action = 'alert.ack'") == acks_before
        fresh = post_signed(server, INBOUND, sms_in("ACK"))  # a new message (its own MessageSid) does
        assert f"(alert {second})" in fresh.text
    finally:
        server.close()


def status_callback(sid: str, status: str, to: str = PHONE, error: str = "") -> dict[str, str]:
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": "+15005550006",
        "To": to,
        "MessageStatus": status,
        "SmsStatus": status,
        "ApiVersion": "2010-04-01",
    }
    if error:
        params["ErrorCode"] = error
    return params


def test_a_signed_request_with_nul_is_refused_naming_the_field(twilio_web: tuple[str, WebServer]) -> None:
    # PostgreSQL cannot compare text holding NUL (a 500 before); Twilio never sends it.
    _, server = twilio_web
    for path, params in ((STATUS, status_callback("\x00", "delivered")), (INBOUND, sms_in("ACK\x00"))):
        answer = post_signed(server, path, params)
        assert answer.status_code == 400, (path, answer.text)
        assert "NUL characters are not allowed" in answer.text
    assert post_signed(server, STATUS, status_callback("SM" + "1" * 32, "delivered")).status_code == 204


def test_status_callbacks_move_forward_only(cli, twilio_web: tuple[str, WebServer], db_url: str) -> None:  # type: ignore[no-untyped-def]
    config, server = twilio_web
    report = announce_json(
        cli, config, "person:p0@example.com,p2@example.com,p4@example.com", "sms", "info", "Hi"
    )
    assert report["channels"]["sms"]["sent"] == 3
    sids = dict(
        rows(db_url, "SELECT person_id, provider_id FROM delivery WHERE notification_id = :n", n=report["id"])
    )
    assert all(sid.startswith("SM") for sid in sids.values())

    def state(person: str) -> tuple[str, str | None]:
        return deliveries(db_url, report["id"])[(person, "sms")]

    # p0: in order, then repeated and stale callbacks
    for status in ("sent", "delivered", "delivered", "sent", "undelivered", "failed"):
        assert (
            post_signed(server, STATUS, status_callback(sids["p0"], status, "+4915112345000")).status_code
            == 204
        )
    assert state("p0") == ("delivered", None)
    # p2: delivered arrives before sent; then a late failure cannot undo it
    for status in ("delivered", "sending", "sent", "failed"):
        post_signed(server, STATUS, status_callback(sids["p2"], status))
    assert state("p2") == ("delivered", None)
    # p4: undelivered with 30005 (unknown destination) is terminal and suppresses the number
    unsigned = server.http.post(
        STATUS, data=status_callback(sids["p4"], "undelivered", "+4915112345004", "30005")
    )
    assert unsigned.status_code == 403 and state("p4") == ("sent", None)
    for status in ("undelivered", "delivered", "sent"):
        post_signed(server, STATUS, status_callback(sids["p4"], status, "+4915112345004", "30005"))
    assert state("p4") == ("failed", "undelivered")
    assert suppressed_numbers(db_url) == {"+4915112345004": "twilio-status"}
    # an unknown message is accepted and ignored
    assert post_signed(server, STATUS, status_callback("SM" + "9" * 32, "delivered")).status_code == 204

    final = json.loads(cli("status", report["id"], "--json", "--config", config).stdout)
    assert final["channels"]["sms"]["delivered"] == 2
    assert final["channels"]["sms"]["failed"] == 1


def test_a_status_callback_is_matched_by_its_sid_whatever_its_to(  # type: ignore[no-untyped-def]
    cli, twilio_web: tuple[str, WebServer], db_url: str
) -> None:
    # Deliveries are looked up by the callback's To (indexed) and MessageSid; a callback without To,
    # or whose To is not the number sent to, is still matched by the SID alone.
    config, server = twilio_web
    report = announce_json(cli, config, "person:p0@example.com,p2@example.com", "sms", "info", "Hi")
    sids = dict(
        rows(db_url, "SELECT person_id, provider_id FROM delivery WHERE notification_id = :n", n=report["id"])
    )
    without_to = status_callback(sids["p0"], "delivered")
    del without_to["To"]
    assert post_signed(server, STATUS, without_to).status_code == 204
    another_number = status_callback(sids["p2"], "delivered", "+15005550099")
    assert post_signed(server, STATUS, another_number).status_code == 204
    states = deliveries(db_url, report["id"])
    assert states[("p0", "sms")] == ("delivered", None)
    assert states[("p2", "sms")] == ("delivered", None)


def test_21610_on_a_send_opts_the_number_out(
    cli, peers: Peers, twilio_web: tuple[str, WebServer], db_url: str
) -> None:  # type: ignore[no-untyped-def]
    config, _ = twilio_web
    peers.twilio.opted_out.add(PHONE)  # the person texted STOP to Twilio directly
    # 1 of 6 failed for good: reach 5/6 < 0.99 misses the SLA (exit 1)
    first = announce_json(cli, config, "dept:engineering", "sms", "info", "One", codes=(1,))
    assert first["channels"]["sms"]["failed"] == 1
    reason, source = rows(db_url, "SELECT reason, source FROM suppression WHERE address = :a", a=PHONE)[0]
    assert reason.startswith("opted_out") and source == "delivery"
    second = announce_json(cli, config, "dept:engineering", "sms", "info", "Two")
    assert second["channels"]["sms"]["suppressed"] == 1 and second["channels"]["sms"]["failed"] == 0
