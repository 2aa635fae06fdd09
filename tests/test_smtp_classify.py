"""channels.smtp_classify: SMTP replies and client exceptions to delivery outcomes, as tables."""

from __future__ import annotations

import ssl

import aiosmtplib
import pytest

from channels.base import ChannelDownError, DeliveryError, PermanentError, TransientError
from channels.smtp_classify import (
    Stage,
    classify_smtp_exception,
    classify_smtp_reply,
    drops_connection,
    enhanced_status,
)

T, P, D = "transient", "permanent", "channel down"

REPLIES: list[tuple[int, str, Stage, str | None, str | None, bool]] = [
    # code, message, stage -> kind, reason, suppress
    (250, "2.0.0 Ok: queued as 4Bc1", "data", None, None, False),
    (251, "User not local; will forward", "rcpt", None, None, False),
    (421, "4.3.2 Service shutting down", "mail", T, "busy", False),
    (421, "4.7.0 Too many connections", "rcpt", T, "busy", False),
    (450, "4.2.0 Mailbox busy", "rcpt", T, "server_error", False),
    (450, "4.7.1 Greylisted, try again in 5 minutes", "rcpt", T, "rate_limited", False),
    (451, "4.3.0 Try later", "data", T, "server_error", False),
    (451, "4.7.1 Rate limit exceeded", "rcpt", T, "rate_limited", False),
    (452, "4.5.3 Too many recipients", "rcpt", T, "rate_limited", False),
    (452, "4.3.1 Insufficient system storage", "mail", T, "server_error", False),
    (454, "4.7.0 Temporary authentication failure", "connect", T, "server_error", False),
    (451, "Requested action aborted", "rcpt", T, "server_error", False),
    (
        550,
        "5.1.1 <gone@example.com>: Recipient address rejected: User unknown",
        "rcpt",
        P,
        "rejected_recipient",
        True,
    ),
    (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; not found", "data", P, "rejected_message", True),
    (553, "5.1.3 Bad recipient address syntax", "rcpt", P, "rejected_recipient", True),
    (556, "5.1.10 Recipient address has null MX", "rcpt", P, "rejected_recipient", True),
    (550, "5.1.7 Bad sender mailbox", "rcpt", P, "rejected_recipient", False),
    (553, "5.1.8 Sender address rejected: Domain not found", "mail", P, "rejected_message", False),
    (550, "5.1.1 looks like a recipient code but answers MAIL FROM", "mail", P, "rejected_message", False),
    (550, "No such user here", "rcpt", P, "rejected_recipient", False),
    (554, "5.7.1 Relay access denied", "rcpt", P, "rejected_recipient", False),
    (552, "5.2.2 Mailbox full", "rcpt", P, "rejected_recipient", False),
    (554, "5.6.0 Message content rejected", "data", P, "rejected_message", False),
    (552, "5.3.4 Message size exceeds fixed limit", "data", P, "rejected_message", False),
    (530, "5.7.0 Authentication required", "mail", D, "auth", False),
    (535, "5.7.8 Authentication credentials invalid", "connect", D, "auth", False),
    (534, "5.7.9 Authentication mechanism is too weak", "connect", D, "auth", False),
    (554, "5.7.8 Error: authentication failed", "connect", D, "auth", False),
    (554, "No SMTP service here", "connect", D, "config", False),
    (502, "5.5.1 Command not implemented", "connect", D, "config", False),
    (354, "End data with <CR><LF>.<CR><LF>", "data", T, "unknown", False),
    (199, "odd", "rcpt", T, "unknown", False),
    (600, "odd", "rcpt", T, "unknown", False),
]


@pytest.mark.parametrize(("code", "message", "stage", "kind", "reason", "suppress"), REPLIES)
def test_classify_smtp_reply(
    code: int, message: str, stage: Stage, kind: str | None, reason: str | None, suppress: bool
) -> None:
    error = classify_smtp_reply(code, message, stage)
    if kind is None:
        assert error is None
        return
    assert error is not None
    assert isinstance(error, {T: TransientError, P: PermanentError, D: ChannelDownError}[kind])
    assert not (kind == P and isinstance(error, TransientError))
    assert error.reason == reason
    assert getattr(error, "suppress", False) is suppress
    assert str(code) in error.detail and message in error.detail


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("5.1.1 user unknown", (5, 1, 1)),
        ("  4.7.28 rate limited", (4, 7, 28)),
        ("5.1.10 null MX", (5, 1, 10)),
        ("user unknown", None),
        ("5.1 incomplete", None),
        ("5.1.1000 too long", None),
        ("3.1.1 wrong class", None),
    ],
)
def test_enhanced_status(message: str, expected: tuple[int, int, int] | None) -> None:
    assert enhanced_status(message) == expected


def _refused(code: int, message: str) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(code, message, "a@example.com")])


EXCEPTIONS: list[tuple[BaseException, type[DeliveryError], str, bool, bool]] = [
    # exception -> error class, reason, suppress, drops the connection
    (_refused(550, "5.1.1 user unknown"), PermanentError, "rejected_recipient", True, False),
    (_refused(451, "4.3.0 try later"), TransientError, "server_error", False, False),
    (_refused(421, "4.3.2 closing"), TransientError, "busy", False, True),
    (
        aiosmtplib.SMTPRecipientRefused(550, "5.1.1 unknown", "a@example.com"),
        PermanentError,
        "rejected_recipient",
        True,
        False,
    ),
    (
        aiosmtplib.SMTPSenderRefused(553, "5.1.8 sender rejected", "h@example.com"),
        PermanentError,
        "rejected_message",
        False,
        False,
    ),
    (
        aiosmtplib.SMTPDataError(554, "5.6.0 content rejected"),
        PermanentError,
        "rejected_message",
        False,
        False,
    ),
    (aiosmtplib.SMTPDataError(451, "4.3.0 try later"), TransientError, "server_error", False, False),
    (aiosmtplib.SMTPDataError(421, "4.3.2 closing"), TransientError, "busy", False, True),
    (
        aiosmtplib.SMTPAuthenticationError(535, "5.7.8 bad credentials"),
        ChannelDownError,
        "auth",
        False,
        False,
    ),
    (aiosmtplib.SMTPConnectResponseError(554, "no service"), ChannelDownError, "config", False, True),
    (aiosmtplib.SMTPConnectResponseError(421, "busy"), TransientError, "busy", False, True),
    (aiosmtplib.SMTPHeloError(501, "bad helo"), ChannelDownError, "config", False, False),
    (aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"), TransientError, "network", False, True),
    (
        aiosmtplib.SMTPConnectError("Error connecting to 127.0.0.1 on port 1"),
        TransientError,
        "network",
        False,
        True,
    ),
    (ConnectionRefusedError(111, "Connection refused"), TransientError, "network", False, True),
    (ConnectionResetError(104, "reset by peer"), TransientError, "network", False, True),
    (OSError(113, "No route to host"), TransientError, "network", False, True),
    (
        aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"),
        TransientError,
        "timeout",
        False,
        True,
    ),
    (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), TransientError, "timeout", False, True),
    (TimeoutError(), TransientError, "timeout", False, True),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), ChannelDownError, "tls", False, True),
    (ssl.SSLError(1, "wrong version number"), TransientError, "network", False, True),
    (
        aiosmtplib.SMTPNotSupported("SMTP STARTTLS extension not supported by server."),
        ChannelDownError,
        "config",
        False,
        True,
    ),
    (aiosmtplib.SMTPException("something odd"), TransientError, "unknown", False, True),
    (RuntimeError("a bug"), TransientError, "unknown", False, True),
]


@pytest.mark.parametrize(("exc", "cls", "reason", "suppress", "drops"), EXCEPTIONS)
def test_classify_smtp_exception(
    exc: BaseException, cls: type[DeliveryError], reason: str, suppress: bool, drops: bool
) -> None:
    error = classify_smtp_exception(exc)
    assert type(error) is cls
    assert error.reason == reason
    assert getattr(error, "suppress", False) is suppress
    assert drops_connection(exc) is drops


@pytest.mark.parametrize(
    "message",
    [
        "SMTP STARTTLS extension not supported by server.",
        "The SMTP AUTH extension is not supported by this server.",
    ],
)
def test_a_missing_extension_while_connecting_is_a_config_error(message: str) -> None:
    error = classify_smtp_exception(aiosmtplib.SMTPException(message), connecting=True)
    assert isinstance(error, ChannelDownError) and error.reason == "config" and message in error.detail
    assert classify_smtp_exception(aiosmtplib.SMTPException(message)).reason == "unknown"


def test_a_delivery_error_passes_through() -> None:
    error = PermanentError("invalid_address", "x", suppress=True)
    assert classify_smtp_exception(error) is error


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "network"),
        (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), "timeout"),
        (ssl.SSLError(1, "wrong version number"), "tls"),
    ],
)
def test_a_relay_that_cannot_be_reached_is_the_channel_down(exc: BaseException, reason: str) -> None:
    """Every connection refused or timing out says the relay is unusable, not that a recipient is bad."""
    error = classify_smtp_exception(exc, connecting=True)
    assert type(error) is ChannelDownError and error.reason == reason
    assert type(classify_smtp_exception(exc)) is TransientError  # once connected: this message only
