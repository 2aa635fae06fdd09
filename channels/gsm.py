"""SMS segment arithmetic: GSM-7 or UCS-2, how many segments, and how to cut a text to fit.

Pure functions, no I/O. A body travels in GSM-7 when every character is in the GSM 03.38
default alphabet or its extension table, else in UCS-2 (UTF-16 on today's networks):

==========  ================  ===================================================
encoding    one segment       each segment of a longer (concatenated) message
==========  ================  ===================================================
GSM-7       160 septets       153 septets (the concatenation header takes the rest)
UCS-2       70 code units     67 code units
==========  ================  ===================================================

Extension-table characters (form feed and ``^{}\\[~]|€``) cost two septets (ESC + char);
characters outside the Basic Multilingual Plane (most emoji) cost two UTF-16 code units.
Neither is split across two segments: a segment that cannot take the whole character ends
early, as handsets and carriers do, so a segment may carry 152 septets or 66 units.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

# GSM 03.38 default alphabet, 0x00-0x7F, without 0x1B (ESC, the escape to the extension table).
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table: each costs ESC + the character, two septets.
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
_GSM = _GSM_BASIC | _GSM_EXTENSION

# Characters that force UCS-2 but have a GSM-7 twin; swapping them keeps a text at 160 per segment
# (Twilio's "smart encoding" does the same on its side; doing it here keeps our counts right).
_LOOKALIKES = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),  # single quotes, prime
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),  # double quotes, guillemets
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2212\u2022", "-"),  # hyphens, dashes, minus, bullet
        **dict.fromkeys("\u00a0\u2002\u2003\u2009\u202f\t", " "),  # no-break and thin spaces, tab
        **dict.fromkeys("\u00ad\u200b\ufeff"),  # soft hyphen, zero-width space, BOM: dropped
        "\u2026": "...",  # horizontal ellipsis
    }
)

# Terminal escape sequences (CSI, OSC) whole, control characters that are not whitespace (tabs, line
# breaks and the like are left to str.split), and the bidi embeddings, overrides and isolates (U+202E
# turns "gpj.exe" around): none belongs in an SMS.
_CONTROLS = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069]"
)
_ZWJ = "\u200d"
_WORD_WINDOW = 20  # look this far back for a space before cutting inside a word
_TRAILING_JUNK = " \n\r.,;:-"


class Encoding(enum.StrEnum):
    """How an SMS body is encoded on the air."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


_LIMITS = {Encoding.GSM7: (160, 153), Encoding.UCS2: (70, 67)}  # (single, each of many)


@dataclass(frozen=True, slots=True)
class Segments:
    """A text's encoding, its segment count (0 for an empty text) and its length in units

    (septets for GSM-7, UTF-16 code units for UCS-2)."""

    encoding: Encoding
    segments: int
    units: int


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` has a GSM-7 code (basic or extension table)."""
    return _GSM.issuperset(text)


def replace_lookalikes(text: str) -> str:
    """Swap typographic quotes, dashes, spaces and the ellipsis for their GSM-7 twins.

    Only characters whose meaning survives are replaced; anything else is left as it is.
    """
    return text.translate(_LOOKALIKES)


def drop_controls(text: str) -> str:
    """``text`` without escape sequences, bidi overrides and control characters other than whitespace.

    Whitespace controls (tab, CR, LF, VT, FF...) stay for ``str.split``/``splitlines`` to handle.
    """
    return _CONTROLS.sub("", text)


def count_segments(text: str) -> Segments:
    """How ``text`` is encoded and how many segments it takes (see the module docstring)."""
    encoding = Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2
    costs = [_cost(char, encoding) for char in text]
    units = sum(costs)
    single, each = _LIMITS[encoding]
    if units <= single:
        return Segments(encoding, 1 if units else 0, units)
    segments, fill = 1, 0
    for cost in costs:
        if fill + cost > each:
            segments, fill = segments + 1, 0
        fill += cost
    return Segments(encoding, segments, units)


def fit_to_segments(text: str, max_segments: int, ellipsis: str = "…", suffix: str = "") -> str:
    """``text + suffix`` when it fits in ``max_segments``, else ``text`` cut cleanly + ellipsis + suffix.

    The suffix (an opt-out hint, say) always survives whole. The cut never falls inside a
    character, an emoji sequence or a combining sequence, and moves back to a word boundary
    when one is within a few characters. A non-GSM ellipsis would switch a GSM-7 text to UCS-2
    and cost more than half its room, so GSM-7 results end with ``...`` instead; when ``text``
    holds UCS-2 characters, the longer of the two results (cut before the first of them in GSM-7,
    or anywhere in UCS-2) wins.

    Raises ValueError when ``max_segments < 1`` or when ellipsis and suffix alone do not fit.
    """
    if max_segments < 1:
        raise ValueError(f"max_segments must be at least 1, got {max_segments}")
    if count_segments(text + suffix).segments <= max_segments:
        return text + suffix
    first_ucs2 = next((i for i, char in enumerate(text) if char not in _GSM), len(text))
    gsm_ellipsis = ellipsis if is_gsm7(ellipsis) else "..."
    tries = [(first_ucs2, gsm_ellipsis)] if is_gsm7(gsm_ellipsis + suffix) else []
    if first_ucs2 < len(text) or not tries:
        tries.append((len(text), ellipsis))
    best: tuple[int, str] | None = None
    for limit, mark in tries:
        keep = _longest_prefix(text, limit, mark + suffix, max_segments)
        if keep is not None and (best is None or keep > best[0]):
            best = (keep, mark)
    if best is None:
        raise ValueError(f"ellipsis and suffix alone exceed {max_segments} segment(s)")
    keep, mark = best
    return _trim(text, keep) + mark + suffix


def _cost(char: str, encoding: Encoding) -> int:
    if encoding is Encoding.GSM7:
        return 2 if char in _GSM_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def _longest_prefix(text: str, limit: int, tail: str, max_segments: int) -> int | None:
    """The largest n <= limit with ``text[:n] + tail`` in max_segments, or None if even n=0 fails.

    Segment count never falls as a prefix grows, so a binary search finds it.
    """
    if count_segments(tail).segments > max_segments:
        return None
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if count_segments(text[:middle] + tail).segments <= max_segments:
            low = middle
        else:
            high = middle - 1
    return low


def _trim(text: str, keep: int) -> str:
    """``text[:keep]`` moved back to a clean cut, preferably a word boundary, without trailing junk."""
    while 0 < keep < len(text) and not _is_clean_cut(text, keep):
        keep -= 1
    if 0 < keep < len(text) and not text[keep].isspace():
        start = max(0, keep - _WORD_WINDOW)
        space = max(text.rfind(" ", start, keep), text.rfind("\n", start, keep))
        if space > 0:
            keep = space
    return text[:keep].rstrip(_TRAILING_JUNK)


def _is_clean_cut(text: str, index: int) -> bool:
    """False when cutting before ``text[index]`` would tear a grapheme (accent, emoji sequence, flag)."""
    char, before = text[index], text[index - 1]
    if before == _ZWJ or char == _ZWJ:
        return False
    if unicodedata.category(char) in ("Mn", "Mc", "Me"):  # combining marks, variation selectors, keycap
        return False
    if "\U0001f3fb" <= char <= "\U0001f3ff" or "\U000e0020" <= char <= "\U000e007f":  # skin tone, tags
        return False
    if _is_regional_indicator(char):  # flags are pairs: never cut between the two halves
        run = 0
        while index - run - 1 >= 0 and _is_regional_indicator(text[index - run - 1]):
            run += 1
        return run % 2 == 0
    return True


def _is_regional_indicator(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"
