"""Audience queries as SQL: an :class:`~bot.directory.audience.Audience` compiled into a WHERE clause
over the ``person`` table, for ``select(...).where(cond)`` or ``INSERT ... SELECT``. Nothing is
loaded into Python.

Matching is case-insensitive through SQL ``lower()``; SQLite's ``lower()`` folds ASCII letters only,
so on SQLite ``site:ZÜRICH`` matches ``Zürich`` but not a stored ``ZÜRICH``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, true
from sqlmodel import SQLModel

from bot.directory.audience import Audience, Node, OrGroup, Term
from bot.tables import Group, Person, PersonGroup

PERSON = SQLModel.metadata.tables[Person.__tablename__]
PERSON_GROUP = SQLModel.metadata.tables[PersonGroup.__tablename__]
GROUP = SQLModel.metadata.tables[Group.__tablename__]


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
    ``-dept:finance`` selects people with no department too. Groups nest as AND/OR of their terms,
    all in the one expression: still one query however the audience is written.
    """
    return _all_of(audience, slack_groups or {})


def _all_of(audience: Audience, slack_groups: Mapping[str, Collection[str]]) -> ColumnElement[bool]:
    return and_(true(), *(_node_condition(node, slack_groups) for node in audience.terms))


def _node_condition(node: Node, slack_groups: Mapping[str, Collection[str]]) -> ColumnElement[bool]:
    if isinstance(node, OrGroup):
        condition = or_(*(_all_of(alternative, slack_groups) for alternative in node.alternatives))
    else:
        condition = _term_condition(node, slack_groups)
    return not_(condition) if node.negated else condition


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
    if term.kind == "manager":
        return _reports_condition(lowered)
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


def _reports_condition(managers: Sequence[str]) -> ColumnElement[bool]:
    """People whose ``manager`` names one of ``managers`` (lower-cased ids or emails) by id or email.

    A manager named by id is also found through their email and the other way round; the two
    subqueries are uncorrelated, so the database runs each once, not per person.
    """
    boss = PERSON.alias("boss")
    named = or_(func.lower(boss.c.id).in_(managers), boss.c.email.in_(managers))
    manager = func.lower(PERSON.c.manager)
    return and_(
        PERSON.c.manager.is_not(None),
        or_(
            manager.in_(managers),
            manager.in_(select(func.lower(boss.c.id)).where(named)),
            manager.in_(select(boss.c.email).where(named, boss.c.email.is_not(None))),
        ),
    )
