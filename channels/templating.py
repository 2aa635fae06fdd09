"""Message templates: the built-in ones and an operator's ``[templates] dir``, by kind, channel and language.

A template is named ``<kind>.<channel>[.<language>].j2``: ``kind`` a severity (``maintenance``) or
``default`` (every kind), ``channel`` one of :data:`TEMPLATE_CHANNELS`, ``language`` a BCP 47 tag
(``de``, ``pt-BR``); e.g. ``maintenance.email.html.de.j2``, ``outage.sms.j2``. Names compare without
regard to case. Files whose name starts with ``_`` are partials for ``{% include %}``/``{% extends %}``
(autoescaped when their name holds ``.html.``, as ``_footer.html.j2``).

:meth:`Templates.select` picks, for a person of language ``pt-BR`` and kind ``maintenance``, the first
that exists of: the operator's ``maintenance.<channel>.pt-BR``, ``.pt``, language-less, then the same
three for ``default``; then the built-in ``default.<channel>.pt-BR``, ``.pt`` and the English one. HTML
templates (``email.html``) are autoescaped; text and SMS templates are not. Templates render only
message bodies: headers (the subject included) are Herald's.

The short fixed texts around a message (the Slack DM's header and Confirm button, the SMS hints, the
reminder before a window; see :mod:`channels.phrases`) are the blocks of ``<kind>.phrases[.<language>].j2``:
``{% block confirm_button %}Bestätigen{% endblock %}``. Each is looked up on its own along the same
chain (:meth:`Templates.phrase`), so an operator's file may hold only the blocks it changes.

:func:`check_directory` compiles every template of a directory and renders it with sample values, and
reports a syntax or render error with the file and line; unknown names are warnings.
"""

from __future__ import annotations

import functools
import logging
import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.runtime

from channels.base import Notice

log = logging.getLogger("herald.templates")

TEMPLATE_CHANNELS = ("email.html", "email.txt", "sms", "slack")
PHRASES = "phrases"  # not a channel: the short texts of every channel, one block each
DEFAULT_KIND = "default"
BUILTIN = "built-in"
_NAME = re.compile(
    r"(?P<kind>[a-z0-9_-]+)\.(?P<channel>email\.html|email\.txt|sms|slack|phrases)"
    r"(?:\.(?P<language>[a-z]{2,3}(?:-[a-z0-9]{1,8})*))?\.j2"
)
# Variables each channel's templates get (SMS and Slack texts are the same for every recipient).
SHARED_VARIABLES = (
    "title",
    "body",
    "paragraphs",
    "severity",
    "kind",
    "links",
    "window",
    "deadline",
    "language",
    "notification_id",
    "color",
)
EMAIL_VARIABLES = (*SHARED_VARIABLES, "name", "unsubscribe_url")


@dataclass(frozen=True)
class TemplateName:
    kind: str
    channel: str
    language: str  # "" when the template has none


def parse_name(name: str) -> TemplateName | None:
    """The parts of a template's file name, or None when it does not follow the pattern."""
    match = _NAME.fullmatch(name.lower())
    if match is None:
        return None
    return TemplateName(match["kind"], match["channel"], match["language"] or "")


def language_chain(language: str) -> list[str]:
    """``pt-BR`` → ``["pt-br", "pt", ""]``: the tag, each shorter prefix, then no language."""
    parts = language.lower().split("-") if language else []
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)] + [""]


@functools.lru_cache(maxsize=256)
def _autoescape(name: str | None) -> bool:
    """On for ``email.html`` templates and partials such as ``_footer.html.j2``."""
    return ".html." in Path(name or "").name.lower()


def _environment(loader: jinja2.BaseLoader) -> jinja2.Environment:
    return jinja2.Environment(
        loader=loader,
        autoescape=_autoescape,  # noqa: S701 (a function: on for email.html templates)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


class _Source:
    """One directory of templates: its environment and its template names by lower-cased name."""

    def __init__(self, label: str, loader: jinja2.BaseLoader) -> None:
        self.label = label
        self.environment = _environment(loader)
        self.names = {name.lower(): name for name in loader.list_templates() if "/" not in name}

    def find(self, kind: str, channel: str, language: str) -> str | None:
        suffix = f".{language}" if language else ""
        return self.names.get(f"{kind}.{channel}{suffix}.j2")


class Templates:
    """The built-in templates overridden by ``directory``'s (see the module docstring)."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory else None
        self._builtin = _Source(BUILTIN, jinja2.PackageLoader("channels", "templates"))
        self._operator = (
            _Source(str(self.directory), jinja2.FileSystemLoader(self.directory)) if self.directory else None
        )
        self._chosen: dict[tuple[str, str, str], tuple[jinja2.Template, bool]] = {}
        self._phrases: dict[tuple[str, str, str], tuple[jinja2.Template, bool]] = {}

    def select(self, kind: str, channel: str, language: str = "") -> tuple[jinja2.Template, bool]:
        """The template for ``kind``/``channel`` in ``language`` and whether it is the operator's."""
        key = (kind.lower(), channel, language.lower())
        chosen = self._chosen.get(key)
        if chosen is None:
            chosen = self._chosen[key] = self._select(*key)
        return chosen

    def _select(self, kind: str, channel: str, language: str) -> tuple[jinja2.Template, bool]:
        chain = language_chain(language)
        if self._operator is not None:
            for candidate in (kind, DEFAULT_KIND):
                for lang in chain:
                    name = self._operator.find(candidate, channel, lang)
                    if name is not None:
                        return self._operator.environment.get_template(name), True
        return self.builtin(channel, language), False

    def builtin(self, channel: str, language: str = "") -> jinja2.Template:
        for lang in language_chain(language):
            name = self._builtin.find(DEFAULT_KIND, channel, lang)
            if name is not None:
                return self._builtin.environment.get_template(name)
        raise LookupError(f"no built-in template for {channel}")

    def render(self, kind: str, channel: str, language: str, context: Mapping[str, Any]) -> str:
        """The chosen template rendered; an operator's that fails falls back to the built-in (logged)."""
        template, operators = self.select(kind, channel, language)
        if not operators:
            return template.render(context)
        try:
            return template.render(context)
        except Exception as exc:  # an operator's template: never let it stop a delivery
            log.warning("template %s failed (%s); the built-in one is used", template.name, exc)
            return self.builtin(channel, language).render(context)

    def phrase(
        self,
        kind: str,
        language: str,
        name: str,
        context: Mapping[str, Any],
        contexts: Contexts | None = None,
    ) -> str:
        """The block ``name`` of the first ``phrases`` template along ``kind``'s and ``language``'s
        chain that has it, rendered and stripped; an operator's that fails falls back to the built-in.
        ``contexts`` keeps each template's jinja context of ``context`` for the next phrase."""
        key = (kind.lower(), language.lower(), name)
        chosen = self._phrases.get(key)
        if chosen is None:
            chosen = self._phrases[key] = self._select_phrase(*key)
        template, operators = chosen
        try:
            return render_block(template, name, context, contexts)
        except Exception as exc:
            if not operators:
                raise
            log.warning(
                "phrase %s of template %s failed (%s); the built-in one is used", name, template.name, exc
            )
            return render_block(self._builtin_phrase(name, language), name, context, contexts)

    def _select_phrase(self, kind: str, language: str, name: str) -> tuple[jinja2.Template, bool]:
        if self._operator is not None:
            for candidate in (kind, DEFAULT_KIND):
                for lang in language_chain(language):
                    found = self._operator.find(candidate, PHRASES, lang)
                    template = self._operator.environment.get_template(found) if found else None
                    if template is not None and name in template.blocks:
                        return template, True
        return self._builtin_phrase(name, language), False

    def builtin_phrase_names(self) -> set[str]:
        found = self._builtin.find(DEFAULT_KIND, PHRASES, "")
        return set(self._builtin.environment.get_template(found).blocks) if found else set()

    def _builtin_phrase(self, name: str, language: str) -> jinja2.Template:
        for lang in language_chain(language):
            found = self._builtin.find(DEFAULT_KIND, PHRASES, lang)
            template = self._builtin.environment.get_template(found) if found else None
            if template is not None and name in template.blocks:
                return template
        raise LookupError(f"no built-in phrase {name}")


Contexts = dict[jinja2.Template, jinja2.runtime.Context]


def render_block(
    template: jinja2.Template, name: str, context: Mapping[str, Any], contexts: Contexts | None = None
) -> str:
    """One block of ``template`` rendered alone, without surrounding space. A jinja context costs
    more than a short block: ``contexts`` keeps them for blocks rendered with the same ``context``."""
    try:
        made = contexts.get(template) if contexts is not None else None
        if made is None:
            made = template.new_context(dict(context))
            if contexts is not None:
                contexts[template] = made
        return "".join(template.blocks[name](made)).strip()
    except Exception:
        template.environment.handle_exception()  # re-raised with the template's own line numbers
        raise  # (not reached)


def common_context(notice: Notice) -> dict[str, Any]:
    """The variables every channel's template gets alike: ``language`` (``en`` when unknown), and
    ``deadline`` and ``window`` (``start``, ``end``) as UTC datetimes, or None."""
    return {
        "language": notice.language or "en",
        "deadline": _when(notice.deadline),
        "window": {"start": _when(notice.window[0]), "end": _when(notice.window[1])}
        if notice.window
        else None,
    }


def _when(at: float | None) -> datetime | None:
    return None if at is None else datetime.fromtimestamp(at, UTC)


def sample_context(channel: str) -> dict[str, Any]:
    """Values of every variable a ``channel`` template gets, for checking templates."""
    now = datetime(2026, 12, 5, 22, 0, tzinfo=UTC)
    context: dict[str, Any] = {
        "title": "Patch Tuesday",
        "body": "Servers reboot at 22:00.\n\nSave your work.",
        "paragraphs": [["Servers reboot at 22:00."], ["Save your work."]],
        "severity": "MAINTENANCE",
        "kind": "maintenance",
        "links": [("Status", "https://status.example.com", True)],
        "window": {"start": now, "end": now},
        "deadline": now,
        "language": "en",
        "notification_id": "n-check",
        "color": "#b54708",
    }
    if channel == PHRASES:
        context |= {"label": "MAINTENANCE", "when": "2026-12-05 22:00 UTC"}
    if channel.startswith("email"):
        context |= {
            "name": "Alice Example",
            "unsubscribe_url": "https://herald.example.com/p/x",
            "confirm_url": "https://herald.example.com/c/x",
        }
    return context


@dataclass(frozen=True)
class TemplateProblem:
    """One finding of :func:`check_directory`: ``line`` is None when it concerns the whole file."""

    file: str
    line: int | None
    message: str
    error: bool

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


def check_directory(directory: str | Path, kinds: Iterable[str]) -> list[TemplateProblem]:
    """Compile and trial-render every ``*.j2`` in ``directory``; errors and warnings, file by file."""
    root = Path(directory)
    if not root.is_dir():
        return [TemplateProblem(str(root), None, "not a directory", error=True)]
    environment = _environment(jinja2.FileSystemLoader(root))
    known = {kind.lower() for kind in kinds} | {DEFAULT_KIND}
    problems: list[TemplateProblem] = []
    for path in sorted(root.iterdir()):
        if path.is_file() and path.name.endswith(".j2"):
            problems.extend(_check_file(environment, path, known))
    return problems


def _check_file(environment: jinja2.Environment, path: Path, kinds: set[str]) -> list[TemplateProblem]:
    name = path.name
    try:
        template = environment.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        return [TemplateProblem(str(path), exc.lineno, f"syntax error: {exc.message}", error=True)]
    except UnicodeDecodeError:
        return [TemplateProblem(str(path), None, "not UTF-8 text", error=True)]
    if name.startswith("_"):
        return []  # a partial: checked where it is included
    parsed = parse_name(name)
    if parsed is None:
        expected = "<kind>.<channel>[.<language>].j2 with channel " + ", ".join((*TEMPLATE_CHANNELS, PHRASES))
        return [TemplateProblem(str(path), None, f"unknown template name (expected {expected})", False)]
    if parsed.kind not in kinds:
        known = ", ".join(sorted(kinds))
        return [TemplateProblem(str(path), None, f"unknown kind {parsed.kind!r} (expected {known})", False)]
    if parsed.channel == PHRASES:
        return _check_phrases(template, str(path))
    try:
        template.render(sample_context(parsed.channel))
    except Exception as exc:
        message = f"render error: {type(exc).__name__}: {exc}"
        return [TemplateProblem(str(path), _template_line(exc, template), message, error=True)]
    return []


def _check_phrases(template: jinja2.Template, path: str) -> list[TemplateProblem]:
    """Each block rendered alone (as Herald uses them); a block the built-in file lacks is a warning."""
    known = Templates().builtin_phrase_names()
    problems = []
    for name in template.blocks:
        if name not in known:
            message = f"unknown phrase {name!r} (expected {', '.join(sorted(known))})"
            problems.append(TemplateProblem(path, None, message, error=False))
            continue
        try:
            render_block(template, name, sample_context(PHRASES))
        except Exception as exc:
            message = f"render error in phrase {name}: {type(exc).__name__}: {exc}"
            problems.append(TemplateProblem(path, _template_line(exc, template), message, error=True))
    return problems


def _template_line(exc: BaseException, template: jinja2.Template) -> int | None:
    """The template line an error was raised on (jinja2 rewrites tracebacks to template lines)."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if template.filename and frame.filename == template.filename:
            line = frame.lineno
    return line
