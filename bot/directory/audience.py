"""Audience queries: who a notification goes to.

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

- :func:`parse_audience` (pure) turns text into an :class:`Audience`, or raises
  :class:`AudienceError` whose message starts ``at N:`` (N is the 0-based character position) and
  says what was expected there.
- :func:`audience_condition` compiles an :class:`Audience` into a SQL WHERE clause over the
  ``person`` table, for ``select(...).where(cond)`` or ``INSERT ... SELECT``. Nothing is loaded
  into Python.
- :func:`reach` counts, in the database, who is selected and who each channel can reach.

Reach reasons. ``Reach.unreachable`` maps channel → reason → count with reasons ``no_email`` /
``no_phone`` (no address) and ``suppressed`` (the address is on the suppression list for that
channel), plus ``opted_out`` when :func:`reach` is given opt-outs (the person turned the notice's kind
off on that channel); a person is counted under the first reason that applies, in that order.
``Reach.flat_unreachable()`` gives the one-level map of ``herald directory show --json``:
``no_email``, ``no_phone``, ``suppressed_email``, ``suppressed_sms``.

Matching is case-insensitive through SQL ``lower()``; SQLite's ``lower()`` folds ASCII letters only,
so on SQLite ``site:ZÜRICH`` matches ``Zürich`` but not a stored ``ZÜRICH``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import ColumnElement, and_, case, exists, false, func, not_, or_, select, true
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from bot.store import Store
from bot.tables import Group, Person, PersonGroup, Suppression

TermKind = Literal["everyone", "dept", "site", "group", "title", "person", "slack_user", "slack_group"]
KEYS: dict[str, TermKind] = {
    "dept": "dept",
    "site": "site",
    "group": "group",
    "title": "title",
    "person": "person",
}
EXPECTED = "everyone, dept:, site:, group:, title:, person:, <@U…>, <!subteam^S…>"
CHANNEL_REASONS = {"email": "no_email", "sms": "no_phone"}

PERSON = SQLModel.metadata.tables[Person.__tablename__]
PERSON_GROUP = SQLModel.metadata.tables[PersonGroup.__tablename__]
GROUP = SQLModel.metadata.tables[Group.__tablename__]
SUPPRESSION = SQLModel.metadata.tables[Suppression.__tablename__]

_SLACK_ID = {"slack_user": re.compile(r"[UW][A-Z0-9]+"), "slack_group": re.compile(r"S[A-Z0-9]+")}
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


def _quote(value: str) -> str:
    return f'"{value}"' if re.search(r'[\s,"]', value) else value


# --- parsing ---------------------------------------------------------------------------------


def parse_audience(text: str) -> Audience:
    """Parse an audience query; raise :class:`AudienceError` naming the position and what was expected."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Audience:
        terms: list[Term] = []
        self._skip_space()
        if self.pos >= len(self.text):
            raise AudienceError(f"empty audience (expected {EXPECTED})", 0)
        while self.pos < len(self.text):
            terms.append(self._term())
            self._skip_space()
        return Audience(tuple(terms))

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
        rest = self.text[start:]
        if rest.startswith("<@"):
            return Term("slack_user", (self._slack_id("slack_user", "<@"),), negated)
        if rest.lower().startswith("<!subteam^"):
            return Term("slack_group", (self._slack_id("slack_group", "<!subteam^"),), negated)
        match = re.match(r"[^\s:]*", rest)
        word = match.group(0) if match else ""
        self.pos += len(word)
        if self.pos < len(self.text) and self.text[self.pos] == ":" and word.lower() in KEYS:
            self.pos += 1
            return Term(KEYS[word.lower()], self._values(f"'{word}:'"), negated)
        if word.lower() == "everyone" and self._at_separator():
            return Term("everyone", (), negated)
        token = re.match(r"\S*", rest)
        raise AudienceError(
            f"unknown term {token.group(0) if token else rest!r} (expected {EXPECTED})", start
        )

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
        match = re.match(r'[^\s,"]+', self.text[start:])
        if match is None:
            raise AudienceError(f'unexpected {first!r} (quote a whole value: site:"New York")', start)
        self.pos += len(match.group(0))
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            raise AudienceError('unexpected \'"\' (quote a whole value: site:"New York")', self.pos)
        return match.group(0)


# --- SQL -------------------------------------------------------------------------------------


def audience_condition(
    audience: Audience, slack_groups: Mapping[str, Collection[str]] | None = None
) -> ColumnElement[bool]:
    """A WHERE clause over ``person`` selecting the audience's active people.

    ``slack_groups`` maps a Slack user group id to its members' Slack user ids (as Slack's
    ``usergroups.users.list`` returns them); a ``<!subteam^S…>`` term also selects the members of a
    directory group whose ``slack_usergroup_id`` is that id.
    """
    return and_(PERSON.c.active.is_(True), audience_match(audience, slack_groups))


def audience_match(
    audience: Audience, slack_groups: Mapping[str, Collection[str]] | None = None
) -> ColumnElement[bool]:
    """:func:`audience_condition` without the active filter (to count the inactive people it spares).

    Every term compiles to a two-valued condition (never NULL), so NOT of a term is its complement:
    ``-dept:finance`` selects people with no department too.
    """
    conditions = []
    for term in audience.terms:
        condition = _term_condition(term, slack_groups or {})
        conditions.append(not_(condition) if term.negated else condition)
    return and_(true(), *conditions)


def _term_condition(term: Term, slack_groups: Mapping[str, Collection[str]]) -> ColumnElement[bool]:
    person = PERSON.c
    lowered = [value.lower() for value in term.values]
    if term.kind == "everyone":
        return true()
    if term.kind in ("dept", "site"):
        column = person.department if term.kind == "dept" else person.site
        return and_(column.is_not(None), func.lower(column).in_(lowered))
    if term.kind == "title":
        patterns = [func.lower(person.title).contains(value, autoescape=True) for value in lowered]
        return and_(person.title.is_not(None), or_(*patterns))
    if term.kind == "person":
        return or_(
            func.lower(person.id).in_(lowered),
            and_(person.email.is_not(None), person.email.in_(lowered)),
        )
    if term.kind == "group":
        return exists().where(
            PERSON_GROUP.c.person_id == person.id,
            func.lower(PERSON_GROUP.c.group_name).in_(lowered),
        )
    if term.kind == "slack_user":
        return and_(person.slack_user_id.is_not(None), person.slack_user_id.in_(term.values))
    return _slack_group_condition(term.values, slack_groups)


def _slack_group_condition(
    group_ids: Sequence[str], slack_groups: Mapping[str, Collection[str]]
) -> ColumnElement[bool]:
    person = PERSON.c
    in_directory = exists().where(
        PERSON_GROUP.c.person_id == person.id,
        PERSON_GROUP.c.group_name == GROUP.c.name,
        GROUP.c.slack_usergroup_id.in_(group_ids),
    )
    members = sorted({member.upper() for group_id in group_ids for member in slack_groups.get(group_id, ())})
    if not members:
        return in_directory
    return or_(in_directory, and_(person.slack_user_id.is_not(None), person.slack_user_id.in_(members)))


# --- reach -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonSummary:
    id: str
    name: str
    email: str | None
    phone: str | None
    department: str | None
    site: str | None
    title: str | None
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reach:
    """Who an audience selects and who each channel reaches (see the module docstring for reasons)."""

    count: int
    inactive: int
    reachable: Mapping[str, int]
    unreachable: Mapping[str, Mapping[str, int]]
    sample: tuple[PersonSummary, ...]

    def flat_unreachable(self) -> dict[str, int]:
        flat: dict[str, int] = {}
        for channel, reasons in self.unreachable.items():
            for reason, n in reasons.items():
                flat[reason if reason.startswith("no_") else f"{reason}_{channel}"] = n
        return flat


def _address(channel: str) -> ColumnElement[str | None]:
    return PERSON.c.email if channel == "email" else PERSON.c.phone


def _suppressed(channel: str) -> ColumnElement[bool]:
    # An uncorrelated IN: both databases read the suppression list once (SQLite into a temporary
    # index, PostgreSQL into a hash), whatever the size of the audience. Emails are compared
    # lower-case, as people's emails are stored.
    address = SUPPRESSION.c.address
    listed = select(func.lower(address) if channel == "email" else address).where(
        SUPPRESSION.c.channel == channel
    )
    return _address(channel).in_(listed.scalar_subquery())


def reach(
    store: Store,
    audience: Audience,
    channels: Sequence[str] = ("email", "sms"),
    slack_groups: Mapping[str, Collection[str]] | None = None,
    sample: int = 10,
    opted_out: Mapping[str, ColumnElement[bool]] | None = None,
) -> Reach:
    """Count the audience and its reach per channel with one aggregate query, plus a sample.

    A query matching no one gives ``count == 0``; deciding whether that is an error is the caller's.
    Raise ValueError for a channel other than email or sms. ``opted_out`` maps a channel to a
    condition over ``person`` (who turned the notice's kind off there, from
    :func:`bot.recipients.rules.opt_out_conditions`); those people count under reason ``opted_out``.
    """
    unknown = [channel for channel in channels if channel not in CHANNEL_REASONS]
    if unknown:
        raise ValueError(f"unknown channel {unknown[0]!r} (expected email or sms)")
    active = PERSON.c.active.is_(True)

    def total(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    columns = [total(active), total(not_(active))]
    for channel in channels:
        address = _address(channel)
        missing = or_(address.is_(None), address == "")
        suppressed = _suppressed(channel)
        opted = (opted_out or {}).get(channel, false())
        columns += [
            total(and_(active, missing)),
            total(and_(active, not_(missing), suppressed)),
            total(and_(active, not_(missing), not_(suppressed), opted)),
        ]
    with store.begin() as connection:
        row = connection.execute(
            select(*columns).select_from(PERSON).where(audience_match(audience, slack_groups))
        ).one()
        people = _sample(connection, audience_condition(audience, slack_groups), sample)
    count, inactive = int(row[0]), int(row[1])
    reachable: dict[str, int] = {}
    unreachable: dict[str, dict[str, int]] = {}
    for index, channel in enumerate(channels):
        no_address, suppressed_n, opted_n = (int(n) for n in row[2 + 3 * index : 5 + 3 * index])
        unreachable[channel] = {CHANNEL_REASONS[channel]: no_address, "suppressed": suppressed_n}
        if opted_out is not None and channel in opted_out:
            unreachable[channel]["opted_out"] = opted_n
        reachable[channel] = count - no_address - suppressed_n - opted_n
    return Reach(count, inactive, reachable, unreachable, people)


def _sample(connection: Connection, condition: ColumnElement[bool], limit: int) -> tuple[PersonSummary, ...]:
    if limit <= 0:
        return ()
    person = PERSON.c
    rows = connection.execute(
        select(
            person.id,
            person.name,
            person.email,
            person.phone,
            person.department,
            person.site,
            person.title,
        )
        .where(condition)
        .order_by(person.name, person.id)
        .limit(limit)
    ).all()
    groups: dict[str, list[str]] = {}
    if rows:
        memberships = select(PERSON_GROUP.c.person_id, PERSON_GROUP.c.group_name).where(
            PERSON_GROUP.c.person_id.in_([row.id for row in rows])
        )
        for person_id, name in connection.execute(memberships.order_by(PERSON_GROUP.c.group_name)):
            groups.setdefault(person_id, []).append(name)
    return tuple(PersonSummary(*row, groups=tuple(groups.get(row.id, ()))) for row in rows)
