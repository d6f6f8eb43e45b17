"""The output folder's files for ``serve``: found safely, cached, with validators (ETag, Last-Modified)."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from syndicator.site.feeds import ATOM, JSON_FEED, RSS

FEED_TYPES = {RSS: "application/rss+xml", ATOM: "application/atom+xml", JSON_FEED: "application/feed+json"}
_TEXTUAL = ("text/", "application/rss+xml", "application/atom+xml", "application/feed+json",
            "application/json", "application/xml", "application/javascript", "image/svg+xml")
CACHE_BYTES = 32 * 1024 * 1024  # the cache's bodies (gzip included) all together


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    digest: str
    mtime: int
    content_type: str
    kind: str  # "feed", "html" or "other"
    name: str

    @property
    def size(self) -> int:
        """The bytes it holds in memory: the body and its gzip form."""
        return len(self.body) + len(self.gzipped or b"")


class Files:
    """Files under one folder, found safely and cached by (inode, size, mtime).

    The cache holds at most ``max_cached`` files and ``max_bytes`` bytes, the least recently
    served going first; a file over a quarter of ``max_bytes`` is read each time instead, so
    a few big files cannot push every small one out.
    """

    def __init__(self, root: Path, max_cached: int = 1024, max_bytes: int = CACHE_BYTES) -> None:
        self.root = root.resolve()
        self.max_cached, self.max_bytes = max_cached, max_bytes
        self._cache: OrderedDict[Path, tuple[tuple[int, int, int], Asset]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # loads run in the threadpool, several at once

    @property
    def cached_bytes(self) -> int:
        return self._bytes

    @property
    def cached_files(self) -> int:
        return len(self._cache)

    def locate(self, relative: str) -> Path | str | None:
        """The file for a URL path; a str is a redirect target (a folder without its slash)."""
        parts = relative.split("/")
        trailing = parts[-1] == ""
        names = parts[:-1] if trailing else parts
        if not _safe_names(names):
            return None
        target = self._inside(self.root.joinpath(*names))
        if target is not None and target.is_dir():
            if not trailing and names:
                return "/" + "/".join(names) + "/"
            target = self._inside(target / "index.html")
        return target if target is not None and target.is_file() else None

    def _inside(self, path: Path) -> Path | None:
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            return None
        return real if real == self.root or real.is_relative_to(self.root) else None

    def load(self, path: Path) -> Asset | None:
        try:
            stat = path.stat()
            key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            with self._lock:
                cached = self._cache.get(path)
                if cached is not None and cached[0] == key:
                    self._cache.move_to_end(path)
                    return cached[1]
            asset = _asset(path, path.read_bytes(), int(stat.st_mtime))
        except OSError:
            return None
        self._keep(path, key, asset)
        return asset

    def _keep(self, path: Path, key: tuple[int, int, int], asset: Asset) -> None:
        with self._lock:
            old = self._cache.pop(path, None)  # a stale version, or a concurrent load's copy
            if old is not None:
                self._bytes -= old[1].size
            if asset.size > self.max_bytes // 4:
                return
            self._cache[path] = (key, asset)
            self._bytes += asset.size
            while len(self._cache) > self.max_cached or self._bytes > self.max_bytes:
                self._bytes -= self._cache.popitem(last=False)[1][1].size


def _safe_names(names: list[str]) -> bool:
    """No empty, dot, hidden, NUL or backslash segments: '..', '%2e%2e' and '//abs' all fail."""
    return all(n and not n.startswith(".") and "\x00" not in n and "\\" not in n for n in names)


def _asset(path: Path, body: bytes, mtime: int) -> Asset:
    name = path.name
    if name in FEED_TYPES:
        content_type, kind = FEED_TYPES[name], "feed"
    elif path.suffix in (".html", ".htm"):
        content_type, kind = "text/html", "html"
    else:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        kind = "other"
    textual = content_type.startswith(_TEXTUAL)
    if textual:
        content_type += "; charset=utf-8"
    squeezed = gzip.compress(body, compresslevel=6, mtime=0) if textual and len(body) >= 256 else None
    return Asset(body, squeezed, hashlib.sha256(body).hexdigest()[:32], mtime, content_type, kind, name)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding value allows gzip (``gzip;q=0`` does not)."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        match = re.search(r"q\s*=\s*([0-9.]+)", params)
        if match:
            try:
                q = float(match.group(1))
            except ValueError:
                q = 0.0
        weights[name.strip().lower()] = q
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def etag_matches(header: str, digest: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2); either encoding's tag names the same content."""
    if header.strip() == "*":
        return True
    for tag in header.split(","):
        value = tag.strip().removeprefix("W/").strip('"').removesuffix("-gz")
        if value == digest:
            return True
    return False


def not_modified(headers: Mapping[str, str], asset: Asset) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:  # If-None-Match wins over If-Modified-Since
        return etag_matches(inm, asset.digest)
    since = headers.get("if-modified-since")
    if not since:
        return False
    try:
        return asset.mtime <= int(parsedate_to_datetime(since).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
