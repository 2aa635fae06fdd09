"""Quoted-printable pieces of an email body: the rendered text, and the values spliced into it per
recipient (links, names), each on lines of its own so that decoding restores the text around them."""

from __future__ import annotations

import binascii
import functools

_CRLF = b"\r\n"
_SOFT_BREAK = b"=\r\n"

__all__ = ["qp_link", "qp_text", "qp_value", "soft_end"]


def qp_text(text: str) -> bytes:
    """Quoted-printable with CRLF line ends; ``text`` uses ``\\n`` line ends."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", _CRLF)


def qp_link(url: str) -> bytes:
    """A link (ASCII) quoted-printable on lines of its own, ending in a soft line break."""
    return _own_lines(url.encode("ascii"))


@functools.lru_cache(maxsize=8192)
def qp_value(text: str) -> bytes:
    """A recipient's value (a name) quoted-printable on lines of its own, ending in a soft line break."""
    return _own_lines(text.encode("utf-8"))


def _own_lines(raw: bytes) -> bytes:
    """``raw`` quoted-printable (CR and LF encoded too), CRLF line ends, ending in a soft line break."""
    return soft_end(binascii.b2a_qp(raw, istext=False).replace(b"\n", _CRLF))


def soft_end(encoded: bytes) -> bytes:
    """``encoded`` plus a soft line break, keeping the last line within 76 characters."""
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start < 76:
        return encoded + _SOFT_BREAK
    split = start + 72
    while b"=" in encoded[split - 2 : split]:  # never split an =XX escape
        split -= 1
    return encoded[:split] + _SOFT_BREAK + encoded[split:] + _SOFT_BREAK
