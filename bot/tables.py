"""SQLModel tables: the stored shape of Herald's state. Domain logic lives elsewhere.

Times in the ledger are UNIX epoch seconds (float): comparable on SQLite and PostgreSQL alike,
and cheap to compute deadlines with.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Column, Index, Table, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


class DeliveryState(StrEnum):
    """A delivery's state (SPEC "Delivery semantics"); stored as its value."""

    QUEUED = "queued"
    DEFERRED = "deferred"  # quiet hours or a retry wait
    SENDING = "sending"  # claimed by a dispatcher under a lease
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"  # permanent
    SUPPRESSED = "suppressed"  # opted out, bounced, no address
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the retry window ran out


DELIVERY_STATES = tuple(state.value for state in DeliveryState)
CLAIMABLE = (DeliveryState.QUEUED.value, DeliveryState.DEFERRED.value)
OPEN_STATES = (*CLAIMABLE, DeliveryState.SENDING.value)
FINAL_STATES = tuple(state for state in DELIVERY_STATES if state not in OPEN_STATES)


class TableModel(SQLModel):
    """The base of Herald's table models: pydantic builds a model's validator on its first use, not
    at import. Herald reads and writes rows through the tables' columns, so a command seldom uses
    one, and building them all took ~10 ms of every command's start."""

    model_config = SQLModel.model_config | {"defer_build": True}


def table_of(model: type[SQLModel]) -> Table:
    """A table model's Core table, typed (SQLModel leaves ``__table__`` untyped)."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


class Person(TableModel, table=True):
    __tablename__ = "person"

    id: str = Field(primary_key=True, max_length=200)
    name: str = Field(default="", max_length=300)
    email: str | None = Field(default=None, index=True, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    department: str | None = Field(default=None, max_length=200)
    site: str | None = Field(default=None, max_length=200)
    title: str | None = Field(default=None, max_length=300)
    manager: str | None = Field(default=None, max_length=320)
    timezone: str | None = Field(default=None, max_length=64)
    slack_user_id: str | None = Field(default=None, index=True, max_length=32)
    language: str | None = Field(default=None, max_length=35)  # BCP 47: de, pt-BR
    active: bool = Field(default=True)
    source: str = Field(default="file", max_length=16)
    updated_at: float = Field(default=0.0)


class PersonGroup(TableModel, table=True):
    __tablename__ = "person_group"

    person_id: str = Field(primary_key=True, foreign_key="person.id", max_length=200)
    group_name: str = Field(primary_key=True, max_length=200, index=True)


class Group(TableModel, table=True):
    __tablename__ = "group_"

    name: str = Field(primary_key=True, max_length=200)
    slack_usergroup_id: str | None = Field(default=None, index=True, max_length=32)
    description: str = Field(default="", max_length=500)


class Notification(TableModel, table=True):
    __tablename__ = "notification"

    id: str = Field(primary_key=True, max_length=32)
    kind: str = Field(default="announcement", max_length=32)  # announcement | alert | escalation | resolution
    severity: str = Field(max_length=32)
    title: str = Field(max_length=500)
    body: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    audience: str = Field(default="", max_length=2000)
    channels: str = Field(default="email", max_length=64)  # comma-separated
    state: str = Field(default="queued", max_length=16, index=True)  # scheduled|queued|done|cancelled
    created_by: str = Field(default="", max_length=200)
    created_at: float = Field(default=0.0, index=True)
    start_at: float = Field(default=0.0)
    deadline: float = Field(default=0.0)
    finished_at: float | None = Field(default=None)
    recipients: int = Field(default=0)
    parent_id: str | None = Field(default=None, max_length=32, index=True)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    meta: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))


class Delivery(TableModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("notification_id", "person_id", "channel", name="uq_delivery_target"),
        Index(
            "ix_delivery_claimable",
            "deadline",
            "id",
            postgresql_where=text("state IN ('queued', 'deferred')"),
            sqlite_where=text("state IN ('queued', 'deferred')"),
        ),
        Index(
            "ix_delivery_leased",
            "lease_until",
            postgresql_where=text("state = 'sending'"),
            sqlite_where=text("state = 'sending'"),
        ),
        Index("ix_delivery_notification_state", "notification_id", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    notification_id: str = Field(foreign_key="notification.id", max_length=32)
    person_id: str = Field(max_length=200)
    channel: str = Field(max_length=16)
    # Status callbacks and bounces name the address with the provider id: one index, set on creation
    # (the provider id, random for SMS, changes with every outcome).
    address: str = Field(default="", max_length=320, index=True)
    state: str = Field(default="queued", max_length=16)
    deadline: float = Field(default=0.0)
    due_at: float = Field(default=0.0)
    attempts: int = Field(default=0)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: float | None = Field(default=None)
    provider_id: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=1000)
    created_at: float = Field(default=0.0)
    sent_at: float | None = Field(default=None)
    updated_at: float = Field(default=0.0)
    sent_by: str | None = Field(default=None, max_length=64)  # the dispatcher that sent it (no attempt row)
    # Why it was late (SPEC "Truthful outcomes"; bot.engine.timings): when the last attempt was
    # claimed, and the seconds waited for each cause, written with the claim and the outcomes.
    claimed_at: float | None = Field(default=None)
    wait_throttle: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    wait_quiet: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    wait_retry: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    wait_down: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})
    wait_provider: float = Field(default=0.0, sa_column_kwargs={"server_default": "0"})


class Attempt(TableModel, table=True):
    __tablename__ = "attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(index=True)
    at: float
    outcome: str = Field(max_length=16)  # sent | transient | uncertain | permanent
    reason: str | None = Field(default=None, max_length=64)
    detail: str | None = Field(default=None, max_length=1000)
    provider_id: str | None = Field(default=None, max_length=200)
    worker: str = Field(default="", max_length=64)


class Suppression(TableModel, table=True):
    __tablename__ = "suppression"

    channel: str = Field(primary_key=True, max_length=16)
    address: str = Field(primary_key=True, max_length=320)
    reason: str = Field(max_length=200)
    source: str = Field(default="", max_length=64)
    created_at: float = Field(default=0.0)


class AuditEntry(TableModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=64)
    subject: str = Field(default="", max_length=200)
    allowed: bool = Field(default=True)
    detail: str = Field(default="{}", sa_column=Column(Text, nullable=False, server_default="{}"))


class ChannelCounter(TableModel, table=True):
    """Per channel and day, how many sends were made: keeps ``daily_cap`` across restarts and workers."""

    __tablename__ = "channel_counter"

    channel: str = Field(primary_key=True, max_length=16)
    day: str = Field(primary_key=True, max_length=10)
    sent: int = Field(default=0)


class ThrottleSlot(TableModel, table=True):
    """Per channel, the earliest start of the next send (cluster-wide pacing; see bot.engine.throttle)."""

    __tablename__ = "throttle_slot"

    channel: str = Field(primary_key=True, max_length=16)
    next_at: float = Field(default=0.0)


class ChannelHealth(TableModel, table=True):
    """Per channel, whether it is down (a circuit breaker the whole cluster shares; see bot.engine.health)."""

    __tablename__ = "channel_health"

    channel: str = Field(primary_key=True, max_length=16)
    down_since: float | None = Field(default=None)
    reason: str = Field(default="", max_length=32)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    probe_at: float = Field(default=0.0)
    probes: int = Field(default=0)  # failed probes in a row: the backoff grows with them


class WorkerLock(TableModel, table=True):
    """One row per running dispatcher; SQLite uses it to refuse a second one."""

    __tablename__ = "worker"

    id: str = Field(primary_key=True, max_length=64)
    host: str = Field(default="", max_length=200)
    pid: int = Field(default=0)
    started_at: float = Field(default=0.0)
    heartbeat_at: float = Field(default=0.0)


class KeyValue(TableModel, table=True):
    """Small facts the installation keeps, such as the generated token-signing key."""

    __tablename__ = "key_value"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=2000)


class Rung(TableModel, table=True):
    """A later rung of a notification's channel ladder (``--channels slack,email>sms``): its channels,
    and when it started (None: not yet). Rung 0 goes at once and has no row; see bot.engine.rungs."""

    __tablename__ = "rung"

    notification_id: str = Field(primary_key=True, max_length=32)
    idx: int = Field(primary_key=True)
    channels: str = Field(max_length=64)  # comma-separated
    deadline: float = Field(default=0.0)  # confirm_within (with --confirm) or the notification's deadline
    started_at: float | None = Field(default=None)
    people: int = Field(default=0)  # how many were left when it started
