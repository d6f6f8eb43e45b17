"""The parsed-seed cache: a seed unchanged since it was last parsed is not parsed again.

Shards (see ``syndicator.state.shards``) of {seed name: (size, mtime_ns, entries)}, tagged
with the format version, the zone and a digest of the reader's code. Files modified within
_RACY_NS of the save are not remembered: an edit in the same mtime tick that keeps the size
would otherwise go unseen (the "racy git" problem).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import os
import pickle
import re
import stat
import sys
import time
import unicodedata
from array import array
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import compress, repeat
from operator import attrgetter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from syndicator.errors import InputError, SeedError
from syndicator.forked import fork_map
from syndicator.model import Entry, SeedFile
from syndicator.seeds.parse import Cached, SeedFiles, read_seed, seed_paths
from syndicator.state import shards as shards_mod

_CACHE_VERSION = 2
_RACY_NS = 2_000_000_000
_CACHE_CODE = ("seeds/parse.py", "seeds/cache.py", "model.py")


def stat_paths(folder: Path) -> list[tuple[Path, int, int]]:
    """Like ``seed_paths``, with each file's size and mtime from one scan (``scan_seeds``)."""
    found = scan_seeds(folder)
    return [(folder / name, size, mtime) for name, size, mtime in zip(found.names, found.sizes, found.mtimes,
                                                                       strict=True)]


@dataclass(frozen=True)
class Scan:
    """The seed files' names (sorted), sizes and mtimes (ns), as three parallel sequences:
    made, hashed and compared in C (``map``, ``compress``), a few ms at 50,000 seeds.

    Sizes and mtimes are held as arrays of int64, whatever they are given as: 8 bytes an
    entry, not an int object (40 MB a list at a million seeds), and nothing for the garbage
    collector to walk (a watching process keeps its listing for good: each full pass of the
    collector walked the three lists' three million entries, 76 ms; the names' alone, 45 ms).
    """

    names: list[str]
    sizes: MutableSequence[int]
    mtimes: MutableSequence[int]
    # A digest of the names in the order the folder listed them, when every one of them is a
    # seed (b"": not so, or not listed, as a watched rebuild's scan): the same digest later
    # means the same names, so ``names`` is their sorted order.
    listed: bytes = field(default=b"", compare=False)

    def __post_init__(self) -> None:
        for name in ("sizes", "mtimes"):
            value = getattr(self, name)
            if not (isinstance(value, array) and value.typecode == "q"):
                object.__setattr__(self, name, array("q", value))

    def stat_of(self, name: str) -> tuple[int, int]:
        """The (size, mtime) of the seed ``name``; KeyError if the scan has none."""
        i = bisect.bisect_left(self.names, name)
        if i == len(self.names) or self.names[i] != name:
            raise KeyError(name)
        return self.sizes[i], self.mtimes[i]

    @functools.cached_property
    def packed(self) -> tuple[bytes, bytes, bytes]:
        """As three runs of bytes, made once: the build's digest of the listing and the kept
        scan share them (a few ms at 50,000 seeds; marshal of the lists took 25 ms)."""
        return ("\0".join(self.names).encode("utf-8", "surrogatepass"),
                _int64(self.sizes).tobytes(), _int64(self.mtimes).tobytes())

    @classmethod
    def unpack(cls, names: bytes, sizes: bytes, mtimes: bytes, listed: bytes = b"") -> Scan:
        many, when = array("q"), array("q")
        many.frombytes(sizes)
        when.frombytes(mtimes)
        found = unpack_names(names)
        if not len(found) == len(many) == len(when):
            raise ValueError("a scan's lists differ in length")
        scan = cls(found, many, when, listed)
        scan.__dict__["packed"] = (names, sizes, mtimes)  # as ``packed`` would make them again
        return scan


def _int64(values: MutableSequence[int]) -> array[int]:
    return values if isinstance(values, array) else array("q", values)


def unpack_names(names: bytes) -> list[str]:
    return names.decode("utf-8", "surrogatepass").split("\0") if names else []


def scan_seeds(folder: Path, sorted_as: Callable[[bytes], list[str] | None] | None = None) -> Scan:
    """Every seed file (``*.txt``, a regular file) directly in ``folder``, by name.

    Names from ``listdir`` (no DirEntry objects: 1 GB at a million seeds), each stat'ed
    relative to the folder where the system can (``dir_fd``), a chunk at a time, and every
    step a ``map`` in C. A chunk where a file vanished or is not a regular file is done again
    one file at a time. ``sorted_as(digest)``: the names of an earlier scan whose folder
    listed them in the order this digest names (``Scan.listed``), or None; they are taken
    instead of sorting (0.8 s at a million seeds).
    """
    if not folder.is_dir():
        paths = seed_paths(folder)  # raises the right error
        return Scan([p.name for p in paths], [-1] * len(paths), [-1] * len(paths))
    relative = os.stat in os.supports_dir_fd and os.listdir in os.supports_fd
    fd = -1
    try:
        if relative:
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            stat_of: Callable[[str], os.stat_result] = functools.partial(os.stat, dir_fd=fd)
            listed = os.listdir(fd)
        else:
            prefix = os.path.join(folder, "")
            stat_of = lambda name: os.stat(prefix + name)  # noqa: E731
            listed = os.listdir(folder)
        listed = list(compress(listed, map(str.endswith, listed, repeat(".txt"))))  # *.txt, in C
        if ".txt" in listed:
            listed.remove(".txt")  # not a seed's name
        digest = hashlib.blake2b("\0".join(listed).encode("utf-8", "surrogatepass"), digest_size=16).digest()
        known = sorted_as(digest) if sorted_as is not None else None
        found = _stat_all(stat_of, sorted(listed) if known is None else known)
    except OSError as exc:
        raise SeedError(f"cannot list the seeds folder: {exc.strerror}", path=folder,
                        key="paths.seeds") from None
    finally:
        if fd >= 0:
            os.close(fd)
    # Only a scan that kept every name listed stands for the listing: a name left out (a
    # folder, a file gone since) may be a seed next time under the same digest.
    return replace(found, listed=digest) if len(found.names) == len(listed) else found


_CHUNK = 2_500
_STAT_FORK_FROM = 5_000  # seeds: past half this many (two chunks), stat'ed by one process per core
# One chunk's seeds as stat'ed: the names (None: all of the chunk's, in order) and their
# sizes and mtimes packed as int64 (a child sends them back as bytes, not as objects).
Chunk = tuple[list[str] | None, bytes, bytes]


def _stat_all(stat_of: Callable[[str], os.stat_result], names: list[str]) -> Scan:
    """Every seed of ``names`` that is a regular file, stat'ed a chunk at a time; the chunks
    shared among one process per core for many (the kernel's stat is most of a rebuild's
    time at a million seeds)."""
    starts = [str(start) for start in range(0, len(names), _CHUNK)]

    def work(share: Sequence[str]) -> list[Chunk]:
        return [_scan_chunk(stat_of, names[int(start):int(start) + _CHUNK]) for start in share]

    found = Scan([], [], [])
    for start, (kept, sizes, mtimes) in zip(starts, fork_map(starts, work, tuple, _as_chunk,
                                                             least=_STAT_FORK_FROM // _CHUNK),
                                             strict=True):
        found.names.extend(names[int(start):int(start) + _CHUNK] if kept is None else kept)
        found.sizes.extend(array("q", sizes))
        found.mtimes.extend(array("q", mtimes))
    return found


def _as_chunk(_: str, sent: Any) -> Chunk:
    kept, sizes, mtimes = sent
    return (None if kept is None else list(kept)), bytes(sizes), bytes(mtimes)


def _scan_chunk(stat_of: Callable[[str], os.stat_result], names: list[str]) -> Chunk:
    try:
        stats = list(map(stat_of, names))
        regular = list(map(stat.S_ISREG, map(_st_mode, stats)))
    except OSError:  # gone since the listing, or not to be stat'ed: one at a time
        regular = []
    kept: list[str] | None = None
    if len(regular) != len(names) or not all(regular):
        pairs = [(name, st) for name in names if (st := _regular(stat_of, name)) is not None]
        kept, stats = [name for name, _ in pairs], [st for _, st in pairs]
    return (kept, array("q", map(_st_size, stats)).tobytes(), array("q", map(_st_mtime, stats)).tobytes())


def _regular(stat_of: Callable[[str], os.stat_result], name: str) -> os.stat_result | None:
    try:
        st = stat_of(name)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


_is_seed_name = re.compile(r".+\.txt", re.DOTALL).fullmatch


def is_seed_name(name: str) -> bool:
    """Whether a file of this name is a seed (``*.txt``; not ``.txt`` alone)."""
    return _is_seed_name(name) is not None


_st_size, _st_mtime, _st_mode = attrgetter("st_size"), attrgetter("st_mtime_ns"), attrgetter("st_mode")



def _cache_signature(zone: ZoneInfo) -> str:
    digest = hashlib.blake2b(digest_size=16)
    # Cached entries hold title keys and slug stems, which depend on Unicode's tables.
    digest.update(repr((_CACHE_VERSION, str(zone.key), sys.version_info[:2],
                        unicodedata.unidata_version)).encode())
    here = Path(__file__).parents[1]  # the package
    for name in _CACHE_CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def save_cache(cache: Path, signature: str, shards: dict[int, Cached]) -> None:
    # The unsharded cache file of syndicator 0.1, if there is one, is of no more use.
    with contextlib.suppress(OSError):
        cache.with_name(cache.name + ".bin").unlink(missing_ok=True)
    shards_mod.save(cache, (_CACHE_VERSION, signature), shards)


def read_cached(folder: Path, zone: ZoneInfo, cache: Path, files: SeedFiles,
                 errors: list[InputError]) -> None:
    signature = _cache_signature(zone)
    known: dict[int, Cached] = shards_mod.load(cache, (_CACHE_VERSION, signature))
    fresh: dict[int, Cached] = {}
    dirty: set[int] = set()
    racy = time.time_ns() - _RACY_NS
    found: list[SeedFile | None] = []
    missed: list[tuple[int, str, int, int]] = []  # (where in found, name, size, mtime)
    for path, size, mtime in stat_paths(folder):
        name = path.name
        shard = shards_mod.shard_of(name)
        seeds = fresh.setdefault(shard, {})
        hit = known.get(shard, {}).get(name)
        if hit is not None and hit[0] == size and hit[1] == mtime:
            try:
                found.append(_thaw(path, hit[2], zone))
                seeds[name] = hit
                continue
            except (TypeError, ValueError, IndexError, KeyError):
                pass  # a cache of another shape: parse the file
        dirty.add(shard)
        missed.append((len(found), name, size, mtime))
        found.append(None)
    parsed = _read_many(folder, [name for _, name, _, _ in missed], zone)
    for (at, name, size, mtime), (seed, frozen) in zip(missed, parsed, strict=True):
        if isinstance(seed, SeedError):
            errors.append(seed)
            continue
        found[at] = seed
        if mtime < racy:  # as a child sent it, or frozen here (a third of a 10k build's parse)
            kept = _freeze(seed) if frozen is None else frozen
            fresh[shards_mod.shard_of(name)][name] = (size, mtime, kept)
    files.extend(seed for seed in found if seed is not None)
    # A shard also changes when a seed it held is gone.
    dirty.update(shard for shard, seeds in known.items() if len(fresh.get(shard, {})) != len(seeds))
    if dirty:
        files.pending = (cache, signature, {shard: fresh.get(shard, {}) for shard in dirty})


_FORK_FROM = 2_000  # seeds: below this a second process costs more than it saves


def read_many(folder: Path, names: Sequence[str], zone: ZoneInfo) -> list[SeedFile | SeedError]:
    """Each seed parsed, or why it does not parse, in the names' order; one process per core
    for many (a child sends its seeds back frozen: thawing one costs a fifth of parsing it)."""
    return [seed for seed, _ in _read_many(folder, names, zone)]


Read = tuple[SeedFile | SeedError, Any]  # a seed or its error; its frozen form if a child sent it


def _read_many(folder: Path, names: Sequence[str], zone: ZoneInfo) -> list[Read]:
    """``read_many``, each seed beside the frozen form a child sent it in (None: parsed here):
    the parsed-seed cache keeps that form, and need not make it again."""
    def work(share: Sequence[str]) -> list[Read]:
        return [(_read_or_error(folder / name, zone), None) for name in share]

    def encode(read: Read) -> tuple[bool, object]:
        seed = read[0]
        return (True, pickle.dumps(seed)) if isinstance(seed, SeedError) else (False, _freeze(seed))

    def decode(name: str, sent: Any) -> Read:
        failed, value = sent
        return (_unpickled_error(value), None) if failed else (_thaw(folder / name, value, zone), value)

    return fork_map(names, work, encode, decode, least=_FORK_FROM)


def count_entries(folder: Path, names: Sequence[str], zone: ZoneInfo) -> list[int | SeedError]:
    """How many entries each seed holds, or why it does not parse (``read_many``, counted
    where parsed: nothing but the counts and the errors travels)."""
    def work(share: Sequence[str]) -> list[int | SeedError]:
        out: list[int | SeedError] = []
        for name in share:
            seed = _read_or_error(folder / name, zone)
            out.append(seed if isinstance(seed, SeedError) else len(seed.entries))
        return out

    def encode(count: int | SeedError) -> object:
        return pickle.dumps(count) if isinstance(count, SeedError) else count

    def decode(name: str, sent: Any) -> int | SeedError:
        return _unpickled_error(sent) if isinstance(sent, bytes) else int(sent)

    return fork_map(names, work, encode, decode, least=_FORK_FROM)


def _read_or_error(path: Path, zone: ZoneInfo) -> SeedFile | SeedError:
    try:
        return read_seed(path, zone)
    except SeedError as exc:
        return exc


def _unpickled_error(blob: bytes) -> SeedError:
    error = pickle.loads(blob)  # from our own child, through a pipe only we hold
    if not isinstance(error, SeedError):
        raise TypeError("a child sent something other than a seed error")
    return error


def _freeze(seed: SeedFile) -> tuple[object, ...]:
    out: list[object] = []
    for e in seed.entries:
        date: object = None
        if e.date is not None:
            if isinstance(e.date.tzinfo, ZoneInfo):  # written without a zone: the configured one
                date = (e.date.replace(tzinfo=None).isoformat(), True)
            else:
                date = (e.date.isoformat(), False)
        out.append((e.title, e.paragraphs, e.position, e.line, e.id, date, e.author, e.url,
                    e.tags, e.title_key, e.slug_stem, e.correction))
    return tuple(out)


def _thaw(path: Path, frozen: Any, zone: ZoneInfo) -> SeedFile:
    entries = []
    for item in frozen:
        title, paragraphs, position, line, id_, date, author, url, tags, title_key, stem, correction = item
        when = None
        if date is not None:
            text, naive = date
            when = datetime.fromisoformat(text)
            if naive:
                when = when.replace(tzinfo=zone)
        if not (isinstance(title, str) and isinstance(paragraphs, tuple) and isinstance(tags, tuple)
                and isinstance(title_key, str) and isinstance(stem, str)):
            raise TypeError("bad cache entry")
        entry = Entry(title=title, paragraphs=paragraphs, position=position, line=line, path=path,
                      id=id_, date=when, author=author, url=url, tags=tags, correction=correction)
        entry.__dict__["title_key"] = title_key  # the cached_properties, already computed
        entry.__dict__["slug_stem"] = stem
        entries.append(entry)
    if not entries:
        raise ValueError("empty cache entry")
    return SeedFile(path=path, entries=tuple(entries))


