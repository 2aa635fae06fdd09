"""Alert domain objects: plain frozen dataclasses, no tables, no IO.

An :class:`Alert` is one alert as a monitoring system reported it (labels identify it, the
fingerprint names it); an :class:`AlertBatch` is one webhook call's worth. A :class:`Policy` is what
an alert group was promised when it opened (audience, channels, SLA, escalation tiers): it is frozen
onto the group as JSON, so a config change never rewrites an alert that is already ringing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["firing", "resolved"]
STATUSES: tuple[Status, ...] = ("firing", "resolved")
SOURCES = ("alertmanager", "grafana", "alerts", "cli")


class PayloadError(ValueError):
    """A webhook body (or ``herald alert`` input) that cannot be taken; the message is for the sender.

    ``field`` names where the problem is (``alerts[0].labels``), None for the body as a whole;
    ``status`` is the HTTP status to answer: 400 for unreadable JSON, 422 for a wrong field.
    """

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.field = field
        self.status = status

    def as_json(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field}


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, source-neutral. ``labels`` identify it; ``fingerprint`` is its stable name."""

    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    fingerprint: str
    starts_at: float | None = None
    ends_at: float | None = None
    generator_url: str | None = None

    @property
    def name(self) -> str:
        """The alert's name: the ``alertname`` label, else its summary."""
        return self.labels.get("alertname") or self.summary

    @property
    def summary(self) -> str:
        """One line for people: the ``summary`` (or ``title``) annotation, else the alert name."""
        for key in ("summary", "title", "message"):
            value = self.annotations.get(key, "").strip()
            if value:
                return value.splitlines()[0]
        return self.labels.get("alertname") or "alert"

    @property
    def description(self) -> str:
        return self.annotations.get("description", "").strip()


@dataclass(frozen=True, slots=True)
class AlertBatch:
    """What one webhook call (or one ``herald alert``) delivered."""

    source: str
    alerts: tuple[Alert, ...]
    external_url: str | None = None
    truncated: int = 0  # alerts the sender left out (Alertmanager's truncatedAlerts)


@dataclass(frozen=True, slots=True)
class Policy:
    """The promise made to an alert group when it opened; stored as JSON on the group."""

    route: str
    audience: str
    channels: tuple[str, ...]
    severity: str
    deliver_within: float
    ack_within: float | None = None
    escalate: tuple[str, ...] = ()
    repeat_interval: float = 4 * 3600.0
    reminders: int = 0

    @property
    def steps(self) -> int:
        """Escalation steps after the first page: one per tier, then the reminders."""
        if self.ack_within is None or self.ack_within <= 0:
            return 0
        return len(self.escalate) + self.reminders

    def next_escalation(self, taken: int, at: float) -> float | None:
        """When step ``taken + 1`` falls due, the last step (or, for ``taken == 0``, the alert's
        arrival) having been at ``at``: one ``ack_within`` later. None once the chain is over."""
        if taken >= self.steps or self.ack_within is None:
            return None
        return at + self.ack_within

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Policy:
        data = json.loads(text)
        data["channels"] = tuple(data.get("channels") or ())
        data["escalate"] = tuple(data.get("escalate") or ())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What :func:`bot.alerts.lifecycle.ingest` did with a batch."""

    accepted: int
    groups: tuple[str, ...] = ()
    notifications: tuple[str, ...] = ()
    deduplicated: int = 0
    resolved_groups: tuple[str, ...] = ()
    held_back: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "groups": list(self.groups),
            "notifications": list(self.notifications),
            "deduplicated": self.deduplicated,
            "resolved": list(self.resolved_groups),
            "held_back": list(self.held_back),
        }


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What an acknowledge or resolve did; ``message`` is for the person who asked."""

    group_id: str
    changed: bool
    message: str
    title: str = ""
    cancelled: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
