"""Single-use subscribe confirmations: the pending token's digest and when it was requested.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("confirm_digest", sa.String(64)))
        batch.add_column(sa.Column("requested_at", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("requested_at")
        batch.drop_column("confirm_digest")
