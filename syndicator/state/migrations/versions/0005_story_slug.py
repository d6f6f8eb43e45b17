"""Each story's page name (its slug), recorded when the story is first seen, unique.

A page name is in feeds and mails already sent, so it must never change and never be
given to another story. Stories recorded before keep NULL here until a build or a send sees
them again, which records the name their title gives (the name they had).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stories") as batch:
        batch.add_column(sa.Column("slug", sa.String(200)))
    op.create_index("uq_stories_slug", "stories", ["slug"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_stories_slug", "stories")
    with op.batch_alter_table("stories") as batch:
        batch.drop_column("slug")
