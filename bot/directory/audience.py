"""Audience queries: who a notification goes to. This module holds the language and its parser.

The language (typed in Slack, config and the CLI; case-insensitive)::

    everyone                       every active person
    dept:Finance  site:Berlin      exact department / site
    group:oncall-network           member of a directory group
    title:Manager                  title contains the text ("IT Manager" matches)
    person:alice@example.com       one person by id or email
    <@U123>  <@U123|alice>         a Slack user
    <!subteam^S123>  <!subteam^S123|@netops>   a Slack user group

A space is AND between terms, a comma inside a term is OR (``dept:finance,hr``), a leading ``-`` is
NOT. Values holding spaces are quoted: ``site:"New York"``. Slack's own link form of an email,
``person:<mailto:a@example.com|a@example.com>``, is read as the address. Inactive people are never
selected.

Three layers, each usable alone:

- :func:`parse_audience` (pure, here) turns text into an :class:`Audience`, or raises
  :class:`AudienceError` whose message starts ``at N:`` (N is the 0-based character position) and
  says what was expected there.
- :func:`bot.directory.audience_sql.audience_condition` compiles an :class:`Audience` into a SQL
  WHERE clause over the ``person`` table.
- :func:`bot.directory.reach.reach` counts, in the database, who is selected and who each channel
  can reach.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TermKind = Literal["everyone", "dept", "site", "group", "title", "person", "slack_user", "slack_group"]
KEYS: dict[str, TermKind] = {
    "dept": "dept",
    "site": "site",
    "group": "group",
    "title": "title",
    "person": "person",
}
EXPECTED = "everyone, dept:, site:, group:, title:, person:, <@U…>, <!subteam^S…>"

_SLACK_ID = {"slack_user": re.compile(r"[UW][A-Z0-9]+"), "slack_group": re.compile(r"S[A-Z0-9]+")}
_WORD = re.compile(r"[^\s:]*")
_TOKEN = re.compile(r"\S*")
_BARE_VALUE = re.compile(r'[^\s,"]+')
MAX_CHARS = 2000  # longer queries are refused before any parsing
MAX_TERMS = 200  # each term and each further comma-separated value counts one
_QUOTES = {'"': '"', "\u201c": "\u201d"}  # straight, and the curly pair macOS and Slack may type


class AudienceError(ValueError):
    """An audience query that cannot be parsed. ``str()`` is ``at N: reason``."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"at {position}: {message}")
        self.reason = message
        self.position = position


@dataclass(frozen=True)
class Term:
    """One term: ``kind`` with OR-ed ``values`` (as typed; Slack ids upper-case), maybe negated."""

    kind: TermKind
    values: tuple[str, ...] = ()
    negated: bool = False

    def __str__(self) -> str:
        sign = "-" if self.negated else ""
        if self.kind == "everyone":
            return f"{sign}everyone"
        if self.kind == "slack_user":
            return sign + ",".join(f"<@{v}>" for v in self.values)
        if self.kind == "slack_group":
            return sign + ",".join(f"<!subteam^{v}>" for v in self.values)
        return f"{sign}{self.kind}:" + ",".join(_quote(v) for v in self.values)


@dataclass(frozen=True)
class Audience:
    """Terms AND-ed together. ``str()`` is the canonical query text."""

    terms: tuple[Term, ...]

    def __str__(self) -> str:
        return " ".join(str(term) for term in self.terms)


def _matched(pattern: re.Pattern[str], text: str, pos: int) -> str:
    """What ``pattern`` matches at ``pos`` (no copy of the rest of the text), or ``""``."""
    match = pattern.match(text, pos)
    return match.group(0) if match else ""


def _quote(value: str) -> str:
    return f'"{value}"' if re.search(r'[\s,"]', value) else value


# --- parsing ---------------------------------------------------------------------------------


def parse_audience(text: str) -> Audience:
    """Parse an audience query; raise :class:`AudienceError` naming the position and what was expected.

    A query over :data:`MAX_CHARS` characters is refused before parsing, one over :data:`MAX_TERMS`
    terms (values count: ``dept:a,b`` is two) as the parser reaches the first term too many. Parsing
    is linear in the length of the text.
    """
    if len(text) > MAX_CHARS:
        raise AudienceError(f"query too long: {len(text):,} characters (at most {MAX_CHARS:,})", MAX_CHARS)
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.counted = 0  # terms and values so far, against MAX_TERMS

    def parse(self) -> Audience:
        terms: list[Term] = []
        self._skip_space()
        if self.pos >= len(self.text):
            raise AudienceError(f"empty audience (expected {EXPECTED})", 0)
        while self.pos < len(self.text):
            self._count()
            terms.append(self._term())
            self._skip_space()
        return Audience(tuple(terms))

    def _count(self) -> None:
        self.counted += 1
        if self.counted > MAX_TERMS:
            raise AudienceError(f"too many terms (at most {MAX_TERMS}, counting each ',' value)", self.pos)

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _at_separator(self) -> bool:
        return self.pos >= len(self.text) or self.text[self.pos].isspace()

    def _term(self) -> Term:
        negated = self.text[self.pos] == "-"
        if negated:
            self.pos += 1
            if self._at_separator():
                raise AudienceError("expected a term after '-'", self.pos)
        start = self.pos
        if self.text.startswith("<@", start):
            return Term("slack_user", (self._slack_id("slack_user", "<@"),), negated)
        if self.text[start : start + len("<!subteam^")].lower() == "<!subteam^":
            return Term("slack_group", (self._slack_id("slack_group", "<!subteam^"),), negated)
        word = _matched(_WORD, self.text, start)
        self.pos += len(word)
        if self.pos < len(self.text) and self.text[self.pos] == ":" and word.lower() in KEYS:
            self.pos += 1
            return Term(KEYS[word.lower()], self._values(f"'{word}:'"), negated)
        if word.lower() == "everyone" and self._at_separator():
            return Term("everyone", (), negated)
        token = _matched(_TOKEN, self.text, start)
        raise AudienceError(f"unknown term {token!r} (expected {EXPECTED})", start)

    def _slack_id(self, kind: str, opener: str) -> str:
        start = self.pos
        end = self.text.find(">", start)
        if end < 0 or "<" in self.text[start + 1 : end]:
            raise AudienceError(f"expected '>' to close '{opener}'", start)
        inner = self.text[start + len(opener) : end]
        slack_id = inner.split("|", 1)[0].strip().upper()
        if not _SLACK_ID[kind].fullmatch(slack_id):
            what = "a Slack user id (U…)" if kind == "slack_user" else "a Slack user group id (S…)"
            raise AudienceError(f"expected {what} after '{opener}'", start + len(opener))
        self.pos = end + 1
        if not self._at_separator():
            raise AudienceError(f"expected a space after '{self.text[start : end + 1]}'", self.pos)
        return slack_id

    def _values(self, after: str) -> tuple[str, ...]:
        values: list[str] = []
        while True:
            if self._at_separator() or self.text[self.pos] == ",":
                raise AudienceError(f"expected a value after {after}", self.pos)
            values.append(self._value())
            if self._at_separator():
                return tuple(values)
            if self.text[self.pos] != ",":
                raise AudienceError(f"expected a space or ',' after {values[-1]!r}", self.pos)
            self.pos += 1
            self._count()
            after = "','"

    def _value(self) -> str:
        start = self.pos
        first = self.text[start]
        if first in _QUOTES:
            end = self.text.find(_QUOTES[first], start + 1)
            if end < 0:
                raise AudienceError(f"unclosed quote (expected a closing {_QUOTES[first]!r})", start)
            value = " ".join(self.text[start + 1 : end].split())
            if not value:
                raise AudienceError("expected a value inside the quotes", start)
            self.pos = end + 1
            return value
        if self.text.startswith("<mailto:", start):
            end = self.text.find(">", start)
            if end < 0:
                raise AudienceError("expected '>' to close '<mailto:'", start)
            self.pos = end + 1
            return self.text[start + len("<mailto:") : end].split("|", 1)[0]
        match = _BARE_VALUE.match(self.text, start)
        if match is None:
            raise AudienceError(f'unexpected {first!r} (quote a whole value: site:"New York")', start)
        self.pos += len(match.group(0))
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            raise AudienceError('unexpected \'"\' (quote a whole value: site:"New York")', self.pos)
        return match.group(0)
