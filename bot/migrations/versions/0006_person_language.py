"""person language: the BCP 47 tag that picks a template's language

Revision ID: 0006_person_language
Revises: 0003_channel_health
Create Date: 2026-12-04 22:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_person_language"
down_revision = "0003_channel_health"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("person") as batch:
        batch.add_column(sa.Column("language", sa.String(length=35), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("person") as batch:
        batch.drop_column("language")
