"""Turn SMTP replies and client exceptions into Herald's delivery errors.

Two pure functions, tested as tables:

- :func:`classify_smtp_reply` maps one reply (code, text, and the stage of the
  transaction it answered) to ``None`` (accepted) or a :class:`DeliveryError`.
- :func:`classify_smtp_exception` maps whatever aiosmtplib or the socket layer
  raised to a :class:`DeliveryError`.

The rules, in order:

=====================================  ==========================================
reply                                   outcome
=====================================  ==========================================
2xx                                     accepted (``None``)
421 (any stage)                         transient ``busy``; the server closes the
                                        connection, so the channel drops it
454                                     transient ``server_error`` (TLS or AUTH
                                        temporarily unavailable)
4xx with enhanced status 4.7.x          transient ``rate_limited`` (policy,
                                        throttling, greylisting)
452 with 4.5.3 (too many recipients)    transient ``rate_limited``
other 4xx                               transient ``server_error``
530, 534, 535, 538, or 5.7.8/5.7.9     channel down ``auth``
5xx at connect/HELO/STARTTLS            channel down ``config``
5xx at MAIL FROM                        permanent ``rejected_message`` (never
                                        suppresses: it is about the sender)
5xx at RCPT TO                          permanent ``rejected_recipient``
5xx after DATA                          permanent ``rejected_message``
enhanced 5.1.x at RCPT or DATA          ``suppress=True`` (bad address: 5.1.1 user
                                        unknown, 5.1.2 bad domain, 5.1.3 bad
                                        syntax, 5.1.6 moved, 5.1.10 null MX...),
                                        except 5.1.7 and 5.1.8, which name the
                                        *sender*
anything else (1xx, 3xx, 6xx...)        transient ``unknown``
=====================================  ==========================================

Only an enhanced status code (RFC 3463) ever suppresses an address: a bare
``550`` also covers policy rejections, which say nothing about the mailbox.
Herald sends one recipient per transaction, so a 5.1.x after DATA is about
that recipient.

Exceptions: while opening a session (``connecting``), a refused or timed-out connection and a TLS
failure mean the relay cannot be used at all: :class:`ChannelDownError` ``network``, ``timeout``,
``tls``; so is a missing server extension (STARTTLS, AUTH): ``config``. Once connected, timeouts
are transient ``timeout`` (a duplicate email is acceptable, so no :class:`UncertainError`) and
connection failures transient ``network``; any other exception is transient ``unknown``.
A channel-down error never fails a delivery nor suppresses an address.
"""

from __future__ import annotations

import re
import ssl
from typing import Literal

import aiosmtplib

from channels.base import ChannelDownError, DeliveryError, PermanentError, TransientError

Stage = Literal["connect", "mail", "rcpt", "data"]

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")
_AUTH_CODES = frozenset({530, 534, 535, 538})
_SENDER_ADDRESS_SUBJECTS = frozenset({7, 8})  # 5.1.7 bad sender mailbox, 5.1.8 bad sender system


def enhanced_status(message: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code that starts ``message``, if any."""
    match = _ENHANCED.match(message)
    if match is None:
        return None
    klass, subject, detail = match.groups()
    return int(klass), int(subject), int(detail)


def classify_smtp_reply(code: int, message: str, stage: Stage = "rcpt") -> DeliveryError | None:
    """Classify one SMTP reply; ``None`` means accepted. Pure; see the module table."""
    detail = f"{code} {message}".strip()
    if 200 <= code < 300:
        return None
    enhanced = enhanced_status(message)
    if 400 <= code < 500:
        return _classify_transient(code, enhanced, detail)
    if 500 <= code < 600:
        return _classify_permanent(code, enhanced, stage, detail)
    return TransientError("unknown", detail)


def _classify_transient(code: int, enhanced: tuple[int, int, int] | None, detail: str) -> TransientError:
    if code == 421:
        return TransientError("busy", detail)
    if code == 454:
        return TransientError("server_error", detail)
    if enhanced is not None and enhanced[1] == 7:
        return TransientError("rate_limited", detail)
    if code == 452 and enhanced == (4, 5, 3):
        return TransientError("rate_limited", detail)
    return TransientError("server_error", detail)


def _classify_permanent(
    code: int, enhanced: tuple[int, int, int] | None, stage: Stage, detail: str
) -> DeliveryError:
    if code in _AUTH_CODES or enhanced in ((5, 7, 8), (5, 7, 9)):
        return ChannelDownError("auth", detail)
    if stage == "connect":
        return ChannelDownError("config", detail)
    if stage == "mail":
        return PermanentError("rejected_message", detail)
    bad_address = (
        enhanced is not None
        and enhanced[0] == 5
        and enhanced[1] == 1
        and enhanced[2] not in _SENDER_ADDRESS_SUBJECTS
    )
    reason = "rejected_recipient" if stage == "rcpt" else "rejected_message"
    return PermanentError(reason, detail, suppress=bad_address)


def classify_smtp_exception(exc: BaseException, *, connecting: bool = False) -> DeliveryError:
    """Classify an exception raised while sending, or (``connecting``) while opening a session. Pure.

    While connecting, aiosmtplib's bare ``SMTPException`` means the server lacks what the
    settings ask for (STARTTLS, AUTH, a mechanism): permanent ``config``.
    """
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        if not exc.recipients:
            return TransientError("unknown", "all recipients refused")
        first = exc.recipients[0]
        return _reply_error(first.code, first.message, "rcpt")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply_error(exc.code, exc.message, _stage_of(exc))
    if isinstance(exc, ssl.SSLCertVerificationError) or (connecting and isinstance(exc, ssl.SSLError)):
        return ChannelDownError("tls", _describe(exc))
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or (connecting and type(exc) is aiosmtplib.SMTPException):
        return ChannelDownError("config", _describe(exc))
    if isinstance(exc, TimeoutError):  # includes aiosmtplib.SMTPTimeoutError
        return (ChannelDownError if connecting else TransientError)("timeout", _describe(exc))
    if isinstance(exc, OSError):  # ConnectionError: SMTPServerDisconnected, SMTPConnectError, refused...
        return (ChannelDownError if connecting else TransientError)("network", _describe(exc))
    return TransientError("unknown", _describe(exc))


def _stage_of(exc: aiosmtplib.SMTPResponseException) -> Stage:
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "mail"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return "rcpt"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "data"
    return "connect"  # greeting, HELO, STARTTLS, AUTH, RSET


def _reply_error(code: int, message: str, stage: Stage) -> DeliveryError:
    error = classify_smtp_reply(code, message, stage)
    # an exception carrying a 2xx reply is aiosmtplib's bug, not a success
    return error if error is not None else TransientError("unknown", f"{code} {message}")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def drops_connection(exc: BaseException) -> bool:
    """Whether the connection that raised ``exc`` must be discarded rather than reused.

    Only a clean SMTP reply other than 421 leaves the session usable (aiosmtplib sends
    RSET after it); a 421, a timeout, a disconnect or anything unexpected does not.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return any(refusal.code == 421 for refusal in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return exc.code == 421 or isinstance(exc, aiosmtplib.SMTPConnectError)
    return True
