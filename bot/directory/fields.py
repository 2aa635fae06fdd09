"""Parsing and normalising one field of a directory row at a time: pure, no database.

Each parser takes the field's text (or raw JSON value) and returns it in the form Herald stores, or
raises :class:`InvalidField` naming the field and the reason: e-mail addresses normalised and
lower-case (syntax only, no DNS), phone numbers in E.164, IANA time zones in their canonical
spelling, group lists, Slack user ids, the ``active`` flag. Whole rows are :mod:`bot.directory.records`.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache

import phonenumbers
from email_validator import EmailNotValidError, validate_email

# The widths of the person table's columns (bot/tables.py): longer values are rejected here
# rather than failing the whole import on PostgreSQL.
MAX_LENGTH = {
    "id": 200,
    "name": 300,
    "email": 320,
    "department": 200,
    "site": 200,
    "title": 300,
    "manager": 320,
    "groups": 200,
}
TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on", ""})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "off"})
_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{2,30}")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_EMAIL = re.compile(rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>[A-Za-z0-9.-]+)")


class InvalidField(ValueError):
    """One field of one row is invalid."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@cache
def _time_zones() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def text_field(values: Mapping[str, object], name: str) -> str | None:
    """The field as text with runs of white space made one space, or None when absent or blank."""
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidField(name, f"expected text, got {type(value).__name__}")
    text = " ".join(str(value).split())
    if not text:
        return None
    limit = MAX_LENGTH.get(name)
    if limit is not None and len(text) > limit:
        raise InvalidField(name, f"longer than {limit} characters")
    return text


def parse_email(value: str) -> str:
    """Validate syntax only (no DNS) and return the normalised, lower-case address."""
    # Fast path for the common shape (an ASCII dot-atom local part at a domain already accepted):
    # email-validator accepts every such address unchanged but for the domain's normalisation, and
    # checking each domain once makes a 100,000-row import several times faster.
    match = _SIMPLE_EMAIL.fullmatch(value)
    if match and len(match["local"]) <= 64 and len(value) <= 254:
        domain = _normalised_domain(match["domain"])
        if domain is not None:
            return f"{match['local'].lower()}@{domain}"
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        raise InvalidField("email", f"{value!r} is not a valid email address ({reason})") from exc
    return result.normalized.lower()


@lru_cache(maxsize=4096)
def _normalised_domain(domain: str) -> str | None:
    try:
        return validate_email(f"x@{domain}", check_deliverability=False).domain.lower()
    except EmailNotValidError:
        return None


def parse_phone(value: str, default_region: str | None) -> str:
    """A phone number in E.164; national numbers are read in ``default_region``."""
    if default_region is None and not value.startswith("+"):
        raise InvalidField(
            "phone",
            f"{value!r} has no country code (+…) and directory.default_region is not set",
        )
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidField("phone", f"{value!r} is not a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidField("phone", f"{value!r} is not a valid phone number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def parse_timezone(value: str) -> str:
    """The IANA name in its canonical spelling (``europe/berlin`` → ``Europe/Berlin``)."""
    name = _time_zones().get(value.lower())
    if name is None:
        raise InvalidField("timezone", f"{value!r} is not an IANA time zone (such as Europe/Berlin)")
    return name


def parse_active(value: object) -> bool:
    """true/false, 1/0, yes/no (any case); blank or absent is true."""
    if value is None or isinstance(value, bool):
        return value is not False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise InvalidField("active", f"{value!r} is not one of true/false, yes/no, 1/0")


def parse_groups(value: object) -> tuple[str, ...]:
    """Group names from ``a;b;c`` or a list; blanks dropped, duplicates (any case) dropped, order kept."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts: Iterable[object] = value.split(";")
    elif isinstance(value, list):
        parts = value
    else:
        raise InvalidField("groups", f"expected text or a list, got {type(value).__name__}")
    names: dict[str, str] = {}
    for part in parts:
        if not isinstance(part, str):
            raise InvalidField("groups", f"expected group names as text, got {type(part).__name__}")
        name = part.strip()
        if len(name) > MAX_LENGTH["groups"]:
            raise InvalidField("groups", f"{name[:40]!r}… is longer than {MAX_LENGTH['groups']} characters")
        if name:
            names.setdefault(name.lower(), name)
    return tuple(names.values())


def parse_slack_user_id(value: str) -> str:
    slack_id = value.upper()
    if not _SLACK_USER_ID.fullmatch(slack_id):
        raise InvalidField("slack_user_id", f"{value!r} is not a Slack user id (such as U024BE7LH)")
    return slack_id


# RFC 5646 "langtag": language[-extlang][-script][-region]*(-variant)*(-extension)[-privateuse], at
# most 35 characters (the column's width). Left out: grandfathered tags and the reserved 4- to 8-letter
# primary subtags (no language has one), so a word such as "english" is refused.
_LANGUAGE_TAG = re.compile(
    r"(?P<language>[a-z]{2,3}(?:-[a-z]{3}){0,3})"
    r"(?:-(?P<script>[a-z]{4}))?"
    r"(?:-(?P<region>[a-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*"
    r"(?:-[0-9a-wy-z](?:-[a-z0-9]{2,8})+)*"
    r"(?:-x(?:-[a-z0-9]{1,8})+)?",
)
LANGUAGE_LENGTH = 35


def parse_language(value: str) -> str:
    """A BCP 47 language tag in its conventional case (``pt-br`` → ``pt-BR``, ``zh-hant`` → ``zh-Hant``).

    ``_`` is read as ``-`` (``pt_BR``, as POSIX locales and Slack write it).
    """
    tag = value.strip().replace("_", "-")
    match = _LANGUAGE_TAG.fullmatch(tag.lower())
    if match is None or len(tag) > LANGUAGE_LENGTH:
        raise InvalidField("language", f"{value!r} is not a BCP 47 language tag (such as de or pt-BR)")
    cased = match["language"]
    if match["script"]:
        cased += "-" + match["script"].title()
    if match["region"]:
        cased += "-" + match["region"].upper()
    end = max(match.end("language"), match.end("script"), match.end("region"))
    return cased + match.group()[end:]
