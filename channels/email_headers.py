"""Header lines written by hand, so no header parser ever reads the text they carry.

The standard library's header folding parses what it is given: an RFC 2047 encoded
word typed into a title (``=?utf-8?q?=0D=0ABcc:...?=``) is decoded and can come out on
the wire as a header line of its own. Here every value from data is first cleaned to
one line (:func:`clean_header_text`: control characters and line separators become
spaces, bidi overrides are dropped), then written either as plain ASCII text without
``=?`` or as base64 encoded words of its UTF-8, folded only between the words this
module makes. Addresses are plain ASCII ``local@domain`` or refused.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import hashlib
import re
import uuid
from collections.abc import Iterable
from urllib.parse import quote

_BIDI = "\u202a-\u202e\u2066-\u2069"  # embeddings, overrides and isolates: they reorder what follows
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029{_BIDI}]")
_SPACES = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029], " ")
_HEADER_TEXT = str.maketrans(_SPACES | dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_PHRASE = re.compile(rf"[{_ATEXT}]+(?: [{_ATEXT}]+)*")
_LOCAL_PART = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_ID_LEFT = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_ID_CHAR = re.compile(r"[A-Za-z0-9_+.-]")
_MAX_ID_LEFT = 200
_ADDRESS_FAST = re.compile(rf"{_LOCAL_PART.pattern}@{_DOMAIN.pattern}")
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~._-"  # RFC 3986 reserved and unreserved, plus "%"
_URL_FAST = re.compile(f"[A-Za-z0-9{re.escape(_URL_SAFE)}]+")
_MAX_NAME = 200


def parse_mailbox(value: str) -> tuple[str, str]:
    """Split ``"Name <addr>"`` or ``"addr"`` into (name, normalised address); ValueError if invalid."""
    mailboxes = email.utils.getaddresses([clean_header_text(value)])
    name, address = mailboxes[0] if len(mailboxes) == 1 else ("", "")
    if not address:
        raise ValueError(f"not an email address: {value!r}")
    return clean_header_text(name), normalize_address(address)


def clean_header_text(value: str) -> str:
    """``value`` on one line: control characters and line separators (CR, LF, U+2028...) become
    spaces, runs of spaces one; bidi overrides and isolates are dropped."""
    return " ".join(value.translate(_HEADER_TEXT).split())


def normalize_address(address: str) -> str:
    """A plain ASCII ``local@domain`` (an IDN domain is punycoded); ValueError otherwise."""
    address = address.strip()
    if len(address) <= 254 and _ADDRESS_FAST.fullmatch(address):
        return address
    local, at, domain = address.rpartition("@")
    if not at or not _LOCAL_PART.fullmatch(local):
        raise ValueError(f"not a plain email address: {address!r}")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"bad domain in email address: {address!r}") from exc
    normalized = f"{local}@{ascii_domain}"
    if len(normalized) > 254 or not _DOMAIN.fullmatch(ascii_domain):
        raise ValueError(f"not a plain email address: {address!r}")
    return normalized


def clean_url(url: str) -> str:
    """``url`` with control characters dropped and anything unsafe in a header percent-encoded."""
    if _URL_FAST.fullmatch(url):
        return url
    return quote(_CONTROL.sub("", url).strip(), safe=_URL_SAFE)


def format_mailbox(field: str, name: str, address: str) -> bytes:
    """A ``field: name <address>`` header line; the name quoted or RFC 2047 encoded as needed.

    ``address`` must already be normalised (:func:`normalize_address`).
    """
    if len(name) <= _MAX_NAME and "=?" not in name and _PHRASE.fullmatch(name):
        # A plain phrase (most names) is its own cleaned, shortened form and needs no quotes.
        return _mailbox_line(field, name, address)
    name = shorten(clean_header_text(name), _MAX_NAME)
    if not name:
        return f"{field}: {address}\r\n".encode("ascii")
    if name.isascii() and "=?" not in name:  # "=?" would read as an encoded word, even quoted
        phrase = name if _PHRASE.fullmatch(name) else _quoted(name)
    else:
        phrase = "\r\n ".join(encoded_words(name))
    return _mailbox_line(field, phrase, address)


def _mailbox_line(field: str, phrase: str, address: str) -> bytes:
    last_line = phrase.rpartition("\n")[2]
    separator = "\r\n " if len(field) + len(last_line) + len(address) > 73 else " "
    return f"{field}: {phrase}{separator}<{address}>\r\n".encode("ascii")


def subject_line(subject: str) -> bytes:
    """``Subject: subject``, written here so no header parser ever reads the user's text.

    ``subject`` is already clean (one line, no control characters). Plain ASCII without
    ``=?`` is folded at its spaces; anything else, including text that only looks like an
    RFC 2047 encoded word, travels as base64 encoded words, which decode to exactly it.
    """
    if subject.isascii() and "=?" not in subject:
        return _fold("Subject", subject.split())
    return _fold("Subject", encoded_words(subject, first=39))


def _fold(field: str, words: Iterable[str]) -> bytes:
    """``field: word word...`` folded (CRLF + space) before a word that would pass column 78."""
    line, lines = f"{field}:", []
    for word in words:
        if len(line) + 1 + len(word) > 78 and line != f"{field}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=4096)
def encoded_words(text: str, first: int = 45) -> tuple[str, ...]:
    """RFC 2047 base64 words of at most 72 characters, never splitting a character; the first
    word holds at most ``first`` bytes of ``text`` (45: 60 base64 characters), the others 45.

    Splits fall after a space where one is at hand, the space kept inside the word before
    (decoders drop the whitespace between encoded words, so it must travel encoded).
    """
    chunks: list[str] = []
    chunk, size, limit = "", 0, first
    for char in text:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            limit = 45
            cut = chunk.rfind(" ") + 1
            if not cut or len(chunk[cut:].encode("utf-8")) + width > limit:
                cut = len(chunk)
            chunks.append(chunk[:cut])
            chunk = chunk[cut:]
            size = len(chunk.encode("utf-8"))
        chunk += char
        size += width
    chunks.append(chunk)
    return tuple(f"=?utf-8?b?{base64.b64encode(c.encode('utf-8')).decode('ascii')}?=" for c in chunks)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` when cut."""
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def make_message_id(key: str, domain: str) -> str:
    """``<key@domain>``, the same for the same key. Characters a Message-ID cannot hold are escaped as
    ``=XX`` (so distinct keys stay distinct); very long keys are hashed; an empty key gets a random id."""
    if not key:
        return f"<{uuid.uuid4().hex}@{domain}>"
    if len(key) > _MAX_ID_LEFT or not _ID_LEFT.fullmatch(key):
        key = _escape_id(key)
    return f"<{key}@{domain}>"


def _escape_id(key: str) -> str:
    escaped = "".join(
        c if _ID_CHAR.fullmatch(c) else "".join(f"={b:02X}" for b in c.encode("utf-8")) for c in key
    )
    if escaped.startswith(".") or escaped.endswith(".") or ".." in escaped:
        escaped = escaped.replace(".", "=2E")
    if len(escaped) > _MAX_ID_LEFT:
        escaped = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return escaped
