"""The value types of Herald's configuration, and the environment source that reads ``HERALD_*``.

- :data:`Duration`: ``"90s"``, ``"5m"``, ``"4h"``, ``"5d"`` (or a bare number of seconds) as float seconds.
- :data:`BaseUrl` / :data:`SlashedBaseUrl`: a base URL held without / with its trailing slash.
- :data:`Secret`: a :class:`pydantic.SecretStr` that is never empty. Every secret key uses it: an
  empty value (``""``, or only whitespace) would otherwise turn the check it guards off (an open
  API, an HMAC over the empty key), so it is a configuration error naming the key.
- :class:`EnvSource`: pydantic-settings' environment source, except that a value it cannot decode
  (``HERALD_SLACK__ANNOUNCERS='[bad'``) is reported naming the variable, never with a traceback.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import EnvSettingsSource

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """``"90s"`` → 90.0; ``"5d"`` → 432000.0; a bare number is seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 5m, 4h or 5d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return _bounded(float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return _bounded(float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"])
    raise ValueError("expected a duration such as 90s, 5m, 4h or 5d")


MAX_DURATION = 3650 * 86400.0  # ten years: past it a date overflows (99999999999d), never a setting


def _bounded(seconds: float) -> float:
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError("a duration must be at most 3650d (ten years)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _strip_slash(value: object) -> object:
    return value.rstrip("/") if isinstance(value, str) else value


def _with_slash(value: object) -> object:
    return value.rstrip("/") + "/" if isinstance(value, str) else value


BaseUrl = Annotated[str, BeforeValidator(_strip_slash)]
SlashedBaseUrl = Annotated[str, BeforeValidator(_with_slash)]


def _non_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise PydanticCustomError("empty_secret", "empty; unset it or give a value")
    return value


Secret = Annotated[SecretStr, AfterValidator(_non_empty)]


class EnvValueError(ValueError):
    """An environment variable's value could not be decoded; the message names it, never its value."""


class EnvSource(EnvSettingsSource):
    """``HERALD_<SECTION>__<KEY>`` variables, naming the one whose list or table is not valid JSON."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as exc:
            name = self._culprit(field_name, field)
            key = name[len(self.env_prefix) :].lower().replace(self.env_nested_delimiter or "__", ".")
            raise EnvValueError(f"{name.upper()} ({key}): {_reason(exc)}") from None

    def _culprit(self, field_name: str, field: FieldInfo) -> str:
        """The variable that failed: a nested one (tried alone) if any, else the section's own."""
        own = f"{self.env_prefix}{field_name}".lower()
        nested = own + (self.env_nested_delimiter or "__")
        for name, value in self.env_vars.items():
            if name.lower().startswith(nested) and value is not None:
                try:
                    self.explode_env_vars(field_name, field, {name: value})
                except ValueError:
                    return name
        return own


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):  # its message never quotes the value
        return f"not valid JSON ({exc.msg} at character {exc.pos + 1}); give a JSON list or table"
    return "cannot be decoded; give a JSON list or table"


def _prices(value: dict[str, float]) -> dict[str, float]:
    """``[twilio.prices]``: ISO 3166 country codes (any case) or ``default`` → price per segment."""
    table: dict[str, float] = {}
    for key, price in value.items():
        name = key.strip()
        if not (name == "default" or re.fullmatch(r"[A-Za-z]{2}", name)):
            raise PydanticCustomError(
                "price_key", "{key}: expected a country code (DE, US) or default", {"key": key}
            )
        if price < 0:
            raise PydanticCustomError("price_value", "{key}: a price cannot be negative", {"key": key})
        table[name if name == "default" else name.upper()] = float(price)
    return table


PriceTable = Annotated[dict[str, float], AfterValidator(_prices)]
