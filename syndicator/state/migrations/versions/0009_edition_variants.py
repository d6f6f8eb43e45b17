"""Edition variants: one frozen rendering per distinct tag choice of the readers, and which
variant each reader of the edition gets.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edition_variants",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id"), primary_key=True),
        sa.Column("variant", sa.Integer, primary_key=True),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("story_ids", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_table(
        "delivery_variants",
        sa.Column("edition_id", sa.Integer, sa.ForeignKey("editions.id"), primary_key=True),
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("variant", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("delivery_variants")
    op.drop_table("edition_variants")
