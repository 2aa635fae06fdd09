"""Alert intake and escalation: monitoring systems post alerts, Herald pages the right people.

Modules, from the edge inwards:

- :mod:`~bot.alerts.web`: ``POST /hooks/alertmanager``, ``/hooks/grafana``, ``/hooks/alerts``
  (read, authenticate, parse, hand on, answer);
- :mod:`~bot.alerts.auth`: bearer token or HMAC-SHA256 signature, in constant time;
- :mod:`~bot.alerts.intake`: pure parsers of the three body shapes into an ``AlertBatch``;
- :mod:`~bot.alerts.routing`: pure first-match routing, severity, grouping, the frozen policy;
- :mod:`~bot.alerts.lifecycle`: dedup, grouping, repeat and resolution: what each group is owed;
- :mod:`~bot.alerts.outbox`: creating what is owed, under flood control;
- :mod:`~bot.alerts.acks`: acknowledging and resolving
  (also by SMS: :func:`~bot.alerts.acks.ack_by_phone`);
- :mod:`~bot.alerts.flood`: pure per-route flood control;
- :mod:`~bot.alerts.escalation`: the pure "what is due" and the scheduler tick;
- :mod:`~bot.alerts.notify`: writing each notification about a group exactly once;
- :mod:`~bot.alerts.messages`: the pure text of alert notifications;
- :mod:`~bot.alerts.slack`: posting and editing the alert channel's messages, the Acknowledge/Resolve
  buttons; :mod:`~bot.alerts.slack_message` renders a message (pure), :mod:`~bot.alerts.slack_state`
  keeps each group's Slack side on its row;
- :mod:`~bot.alerts.report`: ack SLAs for ``herald report``;
- :mod:`~bot.alerts.models` (domain dataclasses) and :mod:`~bot.alerts.tables` (SQLModel tables).

Glossary. *Alert*: one condition a monitor reports, named by its fingerprint. *Alert group*: the
alerts of one route with equal ``group_by`` labels, from the first firing one until none fires;
it is what people are paged about, acknowledge and resolve. *Step*: one escalation (a tier) or
reminder after the first page. *Notice*: a notification sent about a group.
"""

from typing import Any

__all__ = ["ack_by_phone", "alert_report", "alert_routes", "alert_tick"]

_LAZY = {
    "ack_by_phone": "bot.alerts.acks",
    "alert_report": "bot.alerts.report",
    "alert_routes": "bot.alerts.web",
    "alert_tick": "bot.alerts.escalation",
}


def __getattr__(name: str) -> Any:
    """The package's entry points, imported on first use (the tables import nothing else)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bot.alerts' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
