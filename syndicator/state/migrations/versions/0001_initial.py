"""The initial store: stories and their keys, editions, deliveries, suppressions, subscribers.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stories",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(200), nullable=False, unique=True),
        sa.Column("first_seen", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "story_keys",
        sa.Column("key", sa.String(1000), primary_key=True),
        sa.Column("story_id", sa.String(200), sa.ForeignKey("stories.id"), nullable=False),
    )
    op.create_table(
        "editions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("slot", sa.String(100), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("max_seq", sa.Integer, nullable=False),
        sa.Column("story_ids", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("last_error", sa.Text),
    )
    op.create_table(
        "deliveries",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id"), primary_key=True),
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("message_id", sa.String(400), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("lease_until", sa.BigInteger),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt", sa.BigInteger),
        sa.Column("code", sa.Integer),
        sa.Column("reply", sa.Text),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_deliveries_state", "deliveries", ["edition_id", "state"])
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "subscribers",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("confirmed_at", sa.BigInteger),
    )


def downgrade() -> None:
    for name in ("subscribers", "suppressions", "deliveries", "editions", "story_keys", "stories"):
        op.drop_table(name)
