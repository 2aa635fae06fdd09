"""The migrated schema is exactly what the table models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import bot.alerts.tables
import bot.recipients.tables
import bot.tables
from bot.store import Store, is_current, script_heads


def test_migrations_match_the_models(store: Store) -> None:
    assert bot.tables and bot.alerts.tables and bot.recipients.tables  # every table module is loaded
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []


def test_a_database_at_the_heads_is_current_and_one_behind_is_not(store: Store) -> None:
    # `open_store` skips alembic only for the first (tests/test_import_discipline.py: no alembic loaded)
    with store.engine.connect() as connection:
        stored = MigrationContext.configure(connection).get_current_heads()
    assert frozenset(stored) == script_heads()
    assert is_current(store)
    with store.begin() as connection:
        head, behind = "0013_delivery_address_index", "0012_delivery_sent_by"
        connection.execute(text("DELETE FROM alembic_version WHERE version_num = :v"), {"v": head})
        connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": behind})
    assert not is_current(store)
    with store.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
    assert not is_current(store)
