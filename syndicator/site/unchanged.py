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
is, with only the seeds the watch saw change stat'ed again, and keeps it again as a journal
of those seeds beside the listing, not the whole listing (37 MB at a million seeds).

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
from collections.abc import Callable, Collection, Mapping, MutableSequence
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
JOURNAL = "seeds.journal"  # the seeds a watch stat'ed again since that listing (``save_scan``)
_SCAN_VERSION = 3  # 3: with the digest of the folder's listing order (``Scan.listed``)
_VERSION = 3  # 3: the store's state is its change counter (migration 0011)
_RACY_NS = 2_000_000_000  # a seed written this close to a build may change again unseen
# Seeds a journal holds at most: past this, the listing is written whole again (37 MB at a
# million seeds, 50 ms) and the journal emptied.
JOURNAL_MAX = 4_096
STORIES = "stories"
ARCHIVE = "archive/"
Stat = tuple[int, int]  # a seed's size and mtime (ns; -1: too recent to trust)


@dataclass(frozen=True)
class Base:
    """What a watched rebuild's listing was made from: the listing kept with the catalog
    ``token`` (``Kept``), with the seeds ``before`` names stat'ed again, each as that listing
    had it (None: not in it). Only those can differ."""

    token: str
    before: dict[str, Stat | None]
    snapshot: str  # the kept listing's, carried on (``Kept``)
    journal: dict[str, Stat | None]
    same: bool  # none of ``before`` differs now: the listing is the kept one


@dataclass(frozen=True)
class Seen:
    """What a build can tell before it opens the store: the seeds' listing and the signature."""

    settled: bool  # no seed too recent to trust (each such one is at mtime -1 in ``scan``)
    signature: str
    # Every seed's name, size and mtime (-1 for one too recent to trust: it counts as changed).
    scan: Scan = field(default_factory=lambda: Scan([], [], []), compare=False, repr=False)
    base: Base | None = field(default=None, compare=False, repr=False)  # a watched rebuild's

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
    watched = None if changed is None or folder is None else _watched(config, folder, changed, racy)
    whole = repr((signature(config, env), config.digest.timezone, config.store_url,
                  str(config.seeds_dir.resolve()))).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(whole, digest_size=16).hexdigest()
    if watched is not None:
        scan, base = watched
        now = [_stat_in(scan, name) for name in base.before]
        return Seen(all(st is None or st[1] != -1 for st in now), digest, scan, base)
    try:
        sorted_as = None if folder is None else _sorted_as(config, folder)
        found: Scan | None = scan_seeds(config.seeds_dir, sorted_as)
    except SeedError:
        found = None  # the complete build's seed loading says what is wrong
    if found is None:
        return Seen(False, digest)
    if max(found.mtimes, default=0) < racy:
        return Seen(True, digest, found)
    # The few seeds saved just now, found in C: a copy with those at -1.
    mtimes = found.mtimes[:]
    for i in compress(range(len(mtimes)), map(racy.__le__, mtimes)):
        mtimes[i] = -1
    return Seen(False, digest, replace(found, mtimes=mtimes))


def _watched(config: Config, folder: Path, changed: Collection[str], racy: int) -> tuple[Scan, Base] | None:
    """The listing of a watched rebuild, and its base; None: scan the folder.

    The kept listing's lists are edited in place (copying a million seeds' took 40 ms, and
    their packed bytes 100 ms more): it is no longer the kept one, in memory, until the build
    keeps it again; the file still holds it.
    """
    kept = _kept_scan(config, folder)
    if kept is None:
        return None
    path = _scan_path(config, folder)
    _kept_here.pop(path, None)
    # Those the last build held too recent to trust are stat'ed again too.
    before = _restat(config, kept.scan, frozenset(changed) | kept.recent, racy)
    if before is None:
        return None
    scan = Scan(kept.scan.names, kept.scan.sizes, kept.scan.mtimes)
    same = all(_stat_in(scan, name) == was for name, was in before.items())
    if same:
        _kept_here[path] = kept  # still the kept listing (a no-change rebuild keeps none)
    return scan, Base(kept.token, before, kept.snapshot, kept.journal, same)


def _kept_scan(config: Config, folder: Path) -> Kept | None:
    """The listing the folder's last build kept, when its record names the same catalog."""
    record = _load(manifest_path(folder, config.state_dir) / RECORD)
    return None if record is None or not record.catalog else _kept(config, folder, record.catalog)


def _restat(config: Config, scan: Scan, again: Collection[str], racy: int) -> dict[str, Stat | None] | None:
    """Stat the seeds ``again`` and put them right in ``scan``'s lists, in place (one too
    recent to trust at mtime -1); each as the lists had it before (None: not in them). None:
    a seed that cannot be stat'ed (the lists are then part done: the caller drops them)."""
    names, sizes, mtimes = scan.names, scan.sizes, scan.mtimes
    before: dict[str, Stat | None] = {}
    for name in sorted(again):
        try:
            st: os.stat_result | None = os.stat(config.seeds_dir / name, follow_symlinks=True)
        except FileNotFoundError:
            st = None
        except OSError:
            return None  # the scan says what is wrong with it
        if st is not None and not (stat.S_ISREG(st.st_mode) and is_seed_name(name)):
            st = None
        _put(names, sizes, mtimes, name, None if st is None else
             (st.st_size, -1 if st.st_mtime_ns >= racy else st.st_mtime_ns), before)
    return before


def _put(names: list[str], sizes: MutableSequence[int], mtimes: MutableSequence[int], name: str,
         now: Stat | None, before: dict[str, Stat | None] | None = None) -> None:
    """Make the seed ``name`` read ``now`` in the sorted lists (None: not there); ``before``
    gets what they held for it."""
    i = bisect.bisect_left(names, name)
    held = i < len(names) and names[i] == name
    if before is not None:
        before[name] = (sizes[i], mtimes[i]) if held else None
    if now is None:
        if held:
            del names[i], sizes[i], mtimes[i]
    elif held:
        sizes[i], mtimes[i] = now
    else:
        names.insert(i, name)
        sizes.insert(i, now[0])
        mtimes.insert(i, now[1])


def changes(now: Scan, before: Scan) -> tuple[set[str], set[str]]:
    """The seeds changed or added since ``before``, and those gone: compared in C, aligned by
    name (both sorted). A seed too recent to trust (mtime -1) counts as changed."""
    names, sizes, mtimes = now.names, now.sizes, now.mtimes
    old_sizes, old_mtimes = before.sizes, before.mtimes
    recent = _recent(now.packed[2], names)
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


def _without(scan: Scan, names: set[str]) -> tuple[list[str], MutableSequence[int], MutableSequence[int]]:
    """The scan's lists (copies) less ``names``, each found by bisection."""
    kept, sizes, mtimes = list(scan.names), scan.sizes[:], scan.mtimes[:]
    for name in sorted(names, reverse=True):
        i = bisect.bisect_left(kept, name)
        del kept[i], sizes[i], mtimes[i]
    return kept, sizes, mtimes


def changes_among(now: Scan, before: Mapping[str, Stat | None]) -> tuple[set[str], set[str]]:
    """``changes``, when only the seeds ``before`` names can differ, each as it was (a watched
    rebuild's, ``Base.before``): a lookup each, not a pass over every seed."""
    changed: set[str] = set()
    gone: set[str] = set()
    for name, there in before.items():
        here = _stat_in(now, name)
        if here is None:
            if there is not None:
                gone.add(name)
        elif here != there or here[1] == -1:
            changed.add(name)
    return changed, gone


def _stat_in(scan: Scan, name: str) -> Stat | None:
    try:
        return scan.stat_of(name)
    except KeyError:
        return None


@dataclass(frozen=True)
class Kept:
    """The seeds' listing kept with the catalog ``token`` (``save_scan``): on disk a snapshot,
    the listing as of the catalog ``snapshot``, and a journal of the seeds stat'ed again since,
    each as it is now (None: gone). ``recent``: its seeds too recent to trust (mtime -1)."""

    token: str
    scan: Scan
    snapshot: str
    journal: dict[str, Stat | None]
    recent: frozenset[str]


# The listing this process kept last: a watching process (``build --watch``, ``run``) builds
# again and again, and reading back what it wrote (37 MB at a million seeds) and unpacking it
# took a fifth of a second.
_kept_here: dict[Path, Kept] = {}


def _scan_path(config: Config, folder: Path) -> Path:
    return manifest_path(folder, config.state_dir) / SCAN


def save_scan(config: Config, folder: Path, token: str, scan: Scan, base: Base | None = None) -> None:
    """Keep the seeds' listing beside the catalog it was made with (``token``): the next build
    compares its own with it (the catalog's table of seeds took 45 ms a 50,000 to read).

    ``base``: the listing is a watched rebuild's (``seen(changed=...)``): the seeds it stat'ed
    again go into the journal beside the kept snapshot, not the whole listing into a new one
    (writing 37 MB at a million seeds took 40-50 ms a rebuild), up to ``JOURNAL_MAX`` of them.
    """
    path = _scan_path(config, folder)
    _kept_here.pop(path, None)
    with contextlib.suppress(OSError):
        # Neither is fsync'ed (30 MB at a million seeds): one lost in a crash is missed, and
        # the catalog's own table of seeds is read instead.
        if base is not None:
            journal = {**base.journal, **{name: _stat_in(scan, name) for name in base.before}}
            if len(journal) <= JOURNAL_MAX:
                write_atomic(path.with_name(JOURNAL), marshal.dumps(
                    (_SCAN_VERSION, base.snapshot, token, sorted(journal.items()))), durable=False, size=None)
                recent = {name for name, now in journal.items() if now is not None and now[1] == -1}
                _kept_here[path] = Kept(token, scan, base.snapshot, journal, frozenset(recent))
                return
        write_atomic(path, marshal.dumps((_SCAN_VERSION, token, scan.listed, *scan.packed)), durable=False,
                     size=None)
        # A journal left beside it names another snapshot: read with it, it is passed over.
        path.with_name(JOURNAL).unlink(missing_ok=True)
        _kept_here[path] = Kept(token, scan, token, {}, _recent(scan.packed[2], scan.names))


def _recent(mtimes: bytes, names: list[str]) -> frozenset[str]:
    """The seeds at mtime -1, found in the packed mtimes (a search in C, not a pass in Python)."""
    found: list[str] = []
    at = mtimes.find(_UNTRUSTED)
    while at >= 0:
        if at % 8 == 0:  # not eight 0xff bytes across two entries
            found.append(names[at // 8])
        at = mtimes.find(_UNTRUSTED, at + 1)
    return frozenset(found)


_UNTRUSTED = array("q", [-1]).tobytes()


def load_scan(config: Config, folder: Path, token: str) -> Scan | None:
    """The listing kept with the catalog ``token``; None: none, or another catalog's."""
    kept = _kept(config, folder, token)
    return None if kept is None else kept.scan


def _kept(config: Config, folder: Path, token: str) -> Kept | None:
    """The listing kept with the catalog ``token``: the one this process kept last, not read
    again (a token names one catalog, and its listing), else the snapshot read from its file
    with its journal applied; None: none, or another catalog's."""
    path = _scan_path(config, folder)
    held = _kept_here.get(path)
    if held is not None and held.token == token:
        return held
    read = _snapshot(path)
    if read is None:
        return None
    snapshot, listed, names, sizes, mtimes = read
    journal = _journal(path.with_name(JOURNAL), snapshot)
    if (snapshot if journal is None else journal[0]) != token:
        return None
    try:
        scan = Scan.unpack(names, sizes, mtimes, listed)
    except (ValueError, UnicodeDecodeError):
        return None
    recent = _recent(mtimes, scan.names)
    if journal is None:
        return Kept(token, scan, snapshot, {}, recent)
    edits = journal[1]
    for name, now in sorted(edits.items()):
        _put(scan.names, scan.sizes, scan.mtimes, name, now)
    recent = (recent - edits.keys()) | {n for n, now in edits.items() if now is not None and now[1] == -1}
    return Kept(token, Scan(scan.names, scan.sizes, scan.mtimes), snapshot, edits, frozenset(recent))


def _snapshot(path: Path) -> tuple[str, bytes, bytes, bytes, bytes] | None:
    """The snapshot file's catalog token, listing digest and packed bytes; None: none, or
    not one this syndicator wrote."""
    try:
        version, token, listed, names, sizes, mtimes = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    parts = (listed, names, sizes, mtimes)
    if version != _SCAN_VERSION or not all(isinstance(part, bytes) for part in parts):
        return None
    # Not kept for the next question (a plain build asks up to three times, 30-40 ms each at a
    # million seeds): held across the seed scan, the bytes raised its peak by 35 MB.
    return str(token), listed, names, sizes, mtimes


def _journal(path: Path, snapshot: str) -> tuple[str, dict[str, Stat | None]] | None:
    """The token and the seeds of the journal kept beside the snapshot ``snapshot``; None: none
    (or one beside another snapshot, left by a build stopped between the two writes)."""
    try:
        version, beside, token, entries = marshal.loads(path.read_bytes())
        if version != _SCAN_VERSION or beside != snapshot:
            return None
        return str(token), {str(n): None if s is None else (int(s[0]), int(s[1])) for n, s in entries}
    except (OSError, ValueError, EOFError, TypeError, IndexError):
        return None


def _sorted_as(config: Config, folder: Path) -> Callable[[bytes], list[str] | None]:
    """``scan_seeds``'s way to the seeds' sorted names when the folder lists them as it did
    for the scan kept last (whichever catalog it went with: only the listing counts)."""
    path = manifest_path(folder, config.state_dir) / SCAN

    def names(listed: bytes) -> list[str] | None:
        held = _kept_here.get(path)
        if held is not None and held.scan.listed == listed:
            return held.scan.names
        read = _snapshot(path)
        if read is None or read[1] != listed:
            return None
        try:
            return unpack_names(read[2])
        except UnicodeDecodeError:
            return None

    return names


def load(config: Config, folder: Path, now_seen: Seen) -> Record | None:
    """The folder's record if it was made with today's signature (seeds and store unchecked)."""
    record = _load(manifest_path(folder, config.state_dir) / RECORD)
    return record if record is not None and record.seen.signature == now_seen.signature else None


def matches(config: Config, folder: Path, record: Record, now_seen: Seen) -> bool:
    """Whether no seed changed since the record was made (as far as sizes and mtimes tell):
    the listing is the one kept with the record's catalog, none of it too recent to trust.
    A watched rebuild's is when none of the seeds it stat'ed again differs; another's is
    compared with the kept one as bytes (hashing a million seeds' took 50 ms)."""
    if not now_seen.settled or record.seen.signature != now_seen.signature or not record.catalog:
        return False
    base = now_seen.base
    if base is not None and base.token == record.catalog:
        return base.same
    kept = _kept_bytes(config, folder, record.catalog)
    if kept is None or kept[0] != now_seen.scan.packed:
        return False
    # This listing is the kept one: a watching process's next rebuild starts from it, rather
    # than reading the file again (half a second at a million seeds). None of it is too recent.
    _kept_here[_scan_path(config, folder)] = Kept(record.catalog, now_seen.scan, *kept[1:], frozenset())
    return True


def changes_since(config: Config, folder: Path, token: str, now: Scan) -> tuple[set[str], set[str]] | None:
    """``changes`` against the listing kept with the catalog ``token``; None: none kept. When
    the names are the same (an edit, or nothing), compared as the kept bytes, not unpacked
    (half a second at a million seeds)."""
    packed = kept_packed(config, folder, token)
    if packed is None:
        return None
    found = _changes_packed(now, packed)
    if found is not None:
        return found
    before = load_scan(config, folder, token)
    return None if before is None else changes(now, before)


_EDITS = 64  # names added or removed that ``_changes_packed`` looks for, one at a time


def _common(one: bytes, a: int, other: bytes, b: int) -> int:
    """How many bytes ``one`` from ``a`` and ``other`` from ``b`` have alike: halving the span
    where they first differ, each step comparing only its first half (in all, about the
    length once)."""
    n = min(len(one) - a, len(other) - b)
    if one[a:a + n] == other[b:b + n]:
        return n
    low, high = 0, n  # alike up to low; not up to high
    while high - low > 1:
        mid = (low + high) // 2
        if one[a + low:a + mid] == other[b + low:b + mid]:
            low = mid
        else:
            high = mid
    return low


def _changes_packed(now: Scan, before: tuple[bytes, bytes, bytes]) -> tuple[set[str], set[str]] | None:
    """``changes`` against a listing's packed bytes, not unpacked; None: more than ``_EDITS``
    names added or removed. The names are walked as bytes (sorted, NUL-terminated; UTF-8
    keeps the order of the code points): each run of names alike is found in C, by halving,
    and its sizes and mtimes compared as bytes; each name between runs is an addition or a
    removal, by which is the lesser."""
    if not now.names or not before[0]:
        return None
    here, there = now.packed[0] + b"\0", before[0] + b"\0"
    a = b = 0  # byte offsets, each at the start of a name
    i = j = 0  # name indexes
    edits = 0
    changed: set[int] = set()
    gone: set[str] = set()
    while True:
        # The names alike from here on, whole names only.
        same = _common(here, a, there, b)
        cut = here.rfind(b"\0", a, a + same)
        if cut >= 0:
            alike = here.count(b"\0", a, cut + 1)
            changed.update(i + k for k in _differing(now.packed[1][8 * i:8 * (i + alike)],
                                                       before[1][8 * j:8 * (j + alike)]))
            changed.update(i + k for k in _differing(now.packed[2][8 * i:8 * (i + alike)],
                                                       before[2][8 * j:8 * (j + alike)]))
            i, j = i + alike, j + alike
            b += cut + 1 - a
            a = cut + 1
        if a == len(here) and b == len(there):
            names = now.names
            return {names[k] for k in changed} | _recent(now.packed[2], names), gone
        edits += 1
        if edits > _EDITS:
            return None
        ours = here[a:here.index(b"\0", a)] if a < len(here) else None
        theirs = there[b:there.index(b"\0", b)] if b < len(there) else None
        if theirs is None or (ours is not None and ours < theirs):  # added here
            changed.add(i)
            i, a = i + 1, a + len(ours or b"") + 1
        else:  # gone from here
            gone.add(theirs.decode("utf-8", "surrogatepass"))
            j, b = j + 1, b + len(theirs) + 1


def kept_packed(config: Config, folder: Path, token: str) -> tuple[bytes, bytes, bytes] | None:
    """The packed bytes (``Scan.packed``) of the listing kept with the catalog ``token``, read
    from its file without unpacking it when no journal is beside it; None: none kept."""
    found = _kept_bytes(config, folder, token)
    return None if found is None else found[0]


def _kept_bytes(config: Config, folder: Path, token: str,
                ) -> tuple[tuple[bytes, bytes, bytes], str, dict[str, Stat | None]] | None:
    """``kept_packed``, with the kept listing's snapshot token and journal (``Kept``)."""
    held = _kept_here.get(_scan_path(config, folder))
    if held is not None and held.token == token:
        return held.scan.packed, held.snapshot, held.journal
    path = _scan_path(config, folder)
    read = _snapshot(path)
    if read is None:
        return None
    snapshot, _, names, sizes, mtimes = read
    if _journal(path.with_name(JOURNAL), snapshot) is None:
        return ((names, sizes, mtimes), snapshot, {}) if snapshot == token else None
    kept = _kept(config, folder, token)  # a watch's journal beside it: the listing made again
    return None if kept is None else (kept.scan.packed, kept.snapshot, kept.journal)


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
    # "seeds" held a digest of the listing; any text but "" still means no seed was too recent.
    data = {"version": _VERSION, "seeds": "settled" if record.seen.settled else "",
            "signature": record.seen.signature,
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
        return Record(Seen(bool(data["seeds"]), str(data["signature"])), [int(v) for v in data["store"]],
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
