"""Audience queries: who a notification goes to. This module holds the language and its parser.

The language (typed in Slack, config and the CLI; case-insensitive)::

    everyone                       every active person
    dept:Finance  site:Berlin      exact department / site
    group:oncall-network           member of a directory group
    title:Manager                  title contains the text ("IT Manager" matches)
    person:alice@example.com       one person by id or email
    manager:alice@example.com      the direct reports of a person (by id or email)
    <@U123>  <@U123|alice>         a Slack user
    <!subteam^S123>  <!subteam^S123|@netops>   a Slack user group

A space is AND between terms, a comma inside a term is OR (``dept:finance,hr``), a leading ``-`` is
NOT. ``OR`` between terms is OR and parentheses group: ``(dept:finance site:berlin) OR group:execs``;
AND binds tighter than ``OR`` and ``-(...)`` negates a group. Values holding spaces or parentheses
are quoted: ``site:"New York"``. Slack's own link form of an email,
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

TermKind = Literal[
    "everyone", "dept", "site", "group", "title", "person", "manager", "slack_user", "slack_group"
]
KEYS: dict[str, TermKind] = {
    "dept": "dept",
    "site": "site",
    "group": "group",
    "title": "title",
    "person": "person",
    "manager": "manager",
}
EXPECTED = "everyone, dept:, site:, group:, title:, person:, manager:, <@U…>, <!subteam^S…> or '('"

_SLACK_ID = {"slack_user": re.compile(r"[UW][A-Z0-9]+"), "slack_group": re.compile(r"S[A-Z0-9]+")}
_WORD = re.compile(r"[^\s:()]*")
_TOKEN = re.compile(r"[^\s()]*")
_BARE_VALUE = re.compile(r'[^\s,"()]+')
MAX_CHARS = 2000  # longer queries are refused before any parsing
MAX_TERMS = 200  # each term and each further comma-separated value counts one
_OR = frozenset({"OR", "Or", "oR", "or"})
MAX_DEPTH = 20  # nested parentheses: bounds the parser's recursion and the SQL expression depth
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
class OrGroup:
    """Alternatives OR-ed together (each an :class:`Audience`), maybe negated: ``-(a b OR c)``."""

    alternatives: tuple[Audience, ...]
    negated: bool = False

    def __str__(self) -> str:
        sign = "-" if self.negated else ""
        return sign + "(" + " OR ".join(str(alternative) for alternative in self.alternatives) + ")"


Node = Term | OrGroup


@dataclass(frozen=True)
class Audience:
    """Terms and groups AND-ed together. ``str()`` is the canonical query text.

    A query with ``OR`` at its top level is one :class:`OrGroup` (written without parentheses).
    """

    terms: tuple[Node, ...]

    def __str__(self) -> str:
        if self.alternatives() is not None:
            return str(self.terms[0])[1:-1]
        return " ".join(str(term) for term in self.terms)

    def alternatives(self) -> tuple[Audience, ...] | None:
        """The OR-ed alternatives when this audience is exactly one plain ``(... OR ...)``."""
        first = self.terms[0] if len(self.terms) == 1 else None
        return first.alternatives if isinstance(first, OrGroup) and not first.negated else None


def _any_of(alternatives: list[Audience]) -> Audience:
    """OR of ``alternatives``, nested plain ORs spliced in (``(a OR b) OR c`` is ``a OR b OR c``)."""
    flat: list[Audience] = []
    for alternative in alternatives:
        flat.extend(alternative.alternatives() or (alternative,))
    return flat[0] if len(flat) == 1 else Audience((OrGroup(tuple(flat)),))


def _matched(pattern: re.Pattern[str], text: str, pos: int) -> str:
    """What ``pattern`` matches at ``pos`` (no copy of the rest of the text), or ``""``."""
    match = pattern.match(text, pos)
    return match.group(0) if match else ""


def _quote(value: str) -> str:
    return f'"{value}"' if re.search(r'[\s,"()]', value) else value


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
        self._skip_space()
        if self.pos >= len(self.text):
            raise AudienceError(f"empty audience (expected {EXPECTED})", 0)
        audience = self._any(0)
        if self.pos < len(self.text):  # only a ')' stops _any before the end
            raise AudienceError("unexpected ')' (no '(' to close)", self.pos)
        return audience

    def _any(self, depth: int) -> Audience:
        """``all ( OR all )*``: alternatives up to the end or a ``)``."""
        alternatives = [self._all(depth)]
        while self._at_or():
            self.pos += 2
            self._skip_space()
            if self.pos >= len(self.text) or self.text[self.pos] == ")" or self._at_or():
                raise AudienceError(f"expected a term after 'OR' (expected {EXPECTED})", self.pos)
            alternatives.append(self._all(depth))
        return _any_of(alternatives)

    def _all(self, depth: int) -> Audience:
        """Terms and groups separated by spaces, up to the end, a ``)`` or an ``OR``."""
        terms: list[Node] = []
        while self.pos < len(self.text) and self.text[self.pos] != ")" and not self._at_or():
            terms.extend(self._node(depth))
            self._skip_space()
        if terms:
            return Audience(tuple(terms))
        if self._at_or():
            raise AudienceError("expected a term before 'OR'", self.pos)
        if depth == 0:
            raise AudienceError("unexpected ')' (no '(' to close)", self.pos)
        raise AudienceError(f"expected a term after '(' (expected {EXPECTED})", self.pos)

    def _at_or(self) -> bool:
        end = self.pos + 2
        if self.text[self.pos : end] not in _OR:  # a two-character slice, whatever the query's length
            return False
        return end >= len(self.text) or self.text[end].isspace() or self.text[end] == "("

    def _node(self, depth: int) -> list[Node]:
        """One term or parenthesised group, maybe negated; a plain AND group is spliced in."""
        start = self.pos
        negated = self.text[self.pos] == "-"
        if negated:
            self.pos += 1
            if self._at_separator():
                raise AudienceError("expected a term after '-'", self.pos)
        if self.text[self.pos] != "(":
            self._count(start)
            return [self._term(negated)]
        inner = self._group(depth)
        alternatives = inner.alternatives()
        if alternatives is not None:
            return [OrGroup(alternatives, negated)]
        return [OrGroup((inner,), True)] if negated else list(inner.terms)

    def _group(self, depth: int) -> Audience:
        opened = self.pos
        if depth >= MAX_DEPTH:
            raise AudienceError(f"parentheses nested too deep (at most {MAX_DEPTH})", opened)
        self.pos += 1
        self._skip_space()
        inner = self._any(depth + 1)
        if self.pos >= len(self.text):
            raise AudienceError(f"expected ')' to close the '(' at {opened}", self.pos)
        self.pos += 1
        if not self._at_separator():
            raise AudienceError("expected a space after ')'", self.pos)
        return inner

    def _count(self, position: int) -> None:
        self.counted += 1
        if self.counted > MAX_TERMS:
            raise AudienceError(f"too many terms (at most {MAX_TERMS}, counting each ',' value)", position)

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _at_separator(self) -> bool:
        return self.pos >= len(self.text) or self.text[self.pos].isspace() or self.text[self.pos] == ")"

    def _term(self, negated: bool) -> Term:
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
            self._count(self.pos)
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
        if first == "(":
            raise AudienceError(
                "unexpected '(' (quote a value holding parentheses: site:\"Berlin (Mitte)\")", start
            )
        if match is None:
            raise AudienceError(f'unexpected {first!r} (quote a whole value: site:"New York")', start)
        self.pos += len(match.group(0))
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            raise AudienceError('unexpected \'"\' (quote a whole value: site:"New York")', self.pos)
        return match.group(0)
