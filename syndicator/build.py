"""The build stage: seeds -> stories -> feeds and pages, written atomically.

Large folders: story pages are rendered with one compiled template and written atomically
(temp file + rename) without an fsync each; the stories folder is synced once at the end.
Feeds and the index keep their fsync. A manifest in the project's state/ folder remembers, per
page, a digest of what the page shows and the size and mtime the page had when written:
a later build skips rendering a page whose digest, size and mtime all still match, so a
rebuild costs little more than reading the seeds. The manifest is only a shortcut: a page
that was touched, removed or truncated since is rendered and compared again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jinja2

from syndicator.catalog import load_files, resolve
from syndicator.config import Config
from syndicator.errors import OutputError
from syndicator.feeds import render_feeds
from syndicator.model import SeedFile, Story
from syndicator.pages import StoryPages, page_key, render_index, render_pages
from syndicator.reader import SeedFiles
from syndicator.store import Store
from syndicator.templating import environment
from syndicator.writer import check_writable, commit, same_content, stage, sync_folder, write_atomic

MANIFEST_VERSION = 1
STORIES = "stories"
# The code that shapes a page: a change to it must invalidate every remembered page.
_PAGE_CODE = ("pages.py", "feeds.py", "textutil.py", "templating.py", "model.py")


@dataclass(frozen=True)
class BuildResult:
    output: Path
    stories: int
    written: tuple[str, ...]
    unchanged: int

    @property
    def feeds_changed(self) -> bool:
        return any(name in ("rss.xml", "atom.xml", "feed.json") for name in self.written)


def load_stories(config: Config, store: Store, clock: datetime, *, persist: bool = True) -> list[Story]:
    """Every story, newest first, with ids and times fixed by the store."""
    # Without persist (a dry run) nothing is written, the parsed-seed cache included.
    files = load_files(config, cache=persist)
    stories = resolve(files, store, clock, persist=persist)
    files.save_cache()
    return stories


def render_site(config: Config, stories: Sequence[Story]) -> dict[str, bytes]:
    env = environment(config.templates_dir)
    return {**render_feeds(config, stories), **render_pages(config, env, stories)}


def build(config: Config, store: Store, clock: datetime, output: Path | None = None, *,
          files: list[SeedFile] | None = None) -> BuildResult:
    """Write every output file; nothing is written unless every seed parses.

    ``files`` are seeds the caller has already loaded (and so validated).
    """
    folder = output or config.output_dir
    if files is None:
        files = load_files(config)
    check_writable(folder)
    stories = resolve(files, store, clock)
    env = environment(config.templates_dir)
    env.auto_reload = False  # one build: no stat of every template at every render
    renderer = StoryPages(config, env)
    top = {**render_feeds(config, stories), "index.html": render_index(config, env, stories)}
    # Every changed page is rendered and staged (a temp file) before the first file is
    # replaced: a template error leaves the output folder as it was.
    staged, unchanged, manifest = _stage_pages(folder, renderer, env, config, stories)
    written = [name for name, data in top.items() if write_atomic(folder / name, data)]
    unchanged += len(top) - len(written)
    for name, tmp in staged:
        commit(tmp, folder / name)
    if staged:
        sync_folder(folder / STORIES)
    manifest.save()
    if isinstance(files, SeedFiles):
        files.save_cache()
    written += [name for name, _ in staged]
    return BuildResult(folder, len(stories), tuple(written), unchanged)


class _Manifest:
    """Per page: the digest of what it shows, and its size and mtime when written."""

    def __init__(self, folder: Path, signature: str, root: Path) -> None:
        self.path = _manifest_path(folder, root)
        self.signature = signature
        self.remembered = _load_manifest(self.path, signature)
        self.pages: dict[str, list[object]] = {}
        self.pending: dict[str, tuple[str, Path]] = {}

    def save(self) -> None:
        for name, (key, path) in self.pending.items():
            try:
                st = os.stat(path)
            except OSError:
                continue
            self.pages[name] = [key, st.st_size, st.st_mtime_ns]
        if self.pages != self.remembered:
            _save_manifest(self.path, self.signature, self.pages)


def _stage_pages(folder: Path, renderer: StoryPages, env: jinja2.Environment, config: Config,
                 stories: Sequence[Story]) -> tuple[list[tuple[str, Path]], int, _Manifest]:
    pages = folder / STORIES
    on_disk: dict[str, tuple[int, int]] = {}
    try:
        with os.scandir(pages) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                on_disk[entry.name] = (st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        pass
    manifest = _Manifest(folder, _signature(config, env), config.root)
    remembered = manifest.remembered
    staged: list[tuple[str, Path]] = []
    unchanged = 0
    try:
        for story in stories:
            name = story.slug + ".html"
            key = page_key(story)
            stat = on_disk.get(name)
            known = remembered.get(name)
            if stat is not None and known is not None and known[0] == key and (known[1], known[2]) == stat:
                manifest.pages[name] = known
                unchanged += 1
                continue
            data = renderer.render(story)
            path = pages / name
            manifest.pending[name] = (key, path)
            if stat is not None and same_content(path, data, stat[0]):
                unchanged += 1
                continue
            staged.append((f"{STORIES}/{name}", stage(path, data, durable=False)))
    except BaseException:
        for _, tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    return staged, unchanged, manifest


def _signature(config: Config, env: jinja2.Environment) -> str:
    """What every page depends on beyond its story: site config, templates, page code."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((MANIFEST_VERSION, config.site, config.feeds)).encode())
    for name in sorted(set(env.list_templates())):
        assert env.loader is not None
        source, _, _ = env.loader.get_source(env, name)
        digest.update(name.encode() + b"\0" + source.encode("utf-8", "surrogatepass") + b"\0")
    here = Path(__file__).parent
    for name in _PAGE_CODE:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def _manifest_path(folder: Path, root: Path) -> Path:
    # Beside the default store in the project's state/, not in the published output folder.
    base = os.environ.get("SYNDICATOR_CACHE_DIR") or str(root / "state")
    where = hashlib.blake2b(str(folder.resolve()).encode("utf-8", "surrogatepass"),
                            digest_size=10).hexdigest()
    return Path(base) / f"build-{where}.json"


def _load_manifest(path: Path, signature: str) -> dict[str, list[object]]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("signature") != signature:
        return {}
    pages = data.get("pages")
    return pages if isinstance(pages, dict) else {}


def _save_manifest(path: Path, signature: str, pages: dict[str, list[object]]) -> None:
    """Best effort: without a manifest the next build renders and compares every page."""
    data = json.dumps({"signature": signature, "pages": pages}, separators=(",", ":")).encode()
    with contextlib.suppress(OutputError):
        write_atomic(path, data, durable=False, size=None)
