"""The page manifest: which story pages on disk already show what they would show now.

Per page it remembers a digest of what the page shows and the size and mtime the page had
when written (as shards in the project's state/, see ``syndicator.state.shards``): a later
build skips rendering a page whose digest, size and mtime all still match. It is only a
shortcut: a page touched, removed or truncated since is rendered and compared again.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

import jinja2

from syndicator.config import Config
from syndicator.state import shards

MANIFEST_VERSION = 2
# The code that shapes a page (paths inside the package): a change to it invalidates every page.
_PAGE_CODE = ("site/pages.py", "site/feeds.py", "text.py", "templating.py", "model.py")
Page = tuple[str, int, int]  # the page's key, and its size and mtime (ns) once written


# An incremental rebuild's pages are remembered in one small file of recent entries, not merged
# into the shards: at a million seeds a shard holds 60,000 pages (7 MB), and one new seed's
# pages fall in several. Past this many entries a save folds them into the shards.
RECENT = "recent.bin"
PENDING = "pending"  # a build in batches' pages, until it ends (``Pending``)
RECENT_MAX = 20_000


class Manifest:
    """Per page: the digest of what it shows, and its size and mtime when written."""

    def __init__(self, folder: Path, config: Config, env: jinja2.Environment,
                 names: Iterable[str] | None = None, *, lean: bool = False, recent: bool = False,
                 pending: Pending | None = None) -> None:
        """``names``: only the pages a build may write (the shards holding them; every other
        page stays as remembered), else every page (and ``pages`` must name each one kept).

        ``lean`` (with ``names``): remember only those pages, reading the shards one at a time,
        and merge into them one at a time on saving: a batch of a big build then holds its own
        pages' entries, not the manifest of millions.

        ``recent`` (with ``names``): an incremental rebuild's, whose pages changed: only the
        file of recent entries is read (a page it does not remember is rendered and compared,
        not rewritten) and written. The shards hold the rest; the recent entries win.

        ``pending`` (with ``lean``): a build in batches': saving hands the pages to it, and it
        merges every batch's into the shards once, at the end (``Pending.merge``).
        """
        self.path = manifest_path(folder, config.state_dir)
        self.tag = (MANIFEST_VERSION, signature(config, env))
        self.lean = lean and names is not None
        self.pending = pending if self.lean else None
        self.every = names is None
        self.recent: dict[str, Page] | None = None
        self.remembered: dict[str, Page] = {}
        self.shards: dict[int, shards.Shard] = {}
        self.latest: dict[str, Page] = shards.read_file(self.path / RECENT, self.tag) or {}
        wanted = None if names is None else set(names)
        if recent and wanted is not None:
            self.recent = self.latest
            self.remembered = _only(self.latest, wanted)
            self.pages: dict[str, Page] = dict(self.remembered)
            return
        if self.lean and wanted is not None:
            for number in sorted({shards.shard_of(name) for name in wanted}):
                part = shards.load(self.path, self.tag, {number}).get(number, {})
                self.remembered.update(_only(part, wanted))
            self.remembered.update(_only(self.latest, wanted))
            self.pages = dict(self.remembered)
            return
        only = None if wanted is None else {shards.shard_of(name) for name in wanted}
        self.shards = shards.load(self.path, self.tag, only)
        for part in self.shards.values():
            self.remembered.update(part)
        self.remembered.update(self.latest if wanted is None else _only(self.latest, wanted))
        self.pages = {} if wanted is None else dict(self.remembered)

    def save(self) -> None:
        """Best effort: what the manifest does not remember is rendered and compared again."""
        if self.pages == self.remembered:
            return
        # The JSON manifest of syndicator 0.1, if there is one, is of no more use.
        with contextlib.suppress(OSError):
            self.path.with_name(self.path.name + ".json").unlink(missing_ok=True)
        if self.recent is not None:
            merged = {**self.recent, **self.pages}
            if len(merged) <= RECENT_MAX:
                with contextlib.suppress(OSError):
                    self.path.mkdir(parents=True, exist_ok=True)
                shards.write_file(self.path / RECENT, self.tag, merged)
                return
            self._merge(merged)
            shards.write_file(self.path / RECENT, self.tag, {})
            return
        if self.lean:
            if self.pending is not None:
                self.pending.add(self.tag, self.pages)
            else:
                self._merge(self.pages)
            self._forget_recent(self.pages.keys())
            return
        now = shards.split(self.pages)
        changed = {n: now.get(n, {}) for n in set(now) | set(self.shards) if now.get(n) != self.shards.get(n)}
        shards.save(self.path, self.tag, changed)
        if self.every:  # the shards hold every page now: no recent entry is of use
            shards.write_file(self.path / RECENT, self.tag, {})
        else:
            self._forget_recent(self.pages.keys())

    def _merge(self, pages: dict[str, Page]) -> None:
        """Into the shards, one at a time."""
        for number, entries in shards.split(pages).items():
            part = shards.load(self.path, self.tag, {number}).get(number, {})
            part.update(entries)
            shards.save(self.path, self.tag, {number: part})

    def _forget_recent(self, names: Iterable[str]) -> None:
        """Recent entries of these pages (the shards now hold what is true of them)."""
        gone = set(names)
        if not gone.isdisjoint(self.latest):
            kept = {name: page for name, page in self.latest.items() if name not in gone}
            shards.write_file(self.path / RECENT, self.tag, kept)


class Pending:
    """The pages of a build in batches, kept beside the shards until the build ends, then
    merged into them in one pass: each shard read and written once. Merged after each batch,
    every batch read and wrote every shard (a batch's pages fall in all of them), the whole
    manifest so far: at 100 batches of 40,000 pages that was minutes, growing with the square
    of the batches, while no page rendered.

    Until merged, a batch does not see an earlier batch's pages (they are rendered and
    compared, not rewritten); the later entry wins. A build that fails drops them (and a
    process killed first leaves them to the next build in batches of the folder, which
    drops them): the manifest is a shortcut, and what it does not remember is rendered and
    compared again, no unchanged page rewritten.
    """

    def __init__(self, folder: Path, config: Config) -> None:
        self.path = manifest_path(folder, config.state_dir)
        self.here = self.path / PENDING
        self.tag: shards.Tag | None = None
        self.parts: dict[int, list[Path]] = {}  # per shard, its batches' files, in order
        self.batches = 0
        self.discard()

    def add(self, tag: shards.Tag, pages: dict[str, Page]) -> None:
        if self.tag is not None and tag != self.tag:
            raise ValueError("one build's pages have one signature")
        self.tag = tag
        split = shards.split(pages)
        shards.save(self.here, tag, split, name=self._part)
        for shard in split:
            self.parts.setdefault(shard, []).append(self.here / self._part(shard))
        self.batches += 1

    def _part(self, shard: int) -> str:
        return f"{shard:02x}.{self.batches:06d}.bin"

    def merge(self) -> None:
        """Into the shards, in the order the batches came; then none is pending. A part that
        could not be written (saving is best effort) is passed over."""
        if self.tag is None:
            return
        for shard, parts in sorted(self.parts.items()):
            merged = shards.load(self.path, self.tag, {shard}).get(shard, {})
            for part in parts:
                merged.update(shards.read_file(part, self.tag) or {})
            shards.save(self.path, self.tag, {shard: merged})
        self.discard()

    def discard(self) -> None:
        self.parts.clear()
        shutil.rmtree(self.here, ignore_errors=True)


def _only(entries: dict[str, Page], names: set[str]) -> dict[str, Page]:
    return {name: entries[name] for name in names & entries.keys()}


def signature(config: Config, env: jinja2.Environment) -> str:
    """What every page depends on beyond its story: site config, templates, page code."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((MANIFEST_VERSION, sys.version_info[:2], unicodedata.unidata_version,
                        config.site, config.feeds)).encode())
    for part in _template_sources(env):
        digest.update(part)
    here = Path(__file__).parents[1]  # the package
    for name in _PAGE_CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def template_digest(env: jinja2.Environment) -> str:
    """A digest of every template's name and source, as the environment's loader finds them now."""
    digest = hashlib.blake2b(digest_size=16)
    for part in _template_sources(env):
        digest.update(part)
    return digest.hexdigest()


def _template_sources(env: jinja2.Environment) -> Iterator[bytes]:
    assert env.loader is not None
    for name in sorted(set(env.list_templates())):
        source, _, _ = env.loader.get_source(env, name)
        yield name.encode() + b"\0" + source.encode("utf-8", "surrogatepass") + b"\0"


def manifest_path(folder: Path, state: Path) -> Path:
    # Beside the default store in the project's state/, not in the published output folder.
    where = hashlib.blake2b(str(folder.resolve()).encode("utf-8", "surrogatepass"),
                            digest_size=10).hexdigest()
    return state / f"build-{where}"
