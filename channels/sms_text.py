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
from channels.phrases import Phrases, as_reminder
from channels.templating import Templates, common_context

# The built-in English hints; a person's language picks the ``sms_opt_out``/``sms_confirm`` phrases.
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
    hint, and notices that ask to confirm with the confirm hint, in the notice's language (the
    ``sms_opt_out``/``sms_confirm`` phrases, cleaned alike); both survive any cut and count in the
    segments. A reminder before a window opens with its sentence (:func:`channels.phrases.as_reminder`).
    """
    templates = templates or _builtin()
    notice = as_reminder(notice, templates)
    context = sms_context(notice)
    rendered = templates.render(context["kind"], "sms", notice.language, context)
    text = _clean_lines(rendered)
    hint = _hints(notice, templates)
    fitted = fit_to_segments(text, max_segments, suffix=hint)
    cost = count_segments(fitted)
    return PreparedSms(fitted, cost.encoding, cost.segments, truncated=fitted != text + hint)


def _clean_lines(rendered: str) -> str:
    lines = (" ".join(drop_controls(line).split()) for line in rendered.splitlines())
    return replace_lookalikes("\n".join(line for line in lines if line))


def _hints(notice: Notice, templates: Templates) -> str:
    """The confirm and opt-out lines the notice ends with, each after a line break."""
    if notice.mandatory and not notice.confirm:
        return ""
    phrases = Phrases.of(notice, templates)
    names = (["sms_confirm"] if notice.confirm else []) + ([] if notice.mandatory else ["sms_opt_out"])
    lines = (_clean_lines(phrases.get(name)) for name in names)
    return "".join(f"\n{line}" for line in lines if line)


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
