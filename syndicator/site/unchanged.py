"""The no-change rebuild: when no seed changed since the last build of a folder, only what
depends on the clock is written again.

A build's output is a function of the seeds, the stories the store holds for them, the
config and templates (``manifest.signature``), the editions, and the clock (the news sitemap
names the last two days' stories). A complete build remembers all but the clock in a record
beside its page manifest (the project's state/, never the published folder). A later build
that finds every part the same (seed names, sizes and mtimes; the store's story rows; the
signature; every file it wrote, by size and mtime; the stories/ folder's own mtime) writes
only the news sitemap and the editions listing, from the record, without parsing a seed or
loading a story: the cost follows the folder listing, not the archive.

Anything else, or any doubt, takes the complete build. What this does not see: a story page
edited in place by hand (its folder's mtime does not move); ``build --prune`` and any edit of
a seed see it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import itemgetter
from pathlib import Path

import jinja2

from syndicator.config import Config
from syndicator.errors import SeedError
from syndicator.model import Story
from syndicator.seeds.cache import stat_names
from syndicator.site import editions, sitemaps
from syndicator.site.manifest import manifest_path, signature
from syndicator.site.sitemaps import NewsItem
from syndicator.site.writer import write_atomic
from syndicator.state.store import Store

RECORD = "last-build.json"
_VERSION = 3  # 3: the store's state is its change counter (migration 0011)
_RACY_NS = 2_000_000_000  # a seed written this close to a build may change again unseen
STORIES = "stories"
_NAME, _STAT, _MTIME = itemgetter(0), itemgetter(1, 2), itemgetter(2)


@dataclass(frozen=True)
class Seen:
    """What a build can tell before it opens the store: the seeds' listing and the signature."""

    seeds: str  # digest of every seed's name, size and mtime; "" when one is too recent
    signature: str
    # Every seed's name, size and mtime (-1 for one too recent to trust: it counts as changed).
    listing: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Record:
    """What the last complete build of a folder was made from, and what it wrote."""

    seen: Seen
    store: list[int]
    now: float
    stories: int  # and as many story pages the folder holds
    files: dict[str, list[int]]  # every other file written: [size, mtime_ns]
    folder_mtime: int  # of stories/
    news: list[NewsItem]
    catalog: str = ""  # the token of the catalog written with it (``catalog.Catalog``)


def seen(config: Config, env: jinja2.Environment) -> Seen:
    digest = hashlib.blake2b(digest_size=16)
    racy = time.time_ns() - _RACY_NS
    recent = False
    try:
        listing = stat_names(config.seeds_dir)
    except SeedError:
        listing, recent = [], True  # the complete build's seed loading says what is wrong
    # In C where it can be (map, zip, itemgetter): a million seeds cost a second in Python.
    recent = recent or max(map(_MTIME, listing), default=0) >= racy
    if recent:
        seeds = {name: (size, mtime if mtime < racy else -1) for name, size, mtime in listing}
    else:
        seeds = dict(zip(map(_NAME, listing), map(_STAT, listing), strict=True))
    # An update per 10,000 seeds (one a seed cost 3 us each; one for all, a second copy of
    # the listing at a million seeds).
    for start in range(0, len(listing), 10_000):
        part = listing[start:start + 10_000]
        digest.update("".join(f"{name}\0{size}\0{mtime}\n" for name, size, mtime in part)
                      .encode("utf-8", "surrogatepass"))
    whole = repr((signature(config, env), config.digest.timezone, config.store_url,
                  str(config.seeds_dir.resolve()))).encode("utf-8", "surrogatepass")
    return Seen("" if recent else digest.hexdigest(), hashlib.blake2b(whole, digest_size=16).hexdigest(),
                seeds)


def load(config: Config, folder: Path, now_seen: Seen) -> Record | None:
    """The folder's record if it was made with today's signature (seeds and store unchecked)."""
    record = _load(manifest_path(folder, config.state_dir) / RECORD)
    return record if record is not None and record.seen.signature == now_seen.signature else None


def matches(record: Record, now_seen: Seen) -> bool:
    """Whether no seed changed since the record was made (as far as sizes and mtimes tell)."""
    return bool(now_seen.seeds) and record.seen == now_seen


def state_folder(config: Config, folder: Path) -> Path:
    """Where the build's remembered state for ``folder`` lives (manifest, record, catalog)."""
    return manifest_path(folder, config.state_dir)


def store_state(store: Store) -> list[int]:
    """The store's stories in brief: a build or send recording or revising any moves it."""
    return list(store.story_changes())


def rebuild(config: Config, env: jinja2.Environment, store: Store, folder: Path, now: datetime,
            record: Record) -> tuple[list[str], Record] | None:
    """Write what the clock changes (news sitemap, editions listing); None: build it all."""
    if not usable(store, folder, now, record):
        return None
    published = editions.published(store)
    if any(not (folder / editions.page_of(config, e)).exists() for e in published):
        return None  # an edition page to write needs its stories: the complete build has them
    files = {sitemaps.NEWS: sitemaps.render_news(config, record.news, now)}
    if published:
        files.update(editions.render_listing(config, env, published))
    written = [name for name, data in files.items() if write_atomic(folder / name, data)]
    kept = dict(record.files)
    for name in files:
        st = os.stat(folder / name)
        kept[name] = [st.st_size, st.st_mtime_ns]
    return written, replace(record, now=now.timestamp(), files=kept)


def usable(store: Store, folder: Path, now: datetime, record: Record) -> bool:
    """Whether the record still tells what the folder holds: the clock did not go back, no one
    recorded a story since, and every file it names is as it was written."""
    return now.timestamp() >= record.now and store_state(store) == record.store and _intact(folder, record)


def remember(config: Config, store: Store, folder: Path, now_seen: Seen, now: datetime,
             stories: list[Story], names: list[str], catalog: str) -> None:
    """After a complete build: what it was made from and what it wrote (best effort)."""
    files: dict[str, list[int]] = {}
    try:
        for name in names:
            st = os.stat(folder / name)
            files[name] = [st.st_size, st.st_mtime_ns]
        folder_mtime = os.stat(folder / STORIES).st_mtime_ns if stories else -1
    except OSError:
        return
    save(config, folder, Record(now_seen, store_state(store), now.timestamp(), len(stories),
                                files, folder_mtime,
                                sitemaps.news_candidates(config, stories, now), catalog))


def forget(config: Config, folder: Path) -> None:
    with contextlib.suppress(OSError):
        (manifest_path(folder, config.state_dir) / RECORD).unlink(missing_ok=True)


def save(config: Config, folder: Path, record: Record) -> None:
    path = manifest_path(folder, config.state_dir) / RECORD
    data = {"version": _VERSION, "seeds": record.seen.seeds, "signature": record.seen.signature,
            "store": record.store, "now": record.now, "stories": record.stories,
            "files": record.files, "folder_mtime": record.folder_mtime,
            "news": [[u, t, p.isoformat(), s] for u, t, p, s in record.news], "catalog": record.catalog}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _load(path: Path) -> Record | None:
    try:
        data = json.loads(path.read_bytes())
        if data.get("version") != _VERSION:
            return None
        news = [(str(u), str(t), datetime.fromisoformat(p), int(s)) for u, t, p, s in data["news"]]
        return Record(Seen(str(data["seeds"]), str(data["signature"])), [int(v) for v in data["store"]],
                      float(data["now"]), int(data["stories"]),
                      {str(k): [int(v[0]), int(v[1])] for k, v in data["files"].items()},
                      int(data["folder_mtime"]), news, str(data["catalog"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None  # no record, or not one this syndicator wrote: build it all


def _intact(folder: Path, record: Record) -> bool:
    """Every file the record names is as the build left it (size and mtime)."""
    base = str(folder)
    try:
        if record.stories and os.stat(folder / STORIES).st_mtime_ns != record.folder_mtime:
            return False
        for name, (size, mtime) in record.files.items():
            st = os.stat(os.path.join(base, name))  # not Path: 6 us each, at 80,000 archive files
            if st.st_size != size or st.st_mtime_ns != mtime:
                return False
    except OSError:
        return False
    return True
