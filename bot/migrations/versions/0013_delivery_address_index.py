"""deliveries are found by address instead of provider id: ix_delivery_address replaces
ix_delivery_provider_id

Every lookup by provider id also names the address (a Twilio status callback's ``To``, a bounce's
recipient), and suppressing an address updates its waiting deliveries by address, which scanned the
whole table. The address is written once, when the delivery is created; a provider id (Twilio's
random SID) was written with every outcome, each to its own leaf of the old index.

Revision ID: 0013_delivery_address_index
Revises: 0012_delivery_sent_by
Create Date: 2026-12-05 00:00:00
"""

from alembic import op

revision = "0013_delivery_address_index"
down_revision = "0012_delivery_sent_by"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_delivery_address", "delivery", ["address"], unique=False)
    op.drop_index("ix_delivery_provider_id", table_name="delivery")


def downgrade() -> None:
    op.create_index("ix_delivery_provider_id", "delivery", ["provider_id"], unique=False)
    op.drop_index("ix_delivery_address", table_name="delivery")
