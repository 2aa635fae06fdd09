"""The alert group's Slack message (pure): header, facts, the first alerts, the timeline, buttons.

While the group fires the message carries Acknowledge (until someone has) and Resolve, action ids
:data:`ACK_ACTION` / :data:`RESOLVE_ACTION`, value: the group id. :class:`GroupView` is everything
the message shows; :mod:`bot.alerts.slack_state` reads it from the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.alerts.messages import GroupFacts, StormFacts, alert_lines, firing_title, storm_lines
from bot.alerts.notify import display_actor
from bot.slack.blocks import Block, Message, button, context, field, people, section
from bot.slack.mrkdwn import Mrkdwn, join, mention, mrkdwn, slack_date

ACK_ACTION = "alert_ack"
RESOLVE_ACTION = "alert_resolve"

_NOTICE_TEXT = {
    "opened": "Paged {audience}",
    "update": "Update sent to {audience}",
    "repeat": "Still firing: reminded {audience}",
    "summary": "Paged {audience} (in a flood-control summary)",
    "escalation": "Escalated to tier {tier}: {audience}",
    "reminder": "Reminder to everyone paged",
    "resolution": "Resolution notice sent to everyone notified",
}


@dataclass(frozen=True, slots=True)
class NoticeLine:
    kind: str
    step: int
    audience: str
    at: float
    recipients: int


@dataclass(frozen=True, slots=True)
class GroupView:
    """Everything the Slack message shows, read from the store."""

    facts: GroupFacts
    state: str
    channels: tuple[str, ...]
    acked_at: float | None
    acked_by: str | None
    resolved_at: float | None
    resolved_by: str | None
    next_escalation_at: float | None
    next_audience: str | None
    held_back: int
    notices: tuple[NoticeLine, ...]
    revision: int
    slack_channel: str | None
    slack_ts: str | None
    storm: StormFacts | None = None  # other groups shown in this message (flood control)
    maintenance: Mapping[str, Any] | None = None  # the window that silenced it (bot.alerts.window_end)


def alert_message(view: GroupView) -> Message:
    """The alert group's Slack message: fallback text and blocks."""
    facts = view.facts
    if view.state == "resolved":
        title, icon = f"[RESOLVED] {facts.title}", ":white_check_mark:"
    else:
        title, icon = firing_title(facts), (":eyes:" if view.acked_at is not None else ":rotating_light:")
    text = mrkdwn("[{}] {}", facts.severity.upper(), title)
    blocks: list[Block] = [section(mrkdwn("{} *{}*", icon, text)), _fields(facts)]
    listed = alert_lines(facts)
    if listed and view.state != "resolved":
        blocks.append(section(join("\n", listed)))
    if view.storm is not None and view.storm.groups:
        storm = view.storm
        head = mrkdwn(
            "Flood control folded {} more alert groups ({} alerts) into this alert:",
            storm.groups,
            storm.alerts,
        )
        blocks.append(section(join("\n", [head, *storm_lines(storm)])))
    if view.maintenance is not None:
        blocks.append(section(_maintenance_line(view.maintenance)))
    timeline = _timeline(view)
    if timeline:
        blocks.append(context(join("\n", timeline)))
    if view.state == "firing":
        blocks.append({"type": "actions", "block_id": f"alert_{facts.id}", "elements": _buttons(view)})
    return text, blocks


def _maintenance_line(window: Mapping[str, Any]) -> Mrkdwn:
    """Silenced by a maintenance window (paging nobody), or firing past its end (paging)."""
    if window["silent"]:
        return mrkdwn(
            ":no_bell: Silenced by maintenance *{}* (`{}`) until {}: paging nobody",
            window["title"],
            window["id"],
            slack_date(window["end"]),
        )
    return mrkdwn(
        ":warning: Still firing when maintenance *{}* (`{}`) ended ({}): paging as usual",
        window["title"],
        window["id"],
        slack_date(window["end"]),
    )


def _storm_block(storm: StormFacts) -> Block:
    """The other groups flood control shows in this message (one message for a storm, not one each)."""
    head = mrkdwn(
        "Flood control: {} more alert groups ({} alerts) are shown here:", storm.groups, storm.alerts
    )
    return section(join("\n", [head, *storm_lines(storm)]))


def _fields(facts: GroupFacts) -> Block:
    return {
        "type": "section",
        "fields": [
            field(mrkdwn("*Severity*\n{}", facts.severity)),
            field(mrkdwn("*Alert*\n`{}`", facts.id)),
            field(mrkdwn("*Route*\n{} → `{}`", facts.route, facts.audience)),
            field(mrkdwn("*Opened*\n{}", slack_date(facts.opened_at))),
        ],
    }


def _buttons(view: GroupView) -> list[Block]:
    buttons = [button("Resolve", RESOLVE_ACTION, view.facts.id, "danger")]
    if view.acked_at is None:
        buttons.insert(0, button("Acknowledge", ACK_ACTION, view.facts.id, "primary"))
    return buttons


def _timeline(view: GroupView) -> list[Mrkdwn]:
    """Each notice sent, what flood control held back, the ack, then the resolution or next step."""
    lines = [_notice_line(notice) for notice in view.notices]
    if view.held_back:
        lines.append(mrkdwn("• Flood control held back {} notification(s) of this alert", view.held_back))
    if view.acked_at is not None:
        who = actor_text(view.acked_by) or "someone"
        lines.append(mrkdwn("• :eyes: Acknowledged by {} · {}", who, slack_date(view.acked_at)))
    if view.resolved_at is not None:
        resolver = actor_text(view.resolved_by)
        by = mrkdwn(" by {}", resolver) if resolver else ""
        lines.append(mrkdwn("• :white_check_mark: Resolved{} · {}", by, slack_date(view.resolved_at)))
    elif view.next_escalation_at is not None and view.acked_at is None:
        target = mrkdwn("`{}`", view.next_audience) if view.next_audience else "everyone paged (reminder)"
        when = slack_date(view.next_escalation_at)
        lines.append(mrkdwn("• :hourglass_flowing_sand: Next: {} at {} unless acknowledged", target, when))
    return lines


def _notice_line(notice: NoticeLine) -> Mrkdwn:
    template = _NOTICE_TEXT.get(notice.kind)
    audience = mrkdwn("`{}`", notice.audience)
    text = mrkdwn(template, audience=audience, tier=notice.step) if template else mrkdwn("{}", notice.kind)
    recipients = notice.recipients
    return mrkdwn("• {} ({} {}) · {}", text, recipients, people(recipients), slack_date(notice.at))


def actor_text(actor: str | None) -> Mrkdwn | None:
    """Who acted, for Slack: ``slack:U123`` → a mention; anyone else (a name by SMS...) escaped.

    Only a Slack actor becomes a mention, so a directory name that reads ``<@U1>`` stays text.
    """
    if not actor:
        return None
    if actor.startswith("slack:"):
        return mention(actor.removeprefix("slack:"))
    return mrkdwn("{}", display_actor(actor))
