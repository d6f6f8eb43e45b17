"""Each edition's own unsubscribe marker: random, so article text cannot contain it.

Editions opened before keep the one fixed marker their stored bodies hold.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.add_column(sa.Column("marker", sa.String(100), nullable=False,
                                   server_default="SYNDICATOR_UNSUBSCRIBE_URL_7F3A9C2E"))


def downgrade() -> None:
    with op.batch_alter_table("editions") as batch:
        batch.drop_column("marker")
