"""Pure flood control: which owed firing notifications go out now, which are folded, which wait.

Per route, at most :data:`FLOOD_LIMIT` firing notifications (pages, updates, repeats, summaries) in
any :data:`FLOOD_WINDOW` seconds. Within that budget:

- urgent groups (``kinds.mandatory``: critical, outage, security by default) always get their own
  notification, at once, even past the limit: flood control never holds back or folds an urgent page;
- other groups get their own notification while the budget lasts; when more are owed than the
  budget has room for, the last place goes to one *summary* notification listing the rest (those
  of them with the same audience and channels; others wait);
- with no room left, the rest are held (and marked so), and go out, saying how long they were held,
  as soon as the window has room. Nothing is ever dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FLOOD_LIMIT = 10
FLOOD_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Owed:
    """A group owed a firing notification. ``bucket`` groups what one summary may join
    (same audience and channels)."""

    group_id: str
    route_key: str
    urgent: bool
    since: float
    bucket: tuple[str, ...] = ()


@dataclass
class FloodPlan:
    singles: list[str] = field(default_factory=list)
    summaries: list[list[str]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


def plan_flood(owed: Sequence[Owed], recent: Mapping[str, int], limit: int = FLOOD_LIMIT) -> FloodPlan:
    """Decide, per route, with ``recent[route_key]`` notifications already sent in the window."""
    plan = FloodPlan()
    routes: dict[str, list[Owed]] = {}
    for item in sorted(owed, key=lambda o: (o.since, o.group_id)):
        routes.setdefault(item.route_key, []).append(item)
    for route_key, items in routes.items():
        urgent = [o for o in items if o.urgent]
        rest = [o for o in items if not o.urgent]
        plan.singles.extend(o.group_id for o in urgent)
        room = max(0, limit - recent.get(route_key, 0) - len(urgent))
        if len(rest) <= room:
            plan.singles.extend(o.group_id for o in rest)
            continue
        if room == 0:
            plan.held.extend(o.group_id for o in rest)
            continue
        plan.singles.extend(o.group_id for o in rest[: room - 1])
        folded: dict[tuple[str, ...], list[str]] = {}
        for item in rest[room - 1 :]:
            folded.setdefault(item.bucket, []).append(item.group_id)
        first, *others = folded.values()
        if len(first) == 1:
            plan.singles.extend(first)
        else:
            plan.summaries.append(first)
        for ids in others:  # another audience cannot join that summary: it waits for room
            plan.held.extend(ids)
    return plan
