"""Story times indexed: the newest first-seen and revision times are read by every build
(whether the store changed since the last one, and where new stories' times go on from); at
millions of stories a scan of the table for each took a second.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_stories_first_seen", "stories", ["first_seen"])
    op.create_index("ix_stories_revised_at", "stories", ["revised_at"])


def downgrade() -> None:
    op.drop_index("ix_stories_revised_at", "stories")
    op.drop_index("ix_stories_first_seen", "stories")
