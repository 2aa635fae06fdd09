"""Tables of recipient choices. Domain logic lives in :mod:`bot.recipients.preferences`.

``preference`` holds only what a person changed: no row means the kind reaches them on that
channel. ``kind = "*"`` stands for every non-mandatory kind (one-click unsubscribe writes it, so a
kind added to the config later does not reach someone who unsubscribed from everything).
``person_settings`` holds a person's quiet-hours override.
"""

from __future__ import annotations

from sqlalchemy import Text
from sqlmodel import Field

from bot.tables import TableModel

ALL_KINDS = "*"
QUIET_MODES = ("default", "custom", "off")


class Preference(TableModel, table=True):
    __tablename__ = "preference"

    person_id: str = Field(primary_key=True, max_length=200)
    kind: str = Field(primary_key=True, max_length=32)
    channel: str = Field(primary_key=True, max_length=16)
    enabled: bool = Field(default=True)
    updated_at: float = Field(default=0.0)


class PersonSettings(TableModel, table=True):
    """Per-person quiet hours: ``default`` (the company window), ``custom`` (start/end) or ``off``."""

    __tablename__ = "person_settings"

    person_id: str = Field(primary_key=True, max_length=200)
    quiet_mode: str = Field(default="default", max_length=16)
    quiet_start: str | None = Field(default=None, max_length=5)
    quiet_end: str | None = Field(default=None, max_length=5)
    updated_at: float = Field(default=0.0)


class InboundSms(TableModel, table=True):
    """Each inbound SMS acted on, by Twilio's ``MessageSid``: a replayed request (the same signed
    message posted again) is answered with the stored reply and changes nothing."""

    __tablename__ = "inbound_sms"

    message_sid: str = Field(primary_key=True, max_length=64)
    phone: str = Field(default="", max_length=32)
    received_at: float = Field(default=0.0)
    reply: str | None = Field(default=None, sa_type=Text)


class Confirmation(TableModel, table=True):
    """A person's confirmation that they got a notification: the first one counts (when, on which
    channel); repeats change nothing. See :mod:`bot.recipients.confirmations`."""

    __tablename__ = "confirmation"

    notification_id: str = Field(primary_key=True, max_length=32)
    person_id: str = Field(primary_key=True, max_length=200)
    at: float = Field(default=0.0)
    channel: str = Field(default="", max_length=16)
