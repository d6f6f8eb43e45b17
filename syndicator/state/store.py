"""The state store: SQLite by default, PostgreSQL by URL, schema kept current by migrations."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, select, text
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)

from syndicator.errors import StoreError
from syndicator.state import schema

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_HEAD = "0011"  # the newest migration's revision; a test holds it to migrations/versions


def _revision(conn: Connection) -> str | None:
    """The store's schema version as alembic records it (None: no schema yet)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    return str(version) if version is not None else None


@dataclass(frozen=True)
class StoredStory:
    id: str
    seq: int
    first_seen: int
    slug: str | None = None  # its page name; None for a story an older syndicator recorded
    digest: str | None = None  # what readers see of it, hashed; None until first recorded
    revised_at: int | None = None  # when that last changed after it was first seen


class NamesTaken(Exception):
    """Another writer gave a page name to a story first; read the store again and retry."""


class Store:
    """One small interface over the database; every other module goes through it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # Sibling processes sharing one SQLite file can take turns on this lock: a waiter is woken
        # the moment the writer commits, where SQLite's busy handler would sleep a millisecond or more.
        self.write_lock: Any = None
        self._driver: Any = None  # SQLite: one DBAPI connection held for begin_driver()
        self._driver_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, create: bool = True) -> Store:
        """Connect and bring the schema up to date; raise StoreError on any failure."""
        engine = _engine(url, create=create)
        store = cls(engine)
        try:
            store._migrate()
        except StoreError:
            engine.dispose()
            raise
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"cannot open the store: {_reason(exc)}", path=_display(url)) from None
        return store

    def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            driver.close()  # back to the pool, which dispose() empties
        self.engine.dispose()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
        lock = self.write_lock
        # A sibling killed while holding it must not stop the others: SQLite's own lock still holds.
        if lock is not None and not lock.acquire(timeout=5):
            lock = None
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except (OperationalError, DatabaseError) as exc:
            raise StoreError(f"store error: {_reason(exc)}") from None
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def begin_driver(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE) straight on the sqlite3 connection, SQLite only.

        For the sender's group commits, thousands a second: SQLAlchemy's connection, event and
        statement layers cost three times the commit itself (about 110 of 150 µs for four rows).
        Same write lock, same errors as ``begin``; one connection, held until ``close``.
        """
        if not self.is_sqlite:
            raise TypeError("begin_driver is for SQLite stores")
        lock = self.write_lock
        if lock is not None and not lock.acquire(timeout=5):
            lock = None
        try:
            with self._driver_lock:
                if self._driver is None:
                    self._driver = self.engine.raw_connection()  # the pragmas come with it
                db: sqlite3.Connection = self._driver.driver_connection
                try:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        yield db
                    except BaseException:
                        db.execute("ROLLBACK")
                        raise
                    db.execute("COMMIT")
                except sqlite3.DatabaseError as exc:  # OperationalError among them
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise StoreError(f"store error: {str(exc).strip().splitlines()[0]}") from None
        finally:
            if lock is not None:
                lock.release()

    def insert_ignore(self, table: Table) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING: a duplicate key is no error, on either database."""
        dialect_insert = sqlite_insert if self.is_sqlite else postgres_insert
        return dialect_insert(table).on_conflict_do_nothing()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction: never waits for, nor blocks, a writer (SQLite WAL)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(syndicator_readonly=True)
                with conn.begin():
                    yield conn
        except (OperationalError, DatabaseError) as exc:
            raise StoreError(f"store error: {_reason(exc)}") from None

    def _migrate(self) -> None:
        # The common case, a store already at the newest schema, is told without alembic,
        # whose import is a third of a command's start-up.
        with self.engine.connect() as conn:
            if _revision(conn) == SCHEMA_HEAD:
                return
        from alembic import command
        from alembic.config import Config as AlembicConfig
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(MIGRATIONS))
        head = script.get_current_head()
        with self.engine.begin() as conn:
            # One migrator at a time: SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock.
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(7262514001)"))
            current = _revision(conn)
            if current == head:
                return
            if current is not None and current not in {r.revision for r in script.walk_revisions()}:
                raise StoreError(
                    f"the store is at schema version {current}, newer than this syndicator knows "
                    f"({head}); upgrade syndicator"
                )
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def ping(self) -> bool:
        """Whether the store answers a trivial query now (for health checks; never raises)."""
        try:
            with self.read() as conn:
                conn.execute(text("SELECT 1"))
        except (StoreError, SQLAlchemyError):
            return False
        return True

    # -- stories ---------------------------------------------------------
    def story_keys(self) -> dict[str, StoredStory]:
        """Every known key with the story it names."""
        with self.read() as conn:
            # The driver's plain tuples: half a million rows through SQLAlchemy's Row cost 1 s.
            rows = conn.exec_driver_sql(
                "SELECT k.key, s.id, s.seq, s.first_seen, s.slug, s.digest, s.revised_at"
                " FROM story_keys k JOIN stories s ON s.id = k.story_id").fetchall()
        # Keys of one story share one StoredStory (fewer objects, cheap equality).
        stories: dict[str, StoredStory] = {}
        keys: dict[str, StoredStory] = {}
        for key, story_id, seq, first_seen, slug, digest, revised_at in rows:
            stored = stories.get(story_id)
            if stored is None:
                stored = stories[story_id] = StoredStory(story_id, seq, first_seen, slug, digest, revised_at)
            keys[key] = stored
        return keys

    def keys_of(self, keys: Iterable[str]) -> dict[str, StoredStory]:
        """The stored story of each of ``keys`` that names one (``story_keys``, for a few keys)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, StoredStory] = {}
        stories: dict[str, StoredStory] = {}
        with self.read() as conn:
            for start in range(0, len(wanted), _CHUNK):
                part = wanted[start:start + _CHUNK]
                marks = ", ".join(_mark(conn, n) for n in range(1, len(part) + 1))
                rows = conn.exec_driver_sql(
                    "SELECT k.key, s.id, s.seq, s.first_seen, s.slug, s.digest, s.revised_at"
                    f" FROM story_keys k JOIN stories s ON s.id = k.story_id WHERE k.key IN ({marks})",
                    tuple(part)).fetchall()
                for key, story_id, seq, first_seen, slug, digest, revised_at in rows:
                    stored = stories.get(story_id)
                    if stored is None:
                        stored = stories[story_id] = StoredStory(story_id, seq, first_seen, slug, digest,
                                                                 revised_at)
                    found[key] = stored
        return found

    def slug_owner(self, slug: str) -> str | None:
        """The id of the story whose page name ``slug`` is, if any."""
        with self.read() as conn:
            owner = conn.exec_driver_sql(f"SELECT id FROM stories WHERE slug = {_mark(conn, 1)}",
                                         (slug,)).scalar()
        return None if owner is None else str(owner)

    def slug_owners(self, slugs: Iterable[str]) -> dict[str, str]:
        """The id of the story whose page name each of ``slugs`` is, for those that are one
        (``slug_owner`` for many: a query per few hundred, not per name)."""
        wanted = list(dict.fromkeys(slugs))
        found: dict[str, str] = {}
        with self.read() as conn:
            for start in range(0, len(wanted), _CHUNK):
                part = wanted[start:start + _CHUNK]
                marks = ", ".join(_mark(conn, n) for n in range(1, len(part) + 1))
                rows = conn.exec_driver_sql(f"SELECT slug, id FROM stories WHERE slug IN ({marks})",
                                            tuple(part))
                found.update((str(slug), str(owner)) for slug, owner in rows)
        return found

    def latest_first_seen(self) -> int | None:
        from sqlalchemy import func

        with self.read() as conn:
            latest = conn.execute(select(func.max(schema.stories.c.first_seen))).scalar()
        return None if latest is None else int(latest)

    def max_seq(self) -> int:
        from sqlalchemy import func

        with self.read() as conn:
            return int(conn.execute(select(func.coalesce(func.max(schema.stories.c.seq), 0))).scalar_one())

    def story_changes(self) -> tuple[int, int]:
        """The stories' change counter and their highest seq: both move with every write to
        the stories (two index reads, where counting the stories is a scan of millions)."""
        from sqlalchemy import func

        with self.read() as conn:
            changes = conn.execute(select(schema.counters.c.value)
                                   .where(schema.counters.c.name == schema.STORY_CHANGES)).scalar()
            top = conn.execute(select(func.coalesce(func.max(schema.stories.c.seq), 0))).scalar_one()
        return int(changes or 0), int(top)

    def revise(self, revisions: Iterable[tuple[str, str, int | None]]) -> None:
        """Record (id, digest, revised_at) for stories whose text changed, or whose digest an
        older syndicator did not keep."""
        rows = [(digest, revised_at, story_id) for story_id, digest, revised_at in revisions]
        if not rows:
            return
        with self.begin() as conn:
            sets = f"digest = {_mark(conn, 1)}, revised_at = {_mark(conn, 2)}"
            conn.exec_driver_sql(f"UPDATE stories SET {sets} WHERE id = {_mark(conn, 3)}", rows)
            _count_change(conn)

    def add_stories(
        self, new: Iterable[tuple[str, int, str, str]], aliases: Iterable[tuple[str, str]],
        named: Iterable[tuple[str, str]] = (),
    ) -> dict[str, int]:
        """Record new stories (id, first_seen, slug, digest) and new keys (key, id); return each
        new id's seq.

        ``named`` (slug, id): page names for stories recorded without one (by an older
        syndicator). A name another story holds fails on its unique key (IntegrityError); a
        story that another writer named meanwhile raises NamesTaken. Either way nothing is kept.
        """
        from sqlalchemy import func

        new = list(new)
        aliases = list(aliases)
        named = list(named)
        stories = schema.stories
        with self.begin() as conn:
            # Sequence numbers only grow: every row inserted below has a seq above this one.
            before = int(conn.execute(select(func.coalesce(func.max(stories.c.seq), 0))).scalar_one())
            # Row by row, in order: seq must follow the list's order (newest first), which a
            # multi-row INSERT does not promise on every backend. Plain tuples straight to the
            # driver: a first build of 400,000 stories spent 6 s in SQLAlchemy's per-row work.
            _insert_many(conn, stories, ("id", "first_seen", "slug", "digest"), new)
            _insert_many(conn, schema.story_keys, ("key", "story_id"), aliases)
            if named:
                updated = conn.exec_driver_sql(
                    f"UPDATE stories SET slug = {_mark(conn, 1)} WHERE id = {_mark(conn, 2)}"
                    " AND slug IS NULL", named)
                if updated.rowcount != len(named):  # summed over the rows (sqlite3, psycopg 3)
                    raise NamesTaken(f"{len(named) - updated.rowcount} stories were named meanwhile")
            if new or named:
                _count_change(conn)
            if not new:
                return {}
            ids = {story_id for story_id, _, _, _ in new}
            rows = conn.exec_driver_sql(f"SELECT id, seq FROM stories WHERE seq > {_mark(conn, 1)}",
                                        (before,))
            return {story_id: seq for story_id, seq in rows if story_id in ids}


_CHUNK = 500  # parameters per statement: under SQLite's oldest limit (999)


def _mark(conn: Connection, n: int) -> str:
    """The driver's placeholder for the n-th parameter (1-based)."""
    style = conn.dialect.paramstyle
    marks = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": f":{n}"}
    if style not in marks:
        raise StoreError(f"unsupported database driver (parameter style {style})")
    return marks[style]


def insert_many(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[Any]) -> None:
    """Rows as plain tuples straight to the driver (one executemany), on either database."""
    _insert_many(conn, table, columns, rows)


def _count_change(conn: Connection) -> None:
    """Move the stories' change counter, in the writer's transaction (``story_changes``)."""
    conn.exec_driver_sql(f"UPDATE counters SET value = value + 1 WHERE name = {_mark(conn, 1)}",
                         (schema.STORY_CHANGES,))


def _insert_many(conn: Connection, table: Table, columns: tuple[str, ...], rows: list[Any]) -> None:
    if not rows:
        return
    marks = ", ".join(_mark(conn, n) for n in range(1, len(columns) + 1))
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows)


def open_readonly(url: str) -> Store:
    """The store for commands that must change nothing (``send --dry-run``, ``status``).

    A store not created yet reads as an empty one (an in-memory SQLite); one that needs a
    schema upgrade is an error, since upgrading it would be a change.
    """
    parsed = _parse(url)
    if (parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
            and not Path(parsed.database).exists()):
        return Store.open("sqlite://")
    engine = _engine(url, create=False)
    try:
        with engine.connect() as conn:
            current = _revision(conn)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store: {_reason(exc)}", path=_display(url)) from None
    head = SCHEMA_HEAD
    if current == head:
        return Store(engine)
    engine.dispose()
    if current is None:
        return Store.open("sqlite://")
    raise StoreError(f"the store is at schema version {current}, not {head}: run a command that "
                     "writes (build or send) to upgrade it, or upgrade syndicator", path=_display(url))


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise StoreError("not a valid store URL (an SQLAlchemy URL such as sqlite:///state/syndicator.db)",
                         key="paths.store") from None


def _engine(url: str, *, create: bool) -> Engine:
    parsed = _parse(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).parent
            if create:
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the store folder: {exc.strerror}", path=folder) from None
        kwargs["connect_args"] = {"timeout": 30}
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StoreError(f"cannot use store URL {_display(url)}: {exc}", key="paths.store") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so that SQLAlchemy's BEGIN below is the only one.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    _wal(cursor)
    # NORMAL in WAL mode: a commit survives a killed process (the crash we guard against), cheaply.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # 32 MB of page cache (the default is 2 MB): recording a first build's 400,000 stories
    # inserts into indexes far bigger than 2 MB. Memory is taken only as pages are read.
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.close()


def _wal(cursor: Any) -> None:
    """Switch to WAL once; the switch can report 'locked' at once while another process opens the file."""
    for _attempt in range(100):
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of deadlocking.
    readonly = conn.get_execution_options().get("syndicator_readonly")
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _reason(exc: SQLAlchemyError) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig).strip().splitlines()[0]
    return str(exc).strip().splitlines()[0]


def _display(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
