"""The short fixed texts around a message, in the recipient's language.

Each is a block of the ``phrases`` template (:meth:`channels.templating.Templates.phrase`): the
built-in ``default.phrases.j2`` (English) and ``default.phrases.de.j2``, overridden block by block
by an operator's ``<kind>.phrases[.<language>].j2`` in ``[templates] dir``. Blocks render alone,
stripped, as plain text (whoever shows one escapes it):

======================  ===============================================  =====================
block                   what it is                                       variables beyond the
                                                                         common ones
======================  ===============================================  =====================
``label``               the kind's word: ``MAINTENANCE``, ``WARTUNG``
``dm_header``           the Slack DM's header                            ``label``
``dm_kind``             the kind in the DM's context line                ``label``
``dm_about``            "Herald notification" in that line
``confirm_button``      the DM's Confirm button (also the web page's)
``confirmed``           what replaces the button once clicked            ``when``
``sms_confirmed``       the answer to an SMS ``OK`` that confirmed
``preferences_hint``    the DM's line before the preferences link
``preferences_link``    that link's text
``sms_confirm``         the SMS line asking for ``OK``
``sms_opt_out``         the SMS line offering ``STOP``
``reminder``            the sentence opening the reminder before a       ``window``
                        maintenance window (``--remind``)
``confirm_page_*``      ``/c/{token}``: ``heading``, ``prompt``,         ``when`` (``done``)
                        ``done``
``page_footer``         that page's footer
======================  ===============================================  =====================

The common variables (:func:`phrase_context`): ``severity`` (upper case), ``kind``, ``title``,
``notification_id``, ``language``, ``deadline``, ``window`` (None unless the notice has one) and
``when`` (``""`` unless given); every block but ``label`` also gets ``label``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from channels.base import Notice
from channels.gsm import drop_controls
from channels.templating import Contexts, Templates, common_context


def phrase_context(notice: Notice | None = None, **extra: Any) -> dict[str, Any]:
    """The common variables of every phrase, from ``notice`` when there is one, then ``extra``."""
    context: dict[str, Any] = {
        "severity": "",
        "kind": "",
        "title": "",
        "notification_id": "",
        "language": "en",
        "deadline": None,
        "window": None,
        "when": "",
    }
    if notice is not None:
        severity = drop_controls(notice.severity).strip().upper()
        context |= {
            "severity": severity,
            "kind": severity.lower(),
            "title": drop_controls(notice.title).strip(),
            "notification_id": notice.notification_id,
            **common_context(notice),
        }
    return context | extra


class Phrases:
    """The phrases of one kind and language, each rendered when asked for."""

    def __init__(self, templates: Templates, language: str, context: dict[str, Any]) -> None:
        self.templates = templates
        self.language = language
        self.context = dict(context)
        self.context["label"] = self.get("label", label="")
        self._contexts: Contexts = {}  # each template's jinja context, for the phrases without extras

    @classmethod
    def of(cls, notice: Notice, templates: Templates) -> Phrases:
        return cls(templates, notice.language, phrase_context(notice))

    @classmethod
    def of_kind(cls, templates: Templates, severity: str, language: str, **extra: Any) -> Phrases:
        """The phrases for a text about a notification of ``severity`` (no notice at hand)."""
        kind = drop_controls(severity).strip().lower()
        return cls(templates, language, phrase_context(severity=kind.upper(), kind=kind, **extra))

    def get(self, name: str, **extra: Any) -> str:
        """The phrase ``name``; ``extra`` adds variables (``when``) for this one."""
        context = self.context | extra if extra else self.context
        contexts = None if extra else self._contexts
        return self.templates.phrase(str(context["kind"]), self.language, name, context, contexts)


def as_reminder(notice: Notice, templates: Templates) -> Notice:
    """A follow-up that carries a maintenance window is the reminder before it
    (:mod:`bot.alerts.window_remind`): its body opens with the ``reminder`` phrase, and the window,
    which that sentence gives, is not shown again. Any other notice is returned as it is."""
    if not (notice.reply and notice.window):
        return notice
    text = Phrases.of(notice, templates).get("reminder")
    return replace(notice, body=f"{text}\n\n{notice.body}".strip(), window=None)
