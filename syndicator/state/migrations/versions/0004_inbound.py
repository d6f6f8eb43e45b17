"""What comes back by mail: inbound events (bounces, delays, complaints, mailed
unsubscribes) and the inbound messages already handled.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("edition_id", sa.Integer),
        sa.Column("status", sa.String(20), nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_inbound_events_address", "inbound_events", ["address", "kind", "at"])
    op.create_index("ix_inbound_events_edition", "inbound_events", ["edition_id"])
    op.create_table(
        "inbound_seen",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("inbound_seen")
    op.drop_index("ix_inbound_events_edition", "inbound_events")
    op.drop_index("ix_inbound_events_address", "inbound_events")
    op.drop_table("inbound_events")
