"""Read seed article files (``seeds/*.txt``) into entries, reporting every problem."""

from __future__ import annotations

import codecs
import re
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from syndicator.errors import InputError, SeedError
from syndicator.model import Entry, SeedFile

KNOWN_KEYS = ("id", "date", "author", "url", "tags", "correction")
Block = list[tuple[int, str]]
# Whitespace and control characters have no place in a URL (and would break XML and HTML).
_UNSAFE_URL = re.compile(r"[\s\x00-\x1f\x7f-\x9f\"<>\\^`{|}]")


def seed_paths(folder: Path) -> list[Path]:
    """The seed files in their stable (name) order."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "not found"
        raise SeedError(f"seeds folder {what}", path=folder, key="paths.seeds")
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
    except OSError as exc:
        raise SeedError(f"cannot list the seeds folder: {exc.strerror}", path=folder,
                        key="paths.seeds") from None


Cached = dict[str, tuple[int, int, tuple[object, ...]]]  # name: (size, mtime_ns, entries)


class SeedFiles(list[SeedFile]):
    """The parsed seeds; ``save_cache()`` records them in the parsed-seed cache (if one was used).

    The cache is saved only when the caller says so: a build that fails writes nothing.
    """

    pending: tuple[Path, str, dict[int, Cached]] | None = None

    def save_cache(self) -> None:
        if self.pending is not None:
            from syndicator.seeds.cache import save_cache

            save_cache(*self.pending)
            self.pending = None


def read_seeds(folder: Path, zone: ZoneInfo, cache: Path | None = None,
               ) -> tuple[SeedFiles, list[InputError]]:
    """Every seed file that parses, and every problem found in the others.

    With ``cache`` (a folder in the project's state/), a seed whose size and mtime are
    those it had when it was last parsed is taken from the cache instead of being read again;
    ``files.save_cache()`` then remembers what was parsed.
    """
    files = SeedFiles()
    errors: list[InputError] = []
    if cache is None:
        for path in seed_paths(folder):
            try:
                files.append(read_seed(path, zone))
            except SeedError as exc:
                errors.append(exc)
    else:
        from syndicator.seeds.cache import read_cached

        read_cached(folder, zone, cache, files, errors)
    if not files and not errors:
        errors.append(SeedError("no seed files (*.txt) in the seeds folder", path=folder))
    return files, errors


def read_seed(path: Path, zone: ZoneInfo) -> SeedFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SeedError(f"cannot read: {exc.strerror}", path=path) from None
    return parse_seed(raw, path, zone)


def parse_seed(raw: bytes, path: Path, zone: ZoneInfo) -> SeedFile:
    if not raw or raw == codecs.BOM_UTF8:
        raise SeedError("empty file: a seed needs at least a title line", path=path, line=1)
    lines = _decode(raw, path)
    meta, start = _front_matter(lines, path, zone)
    blocks = _blocks(lines, start)
    if not blocks:
        if start:
            raise SeedError("no story after the front matter: a title line is missing",
                            path=path, line=min(start + 1, len(lines)))
        raise SeedError("only blank lines: a seed needs at least a title line",
                        path=path, line=1)
    return SeedFile(path=path, entries=tuple(_entries(blocks, meta, path)))


def _decode(raw: bytes, path: Path) -> list[str]:
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise SeedError("binary file (NUL byte): seeds must be UTF-8 text", path=path, line=line)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SeedError(
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})", path=path, line=line
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _front_matter(lines: list[str], path: Path, zone: ZoneInfo) -> tuple[dict[str, object], int]:
    if not lines or lines[0].strip() != "---":
        return {}, 0
    if not any(line.strip() == "---" for line in lines[1:]):
        raise SeedError("front matter opened with '---' is never closed", path=path, line=1)
    meta: dict[str, object] = {}
    for index in range(1, len(lines)):
        line = lines[index]
        number = index + 1
        if line.strip() == "---":
            return meta, index + 1
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise SeedError(f"front matter line is not 'key: value': {line.strip()!r}",
                            path=path, line=number)
        if key not in KNOWN_KEYS:
            raise SeedError(f"unknown front matter key (known: {', '.join(KNOWN_KEYS)})",
                            path=path, line=number, key=key)
        if key in meta:
            raise SeedError("front matter key given twice", path=path, line=number, key=key)
        meta[key] = _meta_value(key, value, path, number, zone)
    raise AssertionError("unreachable: the closing '---' was found above")


def _meta_value(key: str, value: str, path: Path, line: int, zone: ZoneInfo) -> object:
    if not value and key != "tags":
        raise SeedError("empty value", path=path, line=line, key=key)
    if key == "date":
        return _parse_date(value, path, line, zone)
    if key == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or _UNSAFE_URL.search(value):
            raise SeedError(f"not an absolute http(s) URL: {value!r}", path=path, line=line, key=key)
    if key == "tags":
        return tuple(t.strip() for t in value.split(",") if t.strip())
    return value


def _parse_date(value: str, path: Path, line: int, zone: ZoneInfo) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise SeedError(f"not an ISO 8601 date: {value!r}", path=path, line=line, key="date") from None
    if parsed.tzinfo is None:
        # A date without a zone is taken in the newsroom's configured zone.
        parsed = parsed.replace(tzinfo=zone)
    return parsed


def _blocks(lines: list[str], start: int) -> list[Block]:
    blocks: list[Block] = []
    current: Block = []
    for index in range(start, len(lines)):
        text = " ".join(lines[index].split())
        if text:
            current.append((index + 1, text))
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _entries(blocks: list[Block], meta: dict[str, object], path: Path) -> list[Entry]:
    first = blocks[0]
    (title_line, title), body = first[0], first[1:]
    rest = blocks[1:]
    if not body and rest:
        body, rest = rest[0], rest[1:]
    lead = Entry(
        title=title, paragraphs=tuple(text for _, text in body), position=0, line=title_line,
        path=path, id=_str(meta.get("id")), date=_date(meta.get("date")),
        author=_str(meta.get("author")), url=_str(meta.get("url")),
        tags=_tags(meta.get("tags")), correction=_str(meta.get("correction")),
    )
    briefs = [
        Entry(title=block[0][1], paragraphs=tuple(t for _, t in block[1:]), position=n,
              line=block[0][0], path=path)
        for n, block in enumerate(rest, start=1)
    ]
    return [lead, *briefs]


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _date(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _tags(value: object) -> tuple[str, ...]:
    return value if isinstance(value, tuple) else ()
