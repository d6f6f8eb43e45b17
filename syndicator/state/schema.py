"""Table definitions of the store (SQLAlchemy Core); migrations create and upgrade them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# Times are whole seconds since the epoch (UTC): portable across SQLite and PostgreSQL.
stories = Table(
    "stories",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("first_seen", BigInteger, nullable=False),
    # The story's page name, stories/<slug>.html, fixed when first seen (migration 0005; NULL
    # for a story recorded before, until it is seen again). Unique: no two stories share a page.
    Column("slug", String(200)),
    # What readers see of it, hashed (model.content_digest), and when that last changed after
    # it was first seen: a correction moves `updated` forward (migration 0006).
    Column("digest", String(32)),
    Column("revised_at", BigInteger),
)
Index("uq_stories_slug", stories.c.slug, unique=True)
# Every build reads the newest of each (migration 0010).
Index("ix_stories_first_seen", stories.c.first_seen)
Index("ix_stories_revised_at", stories.c.revised_at)

# Counters moved by writers in the transaction of their change (migration 0011): "stories" by
# every write to the stories table, so a reader tells "changed since" by one row.
counters = Table(
    "counters",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
STORY_CHANGES = "stories"

story_keys = Table(
    "story_keys",
    metadata,
    Column("key", String(1000), primary_key=True),
    Column("story_id", String(200), ForeignKey("stories.id"), nullable=False),
)

editions = Table(
    "editions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("slot", String(100), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("max_seq", Integer, nullable=False),
    Column("story_ids", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    # Where each reader's unsubscribe URL is spliced into html and text (random per edition).
    Column("marker", String(100), nullable=False, server_default="SYNDICATOR_UNSUBSCRIBE_URL_7F3A9C2E"),
    Column("status", String(20), nullable=False),
    Column("finished_at", BigInteger),
    Column("last_error", Text),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("edition_id", Integer, ForeignKey("editions.id"), primary_key=True),
    Column("address", String(320), primary_key=True),
    Column("message_id", String(400), nullable=False),
    Column("state", String(20), nullable=False),
    Column("lease_until", BigInteger),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", BigInteger),
    Column("code", Integer),
    Column("reply", Text),
    Column("updated_at", BigInteger, nullable=False),
)
Index("ix_deliveries_state", deliveries.c.edition_id, deliveries.c.state)

suppressions = Table(
    "suppressions",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("confirmed", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("confirmed_at", BigInteger),
    # A pending confirmation is single-use: only the SHA-256 of the newest confirmation token
    # is kept (never the token), with the time it was requested (migration 0002).
    Column("confirm_digest", String(64)),
    Column("requested_at", BigInteger),
    # How they opted in: "double opt-in", or "imported" (vouched for by the publisher, like a
    # config-listed address); NULL for a subscriber recorded before (migration 0008).
    Column("method", String(40)),
)

# What a reader chose on their preferences page: tags (JSON list of tag slugs, empty: every
# story) and a time zone (empty: the digest's own).
preferences = Table(
    "preferences",
    metadata,
    Column("address", String(320), primary_key=True),
    Column("tags", Text, nullable=False, default="[]"),
    Column("timezone", String(64), nullable=False, default=""),
    Column("updated_at", BigInteger, nullable=False),
)

# What came back by mail (bounces, delays, complaints, mailed unsubscribes), for the soft
# bounce count and each edition's counts; and each inbound message handled, so none counts twice.
inbound_events = Table(
    "inbound_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("kind", String(20), nullable=False),  # bounce, delay, complaint, unsubscribe
    Column("address", String(320), nullable=False),
    Column("edition_id", Integer),
    Column("status", String(20), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_inbound_events_address", "address", "kind", "at"),
    Index("ix_inbound_events_edition", "edition_id"),
)

inbound_seen = Table(
    "inbound_seen",
    metadata,
    Column("digest", String(64), primary_key=True),  # sha256 of the raw message
    Column("at", BigInteger, nullable=False),
    Column("outcome", String(20), nullable=False),
)

# Each build and send: when it started and how long it took (migration 0007), for /metrics
# and /admin. Old rows are pruned as new ones come (syndicator.state.runs).
runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),  # build, send
    Column("started_at", BigInteger, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_runs_kind", "kind", "started_at"),
)

# Readers who chose tags get a variant of the edition holding only those stories: each variant
# is frozen with the edition (so a resumed send mails exactly what the first run would have),
# and each such reader's variant is recorded (migration 0009). Readers without a row get the
# edition itself.
edition_variants = Table(
    "edition_variants",
    metadata,
    Column("edition_id", Integer, ForeignKey("editions.id"), primary_key=True),
    Column("variant", Integer, primary_key=True),
    Column("tags", Text, nullable=False),  # JSON list of tag slugs
    Column("story_ids", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
)

delivery_variants = Table(
    "delivery_variants",
    metadata,
    Column("edition_id", Integer, ForeignKey("editions.id"), primary_key=True),
    Column("address", String(320), primary_key=True),
    Column("variant", Integer, nullable=False),
)
