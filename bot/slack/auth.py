"""Who may announce, and who is in a Slack user group.

``slack.announcers`` lists user ids (``U…``/``W…``) and user-group ids (``S…``). A user may announce
when listed, or when a member of a listed group. Group members come from ``usergroups.users.list``
and are cached for :data:`GROUP_TTL` seconds per group; when Slack cannot answer, the last known
members are used (a group that was never read counts as empty, so nobody is let in by an outage).
The same cache resolves ``<!subteam^S…>`` audiences to member user ids.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.clock import Clock
from bot.slack.mrkdwn import Mrkdwn, mention, mrkdwn

log = logging.getLogger("herald.slack")

GROUP_TTL = 300.0
_SUBTEAM = re.compile(r"<!subteam\^([A-Z0-9]+)")


@dataclass(frozen=True, slots=True)
class _Cached:
    members: frozenset[str]
    read_at: float


class UserGroups:
    """Members of Slack user groups, read through ``usergroups.users.list`` and cached."""

    def __init__(self, client: AsyncWebClient, clock: Clock, ttl: float = GROUP_TTL) -> None:
        self.client = client
        self.clock = clock
        self.ttl = ttl
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def members(self, group_id: str) -> frozenset[str]:
        """The group's user ids; cached; the last known (or empty) set when Slack fails."""
        cached = self._cache.get(group_id)
        if cached is not None and self.clock.now() - cached.read_at < self.ttl:
            return cached.members
        lock = self._locks.setdefault(group_id, asyncio.Lock())
        async with lock:
            cached = self._cache.get(group_id)
            if cached is not None and self.clock.now() - cached.read_at < self.ttl:
                return cached.members
            try:
                response = await self.client.usergroups_users_list(usergroup=group_id)
            except (SlackApiError, SlackClientError, OSError, TimeoutError) as exc:
                log.warning("usergroups.users.list %s failed: %s", group_id, exc)
                return cached.members if cached is not None else frozenset()
            members = frozenset(str(user) for user in response.get("users") or [])
            self._cache[group_id] = _Cached(members, self.clock.now())
            return members

    async def resolve(self, group_ids: Iterable[str]) -> dict[str, Collection[str]]:
        """Members of each group, for an audience that names ``<!subteam^S…>``."""
        return {group: await self.members(group) for group in dict.fromkeys(group_ids)}


def subteams_in(audience: str) -> list[str]:
    """``"<!subteam^S1> -<!subteam^S2>"`` → ``["S1", "S2"]``."""
    return _SUBTEAM.findall(audience)


class Announcers:
    """The ``slack.announcers`` rule: listed users, or members of listed user groups."""

    def __init__(self, announcers: Iterable[str], groups: UserGroups) -> None:
        listed = [entry.strip() for entry in announcers if entry.strip()]
        self.users = frozenset(entry for entry in listed if not entry.startswith("S"))
        self.group_ids = tuple(entry for entry in listed if entry.startswith("S"))
        self.groups = groups

    async def allows(self, user_id: str) -> bool:
        if user_id in self.users:
            return True
        for group in self.group_ids:
            if user_id in await self.groups.members(group):
                return True
        return False


def refusal_text(user_id: str) -> Mrkdwn:
    """What a user who may not announce is told (ephemeral)."""
    return mrkdwn(
        "Sorry {}, you are not allowed to send announcements with Herald. "
        "Announcers are listed in Herald's `slack.announcers` setting (users or user groups); "
        "ask your Herald admin to add you.",
        mention(user_id),
    )
