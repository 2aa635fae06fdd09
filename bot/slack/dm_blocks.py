"""The direct message the ``slack`` channel sends each person (:mod:`channels.slack`), as Block Kit.

Pure: a :class:`channels.base.Notice` in, a :class:`channels.slack.PreparedSlack` out. Every piece of
the notice is escaped (:mod:`bot.slack.mrkdwn`) and stripped of control characters and bidi overrides.

The body text (also the fallback's preview) is the person's language's ``slack`` template
(:mod:`channels.templating`: ``<kind>.slack[.<language>].j2`` from ``[templates] dir``, else the
built-in English or German one: the window, then the body). Its output is plain text, escaped like the
rest: a template cannot add mentions or links.

Blocks, each with a fixed ``block_id`` so that a later edit of the DM (``chat.update``) can find
and replace one: ``title`` (a header: severity and title), ``body`` (a section, cut to Slack's
3,000 characters without splitting an escape), ``about`` (a context: severity and notification
id), then room for an ``actions`` block (a Confirm button, action id ``confirm_receipt``) that
confirmations will append, and last, for non-mandatory kinds, ``preferences`` (the person's signed
preferences link, added per recipient by :func:`preferences_block`).

The words of the header, the context line, the button and the preferences line are the notice's
language's phrases (:mod:`channels.phrases`: ``dm_header``, ``dm_kind``, ``dm_about``,
``confirm_button``, ``preferences_hint``, ``preferences_link``), escaped like the rest; a reminder
before a maintenance window opens its body with the ``reminder`` phrase.
"""

from __future__ import annotations

import functools

from bot.slack.blocks import Block, context, section
from bot.slack.mrkdwn import Mrkdwn, escape, mrkdwn
from channels.base import Notice
from channels.gsm import drop_controls
from channels.phrases import Phrases, as_reminder
from channels.slack import PreparedSlack
from channels.sms_text import sms_context
from channels.templating import Templates

HEADER_MAX = 150  # Slack's limit on a header block's text
BUTTON_MAX = 75  # and on a button's
SECTION_MAX = 3000  # and on a section's
FALLBACK_BODY = 200  # the body's characters in the notification preview
_SEVERITY_EMOJI = {
    "critical": ":rotating_light:",
    "outage": ":red_circle:",
    "security": ":lock:",
    "maintenance": ":wrench:",
    "info": ":information_source:",
}


def clean(value: str) -> str:
    """``value`` without control characters (line breaks stay) and without trailing space."""
    return drop_controls(value).strip()


def fit(value: str, most: int) -> Mrkdwn:
    """``value`` escaped, cut (with an ellipsis) so that the escaped text has at most ``most``
    characters; the cut is made before escaping, so an entity (``&amp;``) is never split."""
    escaped = escape(value)
    while len(escaped) > most:
        value = value[: max(0, len(value) - (len(escaped) - most) - 1)]
        escaped = escape(value) + "…"
    return Mrkdwn(escaped)


_BUILTIN: list[Templates] = []


def _templates(templates: Templates | None) -> Templates:
    if templates is not None:
        return templates
    if not _BUILTIN:
        _BUILTIN.append(Templates())
    return _BUILTIN[0]


def dm_body(notice: Notice, templates: Templates | None = None) -> str:
    """The DM's body text: the ``slack`` template for the notice's kind and language, rendered."""
    templates = _templates(templates)
    body = clean(notice.body)
    context = {
        **sms_context(notice),
        "body": body,
        "paragraphs": [p.splitlines() for p in body.split("\n\n")],
    }
    return clean(templates.render(context["kind"], "slack", notice.language, context))


def render_dm(notice: Notice, templates: Templates | None = None) -> PreparedSlack:
    """The DM for ``notice``: fallback text and blocks (see the module docstring)."""
    templates = _templates(templates)
    notice = as_reminder(notice, templates)
    body, phrases = dm_body(notice, templates), Phrases.of(notice, templates)
    emoji = _SEVERITY_EMOJI.get(notice.severity, ":loudspeaker:")
    heading = clean(phrases.get("dm_header"))
    blocks: list[Block] = [
        {
            "type": "header",
            "block_id": "title",
            "text": {"type": "plain_text", "text": fit(heading, HEADER_MAX), "emoji": True},
        }
    ]
    if body:
        blocks.append({**section(fit(body, SECTION_MAX)), "block_id": "body"})
    kind, about = clean(phrases.get("dm_kind")), clean(phrases.get("dm_about"))
    line = mrkdwn("{} *{}* · {} `{}`", Mrkdwn(emoji), kind, about, notice.notification_id)
    blocks.append({**context(line), "block_id": "about"})
    if notice.confirm:
        blocks.append(confirm_actions(notice.notification_id, clean(phrases.get("confirm_button"))))
    preview = " ".join(body.split())
    text = fit(heading + (f": {preview}" if preview else ""), HEADER_MAX + FALLBACK_BODY)
    preferences = None
    if not notice.mandatory:
        hint, label = clean(phrases.get("preferences_hint")), clean(phrases.get("preferences_link"))
        preferences = functools.partial(preferences_block, hint=hint, label=label)
    return PreparedSlack(
        text=text, blocks=tuple(blocks), notification_id=notice.notification_id, preferences=preferences
    )


CONFIRM_ACTION = "confirm_receipt"


def confirm_actions(notification_id: str, label: str = "Confirm") -> Block:
    """The Confirm button (its value: the notification id; Slack tells who clicked)."""
    button = {
        "type": "button",
        "action_id": CONFIRM_ACTION,
        "style": "primary",
        "text": {"type": "plain_text", "text": fit(label, BUTTON_MAX)},
        "value": notification_id,
    }
    return {"type": "actions", "block_id": "actions", "elements": [button]}


def confirmed_blocks(blocks: list[Block], confirmed: str) -> list[Block]:
    """The DM's ``blocks`` with the Confirm button replaced by ``confirmed`` ("Confirmed at …")."""
    done = {**context(mrkdwn(":white_check_mark: {}", confirmed)), "block_id": "actions"}
    return [done if block.get("block_id") == "actions" else block for block in blocks]


def preferences_block(
    url: str, hint: str = "You can turn off this kind of notice:", label: str = "Notification preferences"
) -> Block:
    """The person's preferences link, a context line (``url`` is Herald's own signed link); ``hint``
    and ``label`` are the person's language's ``preferences_hint`` and ``preferences_link``."""
    link = Mrkdwn(f"<{escape(url)}|{escape(label)}>")
    return {**context(mrkdwn("{} {}", hint, link)), "block_id": "preferences"}
