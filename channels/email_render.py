"""Render a notice as an email once, then personalise it per recipient by splicing bytes.

:func:`prepare_email` runs once per notification: it renders the jinja2 templates
(text and HTML, autoescaped), encodes them as quoted-printable, folds the shared
headers, and cuts each body where the recipient's unsubscribe link goes.
:func:`build_message` runs once per recipient and builds no MIME objects: it joins
the prepared bytes with the recipient's To, Date, Message-ID and List-Unsubscribe
headers and the recipient's link, quoted-printable encoded on lines of its own
(soft line breaks around it, so decoding restores the original text).

Header lines are written by :mod:`channels.email_headers`, never by the standard
library's folding (which decodes RFC 2047 words it is given): every value is cleaned
of control characters and line separators and written as plain ASCII or base64
encoded words, so no title, name or link can start a header or MIME part of its own;
an address that is not a plain ASCII ``local@domain`` is refused rather than repaired.
Lines stay under 80 bytes, except headers built from over-long user data, which
stay under 998.
"""

from __future__ import annotations

import binascii
import email.utils
import functools
import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import urlsplit

import jinja2
from markupsafe import escape

from channels.base import Notice, PermanentError, Recipient
from channels.email_headers import (
    clean_header_text,
    clean_url,
    format_mailbox,
    normalize_address,
    parse_mailbox,
    shorten,
    subject_line,
)

__all__ = [
    "OutgoingEmail",
    "PreparedEmail",
    "build_message",
    "clean_header_text",
    "clean_url",
    "format_date",
    "format_mailbox",
    "make_environment",
    "message_id_for",
    "normalize_address",
    "parse_mailbox",
    "personalise",
    "prepare_email",
]

_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # C0, C1, bidi
_ID_LEFT = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_ID_CHAR = re.compile(r"[A-Za-z0-9_+.-]")
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_SEVERITY_COLORS = {
    "critical": "#b42318",
    "outage": "#c4320a",
    "security": "#6941c6",
    "maintenance": "#b54708",
    "info": "#175cd3",
}
_MAX_TITLE = 250
_MAX_SEVERITY = 40
_MAX_ID_LEFT = 200
_MAX_HEADER_LINE = 998
_CRLF = b"\r\n"
_SOFT_BREAK = b"=\r\n"
_ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


class Spliced(NamedTuple):
    """A quoted-printable body cut where per-recipient links go: ``slots[i]`` names the link that
    goes between ``pieces[i]`` and ``pieces[i + 1]`` (``unsubscribe`` or ``confirm``)."""

    pieces: tuple[bytes, ...]
    slots: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PreparedEmail:
    """One notification rendered for every recipient; only :func:`build_message` reads the bytes.

    ``text_linked``/``html_linked`` are quoted-printable bodies cut where the recipient's
    unsubscribe link goes (each cut ends in a soft line break); ``text_unlinked``/
    ``html_unlinked`` are the bodies for a recipient without a link. Mandatory notices
    have a single, uncut piece and never a link.
    """

    notification_id: str
    mandatory: bool
    subject: str
    envelope_from: str
    message_id_domain: str
    date: str
    from_line: bytes
    subject_line: bytes
    head: bytes
    text_linked: Spliced
    text_unlinked: Spliced
    between: bytes
    html_linked: Spliced
    html_unlinked: Spliced
    tail: bytes

    @property
    def cost(self) -> int:
        """Each copy takes one throttle unit."""
        return 1


class OutgoingEmail(NamedTuple):
    """One personalised message: the envelope recipient, its Message-ID and the wire bytes."""

    address: str
    message_id: str
    data: bytes


def make_environment() -> jinja2.Environment:
    """The jinja2 environment for ``channels/templates``; HTML templates are autoescaped."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("channels", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def format_date(timestamp: float) -> str:
    """An RFC 5322 date in UTC, e.g. ``Tue, 03 Mar 2026 09:00:00 +0000``."""
    return email.utils.format_datetime(datetime.fromtimestamp(timestamp, UTC))


def prepare_email(
    notice: Notice,
    *,
    from_address: str,
    reply_to: str | None = None,
    date: str | None = None,
    environment: jinja2.Environment | None = None,
) -> PreparedEmail:
    """Render ``notice`` once for all recipients. ValueError if ``from_address``/``reply_to`` is bad."""
    env = environment or _default_environment()
    from_name, envelope_from = parse_mailbox(from_address)
    severity = shorten(clean_header_text(notice.severity).upper(), _MAX_SEVERITY) or "NOTICE"
    title = shorten(clean_header_text(notice.title), _MAX_TITLE)
    subject = f"[{severity}] {title}"
    boundary = f"=_herald_{secrets.token_hex(12)}"  # "=_" never occurs in a quoted-printable body
    token = f"heraldlink{secrets.token_hex(8)}"
    confirm = {"confirm": f"heraldconfirm{secrets.token_hex(8)}"} if notice.confirm else {}
    context = {
        "severity": severity,
        "title": title,
        "color": _SEVERITY_COLORS.get(severity.lower(), "#475467"),
        "paragraphs": _paragraphs(notice.body),
        "links": _links(notice.links),
        "notification_id": clean_header_text(notice.notification_id),
    }
    text_template = env.get_template("email.txt.j2")
    html_template = env.get_template("email.html.j2")
    confirm_url = confirm.get("confirm")
    text_unlinked = _cut(
        text_template.render(context, unsubscribe_url=None, confirm_url=confirm_url), confirm
    )
    html_unlinked = _cut(
        html_template.render(context, unsubscribe_url=None, confirm_url=confirm_url), confirm
    )
    text_linked, html_linked = text_unlinked, html_unlinked
    if not notice.mandatory:
        tokens = {"unsubscribe": token, **confirm}
        text_linked = _cut(
            text_template.render(context, unsubscribe_url=token, confirm_url=confirm_url), tokens
        )
        html_linked = _cut(
            html_template.render(context, unsubscribe_url=token, confirm_url=confirm_url), tokens
        )
    head = [b"Auto-Submitted: auto-generated\r\n", b"X-Auto-Response-Suppress: All\r\n"]
    if reply_to:
        head.insert(0, format_mailbox("Reply-To", *parse_mailbox(reply_to)))
    head.append(b"MIME-Version: 1.0\r\n")
    head.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode())
    head.append(_part_head(boundary, "plain"))
    return PreparedEmail(
        notification_id=notice.notification_id,
        mandatory=notice.mandatory,
        subject=subject,
        envelope_from=envelope_from,
        message_id_domain=envelope_from.rpartition("@")[2].lower(),
        date=date or format_date(datetime.now(UTC).timestamp()),
        from_line=format_mailbox("From", from_name, envelope_from),
        subject_line=subject_line(subject),
        head=b"".join(head),
        text_linked=text_linked,
        text_unlinked=text_unlinked,
        between=_CRLF + _part_head(boundary, "html"),
        html_linked=html_linked,
        html_unlinked=html_unlinked,
        tail=f"\r\n--{boundary}--\r\n".encode(),
    )


def build_message(prepared: PreparedEmail, to: Recipient, *, date: str | None = None) -> bytes:
    """The wire bytes of ``prepared`` for ``to`` (CRLF lines). Pure apart from a random id
    when ``to.message_key`` is empty. ``date`` defaults to ``prepared.date``.

    Raises :class:`PermanentError` (``invalid_address``, suppress) for an unusable address.
    """
    return personalise(prepared, to, date=date or prepared.date).data


def personalise(prepared: PreparedEmail, to: Recipient, *, date: str) -> OutgoingEmail:
    """``prepared`` filled in for ``to``; see :func:`build_message`."""
    try:
        address = normalize_address(to.address)
    except ValueError as exc:
        raise PermanentError("invalid_address", str(exc), suppress=True) from exc
    message_id = message_id_for(prepared, to)
    pieces = [
        prepared.from_line,
        format_mailbox("To", to.name, address),
        prepared.subject_line,
        b"Date: ",
        date.encode("ascii"),
        b"\r\nMessage-ID: ",
        message_id.encode("ascii"),
        _CRLF,
    ]
    url = "" if prepared.mandatory else clean_url(to.unsubscribe_url)
    if url:
        if len(url) > _MAX_HEADER_LINE - len("List-Unsubscribe: <>"):
            raise PermanentError("config", "unsubscribe url longer than an email header line")
        pieces += [b"List-Unsubscribe: <", url.encode("ascii"), b">\r\n", _ONE_CLICK]
    pieces.append(prepared.head)
    links = {"unsubscribe": url, "confirm": clean_url(to.confirm_url)}
    text, html = (
        (prepared.text_linked, prepared.html_linked)
        if url
        else (prepared.text_unlinked, prepared.html_unlinked)
    )
    pieces += [_splice(text, links, html=False), prepared.between, _splice(html, links, html=True)]
    pieces.append(prepared.tail)
    return OutgoingEmail(address, message_id, b"".join(pieces))


def message_id_for(prepared: PreparedEmail, to: Recipient) -> str:
    """``<key@domain>`` from ``to.message_key`` and the sender's domain: the same on every re-send.

    Characters a Message-ID cannot hold are escaped as ``=XX`` (so distinct keys stay
    distinct); very long keys are hashed; an empty key gets a random id.
    """
    key = to.message_key
    if not key:
        return f"<{uuid.uuid4().hex}@{prepared.message_id_domain}>"
    if len(key) > _MAX_ID_LEFT or not _ID_LEFT.fullmatch(key):
        key = _escape_id(key)
    return f"<{key}@{prepared.message_id_domain}>"


def _escape_id(key: str) -> str:
    escaped = "".join(
        c if _ID_CHAR.fullmatch(c) else "".join(f"={b:02X}" for b in c.encode("utf-8")) for c in key
    )
    if escaped.startswith(".") or escaped.endswith(".") or ".." in escaped:
        escaped = escaped.replace(".", "=2E")
    if len(escaped) > _MAX_ID_LEFT:
        escaped = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return escaped


def _paragraphs(body: str) -> list[list[str]]:
    text = _BODY_CONTROL.sub("", body.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    paragraphs = (block.split("\n") for block in re.split(r"\n[ \t]*\n", text))
    return [lines for lines in ([line.rstrip() for line in p if line.strip()] for p in paragraphs) if lines]


def _links(links: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(label, url, linkable): only http(s) and mailto URLs become HTML links."""
    result = []
    for label, url in links.items():
        cleaned = clean_url(url.strip())
        linkable = urlsplit(cleaned).scheme.lower() in _LINK_SCHEMES
        result.append((clean_header_text(label) or cleaned, cleaned, linkable))
    return result


def _part_head(boundary: str, subtype: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends; ``text`` uses ``\\n`` line ends."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", _CRLF)


def _cut(rendered: str, tokens: dict[str, str]) -> Spliced:
    """Encode the pieces of ``rendered`` around the ``tokens`` (slot name -> token), each but the
    last ending in a soft line break, and name the slot each cut stands for."""
    if not tokens:
        return Spliced((_qp(rendered),))
    names = {value: name for name, value in tokens.items()}
    parts = re.split("(" + "|".join(map(re.escape, names)) + ")", rendered)
    linked, slots = parts[0:-1:2], tuple(names[token] for token in parts[1::2])
    return Spliced((*(_soft_end(_qp(piece)) for piece in linked), _qp(parts[-1])), slots)


def _splice(body: Spliced, links: dict[str, str], *, html: bool) -> bytes:
    """``body`` with each slot filled by its link (HTML-escaped in the HTML part)."""
    out = [body.pieces[0]]
    for slot, piece in zip(body.slots, body.pieces[1:], strict=True):
        url = links.get(slot, "")
        out += [_qp_link(str(escape(url)) if html else url), piece]
    return b"".join(out)


def _qp_link(url: str) -> bytes:
    return _soft_end(binascii.b2a_qp(url.encode("ascii"), istext=False).replace(b"\n", _CRLF))


def _soft_end(encoded: bytes) -> bytes:
    """``encoded`` plus a soft line break, keeping the last line within 76 characters."""
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start < 76:
        return encoded + _SOFT_BREAK
    split = start + 72
    while b"=" in encoded[split - 2 : split]:  # never split an =XX escape
        split -= 1
    return encoded[:split] + _SOFT_BREAK + encoded[split:] + _SOFT_BREAK


@functools.cache
def _default_environment() -> jinja2.Environment:
    return make_environment()
