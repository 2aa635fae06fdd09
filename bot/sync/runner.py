"""One directory sync: read the configured source whole, validate, store in one transaction, record it.

:func:`sync` is what ``herald directory sync`` and the scheduled sync run:

1. fetch everything first (``directory.source``: a file, LDAP/Active Directory, or Slack's
   ``users.list``), and, when ``slack.bot_token`` is set and Slack is not itself the source, Slack's
   users, to fill ``slack_user_id`` and ``timezone`` by e-mail address;
2. validate every entry as a file import does (:func:`bot.directory.records.validate_rows`): bad entries
   are reported in the summary and skipped, the others load;
3. store them with :func:`bot.directory.store.import_people` in one transaction: new people added,
   changes applied, people of this source gone from it deactivated (never deleted); people whose
   entry was merely invalid keep their state, and a source that yields nobody deactivates nobody;
4. log the summary and store it in ``audit_log`` (action :data:`ACTION`, subject the source).

A sync that fails before step 3 (bind refused, connection dropped mid-search, Slack unreachable)
raises :class:`~bot.sync.errors.SyncError` and has changed nothing; the failure is logged and stored
in ``audit_log`` as :data:`FAILED_ACTION`. Database errors propagate (the import rolls back).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from bot.app import Herald
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.directory.files import DirectoryFileError, read_people
from bot.directory.records import ParsedPeople, RowError, validate_rows
from bot.directory.store import ImportResult, import_people
from bot.store import Store
from bot.sync.errors import SyncError
from bot.sync.ldap_source import fetch_entries, fewer_collections
from bot.sync.slack_source import enrich, list_users, slack_rows
from bot.tables import AuditEntry

log = logging.getLogger("herald.sync")

AUDIT = AuditEntry.__table__  # type: ignore[attr-defined]
ACTION = "directory.sync"
FAILED_ACTION = "directory.sync_failed"
AUDITED_ERRORS = 50  # rejected entries listed in the audit row (all are counted)


@dataclass(frozen=True)
class SyncSummary:
    """What one sync did. ``errors`` lists why entries were rejected; ``notes`` what was left out
    without rejecting anyone; ``slack_matched`` is None when Slack was not asked for ids."""

    source: str
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    deactivated: int = 0
    rejected: int = 0
    errors: tuple[RowError, ...] = ()
    notes: tuple[str, ...] = ()
    slack_matched: int | None = None
    deactivation_skipped: bool = False
    seconds: float = 0.0

    @property
    def imported(self) -> int:
        return self.added + self.changed + self.unchanged

    def line(self) -> str:
        """The one-line summary ``herald directory sync`` prints."""
        noun = "person" if self.imported == 1 else "people"
        text = (
            f"imported {self.imported} {noun} ({self.added} added, {self.changed} changed, "
            f"{self.unchanged} unchanged, {self.deactivated} deactivated), {self.rejected} rejected"
        )
        if self.slack_matched is not None:
            text += f", {self.slack_matched} matched in Slack"
        return text

    def as_dict(self, max_errors: int | None = None) -> dict[str, Any]:
        errors = self.errors if max_errors is None else self.errors[:max_errors]
        document: dict[str, Any] = {
            "source": self.source,
            "imported": self.imported,
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "deactivated": self.deactivated,
            "rejected": self.rejected,
            "errors": [asdict(error) for error in errors],
            "notes": list(self.notes),
            "deactivation_skipped": self.deactivation_skipped,
            "seconds": round(self.seconds, 3),
        }
        if self.slack_matched is not None:
            document["slack_matched"] = self.slack_matched
        return document


@dataclass
class Fetched:
    """A source read whole and validated, before anything is stored."""

    parsed: ParsedPeople
    notes: list[str] = field(default_factory=list)
    slack_matched: int | None = None


async def sync(
    target: Herald | Store,
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    actor: str = "herald directory sync",
) -> SyncSummary:
    """Sync from ``settings.directory.source`` into the store; see the module docstring.

    ``target`` is a :class:`~bot.app.Herald` (its settings and clock are the defaults) or a bare
    :class:`~bot.store.Store` (then ``settings`` is required). Raise :class:`SyncError` when the
    source cannot be read whole; nothing is changed then.
    """
    if isinstance(target, Herald):
        store, settings, clock = target.store, settings or target.settings, clock or target.clock
    elif settings is None:
        raise TypeError("sync(store, settings): settings are required with a bare store")
    else:
        store = target
    clock = clock or SystemClock()
    source = settings.directory.source
    started = clock.now()
    with fewer_collections():
        summary = await _sync(store, settings, clock, actor, started)
    log.info("directory sync from %s: %s", source, summary.line())
    return summary


async def _sync(store: Store, settings: Settings, clock: Clock, actor: str, started: float) -> SyncSummary:
    source = settings.directory.source
    try:
        fetched = await fetch(settings, clock)
    except SyncError as exc:
        log.warning("directory sync from %s failed (nothing changed): %s", source, exc)
        detail = {"error": str(exc), "reason": exc.reason, "seconds": round(clock.now() - started, 3)}
        await asyncio.to_thread(record, store, FAILED_ACTION, source, actor, clock.now(), detail)
        raise
    parsed = fetched.parsed
    result = await asyncio.to_thread(
        import_people,
        store,
        parsed.people,
        source=source,
        deactivate_missing=True,
        keep=parsed.rejected_ids,
        now=clock.now(),
    )
    summary = _summary(source, fetched, result, clock.now() - started)
    detail = summary.as_dict(max_errors=AUDITED_ERRORS)
    await asyncio.to_thread(record, store, ACTION, source, actor, clock.now(), detail)
    return summary


def _summary(source: str, fetched: Fetched, result: ImportResult, seconds: float) -> SyncSummary:
    return SyncSummary(
        source=source,
        added=result.added,
        changed=result.changed,
        unchanged=result.unchanged,
        deactivated=result.deactivated,
        rejected=fetched.parsed.rejected,
        errors=tuple(fetched.parsed.errors),
        notes=tuple(fetched.notes),
        slack_matched=fetched.slack_matched,
        deactivation_skipped=result.deactivation_skipped,
        seconds=seconds,
    )


async def fetch(settings: Settings, clock: Clock) -> Fetched:
    """Read and validate the configured source (and Slack's users, to match); store nothing."""
    directory = settings.directory
    region = directory.default_region
    fetched: Fetched
    if directory.source == "file":
        if not directory.path:
            raise SyncError(
                "directory.path is not set (the file that directory.source = 'file' reads)", "config"
            )
        try:
            fetched = Fetched(await asyncio.to_thread(read_people, directory.path, region))
        except DirectoryFileError as exc:
            raise SyncError(str(exc), "input") from exc
    elif directory.source == "ldap":
        entries = await asyncio.to_thread(fetch_entries, directory.ldap)
        fetched = Fetched(await asyncio.to_thread(validate_rows, entries.rows, region))
    else:
        listed = await list_users(settings.slack, clock)
        rows, notes = slack_rows(listed.users, region)
        return Fetched(validate_rows(rows, region), notes)
    if settings.slack.bot_token is not None:
        listed = await list_users(settings.slack, clock)
        fetched.parsed.people, fetched.slack_matched = enrich(fetched.parsed.people, listed.users)
    return fetched


def record(store: Store, action: str, source: str, actor: str, at: float, detail: dict[str, Any]) -> None:
    """One ``audit_log`` row for a sync (or a failed one)."""
    with store.begin() as connection:
        connection.execute(
            AUDIT.insert().values(
                at=at,
                actor=actor[:200],
                action=action,
                subject=source,
                allowed=True,
                detail=json.dumps(detail, default=str),
            )
        )


def last_successful_sync(store: Store) -> float | None:
    """When the last sync that stored its result finished (epoch seconds), from ``audit_log``."""
    with store.begin() as connection:
        value = connection.execute(select(func.max(AUDIT.c.at)).where(AUDIT.c.action == ACTION)).scalar()
    return float(value) if value is not None else None
