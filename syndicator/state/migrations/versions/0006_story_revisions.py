"""Corrections: each story's content digest and the time its text last changed.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stories") as batch:
        batch.add_column(sa.Column("digest", sa.String(32)))
        batch.add_column(sa.Column("revised_at", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("stories") as batch:
        batch.drop_column("revised_at")
        batch.drop_column("digest")
