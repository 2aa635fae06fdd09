"""The migrated schema is exactly what the table models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import bot.alerts.tables
import bot.recipients.tables
import bot.tables
from bot.store import Store


def test_migrations_match_the_models(store: Store) -> None:
    assert bot.tables and bot.alerts.tables and bot.recipients.tables  # every table module is loaded
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []
