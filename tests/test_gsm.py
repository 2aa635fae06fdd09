"""GSM-7 / UCS-2 segment arithmetic and clean cuts (channels.gsm)."""

from __future__ import annotations

import unicodedata

import pytest

from channels.gsm import Encoding, count_segments, fit_to_segments, is_gsm7, replace_lookalikes

GSM, UCS = Encoding.GSM7, Encoding.UCS2
WORDS = "The quick brown fox jumps over the lazy dog. " * 30
CYRILLIC = "Съешь же ещё этих мягких французских булок, да выпей чаю. " * 20
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl: one grapheme
FLAG = "\U0001f1e9\U0001f1ea"  # DE: two regional indicators


def short(value: object) -> str | None:
    """Readable test ids for long texts."""
    if isinstance(value, str) and len(value) > 12:
        return f"{value[:6]}...{len(value)}"
    return None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("Hello, world! 0-9 @£$¥ èéùìò Ç Øø Åå", True),
        ("ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ ¤ ¡¿ ÄÖÑÜ§ äöñüà", True),
        ("line\nbreak\rreturn", True),
        ("^{}\\[~]|€\f", True),  # extension table
        ("ç", False),  # only the capital Ç is in the default alphabet
        ("\u03b1", False),  # lower-case Greek is not
        ("`", False),
        ("\t", False),
        ("\x1b", False),  # the escape itself is not a character
        ("\u2018curly\u2019", False),
        ("emoji 😀", False),
        ("Привет", False),
    ],
)
def test_is_gsm7(text: str, expected: bool) -> None:
    assert is_gsm7(text) is expected


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "units"),
    [
        ("", GSM, 0, 0),
        ("a", GSM, 1, 1),
        ("a" * 160, GSM, 1, 160),
        ("a" * 161, GSM, 2, 161),
        ("a" * 306, GSM, 2, 306),
        ("a" * 307, GSM, 3, 307),
        ("a" * 459, GSM, 3, 459),
        ("a" * 460, GSM, 4, 460),
        ("€" * 80, GSM, 1, 160),  # extension characters cost two septets
        ("€" * 81, GSM, 2, 162),  # 76 per part of 153: an escape pair never straddles two parts
        ("{" * 153, GSM, 3, 306),
        ("a" * 152 + "€" + "a" * 152, GSM, 3, 306),  # naive ceil(306 / 153) would say 2
        ("a" * 159 + "\f", GSM, 2, 161),
        ("ж" * 70, UCS, 1, 70),
        ("ж" * 71, UCS, 2, 71),
        ("ж" * 134, UCS, 2, 134),
        ("ж" * 135, UCS, 3, 135),
        ("😀" * 35, UCS, 1, 70),  # outside the BMP: two UTF-16 code units each
        ("😀" * 36, UCS, 2, 72),
        ("ж" * 66 + "😀" + "ж" * 66, UCS, 3, 134),  # a surrogate pair never straddles two parts
        ("a" * 100 + "😀", UCS, 2, 102),  # one non-GSM character switches the whole text
        ("€" * 40 + "ж", UCS, 1, 41),  # in UCS-2 the euro sign is one unit
    ],
    ids=short,
)
def test_count_segments(text: str, encoding: Encoding, segments: int, units: int) -> None:
    result = count_segments(text)
    assert (result.encoding, result.segments, result.units) == (encoding, segments, units)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("it\u2019s \u201cquoted\u201d", 'it\'s "quoted"'),
        ("\u00abGuillemets\u00bb", '"Guillemets"'),
        ("10\u201312 \u2014 done \u2212 1", "10-12 - done - 1"),
        ("wait\u2026", "wait..."),
        ("no\u00a0break\u202fthin\u2009space\ttab", "no break thin space tab"),
        ("soft\u00adhyphen\u200bzero", "softhyphenzero"),
        ("\u2022 bullet", "- bullet"),
        ("emoji 😀 stays, ç stays", "emoji 😀 stays, ç stays"),
    ],
)
def test_replace_lookalikes(text: str, expected: str) -> None:
    assert replace_lookalikes(text) == expected
    if is_gsm7(expected):
        assert is_gsm7(replace_lookalikes(text))


@pytest.mark.parametrize(
    ("text", "max_segments"),
    [("short", 1), ("a" * 160, 1), ("a" * 306, 2), ("ж" * 70, 1), ("😀" * 35, 1), ("", 1)],
)
def test_fit_leaves_a_fitting_text_alone(text: str, max_segments: int) -> None:
    assert fit_to_segments(text, max_segments) == text


@pytest.mark.parametrize("max_segments", [1, 2, 3, 4])
def test_fit_cuts_gsm_text_at_a_word_with_three_dots(max_segments: int) -> None:
    result = fit_to_segments(WORDS, max_segments)
    cost = count_segments(result)
    assert cost.encoding is GSM  # "…" would have switched to UCS-2 and lost half the room
    assert cost.segments == max_segments
    assert result.endswith("...")
    kept = result[:-3]
    assert WORDS.startswith(kept)
    assert WORDS[len(kept)] in " ."  # ends at a word boundary
    assert cost.units > 153 * max_segments - 25 if max_segments > 1 else cost.units > 160 - 25


@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_fit_cuts_ucs2_text_with_the_ellipsis_character(max_segments: int) -> None:
    result = fit_to_segments(CYRILLIC, max_segments)
    cost = count_segments(result)
    assert cost.encoding is UCS
    assert cost.segments <= max_segments
    assert result.endswith("…")
    assert CYRILLIC.startswith(result[:-1])
    assert CYRILLIC[len(result) - 1] in " ,."


def test_fit_prefers_gsm7_when_the_ucs2_character_falls_in_the_cut_tail() -> None:
    text = WORDS[:400] + " 😀"
    result = fit_to_segments(text, 2)
    assert count_segments(result).encoding is GSM
    assert len(result) > 250  # UCS-2 would keep at most 134 units


def test_fit_keeps_ucs2_when_that_keeps_more_text() -> None:
    text = "😀 " + WORDS
    result = fit_to_segments(text, 2)
    assert count_segments(result).encoding is UCS
    assert result.startswith("😀 The quick")
    assert result.endswith("…")


@pytest.mark.parametrize(
    ("unit", "max_segments"),
    [
        ("😀", 1),
        ("😀", 2),
        (FAMILY, 1),
        (FAMILY, 3),
        (FLAG, 1),
        (FLAG, 2),
        ("e\u0301", 1),
        ("1\ufe0f\u20e3", 1),
    ],
)
def test_fit_never_tears_a_character_or_grapheme(unit: str, max_segments: int) -> None:
    text = unit * 200  # no spaces: the cut cannot move to a word boundary
    result = fit_to_segments(text, max_segments)
    kept = result.removesuffix("…")
    assert kept and count_segments(result).segments <= max_segments
    assert len(kept) % len(unit) == 0 and kept == unit * (len(kept) // len(unit))


def test_fit_never_splits_an_escape_sequence() -> None:
    result = fit_to_segments("€" * 500, 2)
    assert result == "€" * (len(result) - 3) + "..."
    assert count_segments(result).segments == 2


def test_fit_cuts_inside_a_word_when_no_boundary_is_near() -> None:
    text = "x" * 500
    assert fit_to_segments(text, 1) == "x" * 157 + "..."


def test_fit_keeps_the_suffix_whole() -> None:
    suffix = "\nReply STOP to opt out."
    result = fit_to_segments(WORDS, 1, suffix=suffix)
    assert result.endswith("..." + suffix)
    assert count_segments(result).segments == 1
    assert fit_to_segments("short", 1, suffix=suffix) == "short" + suffix


def test_fit_honours_a_gsm_ellipsis() -> None:
    assert fit_to_segments("y" * 500, 1, ellipsis="~").endswith("y~")


@pytest.mark.parametrize("max_segments", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "base", [WORDS, CYRILLIC, "€ {x} " * 100, "mixed 😀 text ж " * 40, FAMILY + " hi " * 200]
)
def test_fit_always_fits_and_keeps_a_prefix(base: str, max_segments: int) -> None:
    for length in range(0, len(base), 37):
        text = base[:length]
        result = fit_to_segments(text, max_segments)
        assert count_segments(result).segments <= max_segments
        if result != text:
            kept = result.removesuffix("...").removesuffix("…")
            assert kept != result and text.startswith(kept)
            assert not kept or unicodedata.category(text[len(kept)]) not in ("Mn", "Me")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_segments": 0}, "at least 1"),
        ({"max_segments": 1, "suffix": "z" * 200}, "alone exceed"),
    ],
)
def test_fit_rejects_impossible_requests(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_to_segments(WORDS, **kwargs)  # type: ignore[arg-type]
