"""Reading one message from the bounce mailbox: a delivery report, a complaint, or nothing to act on.

Checked in order:

1. an ARF abuse report (RFC 5965: ``multipart/report; report-type=feedback-report``) is a complaint
   about the recipient in ``Original-Rcpt-To`` (else the returned message's ``To``);
2. an RFC 3464 delivery status notification (a ``message/delivery-status`` part): one report per
   recipient block, with its ``Action``, ``Status`` and ``Diagnostic-Code``;
3. the non-standard forms (Exim, old Exchange, qmail, Yahoo...): :func:`flufl.bounce.all_failures`
   finds the failed addresses; the status is the first enhanced code in the text (else ``5.0.0``);
   what it calls temporary is reported as ``delayed`` (a warning, not a final failure);
4. an auto-reply (``Auto-Submitted: auto-replied``, ``X-Autoreply``, ``Precedence: auto_reply``, an
   "Automatic reply" / "Out of office" subject) is ``autoreply``; anything else is ``unrelated``.

The VERP token is taken from the address the report was delivered to (``Delivered-To``,
``X-Original-To``, ``Envelope-To``, ``To``), ARF's ``Original-Mail-From`` or the returned message's
``Return-Path``; the Message-ID from the returned message (``message/rfc822`` or
``text/rfc822-headers``). Matching and acting is :mod:`.bounces`' job.
"""

from __future__ import annotations

import email
import email.message
import re
from dataclasses import dataclass
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Literal

from flufl.bounce import all_failures

from bot.recipients.bounces import BounceReport

Kind = Literal["bounce", "complaint", "autoreply", "unrelated"]
Message = email.message.Message
_TO_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_CODE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?reply|out of (the )?office|abwesenheit)", re.I
)


@dataclass(frozen=True, slots=True)
class Parsed:
    kind: Kind
    reports: tuple[BounceReport, ...] = ()


def parse_message(raw: bytes, verp_local: str | None) -> Parsed:
    """What the message ``raw`` says; ``verp_local`` is the return path's local part (``bounces``)."""
    message = email.message_from_bytes(raw)
    report_type = str(message.get_param("report-type", "") or "").lower()
    if message.get_content_type() == "multipart/report" and report_type == "feedback-report":
        complaint = _complaint(message, verp_local)
        return Parsed("complaint", (complaint,)) if complaint else Parsed("unrelated")
    context = (_token(message, verp_local), _message_id(message))
    reports = _dsn(message, *context)
    if not reports:
        reports = _nonstandard(message, *context)
    if reports:
        return Parsed("bounce", tuple(reports))
    return Parsed("autoreply" if _is_autoreply(message) else "unrelated")


def _dsn(message: Message, token: str | None, message_id: str | None) -> list[BounceReport]:
    reports = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks[1:] if isinstance(blocks, list) else []:
            if not isinstance(block, Message):
                continue
            recipient = _field_value(block.get("Final-Recipient") or block.get("Original-Recipient"))
            status = _CODE.search(str(block.get("Status", "")))
            if not recipient or status is None:
                continue
            diagnostic = " ".join(str(block.get("Diagnostic-Code", "")).split())
            action = str(block.get("Action", "")).strip().lower()
            reports.append(BounceReport(recipient, status.group(1), action, token, message_id, diagnostic))
    return reports


def _nonstandard(message: Message, token: str | None, message_id: str | None) -> list[BounceReport]:
    temporary, permanent = all_failures(message)
    if not (temporary or permanent):
        return []
    text = _text(message)
    reports = []
    for addresses, action, fallback in ((permanent, "failed", "5.0.0"), (temporary, "delayed", "4.0.0")):
        for raw in sorted(addresses):
            address = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            code = next((c for c in _CODE.findall(text) if c[0] == fallback[0]), fallback)
            line = next((ln.strip() for ln in text.splitlines() if code in ln), "")
            reports.append(BounceReport(address, code, action, token, message_id, line[:300]))
    return reports


def _complaint(message: Message, verp_local: str | None) -> BounceReport | None:
    fields: Message | None = None
    for part in message.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            first = payload[0] if isinstance(payload, list) and payload else None
            fields = first if isinstance(first, Message) else HeaderParser().parsestr(str(payload))
    if fields is None:
        return None
    original = _original(message)
    recipient = _address(fields.get("Original-Rcpt-To")) or _address(original.get("To") if original else None)
    if not recipient:
        return None
    mail_from = _address(fields.get("Original-Mail-From"))
    token = mail_from if _is_verp(mail_from, verp_local) else _token(message, verp_local)
    feedback = str(fields.get("Feedback-Type", "abuse")).strip()
    return BounceReport(recipient, "", "complaint", token, _message_id(message), feedback, kind="complaint")


def _token(message: Message, verp_local: str | None) -> str | None:
    original = _original(message)
    values = [str(v) for name in _TO_HEADERS for v in message.get_all(name, [])]
    if original is not None:
        values += [str(v) for v in original.get_all("Return-Path", [])]
    for _, address in getaddresses(values):
        if _is_verp(address, verp_local):
            return address
    return None


def _is_verp(address: str | None, verp_local: str | None) -> bool:
    return bool(address and verp_local and address.lower().startswith(f"{verp_local.lower()}+"))


def _original(message: Message) -> Message | None:
    """The returned message (or its headers), when the report carries it."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind == "text/rfc822-headers":
            return HeaderParser().parsestr(_decoded(part))
    return None


def _message_id(message: Message) -> str | None:
    original = _original(message)
    value = original.get("Message-ID") if original is not None else None
    return str(value).strip() if value else None


def _field_value(value: object) -> str:
    """``rfc822; a@example.com`` -> ``a@example.com``."""
    text = str(value or "").strip()
    return text.partition(";")[2].strip().strip("<>") if ";" in text else text.strip("<>")


def _address(value: object) -> str:
    pairs = getaddresses([str(value)]) if value else []
    return pairs[0][1] if pairs else ""


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return str(part.get_payload())


def _text(message: Message) -> str:
    return "\n".join(_decoded(p) for p in message.walk() if p.get_content_type() == "text/plain")


def _is_autoreply(message: Message) -> bool:
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto.startswith("auto-replied") or message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.match(str(message.get("Subject", ""))))
