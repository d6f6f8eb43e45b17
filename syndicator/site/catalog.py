"""The catalog: every live story of a folder's last build, indexed as the outputs read them.

A build's outputs each show a slice of the stories: the feeds the newest-seen ``feeds.limit``,
the index and each tag the newest-published, an archive page a run of ranks by first-seen
time, a sitemap part a block of seq. A complete build writes them all from the list of every
story; it also writes that list here (an SQLite file beside its page manifest, in the
project's state/ folder, never the published one), with the seed files each story's entries
came from. A rebuild after a few seeds changed (``incremental``) then re-resolves only the
stories those seeds touch and asks the catalog for each slice it must write again: its cost
follows the change and the slices, not the archive.

It is derived data: always SQLite whatever the store is, replaced whole by each complete
build, and trusted only when the build record names its token (``unchanged.Record``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import marshal
import os
import secrets
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from syndicator.model import Story, tag_slug
from syndicator.text import one_line

CATALOG = "catalog.db"
_VERSION = 3  # 3: tag spellings counted (``tag_name`` reads no tag's every story)
_CHUNK = 500  # parameters per statement: under SQLite's oldest limit (999)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE seeds (name TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime INTEGER NOT NULL);
CREATE TABLE sources (seed TEXT NOT NULL, story_id TEXT NOT NULL, PRIMARY KEY (seed, story_id));
CREATE INDEX sources_story ON sources (story_id);
CREATE TABLE stories (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, first_seen INTEGER NOT NULL,
                      published REAL NOT NULL, updated REAL NOT NULL, slug TEXT NOT NULL,
                      lastmod TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX stories_seen ON stories (first_seen, seq);
CREATE INDEX stories_published ON stories (published DESC, seq);
CREATE INDEX stories_seq ON stories (seq);
CREATE INDEX stories_updated ON stories (updated);
CREATE TABLE story_tags (slug TEXT NOT NULL, spelling TEXT NOT NULL, story_id TEXT NOT NULL,
                         published REAL NOT NULL, seq INTEGER NOT NULL, updated REAL NOT NULL,
                         PRIMARY KEY (slug, story_id));
CREATE INDEX story_tags_order ON story_tags (slug, published DESC, seq);
CREATE INDEX story_tags_story ON story_tags (story_id);
CREATE INDEX story_tags_updated ON story_tags (slug, updated);
CREATE INDEX story_tags_spelling ON story_tags (slug, spelling, published DESC, seq);
CREATE TABLE tags (slug TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE tag_spellings (slug TEXT NOT NULL, spelling TEXT NOT NULL, n INTEGER NOT NULL,
                            PRIMARY KEY (slug, spelling));
CREATE TABLE block_lastmods (size INTEGER NOT NULL, number INTEGER NOT NULL, lastmod TEXT NOT NULL,
                             PRIMARY KEY (size, number));
"""

_NAME, _STAT = itemgetter(0), itemgetter(1, 2)
_LAST_SEEN = "ORDER BY first_seen DESC, seq DESC"  # the index stories_seen, read backwards
Listing = dict[str, tuple[int, int]]  # seed file name -> (size, mtime_ns)


def freeze(story: Story) -> bytes:
    """A story as the catalog keeps it (marshal: a tenth of pickle's cost to read back)."""
    return marshal.dumps((
        story.id, story.slug, story.title, story.paragraphs, story.is_lead,
        story.published.isoformat(), story.first_seen.isoformat(), story.seq, story.author,
        story.url, story.tags, str(story.path), story.line,
        None if story.revised is None else story.revised.isoformat(), story.correction), 2)


def thaw(data: bytes) -> Story:
    (id_, slug, title, paragraphs, is_lead, published, first_seen, seq, author, url, tags, path,
     line, revised, correction) = marshal.loads(data)
    return Story(id=id_, slug=slug, title=title, paragraphs=paragraphs, is_lead=is_lead,
                 published=datetime.fromisoformat(published), first_seen=datetime.fromisoformat(first_seen),
                 seq=seq, author=author, url=url, tags=tags, path=_path(path), line=line,
                 revised=None if revised is None else datetime.fromisoformat(revised), correction=correction)


@functools.lru_cache(maxsize=4096)
def _path(text: str) -> Path:
    return Path(text)  # 13 us each: a tenth of thawing a story, and stories share their seed's


def tag_rows(story: Story) -> list[tuple[str, str, str, float, int, float]]:
    """The story's (tag slug, spelling, ...) rows: one per slug, its last spelling (``tags.by_tag``)."""
    published, updated = story.published.timestamp(), story.updated.timestamp()
    return [(slug, one_line(tag), story.id, published, story.seq, updated)
            for slug, tag in {tag_slug(t): t for t in story.tags}.items()]


def _story_row(story: Story) -> tuple[str, int, int, float, float, str, str, bytes]:
    return (story.id, story.seq, int(story.first_seen.timestamp()), story.published.timestamp(),
            story.updated.timestamp(), story.slug, story.updated.isoformat(timespec="seconds"),
            freeze(story))


@dataclass(frozen=True)
class UrlRow:
    slug: str
    lastmod: str  # the story's last change, as a sitemap writes it


class Catalog:
    """One open catalog file; ``write`` replaces it whole, ``apply`` changes some stories."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.db = db

    @classmethod
    def open(cls, folder: Path, token: str) -> Catalog | None:
        """The catalog in ``folder`` if it is the one the build record names (``token``)."""
        path = folder / CATALOG
        if not token or not path.exists():
            return None
        try:
            db = sqlite3.connect(path, isolation_level=None)
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            return None
        if meta.get("version") != str(_VERSION) or meta.get("token") != token:
            db.close()
            return None
        return cls(path, db)

    def close(self) -> None:
        self.db.close()

    # -- writing -----------------------------------------------------------------------------
    @staticmethod
    def write(folder: Path, listing: Listing, stories: Sequence[Story],
              sources: dict[str, tuple[str, ...]]) -> str:
        """Replace the folder's catalog with these stories (atomically); return its token."""
        folder.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        tmp = folder / f".{CATALOG}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=OFF")  # a fresh file: the rename is the commit
                db.execute("PRAGMA synchronous=OFF")
                db.executescript(_SCHEMA)
                db.execute("BEGIN")
                db.executemany("INSERT INTO meta VALUES (?, ?)",
                               [("version", str(_VERSION)), ("token", token), ("count", str(len(stories)))])
                db.executemany("INSERT INTO seeds VALUES (?, ?, ?)",
                               ((name, size, mtime) for name, (size, mtime) in listing.items()))
                db.executemany("INSERT INTO sources VALUES (?, ?)",
                               ((seed, sid) for sid, seeds in sources.items() for seed in seeds))
                db.executemany("INSERT INTO stories VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               map(_story_row, stories))
                db.executemany("INSERT INTO story_tags VALUES (?, ?, ?, ?, ?, ?)",
                               (row for story in stories for row in tag_rows(story)))
                spellings = _spellings(stories)
                db.executemany("INSERT INTO tags VALUES (?, ?)",
                               [(slug, counts.most_common(1)[0][0]) for slug, counts in spellings.items()])
                db.executemany("INSERT INTO tag_spellings VALUES (?, ?, ?)",
                               [(slug, spelling, n) for slug, counts in spellings.items()
                                for spelling, n in counts.items()])
                db.execute("COMMIT")
            finally:
                db.close()
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, folder / CATALOG)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        for stale in ("-wal", "-shm"):  # of the catalog this one replaced
            with contextlib.suppress(OSError):
                (folder / (CATALOG + stale)).unlink()
        return token

    def apply(self, listing: Listing, gone_seeds: Iterable[str], sources: dict[str, tuple[str, ...]],
              parsed: Iterable[str], removed: Iterable[str], stories: Sequence[Story],
              tags: Iterable[str]) -> str:
        """One transaction: the seeds' new sizes and mtimes (``listing``: only those that
        changed), the ``parsed`` seeds' sources, stories ``removed`` and ``stories`` as they
        are now, and the names of ``tags``; return the catalog's new token."""
        token = secrets.token_hex(8)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM seeds WHERE name = ?", ((n,) for n in gone_seeds))
            db.executemany("INSERT OR REPLACE INTO seeds VALUES (?, ?, ?)",
                           ((name, size, mtime) for name, (size, mtime) in listing.items()))
            db.executemany("DELETE FROM sources WHERE seed = ?", ((n,) for n in parsed))
            db.executemany("INSERT OR IGNORE INTO sources VALUES (?, ?)",
                           ((seed, sid) for sid, seeds in sources.items() for seed in seeds))
            gone = [(sid,) for sid in removed]
            # The sitemap parts these stories were or are in change their last-change time.
            seqs = [(seq,) for (seq,) in self._each("SELECT seq FROM stories WHERE id IN", removed)]
            db.executemany("DELETE FROM block_lastmods WHERE number = (? - 1) / size + 1",
                           seqs + [(s.seq,) for s in stories])
            present = sum(1 for _ in self._each("SELECT 1 FROM stories WHERE id IN", [s.id for s in stories]))
            count = self.count() + len(stories) - present
            count -= db.executemany("DELETE FROM stories WHERE id = ?", gone).rowcount
            # Each tag's spellings stay counted: less the rows about to go, plus the new ones.
            spelt = Counter[tuple[str, str]](self._each(
                "SELECT slug, spelling FROM story_tags WHERE story_id IN",
                [*(sid for (sid,) in gone), *(s.id for s in stories)]))
            for table, column in (("story_tags", "story_id"), ("sources", "story_id")):
                db.executemany(f"DELETE FROM {table} WHERE {column} = ?", gone)
            db.executemany("DELETE FROM story_tags WHERE story_id = ?", ((s.id,) for s in stories))
            db.executemany("INSERT OR REPLACE INTO stories VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           map(_story_row, stories))
            rows = [row for story in stories for row in tag_rows(story)]
            db.executemany("INSERT INTO story_tags VALUES (?, ?, ?, ?, ?, ?)", rows)
            spelt.subtract(Counter((slug, spelling) for slug, spelling, *_ in rows))
            self._spell(spelt)
            for slug in tags:
                name = self.tag_name(slug)
                if name is None:
                    db.execute("DELETE FROM tags WHERE slug = ?", (slug,))
                else:
                    db.execute("INSERT OR REPLACE INTO tags VALUES (?, ?)", (slug, name))
            db.execute("UPDATE meta SET value = ? WHERE key = 'token'", (token,))
            db.execute("UPDATE meta SET value = ? WHERE key = 'count'", (str(count),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return token

    # -- reading -----------------------------------------------------------------------------
    def seeds(self) -> Listing:
        rows = self.db.execute("SELECT name, size, mtime FROM seeds").fetchall()
        return dict(zip(map(_NAME, rows), map(_STAT, rows), strict=True))  # in C: a million rows

    def stories_of_seeds(self, seeds: Iterable[str]) -> set[str]:
        return {row[0] for row in self._each("SELECT story_id FROM sources WHERE seed IN", seeds)}

    def seeds_of_stories(self, ids: Iterable[str]) -> set[str]:
        return {row[0] for row in self._each("SELECT seed FROM sources WHERE story_id IN", ids)}

    def stories(self, ids: Iterable[str]) -> dict[str, bytes]:
        """The frozen stories of these ids that the catalog holds."""
        return dict(self._each("SELECT id, data FROM stories WHERE id IN", ids))

    def count(self) -> int:
        """How many stories (kept in meta: SQLite counts rows one by one)."""
        return int(self.db.execute("SELECT value FROM meta WHERE key = 'count'").fetchone()[0])

    def rank(self, first_seen: int, seq: int) -> int:
        """How many stories were seen before (first_seen, seq): two index ranges (an OR of
        the two is a scan of the table), counted from whichever end is nearer. The usual
        story asked for is a new one: counted from the newest end, a few index entries, where
        from the oldest it is every story's (a second at four million)."""
        total = self.count()
        half = total // 2 + 1
        later = self.db.execute("SELECT COUNT(*) FROM (SELECT 1 FROM stories WHERE first_seen > ? LIMIT ?)",
                                (first_seen, half)).fetchone()[0]
        if later < half:
            tied = self.db.execute("SELECT COUNT(*) FROM stories WHERE first_seen = ? AND seq >= ?",
                                   (first_seen, seq)).fetchone()[0]
            return max(0, total - int(later) - int(tied))
        before = self.db.execute("SELECT COUNT(*) FROM stories WHERE first_seen < ?",
                                 (first_seen,)).fetchone()
        tied = self.db.execute("SELECT COUNT(*) FROM stories WHERE first_seen = ? AND seq < ?",
                               (first_seen, seq)).fetchone()
        return int(before[0]) + int(tied[0])

    def ranks(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """``rank`` of each (first_seen, seq): the first counted from the nearer end, each next
        from the one before (the index entries between them), so several stories deep in
        the archive cost one walk, not one each."""
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        found = {ordered[0]: self.rank(*ordered[0])}
        for (seen, seq), (next_seen, next_seq) in itertools.pairwise(ordered):
            span = self.db.execute("SELECT COUNT(*) FROM stories WHERE first_seen >= ? AND first_seen < ?",
                                   (seen, next_seen)).fetchone()[0]
            left = self.db.execute("SELECT COUNT(*) FROM stories WHERE first_seen = ? AND seq < ?",
                                   (seen, seq)).fetchone()[0]
            right = self.db.execute("SELECT COUNT(*) FROM stories WHERE first_seen = ? AND seq < ?",
                                    (next_seen, next_seq)).fetchone()[0]
            found[(next_seen, next_seq)] = found[(seen, seq)] + int(span) - int(left) + int(right)
        return found

    def newest_seen(self, limit: int) -> list[Story]:
        """The ``limit`` stories seen last, in the order they were seen."""
        return self._thaw(f"SELECT data FROM stories {_LAST_SEEN} LIMIT ?", (limit,))[::-1]

    def seen_pages(self, numbers: Sequence[int], size: int,
                   archived: int) -> Iterator[tuple[int, list[Story]]]:
        """Archive pages ``numbers`` (sorted, from 1): each ``size`` stories by the time they
        were first seen, the last clipped at ``archived``. A run of consecutive pages is one
        read (an OFFSET per page would walk the index again for each: quadratic)."""
        i = 0
        while i < len(numbers):
            j = i
            while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
                j += 1
            low, high = (numbers[i] - 1) * size, min(archived, numbers[j] * size)
            if i == j and low > (total := self.count()) // 2:
                # One page in the newer half (the usual: the newest), counted from the end.
                page = self._thaw(f"SELECT data FROM stories {_LAST_SEEN} LIMIT ? OFFSET ?",
                                  (high - low, total - high))
                yield numbers[i], page[::-1]
                i = j + 1
                continue
            cursor = self.db.execute("SELECT data FROM stories ORDER BY first_seen, seq LIMIT ? OFFSET ?",
                                     (high - low, low))
            try:
                for number in numbers[i:j + 1]:
                    rows = cursor.fetchmany(min(size, archived - (number - 1) * size))
                    yield number, [thaw(data) for (data,) in rows]
            finally:
                cursor.close()
            i = j + 1

    def newest(self, limit: int) -> list[Story]:
        """The newest-published ``limit`` stories, newest first (ties: lower seq first)."""
        return self._thaw("SELECT data FROM stories ORDER BY published DESC, seq LIMIT ?", (limit,))

    def news(self, start: float, soon: float, limit: int) -> list[Story]:
        """The stories a news sitemap can name (``sitemaps.news_candidates``): every one
        published after ``soon``, and the newest ``limit`` published from ``start`` to it."""
        return [*self._thaw("SELECT data FROM stories WHERE published > ?", (soon,)),
                *self._thaw("SELECT data FROM stories WHERE published >= ? AND published <= ?"
                            " ORDER BY published DESC, seq LIMIT ?", (start, soon, limit))]

    def slugs(self) -> Iterator[str]:
        return (slug for (slug,) in self.db.execute("SELECT slug FROM stories"))

    def ids(self) -> list[str]:
        return [i for (i,) in self.db.execute("SELECT id FROM stories")]

    def last_changed(self) -> datetime | None:
        """The newest change (``Story.updated``) among all stories."""
        row = self.db.execute("SELECT data FROM stories ORDER BY updated DESC LIMIT 1").fetchone()
        return None if row is None else thaw(row[0]).updated

    def urls(self) -> list[UrlRow]:
        """Every story's page and last change, newest-published first (the sitemap's order)."""
        return [UrlRow(slug, lastmod) for slug, lastmod in
                self.db.execute("SELECT slug, lastmod FROM stories ORDER BY published DESC, seq")]

    def urls_by_seq(self, low: int, high: int) -> list[UrlRow]:
        """The pages of stories whose seq is in [low, high), by seq."""
        return [UrlRow(slug, lastmod) for slug, lastmod in self.db.execute(
            "SELECT slug, lastmod FROM stories WHERE seq >= ? AND seq < ? ORDER BY seq", (low, high))]

    def seq_blocks(self, size: int) -> list[int]:
        """The numbers (from 1) of the blocks of ``size`` seqs that hold a story: one index
        lookup a block (a DISTINCT would read every row), less those whose last change is
        remembered (``block_lastmods``: a block that holds none is remembered as ""; any
        change to a block's stories forgets it). At a million seeds, 800 lookups took 20 ms
        of every rebuild; now the blocks a change touched are looked up."""
        known = dict(self.db.execute("SELECT number, lastmod FROM block_lastmods WHERE size = ?", (size,)))
        blocks: list[int] = []
        low = 1
        while True:
            number = (low - 1) // size + 1
            if known.get(number):
                blocks.append(number)
            else:
                row = self.db.execute("SELECT seq FROM stories WHERE seq >= ? ORDER BY seq LIMIT 1",
                                      (low,)).fetchone()
                if row is None:
                    return blocks
                blocks.append((int(row[0]) - 1) // size + 1)
            low = blocks[-1] * size + 1

    def block_lastmods(self, numbers: Sequence[int], size: int) -> list[str]:
        """The last change of each block of ``size`` seqs: remembered (``apply`` forgets a
        block whose stories change), else read from its stories and remembered."""
        known = dict(self.db.execute("SELECT number, lastmod FROM block_lastmods WHERE size = ?", (size,)))
        missing = [n for n in numbers if n not in known]
        for number in missing:
            row = self.db.execute("SELECT lastmod FROM stories WHERE seq >= ? AND seq < ?"
                                  " ORDER BY updated DESC LIMIT 1",
                                  ((number - 1) * size + 1, number * size + 1)).fetchone()
            known[number] = "" if row is None else str(row[0])
        if missing:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO block_lastmods VALUES (?, ?, ?)",
                                [(size, n, known[n]) for n in missing])
            self.db.execute("COMMIT")
        return [known[n] for n in numbers]

    def tagged(self, slug: str, limit: int) -> list[Story]:
        """The newest-published ``limit`` stories with this tag, newest first."""
        return self._thaw("SELECT s.data FROM story_tags t JOIN stories s ON s.id = t.story_id"
                          " WHERE t.slug = ? ORDER BY t.published DESC, t.seq LIMIT ?", (slug, limit))

    def tag_changed(self, slug: str) -> datetime | None:
        row = self.db.execute("SELECT s.data FROM story_tags t JOIN stories s ON s.id = t.story_id"
                              " WHERE t.slug = ? ORDER BY t.updated DESC LIMIT 1", (slug,)).fetchone()
        return None if row is None else thaw(row[0]).updated

    def tag_name(self, slug: str) -> str | None:
        """The tag as most often written (a tie: as the newest story writes it); None: no story.

        From the spellings' counts, and for a tie one index lookup per tied spelling: a tag on
        most stories of a million-story archive is not read story by story."""
        counts = self.db.execute("SELECT spelling, n FROM tag_spellings WHERE slug = ?", (slug,)).fetchall()
        if not counts:
            return None
        most = max(n for _, n in counts)
        tied = [spelling for spelling, n in counts if n == most]
        if len(tied) == 1:
            return str(tied[0])
        newest = {spelling: self.db.execute(
            "SELECT -published, seq FROM story_tags WHERE slug = ? AND spelling = ?"
            " ORDER BY published DESC, seq LIMIT 1", (slug, spelling)).fetchone() for spelling in tied}
        return str(min(tied, key=lambda spelling: tuple(newest[spelling])))

    def tags(self) -> list[tuple[str, str]]:
        """Every tag's slug and name, by slug."""
        return [(slug, name) for slug, name in self.db.execute("SELECT slug, name FROM tags ORDER BY slug")]

    def tags_of(self, ids: Iterable[str]) -> set[str]:
        return {row[0] for row in self._each("SELECT slug FROM story_tags WHERE story_id IN", ids)}

    def _spell(self, less: Counter[tuple[str, str]]) -> None:
        """Count each (tag slug, spelling) ``less`` times fewer (more, where negative)."""
        self.db.executemany("INSERT INTO tag_spellings VALUES (?, ?, 0) ON CONFLICT DO NOTHING",
                            [key for key, n in less.items() if n < 0])
        self.db.executemany("UPDATE tag_spellings SET n = n - ? WHERE slug = ? AND spelling = ?",
                            [(n, slug, spelling) for (slug, spelling), n in less.items() if n])
        self.db.executemany("DELETE FROM tag_spellings WHERE slug = ? AND spelling = ? AND n <= 0",
                            [key for key, n in less.items() if n > 0])

    def _thaw(self, sql: str, params: tuple[object, ...]) -> list[Story]:
        return [thaw(data) for (data,) in self.db.execute(sql, params)]

    def _each(self, sql: str, values: Iterable[str]) -> Iterator[tuple[Any, ...]]:
        wanted = list(dict.fromkeys(values))
        for start in range(0, len(wanted), _CHUNK):
            part = wanted[start:start + _CHUNK]
            yield from self.db.execute(f"{sql} ({', '.join('?' * len(part))})", part)


def _spellings(stories: Sequence[Story]) -> dict[str, Counter[str]]:
    """Every tag's spellings and how many stories write each (``stories`` newest first, so
    ``most_common`` gives the name ``tags.by_tag`` gives)."""
    spellings: dict[str, Counter[str]] = {}
    for story in stories:
        for slug, tag in {tag_slug(t): t for t in story.tags}.items():
            spellings.setdefault(slug, Counter())[one_line(tag)] += 1
    return spellings
