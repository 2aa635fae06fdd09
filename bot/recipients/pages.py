"""The preferences page and its small answer pages: pure renderers over jinja2 templates.

Autoescaped HTML, one inline stylesheet, no JavaScript and no external assets: it works on a phone,
behind a strict Content-Security-Policy, and in mail clients' link previews.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from bot.channel_specs import CHANNELS
from bot.recipients.preferences import PreferencesView

TEMPLATES = Path(__file__).parent / "templates"
KIND_TEXT = {
    "maintenance": ("Maintenance", "Planned work and service windows"),
    "info": ("Information", "News and announcements from IT"),
}
SUPPRESSED_TEXT = {
    ("sms", "sms-stop"): "You replied STOP, so Herald sends you no SMS at all. Text START to opt back in.",
    ("sms", ""): "Text messages to your number failed, so Herald has stopped sending SMS to it. "
    "Ask IT to check your number.",
    ("email", ""): "Mail to your address bounced, so Herald has stopped sending email to it. "
    "Ask IT to check your address.",
}


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    label: str
    description: str = ""


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def kind_option(kind: str) -> Option:
    label, description = KIND_TEXT.get(kind, (kind.replace("_", " ").capitalize(), ""))
    return Option(kind, label, description)


def _notes(view: PreferencesView) -> list[str]:
    notes = []
    if "sms" in view.channels and not view.phone:
        notes.append("There is no mobile number for you in the directory, so SMS cannot reach you.")
    if "email" in view.channels and not view.email:
        notes.append("There is no email address for you in the directory, so email cannot reach you.")
    for channel, source in sorted(view.suppressed.items()):
        key = (channel, source) if (channel, source) in SUPPRESSED_TEXT else (channel, "")
        notes.append(SUPPRESSED_TEXT[key])
    return notes


def _words(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def render_preferences(
    env: jinja2.Environment, view: PreferencesView, status: str = "", errors: Sequence[str] = ()
) -> str:
    window = view.company_window
    custom = view.quiet.mode == "custom"
    return env.get_template("preferences.html.j2").render(
        heading="Notification preferences",
        view=view,
        kinds=[kind_option(kind) for kind in view.kinds],
        channels=[Option(c, CHANNELS[c].label if c in CHANNELS else c) for c in view.channels],
        mandatory=_words([kind_option(k).label.lower() for k in view.mandatory]),
        quiet_kinds=_words([kind_option(k).label.lower() for k in view.quiet_kinds]),
        company_window=f"{window.start:%H:%M} to {window.end:%H:%M}" if window else "",
        quiet_start=(view.quiet.start or "") if custom else (f"{window.start:%H:%M}" if window else ""),
        quiet_end=(view.quiet.end or "") if custom else (f"{window.end:%H:%M}" if window else ""),
        notes=_notes(view),
        status=status,
        errors=list(errors),
    )


def render_unsubscribed(env: jinja2.Environment, view: PreferencesView, page_url: str) -> str:
    kinds = _words([kind_option(k).label.lower() for k in view.kinds])
    mandatory = _words([kind_option(k).label.lower() for k in view.mandatory])
    return env.get_template("message.html.j2").render(
        heading="You are unsubscribed",
        paragraphs=[
            f"{view.name}, Herald will no longer email you {kinds} notices.",
            f"Urgent notices ({mandatory}) still reach you: they cannot be turned off.",
        ],
        link=page_url,
        link_text="Change your preferences",
    )


def render_not_found(env: jinja2.Environment) -> str:
    return env.get_template("message.html.j2").render(
        heading="Link not valid",
        paragraphs=[
            "This preferences link is not valid or has expired.",
            "Use the link in a recent message from Herald, or ask your IT team.",
        ],
        link="",
        link_text="",
    )


def render_problem(env: jinja2.Environment, heading: str, text: str) -> str:
    return env.get_template("message.html.j2").render(
        heading=heading, paragraphs=[text], link="", link_text=""
    )
