"""Render a notice as an email once, then personalise it per recipient by splicing bytes.

:func:`prepare_email` runs once per notification and language: it renders the jinja2
templates (text and HTML, autoescaped; see :mod:`channels.templating`), encodes them as
quoted-printable, folds the shared headers, and cuts each body where the recipient's
unsubscribe link and name go.
:func:`build_message` runs once per recipient and builds no MIME objects: it joins
the prepared bytes with the recipient's To, Date, Message-ID and List-Unsubscribe
headers and the recipient's link and name, quoted-printable encoded on lines of their own
(soft line breaks around them, so decoding restores the original text).

Header lines are written by :mod:`channels.email_headers`, never by the standard
library's folding (which decodes RFC 2047 words it is given): every value is cleaned
of control characters and line separators and written as plain ASCII or base64
encoded words, so no title, name or link can start a header or MIME part of its own;
an address that is not a plain ASCII ``local@domain`` is refused rather than repaired.
Lines stay under 80 bytes, except headers built from over-long user data, which
stay under 998.
"""

from __future__ import annotations

import email.utils
import functools
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import jinja2
from markupsafe import escape

from channels.base import Notice, PermanentError, Recipient
from channels.email_headers import (
    clean_header_text,
    clean_url,
    format_mailbox,
    make_message_id,
    normalize_address,
    parse_mailbox,
    shorten,
    subject_line,
)
from channels.email_qp import qp_link, qp_text, qp_value, soft_end
from channels.phrases import as_reminder
from channels.smtp_pipeline import wire_clean
from channels.templating import Templates, common_context

__all__ = [
    "OutgoingEmail",
    "PreparedEmail",
    "Spliced",
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
_HTML_SPECIAL = re.compile("[&<>\"']")  # what markupsafe's escape replaces
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
_MAX_HEADER_LINE = 998
_CRLF = b"\r\n"
_ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"


class Spliced(NamedTuple):
    """A quoted-printable body cut where per-recipient values go: ``slots[i]`` names what goes
    between ``pieces[i]`` and ``pieces[i + 1]`` (``unsubscribe``, ``confirm`` or ``name``)."""

    pieces: tuple[bytes, ...]
    slots: tuple[str, ...] = ()
    links_only: bool = True  # every slot is the unsubscribe link: one join fills the body

    def fill(self, values: Mapping[str, bytes]) -> bytes:
        if self.links_only:
            return values.get("unsubscribe", b"").join(self.pieces)
        out = [self.pieces[0]]
        for slot, piece in zip(self.slots, self.pieces[1:], strict=True):
            out += (values.get(slot, b""), piece)
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class PreparedEmail:
    """One notification rendered for every recipient; only :func:`build_message` reads the bytes.

    ``text_linked``/``html_linked`` are quoted-printable bodies cut where the recipient's
    unsubscribe link (and name, when the template shows it) goes (each cut ends in a soft
    line break); ``text_unlinked``/``html_unlinked`` are the bodies for a recipient without
    a link. Mandatory notices never have a link.
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
    wire_clean: bool = False  # the bytes above stay wire-clean around wire-clean values (personalise)

    @property
    def cost(self) -> int:
        """Each copy takes one throttle unit."""
        return 1


class OutgoingEmail(NamedTuple):
    """One personalised message: the envelope recipient, its Message-ID and the wire bytes;
    ``clean``: known to go into SMTP's DATA as they are (:func:`channels.smtp_pipeline.wire_clean`)."""

    address: str
    message_id: str
    data: bytes
    clean: bool = False


def make_environment() -> jinja2.Environment:
    """The jinja2 environment of the built-in templates; HTML templates are autoescaped."""
    template = _default_templates().builtin("email.html")
    return template.environment


def format_date(timestamp: float) -> str:
    """An RFC 5322 date in UTC, e.g. ``Tue, 03 Mar 2026 09:00:00 +0000``."""
    return email.utils.format_datetime(datetime.fromtimestamp(timestamp, UTC))


def prepare_email(
    notice: Notice,
    *,
    from_address: str,
    reply_to: str | None = None,
    date: str | None = None,
    templates: Templates | None = None,
) -> PreparedEmail:
    """Render ``notice`` once for all its recipients of ``notice.language``. ValueError if
    ``from_address``/``reply_to`` is bad. The subject keeps SPEC's ``[SEVERITY]`` prefix in every
    language (filters and mail rules match it); a reminder before a window opens with its sentence
    (:mod:`channels.phrases`)."""
    from_name, envelope_from = parse_mailbox(from_address)
    templates = templates or _default_templates()
    notice = as_reminder(notice, templates)
    severity = shorten(clean_header_text(notice.severity).upper(), _MAX_SEVERITY) or "NOTICE"
    title = shorten(clean_header_text(notice.title), _MAX_TITLE)
    subject = ("Re: " if notice.reply else "") + f"[{severity}] {title}"
    boundary = f"=_herald_{secrets.token_hex(12)}"  # "=_" never occurs in a quoted-printable body
    hexes = [secrets.token_hex(8) for _ in range(3)]
    tokens = {"name": f"heraldname{hexes[0]}"}
    if notice.confirm:
        tokens["confirm"] = f"heraldconfirm{hexes[1]}"
    context = _context(notice, severity, title) | {
        "name": tokens["name"],
        "unsubscribe_url": None,
        "confirm_url": tokens.get("confirm"),
    }
    render = functools.partial(templates.render, severity.lower())
    text_unlinked = _cut(render("email.txt", notice.language, context), tokens)
    html_unlinked = _cut(render("email.html", notice.language, context), tokens)
    text_linked, html_linked = text_unlinked, html_unlinked
    if not notice.mandatory:
        context["unsubscribe_url"] = link = f"heraldlink{hexes[2]}"
        text_linked = _cut(render("email.txt", notice.language, context), {"unsubscribe": link, **tokens})
        html_linked = _cut(render("email.html", notice.language, context), {"unsubscribe": link, **tokens})
    head = [b"Auto-Submitted: auto-generated\r\n", b"X-Auto-Response-Suppress: All\r\n"]
    if reply_to:
        head.insert(0, format_mailbox("Reply-To", *parse_mailbox(reply_to)))
    head.append(b"MIME-Version: 1.0\r\n")
    head.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'.encode())
    head.append(_part_head(boundary, "plain"))
    prepared = PreparedEmail(
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
    return replace(prepared, wire_clean=_clean_around_values(prepared))


_SAMPLE = Recipient(
    "sample@example.com",
    "Sample",
    unsubscribe_url="https://example.com/u",
    confirm_url="https://example.com/c",
)


def _clean_around_values(prepared: PreparedEmail) -> bool:
    """Whether every message of ``prepared`` is wire-clean when the values spliced in are: checked once
    on a sample message with a link and one without. Each value is on lines of its own and ends in a
    line break (the To line, the bodies' soft breaks) or never holds one (the Date, Message-ID and
    List-Unsubscribe values), for the sample as for everyone, so a dot starting a line of the
    prepared bytes, or a lone CR or LF in them, shows in the sample."""
    samples = (_SAMPLE, _SAMPLE._replace(unsubscribe_url=""))
    return all(
        (data := personalise(prepared, to, date=prepared.date).data).endswith(_CRLF) and wire_clean(data)
        for to in samples
    )


def _context(notice: Notice, severity: str, title: str) -> dict[str, Any]:
    """What every email template of ``notice`` gets (see README "Templates")."""
    return {
        "severity": severity,
        "kind": severity.lower(),
        "title": title,
        "body": _BODY_CONTROL.sub("", notice.body),
        "color": _SEVERITY_COLORS.get(severity.lower(), "#475467"),
        "paragraphs": _paragraphs(notice.body),
        "links": _links(notice.links),
        "notification_id": clean_header_text(notice.notification_id),
        **common_context(notice),
    }


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
    to_line, date_value = format_mailbox("To", to.name, address), date.encode("ascii")
    pieces = [
        prepared.from_line,
        to_line,
        prepared.subject_line,
        b"Date: ",
        date_value,
        b"\r\nMessage-ID: ",
        message_id.encode("ascii"),
        _CRLF,
    ]
    if to.thread_key:  # threaded under the message it answers (RFC 5322 section 3.6.4)
        parent = make_message_id(to.thread_key, prepared.message_id_domain).encode("ascii")
        pieces += [b"In-Reply-To: ", parent, _CRLF, b"References: ", parent, _CRLF]
    url = "" if prepared.mandatory else clean_url(to.unsubscribe_url)
    if url:
        if len(url) > _MAX_HEADER_LINE - len("List-Unsubscribe: <>"):
            raise PermanentError("config", "unsubscribe url longer than an email header line")
        pieces += [b"List-Unsubscribe: <", url.encode("ascii"), b">\r\n", _ONE_CLICK]
    pieces.append(prepared.head)
    text, html, values = _bodies(prepared, url, to)
    pieces += [text, prepared.between, html, prepared.tail]
    # The prepared bytes were checked once (_clean_around_values) and the values spliced in are checked
    # here (~1.4 us), instead of the whole message before it is sent (~13 us for 5 KB). The Message-ID
    # and the link in List-Unsubscribe hold no control characters (make_message_id, clean_url).
    clean = prepared.wire_clean and _each_clean((to_line, date_value, *values))
    return OutgoingEmail(address, message_id, b"".join(pieces), clean)


def _each_clean(values: tuple[bytes, ...]) -> bool:
    """``all(map(wire_clean, values))`` in one call, on the values each after a CRLF: that CRLF forms no
    pair with a lone CR or LF at either side of it (so CR and LF are paired throughout exactly when
    they are within each value), and a value starting with a dot shows as a line starting with one."""
    return wire_clean(b"\r\n".join((b"", *values)))


def message_id_for(prepared: PreparedEmail, to: Recipient) -> str:
    """``to``'s Message-ID, from its ``message_key`` and the sender's domain: the same on every re-send
    (:func:`channels.email_headers.make_message_id`)."""
    return make_message_id(to.message_key, prepared.message_id_domain)


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


def _cut(rendered: str, tokens: Mapping[str, str]) -> Spliced:
    """Encode the pieces of ``rendered`` around the ``tokens`` (slot name -> token) it holds, each
    but the last ending in a soft line break, and name the slot each cut stands for."""
    names = {token: name for name, token in tokens.items() if token in rendered}
    if not names:
        return Spliced((qp_text(rendered),))
    parts = re.split("(" + "|".join(map(re.escape, names)) + ")", rendered)
    slots = tuple(names[token] for token in parts[1::2])
    pieces = (*(soft_end(qp_text(piece)) for piece in parts[0:-1:2]), qp_text(parts[-1]))
    return Spliced(pieces, slots, links_only=all(slot == "unsubscribe" for slot in slots))


def _bodies(prepared: PreparedEmail, url: str, to: Recipient) -> tuple[bytes, bytes, tuple[bytes, ...]]:
    """The text part and the HTML part with ``to``'s values spliced in, and those values."""
    text, html = (
        (prepared.text_linked, prepared.html_linked)
        if url
        else (prepared.text_unlinked, prepared.html_unlinked)
    )
    if text.links_only and html.links_only:  # the common case, kept to one join per part
        link = qp_link(url)
        # HTML-escaping a link without &<>"' leaves it as it is (signed links never have them).
        html_link = qp_link(str(escape(url))) if _HTML_SPECIAL.search(url) else link
        return link.join(text.pieces), html_link.join(html.pieces), (link, html_link)
    name, confirm = clean_header_text(to.name), clean_url(to.confirm_url)
    text_values = {"unsubscribe": qp_link(url), "confirm": qp_link(confirm), "name": qp_value(name)}
    html_values = {
        "unsubscribe": qp_link(str(escape(url))),
        "confirm": qp_link(str(escape(confirm))),
        "name": qp_value(str(escape(name))),
    }
    return (
        text.fill(text_values),
        html.fill(html_values),
        (*text_values.values(), *html_values.values()),
    )


@functools.cache
def _default_templates() -> Templates:
    return Templates()
