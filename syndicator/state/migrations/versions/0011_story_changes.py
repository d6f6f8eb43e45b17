"""A counter of changes to the stories table, moved by every write to it in the same
transaction: whether the store changed since a build is then one row's read, not counts of
every story (a scan: a second at millions of stories).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "stories", "value": 0}])


def downgrade() -> None:
    op.drop_table("counters")
