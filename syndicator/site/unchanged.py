"""The no-change rebuild: when no seed changed since the last build of a folder, only what
depends on the clock is written again.

A build's output is a function of the seeds, the stories the store holds for them, the
config and templates (``manifest.signature``), the editions, and the clock (the news sitemap
names the last two days' stories). A complete build remembers all but the clock in a record
beside its page manifest (the project's state/, never the published folder). A later build
that finds every part the same (seed names, sizes and mtimes; the store's change counter;
the signature; every file it wrote outside stories/ and archive/, by size and mtime; those
two folders' own mtimes) writes only the news sitemap and the editions listing, from the
record, without parsing a seed or loading a story: the cost follows the folder listing, not
the archive.

The seeds' listing (``Scan``) is kept beside the catalog (``save_scan``): the next build
compares its own with it in C, and a watched rebuild (``seen(changed=...)``) takes it as it
is, with only the seeds the watch saw change stat'ed again.

Anything else, or any doubt, takes the complete build. What this does not see: a story page
or an archive document edited in place by hand (its folder's mtime does not move);
``build --full`` puts it right, as does any change that rewrites it.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import json
import marshal
import os
import stat
import time
from array import array
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import compress
from operator import ne
from pathlib import Path

import jinja2

from syndicator.config import Config
from syndicator.errors import SeedError
from syndicator.model import Story
from syndicator.seeds.cache import Scan, is_seed_name, scan_seeds, unpack_names
from syndicator.site import editions, sitemaps
from syndicator.site.manifest import manifest_path, signature
from syndicator.site.sitemaps import NewsItem
from syndicator.site.writer import write_atomic
from syndicator.state.store import Store

RECORD = "last-build.json"
SCAN = "seeds.scan"  # the seeds' listing the catalog was made from (``save_scan``)
_SCAN_VERSION = 3  # 3: with the digest of the folder's listing order (``Scan.listed``)
_VERSION = 3  # 3: the store's state is its change counter (migration 0011)
_RACY_NS = 2_000_000_000  # a seed written this close to a build may change again unseen
STORIES = "stories"
ARCHIVE = "archive/"


@dataclass(frozen=True)
class Seen:
    """What a build can tell before it opens the store: the seeds' listing and the signature."""

    seeds: str  # digest of every seed's name, size and mtime; "" when one is too recent
    signature: str
    # Every seed's name, size and mtime (-1 for one too recent to trust: it counts as changed).
    scan: Scan = field(default_factory=lambda: Scan([], [], []), compare=False, repr=False)
    # The last build's kept scan and its catalog's token, and the seeds stat'ed again, when
    # ``scan`` was made from it (a watched rebuild): only those can differ.
    base: tuple[str, Scan, frozenset[str]] | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def listing(self) -> dict[str, tuple[int, int]]:
        """The scan as {name: (size, mtime)} (made in C: a fifth of a second at a million)."""
        return dict(zip(self.scan.names, zip(self.scan.sizes, self.scan.mtimes, strict=True), strict=True))


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
    # Of archive/ (-1: none), whose documents ``files`` then leaves out: trusted as stories/
    # is, by its folder's mtime (80,000 of them at a million seeds). None: a record that
    # names each in ``files``.
    archive_mtime: int | None = None


def seen(config: Config, env: jinja2.Environment, folder: Path | None = None,
         changed: Collection[str] | None = None) -> Seen:
    """The seeds' listing and the build's signature.

    ``changed``: the only seeds (file names) that can have changed since the last build of
    ``folder``, as a watch of the seeds folder saw them: the listing is that build's, with
    those stat'ed again (no scan of the folder: 3 us a seed, 3 s at a million). Without the
    last build's listing, the folder is scanned.
    """
    racy = time.time_ns() - _RACY_NS
    watched = None if changed is None or folder is None else _watched(config, folder, changed)
    scan, base = watched if watched is not None else (None, None)
    try:
        scan = scan or scan_seeds(config.seeds_dir, None if folder is None else _sorted_as(config, folder))
    except SeedError:
        scan = None  # the complete build's seed loading says what is wrong
    recent = scan is None or max(scan.mtimes, default=0) >= racy
    if scan is None:
        scan = Scan([], [], [])
    elif recent:  # the few seeds saved just now, found in C: a copy with those at -1
        mtimes = list(scan.mtimes)
        packed = scan.__dict__.get("packed")  # made already (a watched rebuild's): put right
        edited = bytearray(packed[2]) if packed is not None else None
        for i in compress(range(len(mtimes)), map(racy.__le__, mtimes)):
            mtimes[i] = -1
            if edited is not None:
                edited[8 * i:8 * i + 8] = _word(-1)
        scan = replace(scan, mtimes=mtimes)
        if packed is not None and edited is not None:
            scan.__dict__["packed"] = (packed[0], packed[1], bytes(edited))
    # Hashed as three runs of bytes made in C: one string a seed cost 2 us each.
    digest = hashlib.blake2b(digest_size=16)
    for part in scan.packed:
        digest.update(part)
    whole = repr((signature(config, env), config.digest.timezone, config.store_url,
                  str(config.seeds_dir.resolve()))).encode("utf-8", "surrogatepass")
    return Seen("" if recent else digest.hexdigest(),
                hashlib.blake2b(whole, digest_size=16).hexdigest(), scan, base)


def _watched(config: Config, folder: Path, changed: Collection[str],
             ) -> tuple[Scan, tuple[str, Scan, frozenset[str]]] | None:
    """The scan of a watched rebuild, and its base (``Seen.base``); None: scan the folder."""
    kept = _kept_scan(config, folder)
    if kept is None:
        return None
    token, before = kept
    # Those the last build held too recent to trust are stat'ed again too.
    again = frozenset(changed) | frozenset(compress(before.names, map((-1).__eq__, before.mtimes)))
    scan = _rescanned(config, before, again)
    return None if scan is None else (scan, (token, before, again))


def _kept_scan(config: Config, folder: Path) -> tuple[str, Scan] | None:
    """The scan the folder's last build kept, and the token of the catalog it goes with."""
    record = _load(manifest_path(folder, config.state_dir) / RECORD)
    scan = None if record is None or not record.catalog else load_scan(config, folder, record.catalog)
    return None if record is None or scan is None else (record.catalog, scan)


def _rescanned(config: Config, base: Scan, again: Collection[str]) -> Scan | None:
    """The last build's listing with the seeds ``again`` stat'ed again; None: a seed that
    cannot be stat'ed. Its packed bytes are the base's with those seeds put right (``Edits``):
    packing a million seeds' lists again took a tenth of a second."""
    names, sizes, mtimes = list(base.names), list(base.sizes), list(base.mtimes)
    edits = Edits(base)
    for name in sorted(again):
        try:
            st: os.stat_result | None = os.stat(config.seeds_dir / name, follow_symlinks=True)
        except FileNotFoundError:
            st = None
        except OSError:
            return None  # the scan says what is wrong with it
        if st is not None and not (stat.S_ISREG(st.st_mode) and is_seed_name(name)):
            st = None
        i = bisect.bisect_left(names, name)
        held = i < len(names) and names[i] == name
        if st is None:
            if held:
                edits.delete(i, name)
                del names[i], sizes[i], mtimes[i]
        elif held:
            sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
            edits.update(i, st.st_size, st.st_mtime_ns)
        else:
            edits.insert(i, name, st.st_size, st.st_mtime_ns, names[i] if i < len(names) else None)
            names.insert(i, name)
            sizes.insert(i, st.st_size)
            mtimes.insert(i, st.st_mtime_ns)
    scan = Scan(names, sizes, mtimes)
    edits.give(scan)
    return scan


class Edits:
    """A scan's packed bytes (``Scan.packed``), edited as its lists are: a seed's size and
    mtime are 8 bytes each at its index; its name is found between NULs (names are unique)."""

    MANY = 64  # more additions and removals than this: the names are joined again instead

    def __init__(self, base: Scan) -> None:
        names, sizes, mtimes = base.packed
        self.moves = 0 if base.names else self.MANY + 1  # no names yet: nothing to find
        self.names = bytearray(b"\0" + names + b"\0")  # every name as NUL, name, NUL
        self.sizes, self.mtimes = bytearray(sizes), bytearray(mtimes)

    def update(self, i: int, size: int, mtime: int) -> None:
        self.sizes[8 * i:8 * i + 8] = _word(size)
        self.mtimes[8 * i:8 * i + 8] = _word(mtime)

    def insert(self, i: int, name: str, size: int, mtime: int, before: str | None) -> None:
        """``name`` goes at ``i``, before the seed ``before`` now there (None: last)."""
        self.sizes[8 * i:8 * i] = _word(size)
        self.mtimes[8 * i:8 * i] = _word(mtime)
        self.moves += 1
        if self.moves > self.MANY:
            return
        if before is None:  # last: after the last name, before the closing NUL
            self.names[-1:-1] = b"\0" + _encoded(name)
        else:
            at = self._start(before)
            self.names[at:at] = _encoded(name) + b"\0"

    def delete(self, i: int, name: str) -> None:
        del self.sizes[8 * i:8 * i + 8], self.mtimes[8 * i:8 * i + 8]
        self.moves += 1
        if self.moves <= self.MANY:
            at = self._start(name)
            del self.names[at:at + len(_encoded(name)) + 1]

    def give(self, scan: Scan) -> None:
        """Make these the packed bytes of ``scan``, the lists after the same edits (its names
        are joined again if there were many)."""
        names = bytes(self.names[1:-1]) if self.moves <= self.MANY else scan.packed[0]
        scan.__dict__["packed"] = (names, bytes(self.sizes), bytes(self.mtimes))

    def _start(self, name: str) -> int:
        return self.names.find(b"\0" + _encoded(name) + b"\0") + 1


def _word(value: int) -> bytes:
    return array("q", [value]).tobytes()


def _encoded(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def changes(now: Scan, before: Scan) -> tuple[set[str], set[str]]:
    """The seeds changed or added since ``before``, and those gone: compared in C, aligned by
    name (both sorted). A seed too recent to trust (mtime -1) counts as changed."""
    names, sizes, mtimes = now.names, now.sizes, now.mtimes
    old_sizes, old_mtimes = before.sizes, before.mtimes
    recent = {*compress(names, map((-1).__eq__, mtimes))}
    if names == before.names:  # the usual: a few edits, found by comparing the packed bytes
        return {names[i] for i in (*_differing(now.packed[1], before.packed[1]),
                                   *_differing(now.packed[2], before.packed[2]))} | recent, set()
    new, old = set(names), set(before.names)
    added, gone = new - old, old - new
    if len(added) + len(gone) <= _FEW:  # the usual: copy the lists and take those out
        names, sizes, mtimes = _without(now, added)
        _, old_sizes, old_mtimes = _without(before, gone)
    else:
        here, there = list(map(old.__contains__, names)), list(map(new.__contains__, before.names))
        names = list(compress(names, here))
        sizes, mtimes = list(compress(sizes, here)), list(compress(mtimes, here))
        old_sizes, old_mtimes = list(compress(old_sizes, there)), list(compress(old_mtimes, there))
    changed = {*compress(names, map(ne, sizes, old_sizes)), *compress(names, map(ne, mtimes, old_mtimes))}
    return changed | added | recent, gone


_FEW = 1_000
_RUN = 1024  # entries compared at a time as bytes (8 KB)


def _differing(now: bytes, before: bytes) -> list[int]:
    """The indexes of the 8-byte entries that differ between two runs of equal length: runs
    of ``_RUN`` entries compared as bytes (memcmp), and only those that differ looked into."""
    if now == before:
        return []
    width = 8 * _RUN
    found: list[int] = []
    for start in range(0, len(now), width):
        if now[start:start + width] != before[start:start + width]:
            found += [start // 8 + i for i in range(min(_RUN, (len(now) - start) // 8))
                      if now[start + 8 * i:start + 8 * i + 8] != before[start + 8 * i:start + 8 * i + 8]]
    return found


def _without(scan: Scan, names: set[str]) -> tuple[list[str], list[int], list[int]]:
    """The scan's lists (copies) less ``names``, each found by bisection."""
    kept, sizes, mtimes = list(scan.names), list(scan.sizes), list(scan.mtimes)
    for name in sorted(names, reverse=True):
        i = bisect.bisect_left(kept, name)
        del kept[i], sizes[i], mtimes[i]
    return kept, sizes, mtimes


def changes_among(now: Scan, before: Scan, names: Collection[str]) -> tuple[set[str], set[str]]:
    """``changes``, when only ``names`` can differ (a watched rebuild: its scan is ``before``
    with those stat'ed again): a lookup each, not a pass over every seed."""
    changed: set[str] = set()
    gone: set[str] = set()
    for name in names:
        here, there = _stat_in(now, name), _stat_in(before, name)
        if here is None:
            if there is not None:
                gone.add(name)
        elif here != there or here[1] == -1:
            changed.add(name)
    return changed, gone


def _stat_in(scan: Scan, name: str) -> tuple[int, int] | None:
    try:
        return scan.stat_of(name)
    except KeyError:
        return None


# The scan this process kept last, and its catalog's token: a watching process (``build
# --watch``, ``run``) builds again and again, and reading back what it wrote (37 MB at a
# million seeds) and unpacking it took a fifth of a second.
_kept_here: dict[Path, tuple[str, Scan]] = {}


def save_scan(config: Config, folder: Path, token: str, scan: Scan) -> None:
    """Keep the seeds' scan beside the catalog it was made with (``token``): the next build
    compares its own with it in C (the catalog's table of seeds took 45 ms a 50,000 to read)."""
    path = manifest_path(folder, config.state_dir) / SCAN
    _kept_here.clear()
    with contextlib.suppress(OSError):
        # Not fsync'ed (30 MB at a million seeds): one lost in a crash is missed, and the
        # catalog's own table of seeds is read instead.
        write_atomic(path, marshal.dumps((_SCAN_VERSION, token, scan.listed, *scan.packed)), durable=False,
                     size=None)
        _kept_here[path] = (token, scan)


def load_scan(config: Config, folder: Path, token: str) -> Scan | None:
    """The scan kept with the catalog ``token``; None: none, or another catalog's. The one
    this process kept last is not read again (the token names one catalog, and its scan)."""
    path = manifest_path(folder, config.state_dir) / SCAN
    held = _kept_here.get(path)
    if held is not None and held[0] == token:
        return held[1]
    try:
        version, kept, listed, names, sizes, mtimes = marshal.loads(path.read_bytes())
        if version != _SCAN_VERSION or kept != token:
            return None
        return Scan.unpack(names, sizes, mtimes, listed)
    except (OSError, ValueError, EOFError, TypeError, UnicodeDecodeError):
        return None


def _sorted_as(config: Config, folder: Path) -> Callable[[bytes], list[str] | None]:
    """``scan_seeds``'s way to the seeds' sorted names when the folder lists them as it did
    for the scan kept last (whichever catalog it went with: only the listing counts)."""
    path = manifest_path(folder, config.state_dir) / SCAN

    def names(listed: bytes) -> list[str] | None:
        held = _kept_here.get(path)
        if held is not None and held[1].listed == listed:
            return held[1].names
        try:
            version, _, kept, packed_names, *_ = marshal.loads(path.read_bytes())
            return unpack_names(packed_names) if version == _SCAN_VERSION and kept == listed else None
        except (OSError, ValueError, EOFError, TypeError, UnicodeDecodeError):
            return None

    return names


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
            if name.startswith(ARCHIVE):
                continue
            st = os.stat(folder / name)
            files[name] = [st.st_size, st.st_mtime_ns]
        folder_mtime = os.stat(folder / STORIES).st_mtime_ns if stories else -1
    except OSError:
        return
    save(config, folder, Record(now_seen, store_state(store), now.timestamp(), len(stories),
                                files, folder_mtime,
                                sitemaps.news_candidates(config, stories, now), catalog,
                                archive_mtime(folder)))


def archive_mtime(folder: Path) -> int:
    """The mtime of the folder's archive/ (-1: none): every document written into it is
    renamed into place, which moves it, as does anything added to it or taken from it."""
    try:
        return os.stat(folder / ARCHIVE).st_mtime_ns
    except FileNotFoundError:
        return -1


def documents(config: Config, record: Record) -> int:
    """How many files the record's build wrote: story pages, archive documents, the rest."""
    archived = 0
    if record.archive_mtime is not None:  # two documents (RSS, Atom) an archive page
        archived = 2 * -(-max(0, record.stories - config.feeds.limit) // config.feeds.archive_size)
    return record.stories + archived + len(record.files)


def forget(config: Config, folder: Path) -> None:
    with contextlib.suppress(OSError):
        (manifest_path(folder, config.state_dir) / RECORD).unlink(missing_ok=True)


def save(config: Config, folder: Path, record: Record) -> None:
    path = manifest_path(folder, config.state_dir) / RECORD
    data = {"version": _VERSION, "seeds": record.seen.seeds, "signature": record.seen.signature,
            "store": record.store, "now": record.now, "stories": record.stories,
            "files": record.files, "folder_mtime": record.folder_mtime,
            "news": [[u, t, p.isoformat(), s] for u, t, p, s in record.news], "catalog": record.catalog,
            "archive_mtime": record.archive_mtime}
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
                      int(data["folder_mtime"]), news, str(data["catalog"]),
                      None if data.get("archive_mtime") is None else int(data["archive_mtime"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None  # no record, or not one this syndicator wrote: build it all


def _intact(folder: Path, record: Record) -> bool:
    """Every file the record names is as the build left it (size and mtime)."""
    base = str(folder)
    try:
        if record.stories and os.stat(folder / STORIES).st_mtime_ns != record.folder_mtime:
            return False
        if record.archive_mtime is not None and archive_mtime(folder) != record.archive_mtime:
            return False
        for name, (size, mtime) in record.files.items():
            st = os.stat(os.path.join(base, name))  # not Path: 6 us each, at 80,000 archive files
            if st.st_size != size or st.st_mtime_ns != mtime:
                return False
    except OSError:
        return False
    return True
