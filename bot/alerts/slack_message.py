"""The alert group's Slack message (pure): header, facts, the first alerts, the timeline, buttons.

While the group fires the message carries Acknowledge (until someone has) and Resolve, action ids
:data:`ACK_ACTION` / :data:`RESOLVE_ACTION`, value: the group id. :class:`GroupView` is everything
the message shows; :mod:`bot.alerts.slack_state` reads it from the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.alerts.messages import GroupFacts, StormFacts, alert_lines, firing_title, storm_lines
from bot.alerts.notify import display_actor
from bot.slack.blocks import Block, Message, button, context, escape, people, section, slack_date

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


def alert_message(view: GroupView) -> Message:
    """The alert group's Slack message: fallback text and blocks."""
    facts = view.facts
    if view.state == "resolved":
        title, icon = f"[RESOLVED] {facts.title}", ":white_check_mark:"
    else:
        title, icon = firing_title(facts), (":eyes:" if view.acked_at is not None else ":rotating_light:")
    text = f"[{facts.severity.upper()}] {title}"
    blocks: list[Block] = [section(f"{icon} *{escape(text)}*"), _fields(facts)]
    listed = alert_lines(facts)
    if listed and view.state != "resolved":
        blocks.append(section(escape("\n".join(listed))))
    if view.storm is not None and view.storm.groups:
        storm = view.storm
        head = (
            f"Flood control folded {storm.groups} more alert groups ({storm.alerts} alerts) into this alert:"
        )
        blocks.append(section(escape("\n".join([head, *storm_lines(storm)]))))
    timeline = _timeline(view)
    if timeline:
        blocks.append(context("\n".join(timeline)))
    if view.state == "firing":
        blocks.append({"type": "actions", "block_id": f"alert_{facts.id}", "elements": _buttons(view)})
    return text, blocks


def _storm_block(storm: StormFacts) -> Block:
    """The other groups flood control shows in this message (one message for a storm, not one each)."""
    head = f"Flood control: {storm.groups} more alert groups ({storm.alerts} alerts) are shown here:"
    return section(escape("\n".join([head, *storm_lines(storm)])))


def _fields(facts: GroupFacts) -> Block:
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": f"*Severity*\n{facts.severity}"},
            {"type": "mrkdwn", "text": f"*Alert*\n`{facts.id}`"},
            {"type": "mrkdwn", "text": f"*Route*\n{facts.route} → `{escape(facts.audience)}`"},
            {"type": "mrkdwn", "text": f"*Opened*\n{slack_date(facts.opened_at)}"},
        ],
    }


def _buttons(view: GroupView) -> list[Block]:
    buttons = [button("Resolve", RESOLVE_ACTION, view.facts.id, "danger")]
    if view.acked_at is None:
        buttons.insert(0, button("Acknowledge", ACK_ACTION, view.facts.id, "primary"))
    return buttons


def _timeline(view: GroupView) -> list[str]:
    """Each notice sent, what flood control held back, the ack, then the resolution or next step."""
    lines = [_notice_line(notice) for notice in view.notices]
    if view.held_back:
        lines.append(f"• Flood control held back {view.held_back} notification(s) of this alert")
    if view.acked_at is not None:
        who = display_actor(view.acked_by) or "someone"
        lines.append(f"• :eyes: Acknowledged by {_escape_actor(who)} · {slack_date(view.acked_at)}")
    if view.resolved_at is not None:
        resolver = display_actor(view.resolved_by)
        by = f" by {_escape_actor(resolver)}" if resolver else ""
        lines.append(f"• :white_check_mark: Resolved{by} · {slack_date(view.resolved_at)}")
    elif view.next_escalation_at is not None and view.acked_at is None:
        target = f"`{escape(view.next_audience)}`" if view.next_audience else "everyone paged (reminder)"
        lines.append(
            f"• :hourglass_flowing_sand: Next: {target} at {slack_date(view.next_escalation_at)}"
            " unless acknowledged"
        )
    return lines


def _notice_line(notice: NoticeLine) -> str:
    template = _NOTICE_TEXT.get(notice.kind, notice.kind)
    text = template.format(audience=f"`{escape(notice.audience)}`", tier=notice.step)
    return f"• {text} ({notice.recipients} {people(notice.recipients)}) · {slack_date(notice.at)}"


def _escape_actor(who: str) -> str:
    return who if who.startswith("<@") else escape(who)
