"""The text of an SMS: one notification rendered by its ``sms`` template and fitted into segments.

Rendered once per notification and language (every recipient of a language gets the same text, so
its segment count is what the throttle paces); the person's name is therefore not among an SMS
template's variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from channels.base import Notice
from channels.gsm import Encoding, count_segments, drop_controls, fit_to_segments, replace_lookalikes
from channels.templating import Templates, common_context

OPT_OUT_HINT = "\nReply STOP to opt out."
CONFIRM_HINT = "\nReply OK to confirm."


@dataclass(frozen=True, slots=True)
class PreparedSms:
    """One notification's SMS text, the same for every recipient, and what each copy costs."""

    text: str
    encoding: Encoding
    segments: int
    truncated: bool

    @property
    def cost(self) -> int:
        """Each copy takes one throttle unit per segment (Twilio bills and paces segments)."""
        return self.segments


def render_sms(notice: Notice, max_segments: int, templates: Templates | None = None) -> PreparedSms:
    """The ``sms`` template's text (built-in: ``[SEVERITY] title: body``) in at most ``max_segments``,
    cut cleanly when longer.

    Control characters, terminal escape sequences and bidi overrides are dropped (line breaks in
    the body stay); typographic characters with a GSM-7 twin are swapped for it (so a text is not
    pushed into UCS-2 by a curly quote); runs of spaces collapse. Non-mandatory notices end with the opt-out
    hint, and notices that ask to confirm with the confirm hint; both survive any cut.
    """
    context = sms_context(notice)
    rendered = (templates or _builtin()).render(context["kind"], "sms", notice.language, context)
    lines = (" ".join(drop_controls(line).split()) for line in rendered.splitlines())
    text = replace_lookalikes("\n".join(line for line in lines if line))
    hint = "" if notice.mandatory else OPT_OUT_HINT
    if notice.confirm:
        hint = CONFIRM_HINT + hint
    fitted = fit_to_segments(text, max_segments, suffix=hint)
    cost = count_segments(fitted)
    return PreparedSms(fitted, cost.encoding, cost.segments, truncated=fitted != text + hint)


def sms_context(notice: Notice) -> dict[str, Any]:
    """What an SMS template gets: the notice's fields, cleaned of controls, one line each (the body's
    lines kept)."""
    title = " ".join(drop_controls(notice.title).split())
    lines = (" ".join(drop_controls(line).split()) for line in notice.body.splitlines())
    body = "\n".join(line for line in lines if line)
    severity = " ".join(drop_controls(notice.severity).upper().split())
    return {
        "severity": severity,
        "kind": severity.lower(),
        "title": title,
        "body": body,
        "paragraphs": [[line] for line in body.splitlines()],
        "links": [(label, url, True) for label, url in notice.links.items()],
        "notification_id": notice.notification_id,
        "color": "",
        **common_context(notice),
    }


_BUILTIN: list[Templates] = []


def _builtin() -> Templates:
    if not _BUILTIN:
        _BUILTIN.append(Templates())
    return _BUILTIN[0]
