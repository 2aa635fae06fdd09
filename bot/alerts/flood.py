"""Pure flood control: which owed firing notifications go out now, which are folded, which wait.

Flood control counts per *lane*: a route's urgent groups (``kinds.mandatory``: critical, outage,
security by default) and its other groups are two lanes, so a flood of warnings never delays a
critical page. Per lane, at most :data:`FLOOD_LIMIT` firing notifications (pages, updates, repeats,
summaries) in any :data:`FLOOD_WINDOW` seconds, whatever the severity. Within that budget:

- groups get their own notification, at once, while the budget lasts (the oldest first);
- when more are owed than the budget has room for, the last place goes to one *summary*
  notification listing the rest (those of them with the same audience and channels; others wait).
  It goes out at once too, so the first page of an urgent storm never waits; the summary's
  escalation chain stands for every group it folded (see :mod:`bot.alerts.storm`);
- with no room left, the rest are held (and marked so), and go out, saying how long they were held,
  as soon as the window has room. Nothing is ever dropped, and every alert is stored and shown.

So a webhook with 5,000 distinct critical alerts makes at most :data:`FLOOD_LIMIT` notifications a
minute on its route, not 5,000.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FLOOD_LIMIT = 10
FLOOD_WINDOW = 60.0
URGENT_LANE = ":urgent"


def lane_of(route_key: str, urgent: bool) -> str:
    """The key flood control counts by: the route's key, plus :data:`URGENT_LANE` for urgent groups."""
    return route_key + URGENT_LANE if urgent else route_key


@dataclass(frozen=True, slots=True)
class Owed:
    """A group owed a firing notification. ``bucket`` groups what one summary may join
    (same audience and channels)."""

    group_id: str
    route_key: str
    urgent: bool
    since: float
    bucket: tuple[str, ...] = ()

    @property
    def lane(self) -> str:
        return lane_of(self.route_key, self.urgent)


@dataclass
class FloodPlan:
    singles: list[str] = field(default_factory=list)
    summaries: list[list[str]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)


def plan_flood(owed: Sequence[Owed], recent: Mapping[str, int], limit: int = FLOOD_LIMIT) -> FloodPlan:
    """Decide, per lane, with ``recent[lane]`` notifications already sent in the window."""
    plan = FloodPlan()
    lanes: dict[str, list[Owed]] = {}
    for item in sorted(owed, key=lambda o: (not o.urgent, o.since, o.group_id)):
        lanes.setdefault(item.lane, []).append(item)
    for lane, items in lanes.items():
        _plan_lane(plan, items, max(0, limit - recent.get(lane, 0)))
    return plan


def _plan_lane(plan: FloodPlan, items: list[Owed], room: int) -> None:
    if len(items) <= room:
        plan.singles.extend(o.group_id for o in items)
        return
    if room == 0:
        plan.held.extend(o.group_id for o in items)
        return
    plan.singles.extend(o.group_id for o in items[: room - 1])
    folded: dict[tuple[str, ...], list[str]] = {}
    for item in items[room - 1 :]:
        folded.setdefault(item.bucket, []).append(item.group_id)
    first, *others = folded.values()
    if len(first) == 1:
        plan.singles.extend(first)
    else:
        plan.summaries.append(first)
    for ids in others:  # another audience cannot join that summary: it waits for room
        plan.held.extend(ids)
