"""``herald config check``: route and escalation audiences that select nobody in the directory.

An alert whose route audience selects nobody goes to the default route's audience instead (SPEC
"Nothing goes to nobody"), and an escalation tier that selects nobody pages nobody: both are
configuration mistakes best caught before an alert fires. :func:`audience_targets` lists every
audience the configuration pages (each ``[[routes]]`` entry, the built-in default route when alerts
can arrive, each ``[sla.<severity>] escalate`` tier); :func:`empty_audience_warnings` names those
that select no active person. :func:`open_existing` opens the database only if it is already there:
a check never creates a SQLite file or a schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exists, inspect, select
from sqlalchemy.engine import make_url

from bot.alerts.routing import DEFAULT_AUDIENCE
from bot.config import Route, Settings
from bot.directory.audience import AudienceError, parse_audience
from bot.directory.audience_sql import audience_condition
from bot.store import Store, StoreError, open_store
from bot.tables import Person, table_of

PERSON = table_of(Person)
NEEDED_TABLES = ("person", "person_group", "group_")


@dataclass(frozen=True, slots=True)
class Target:
    """One audience the configuration pages, and where it is configured."""

    where: str
    audience: str


def _route_name(index: int, route: Route) -> str:
    matchers = [f"{k}={v}" for k, v in route.match.items()] + [f"{k}=~{v}" for k, v in route.match_re.items()]
    return f"routes[{index}] (match {', '.join(matchers) or 'everything'})"


def audience_targets(settings: Settings) -> list[Target]:
    """Every route audience and escalation tier of ``settings``, in configuration order."""
    targets = [Target(_route_name(i, route), route.audience) for i, route in enumerate(settings.routes)]
    catch_all = any(not route.match and not route.match_re for route in settings.routes)
    if (settings.routes or settings.webhooks) and not catch_all:
        targets.append(Target("the built-in default route", DEFAULT_AUDIENCE))
    for severity, policy in settings.sla.items():
        targets.extend(
            Target(f"[sla.{severity}] escalate[{n}]", audience) for n, audience in enumerate(policy.escalate)
        )
    return targets


def empty_audience_warnings(store: Store, targets: list[Target]) -> list[str]:
    """One line per target whose audience does not parse or selects no active person."""
    warnings = []
    with store.begin() as connection:
        for target in targets:
            try:
                condition = audience_condition(parse_audience(target.audience))
            except AudienceError as exc:
                warnings.append(f"{target.where}: audience {target.audience!r} does not parse ({exc})")
                continue
            if not connection.execute(select(exists().where(condition))).scalar_one():
                warnings.append(
                    f"{target.where}: audience {target.audience!r} selects nobody in the directory"
                )
    return warnings


def open_existing(url: str) -> Store | str:
    """The store at ``url`` if its database and directory tables exist, else why not (nothing created)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            return "the database is in memory"
        if not Path(database).expanduser().is_file():
            return f"the database file {database} does not exist"
    try:
        store = open_store(url, migrate=False)
    except StoreError as exc:
        return str(exc)
    with store.engine.connect() as connection:
        missing = [name for name in NEEDED_TABLES if not inspect(connection).has_table(name)]
    if missing:
        store.dispose()
        return "the database has no schema yet (run 'herald db upgrade')"
    return store
