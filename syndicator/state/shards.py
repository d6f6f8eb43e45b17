"""The build's remembered state in the project's state/ folder, as a folder of shard files.

The parsed-seed cache and the page manifest each hold an entry per seed or page: hundreds of
megabytes at 100,000 seeds. Split by the entry's name into ``SHARDS`` files, a rebuild after
one seed changed rewrites one shard, not everything. A shard is a blake2b digest of its
payload, then marshal((tag, {name: value})); a shard that fails its digest, or carries another
tag (format version, code or settings it was made with), is ignored. Both are only shortcuts:
whatever a shard no longer remembers is computed again, so every save is best effort.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHARDS = 64
Shard = dict[str, Any]
Tag = tuple[int, str]  # a format version and a digest of what made the entries


def shard_of(name: str) -> int:
    return zlib.crc32(name.encode("utf-8", "surrogatepass")) % SHARDS


def split(entries: dict[str, Any]) -> dict[int, Shard]:
    shards: dict[int, Shard] = {}
    for name, value in entries.items():
        shards.setdefault(shard_of(name), {})[name] = value
    return shards


def load(folder: Path, tag: Tag, only: set[int] | None = None) -> dict[int, Shard]:
    """Every readable shard made with ``tag`` (``only``: of these numbers)."""
    shards: dict[int, Shard] = {}
    for shard in range(SHARDS) if only is None else sorted(only):
        entries = read_file(_path(folder, shard), tag)
        if entries is not None:
            shards[shard] = entries
    return shards


def read_file(path: Path, tag: Tag) -> Shard | None:
    """One file in the shards' format, if it is readable and was made with ``tag``."""
    try:
        raw = path.read_bytes()
        payload = raw[16:]
        if len(raw) < 16 or hashlib.blake2b(payload, digest_size=16).digest() != raw[:16]:
            return None
        data = marshal.loads(payload)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if isinstance(data, tuple) and len(data) == 2 and data[0] == tag and isinstance(data[1], dict):
        return data[1]
    return None


def save(folder: Path, tag: Tag, shards: dict[int, Shard], *,
         name: Callable[[int], str] | None = None) -> None:
    """Replace the given shards (an empty one is removed), each atomically. ``name``: each
    shard's file name (else its own)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    for shard, entries in shards.items():
        write_file(_path(folder, shard) if name is None else folder / name(shard), tag, entries)


def write_file(path: Path, tag: Tag, entries: Shard) -> None:
    """Replace one file in the shards' format (atomically; removed when ``entries`` is empty)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if not entries:
            path.unlink(missing_ok=True)
            return
        payload = marshal.dumps((tag, entries))
        tmp.write_bytes(hashlib.blake2b(payload, digest_size=16).digest() + payload)
        os.replace(tmp, path)
    except (OSError, ValueError):
        tmp.unlink(missing_ok=True)


def _path(folder: Path, shard: int) -> Path:
    return folder / f"{shard:02x}.bin"
