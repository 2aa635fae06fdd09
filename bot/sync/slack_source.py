"""Reading people from Slack: ``users.list``, every page, waiting out rate limits.

:func:`list_users` calls ``{slack.api_url}users.list`` with ``limit=200`` and follows
``response_metadata.next_cursor`` until it is empty. A 429 answer is waited out for its
``Retry-After`` seconds (through the injected clock) and the same page asked again, at most
:data:`MAX_RATE_LIMITED` times in a row; slack_sdk's own retries are off, so this is the one layer
that retries. Bots (and Slackbot) are left out.

Two uses:

- :func:`enrich`: people read from another source get ``slack_user_id``, ``timezone`` and ``language``
  (from ``locale``, asked for with ``include_locale``) from the Slack user with the same e-mail
  address (deleted users are not matched), where they have none;
- :func:`slack_rows`: Slack *is* the directory (``directory.source = "slack"``): one row per user,
  id = the Slack user id (stable, unlike an address); deleted users are inactive.

Errors: :class:`~bot.sync.errors.SyncError` only: ``config`` (no ``slack.bot_token``), ``auth``
(``invalid_auth``, ``not_authed``, ``account_inactive``, ``token_revoked``, ``missing_scope``),
``network`` (connection, timeout), ``source`` (any other error answer, or rate limited too long).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clock import Clock
from bot.config import SlackSettings
from bot.directory.fields import InvalidField, parse_language, parse_phone, parse_timezone
from bot.directory.records import PersonRecord, RawRow
from bot.sync.errors import Reason, SyncError

PAGE_LIMIT = 200
MAX_RATE_LIMITED = 10
TIMEOUT = 30
_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "missing_scope"}
)


@dataclass(frozen=True, slots=True)
class SlackUser:
    """The part of a Slack user object Herald uses."""

    id: str
    name: str = ""
    email: str | None = None
    phone: str | None = None
    title: str | None = None
    timezone: str | None = None
    locale: str | None = None  # e.g. en-US; users.list sends it only with include_locale
    deleted: bool = False


@dataclass(frozen=True)
class SlackUsers:
    """Every human user ``users.list`` returned, and how many requests and waits it took."""

    users: list[SlackUser]
    requests: int = 0
    rate_limited: int = 0


def user_from(member: dict[str, Any]) -> SlackUser | None:
    """A :class:`SlackUser` from one ``users.list`` member; None for bots and Slackbot."""
    if member.get("is_bot") or member.get("id") == "USLACKBOT" or not member.get("id"):
        return None
    profile = member.get("profile") or {}
    name = profile.get("real_name") or member.get("real_name") or profile.get("display_name")
    return SlackUser(
        id=str(member["id"]),
        name=str(name or member.get("name") or ""),
        email=_text(profile.get("email")),
        phone=_text(profile.get("phone")),
        title=_text(profile.get("title")),
        timezone=_text(member.get("tz")),
        locale=_text(member.get("locale")),
        deleted=bool(member.get("deleted")),
    )


def rate_limit_wait(error: SlackApiError) -> float | None:
    """Seconds a 429 answer asks to wait (its ``Retry-After``, else 1); None for any other error."""
    response = error.response
    if response.status_code != 429:
        return None
    raw = response.headers.get("Retry-After") or response.headers.get("retry-after") or "1"
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 1.0


async def list_users(slack: SlackSettings, clock: Clock) -> SlackUsers:
    """Every page of ``users.list``; :class:`SyncError` unless every page was read."""
    if slack.bot_token is None:
        raise SyncError("slack.bot_token is not set (required to read users from Slack)", "config")
    client = AsyncWebClient(
        token=slack.bot_token.get_secret_value(), base_url=slack.api_url, timeout=TIMEOUT, retry_handlers=[]
    )
    users: list[SlackUser] = []
    cursor = ""
    requests = waits = in_a_row = 0
    while True:
        try:
            requests += 1
            response = await client.users_list(limit=PAGE_LIMIT, cursor=cursor or None, include_locale=True)
        except SlackApiError as exc:
            waits, in_a_row = waits + 1, in_a_row + 1
            await clock.sleep(_rate_limit_pause(exc, in_a_row))
            continue
        except (SlackClientError, OSError, TimeoutError) as exc:
            raise SyncError(f"slack users.list: cannot reach {slack.api_url}: {exc}", "network") from exc
        in_a_row = 0
        for member in response.get("members") or ():
            user = user_from(member)
            if user is not None:
                users.append(user)
        cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor:
            return SlackUsers(users, requests, waits)


def _rate_limit_pause(exc: SlackApiError, in_a_row: int) -> float:
    """Seconds to wait before asking ``users.list`` again after ``exc``, the ``in_a_row``-th rate
    limit in a row; :class:`SyncError` for any other error, or after too many waits in a row."""
    wait = rate_limit_wait(exc)
    if wait is None:
        error = str(exc.response.get("error") or f"HTTP {exc.response.status_code}")
        reason: Reason = "auth" if error in _AUTH_ERRORS else "source"
        raise SyncError(f"slack users.list failed: {error}", reason) from exc
    if in_a_row > MAX_RATE_LIMITED:
        raise SyncError(
            f"slack users.list: still rate limited after {MAX_RATE_LIMITED} waits", "source"
        ) from exc
    return wait


def enrich(people: Sequence[PersonRecord], users: Iterable[SlackUser]) -> tuple[list[PersonRecord], int]:
    """``people`` with ``slack_user_id``/``timezone``/``language`` filled from the user of the same
    e-mail, and how many people matched a Slack user. Values a person already has are kept."""
    by_email = {user.email.lower(): user for user in users if user.email and not user.deleted}
    enriched: list[PersonRecord] = []
    matched = 0
    for person in people:
        user = by_email.get(person.email) if person.email else None
        if user is None:
            enriched.append(person)
            continue
        matched += 1
        updated = dataclasses.replace(
            person,
            slack_user_id=person.slack_user_id or user.id,
            timezone=person.timezone or _timezone(user.timezone),
            language=person.language or _language(user.locale),
        )
        enriched.append(updated)
    return enriched, matched


def slack_rows(users: Iterable[SlackUser], default_region: str | None) -> tuple[list[RawRow], list[str]]:
    """One row per user for :func:`bot.directory.records.validate_rows`, and notes on what was left out.

    A profile phone that is not a valid number is left out (with a note) rather than rejecting the
    person: Slack's phone field is free text.
    """
    rows: list[RawRow] = []
    notes: list[str] = []
    for user in users:
        phone = user.phone
        if phone is not None:
            try:
                parse_phone(phone, default_region)
            except InvalidField as exc:
                notes.append(f"slack user {user.id}: phone left out: {exc.reason}")
                phone = None
        values: dict[str, object] = {
            "id": user.id,
            "name": user.name,
            "email": user.email,
            "phone": phone,
            "title": user.title,
            "timezone": user.timezone,
            "slack_user_id": user.id,
            "language": _language(user.locale),
            "active": not user.deleted,
        }
        rows.append(RawRow(f"slack user {user.id}", values))
    return rows, notes


def _timezone(name: str | None) -> str | None:
    try:
        return parse_timezone(name) if name else None
    except InvalidField:
        return None


def _language(locale: str | None) -> str | None:
    """Slack's ``locale`` (``en-US``) as a language tag; None when absent or not a tag."""
    try:
        return parse_language(locale) if locale else None
    except InvalidField:
        return None


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None
