"""Pure routing: an alert's labels → the route that takes it, its severity, its group and its policy.

Rules (what ``[[routes]]`` means):

- Routes are tried in order; the first whose every ``match`` label is equal (a missing label equals
  ``""``, as in Alertmanager) and whose every ``match_re`` pattern matches the whole label value
  (``re.fullmatch``) takes the alert. A route with neither is a catch-all: put it last.
- When none matches, the built-in default route takes it: audience ``group:oncall``
  (:data:`DEFAULT_AUDIENCE`), every configured channel, grouped by ``alertname``. An alert is never
  dropped for want of a route; if nobody is in ``oncall`` it is still stored and shown in Slack.
- Nothing goes to nobody: when a group opens and its route's audience selects no reachable person
  (active, with a usable address on one of the route's channels), the group pages the default
  route's audience (:func:`default_choice`) instead, and Herald logs an ERROR and counts it in
  ``herald_alerts_unrouted_total`` (:mod:`bot.alerts.lifecycle`).
- Severity: the route's ``severity`` when it sets one; else the alert's ``severity`` label when it
  names a configured severity, or a common monitoring alias (:data:`SEVERITY_ALIASES`: ``page`` and
  ``error`` are critical, ``warning`` is info); else ``critical``, so an unknown label is paged
  rather than quietly downgraded.
- Grouping: alerts of one route with equal values of the route's ``group_by`` labels form one alert
  group (``["..."]`` groups by every label, as in Alertmanager).
- Channels a route names but Herald has not configured (sms without Twilio) are left out; when
  nothing is left, email is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from bot.alerts.models import Policy
from bot.config import Route, Settings

DEFAULT_AUDIENCE = "group:oncall"
DEFAULT_GROUP_BY = ("alertname",)
DEFAULT_SEVERITY = "critical"
ALL_LABELS = "..."
REMINDERS = 2  # re-pages of everyone paged so far, one per ack_within, after the last tier
SEVERITY_ALIASES = {
    "page": "critical",
    "error": "critical",
    "high": "critical",
    "warning": "info",
    "warn": "info",
    "low": "info",
    "none": "info",
}


@dataclass(frozen=True, slots=True)
class RouteChoice:
    """The route an alert took. ``name`` is for people (``routes[0]``, ``default``); ``key`` is
    stable while the route's content is unchanged (flood control counts per key)."""

    name: str
    key: str
    audience: str
    channels: tuple[str, ...]
    severity: str | None
    group_by: tuple[str, ...]


@lru_cache(maxsize=512)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def route_matches(route: Route, labels: Mapping[str, str]) -> bool:
    """Every exact ``match`` label equal and every ``match_re`` pattern matching the whole value."""
    for name, value in route.match.items():
        if labels.get(name, "") != value:
            return False
    return all(_pattern(pattern).fullmatch(labels.get(name, "")) for name, pattern in route.match_re.items())


def _key(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _channels(wanted: Sequence[str], configured: Collection[str]) -> tuple[str, ...]:
    kept = tuple(name for name in dict.fromkeys(wanted) if name in configured)
    return kept or ("email",)


def choose_route(
    routes: Sequence[Route], labels: Mapping[str, str], configured: Collection[str]
) -> RouteChoice:
    """The first route matching ``labels``, else the default route. ``configured``: channel names."""
    for index, route in enumerate(routes):
        if route_matches(route, labels):
            return _choice(index, route, configured)
    return _builtin_default(configured)


def _choice(index: int, route: Route, configured: Collection[str]) -> RouteChoice:
    return RouteChoice(
        name=f"routes[{index}]",
        key=_key(route.match, route.match_re, route.audience, route.group_by),
        audience=route.audience,
        channels=_channels(route.channels, configured),
        severity=route.severity,
        group_by=tuple(route.group_by) or DEFAULT_GROUP_BY,
    )


def _builtin_default(configured: Collection[str]) -> RouteChoice:
    return RouteChoice(
        name="default",
        key=_key("default"),
        audience=DEFAULT_AUDIENCE,
        channels=_channels(tuple(configured), configured),
        severity=None,
        group_by=DEFAULT_GROUP_BY,
    )


def default_choice(routes: Sequence[Route], configured: Collection[str]) -> RouteChoice:
    """The default route: the first catch-all route (no ``match``, no ``match_re``), else the built-in
    one. An alert whose route selects no reachable person goes to its audience instead."""
    for index, route in enumerate(routes):
        if not route.match and not route.match_re:
            return _choice(index, route, configured)
    return _builtin_default(configured)


def severity_for(choice: RouteChoice, labels: Mapping[str, str], known: Collection[str]) -> str:
    """The route's severity, else the alert's ``severity`` label (or its alias), else critical."""
    if choice.severity:
        return choice.severity
    label = labels.get("severity", "").strip().lower()
    if label in known:
        return label
    alias = SEVERITY_ALIASES.get(label)
    if alias is not None and alias in known:
        return alias
    return DEFAULT_SEVERITY


def group_labels(group_by: Sequence[str], labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that name an alert's group (every label for ``["..."]``)."""
    if ALL_LABELS in group_by:
        return dict(sorted(labels.items()))
    return {name: labels.get(name, "") for name in group_by}


def group_key(choice: RouteChoice, severity: str, grouped: Mapping[str, str]) -> str:
    """Alerts with equal keys belong to one open group (same route, severity and group labels)."""
    return _key(choice.key, severity, sorted(grouped.items()))


def group_title(grouped: Mapping[str, str], fallback: str) -> str:
    """``HighLatency``, ``HighLatency berlin`` (more group labels), ``instance=w1`` (grouped without
    the alert name), or ``fallback`` (the first alert's summary) when the group labels are empty."""
    if grouped.get("alertname"):
        rest = [value for name, value in grouped.items() if name != "alertname" and value]
        return " ".join([grouped["alertname"], *rest])[:300]
    pairs = [f"{name}={value}" for name, value in grouped.items() if value]
    return (" ".join(pairs) or fallback)[:300]


def policy_for(settings: Settings, choice: RouteChoice, severity: str) -> Policy:
    """The policy an alert group opening now is promised (frozen onto the group)."""
    sla = settings.sla_for(severity)
    return Policy(
        route=choice.name,
        audience=choice.audience,
        channels=choice.channels,
        severity=severity,
        deliver_within=sla.deliver_within,
        ack_within=sla.ack_within,
        escalate=tuple(sla.escalate),
        repeat_interval=sla.repeat_interval,
        reminders=REMINDERS if sla.ack_within else 0,
    )
