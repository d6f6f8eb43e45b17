"""Reader preferences (tags, time zone) and how each subscriber opted in.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("method", sa.String(40)))
    op.create_table(
        "preferences",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
        sa.Column("timezone", sa.String(64), nullable=False, server_default=""),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("preferences")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("method")
