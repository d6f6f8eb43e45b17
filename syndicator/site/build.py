"""The build stage: seeds -> stories -> feeds and pages, written atomically.

Story pages are rendered (``parallel``: one process per core for big folders) and staged as
temp files before anything is replaced; pages are committed before the feeds and the index,
which then never link to a page not there yet. The page ``manifest`` lets a rebuild skip
pages that already show what they would show now.

What a failure leaves: an error while loading, checking or rendering (bad seed, template
error, Ctrl-C) leaves the output as it was and no temp file behind. An error while committing
(a disk that fills) can leave some new story pages in place beside the old feeds: the feeds
and index still name only pages that exist, and the next build completes the rest.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import jinja2

from syndicator.config import Config
from syndicator.errors import InputErrors
from syndicator.gcpause import paused_gc
from syndicator.model import SeedFile, Story
from syndicator.seeds.identity import Sources, load_files, resolve
from syndicator.seeds.parse import SeedFiles
from syndicator.site import editions, incremental, sitemaps, tags, unchanged
from syndicator.site.catalog import Catalog
from syndicator.site.feeds import ArchiveDoc, site_feeds
from syndicator.site.manifest import Manifest, template_digest
from syndicator.site.pages import StoryPages, check_templates, page_key, render_index
from syndicator.site.parallel import Todo, discard, render_all_while, temp_token
from syndicator.site.writer import check_writable, commit, current_umask, sync_folder, write_atomic
from syndicator.state import runs
from syndicator.state.store import Store
from syndicator.templating import environment

STORIES = "stories"
T = TypeVar("T")


@dataclass(frozen=True)
class BuildResult:
    output: Path
    stories: int
    written: Sequence[str]  # the files' names (a build in batches: ``Names``, not a list)
    unchanged: int
    pruned: int = 0  # story pages of no current story deleted (``prune``)


@dataclass(frozen=True)
class Prepared:
    """A build that passed its checks: seeds parsed, templates compiled, output writable."""

    folder: Path
    files: list[SeedFile] | None  # None: parsed only if neither quicker rebuild can serve
    env: jinja2.Environment
    seen: unchanged.Seen
    record: unchanged.Record | None  # the folder's last build, when no seed changed since
    plan: incremental.Plan | None = None  # when a few seeds changed since (parsed)
    entries: int | None = None  # every seed parsed, entries counted (a build in batches)


class Templates:
    """The page templates of a process that builds again and again (a watch, ``run``):
    compiled once, and again only when any template's name or source is not what it was (an
    edit, a file added to the project's templates/ that stands in for a shipped one). Compiling
    the page templates took 32-39 ms of CPU, reading and hashing their sources 1 ms; a watched
    rebuild at 100,000 seeds takes 100-180 ms of CPU in all."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._kept: tuple[str, jinja2.Environment] | None = None

    def environment(self) -> jinja2.Environment:
        fresh = environment(self.config.templates_dir)  # compiles nothing until asked
        sources = template_digest(fresh)
        if self._kept is not None and self._kept[0] == sources:
            return self._kept[1]
        self._kept = (sources, fresh)
        return fresh


def prepare(config: Config, output: Path | None = None, *,
            changed: Collection[str] | None = None, templates: Templates | None = None) -> Prepared:
    """Every check a build needs, before any store is opened: all problems at once.

    Seeds unchanged since the folder's last build (``unchanged``, ``incremental``) are not
    parsed again: they parsed then, with the same code and settings. ``changed``: the seed
    files a watch saw change since that build (``unchanged.seen``): the folder is not scanned.
    ``templates``: the compiled templates a process that builds again keeps (else compiled here).
    """
    folder = output or config.output_dir
    env = templates.environment() if templates is not None else environment(config.templates_dir)
    env.auto_reload = False  # one build: no stat of every template at every render
    broken = check_templates(env)
    if broken:
        raise InputErrors(broken)
    seen = unchanged.seen(config, env, folder, changed)
    last = unchanged.load(config, folder, seen)
    record = last if last is not None and unchanged.matches(config, folder, last, seen) else None
    plan = incremental.plan(config, folder, seen, last) if last is not None and record is None else None
    quicker = record is not None or plan is not None
    batched = not quicker and incremental.batched(seen)
    entries = incremental.check_seeds(config, seen) if batched else None
    files = None if quicker or batched else load_files(config)
    check_writable(folder)
    return Prepared(folder, files, env, seen, record, plan, entries)


def build(config: Config, store: Store, now: datetime, output: Path | None = None, *,
          prepared: Prepared | None = None, prune: bool = False, full: bool = False) -> BuildResult:
    """Write every output file; nothing is written unless every seed and template is valid.

    ``prepared``: the checks the caller already ran (``prepare``), so they do not run twice.
    ``prune``: once everything is written, delete the story pages of stories no seed holds any
    more (``prune_pages``); without it they stay, and their permalinks keep working.
    ``full``: check every page against the manifest even when no seed changed (``unchanged``
    trusts pages whose folder did not change; a page edited in place by hand is seen only so).
    """
    started, clock = time.time(), time.monotonic()
    ready = prepared or prepare(config, output)
    folder, env = ready.folder, ready.env
    if ready.record is not None and not (prune or full):
        quick = unchanged.rebuild(config, env, store, folder, now, ready.record)
        if quick is not None:
            names, record = quick
            unchanged.save(config, folder, record)
            runs.record(store, runs.BUILD, started, time.monotonic() - clock,
                        f"{record.stories} stories, {len(names)} files written (no seed changed)")
            return BuildResult(folder, record.stories, tuple(names),
                               unchanged.documents(config, record) - len(names))
    if ready.plan is not None:
        done = None if prune or full else incremental.rebuild(config, env, store, folder, now, ready.plan)
        ready.plan.catalog.close()
        if done is not None:
            runs.record(store, runs.BUILD, started, time.monotonic() - clock,
                        f"{done.stories} stories, {len(done.written)} files written (incremental)")
            return BuildResult(folder, done.stories, done.written, done.kept)
    if incremental.batched(ready.seen):
        return _in_batches(config, env, store, folder, now, ready, prune, started, clock)
    files = ready.files if ready.files is not None else load_files(config)
    # Before anything is written: a build that fails midway must not leave a record behind
    # that would let the next one skip what this one did not finish.
    unchanged.forget(config, folder)
    sources: Sources = {}
    stories = resolve(files, store, now, sources=sources)
    renderer = StoryPages(config, env)

    def meanwhile() -> tuple[dict[str, bytes], list[ArchiveDoc], str]:
        # While the other processes start on the pages: everything else, the catalog too
        # (only a shortcut for the next build: no record names it until this one is done).
        feeds, archive = site_feeds(config, stories)
        tagged = tags.by_tag(stories)
        top = {**feeds, "index.html": render_index(config, env, stories),
               **tags.outputs(config, env, tagged),
               **editions.outputs(config, env, store, folder, {s.id: s for s in stories})}
        top.update(sitemaps.outputs(config, stories, tags.page_times(tagged), now))
        return top, archive, _catalogue(config, folder, ready.seen, stories, sources)

    staged: list[tuple[str, str]] = []
    fresh: Path | None = None
    committed = 0
    base = str(folder)
    try:
        with paused_gc():
            staged, kept, manifest, fresh, (top, archive, token) = _stage_pages(
                folder, renderer, env, config, stories, meanwhile)
        if fresh is not None:
            _commit_folder(fresh, folder / STORIES, staged, base)
            fresh, committed = None, len(staged)
        for name, tmp in staged[committed:]:
            commit(tmp, os.path.join(base, name))
            committed += 1
        if staged:
            sync_folder(folder / STORIES)
        # The archive first: the feeds link its newest page.
        docs = incremental.write_docs(folder, manifest, archive)
        written = [name for name, data in top.items() if write_atomic(folder / name, data)]
    except BaseException:
        discard([(name, tmp, "", 0, 0) for name, tmp in staged[committed:]])
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        raise
    kept += len(top) + len(archive) - len(written) - len(docs)
    manifest.save()
    # After the feeds and the index: nothing written now links a page about to go.
    pruned = prune_pages(folder, {story.slug + ".html" for story in stories}) if prune else 0
    if isinstance(files, SeedFiles):
        files.save_cache()
    names = [*top, *(doc.name for doc in archive)]
    unchanged.remember(config, store, folder, ready.seen, now, stories, names, token)
    written = [name for name, _ in staged] + docs + written
    runs.record(store, runs.BUILD, started, time.monotonic() - clock,
                f"{len(stories)} stories, {len(written)} files written")
    return BuildResult(folder, len(stories), tuple(written), kept, pruned)


def _in_batches(config: Config, env: jinja2.Environment, store: Store, folder: Path, now: datetime,
                ready: Prepared, prune: bool, started: float, clock: float) -> BuildResult:
    done = incremental.in_batches(config, env, store, folder, now, ready.seen, entries=ready.entries,
                                  prune=prune_pages if prune else None)
    runs.record(store, runs.BUILD, started, time.monotonic() - clock,
                f"{done.stories} stories, {len(done.written)} files written (in batches)")
    return BuildResult(folder, done.stories, done.written, done.kept, done.pruned)


def _catalogue(config: Config, folder: Path, seen: unchanged.Seen, stories: list[Story],
               sources: Sources) -> str:
    """Write the folder's catalog (for the next incremental rebuild); its token, "" if none."""
    if not seen.scan.names:
        return ""
    try:
        token = Catalog.write(unchanged.state_folder(config, folder), seen.listing, stories, sources)
    except (OSError, sqlite3.Error):
        return ""  # only a shortcut: the next build is a complete one
    unchanged.save_scan(config, folder, token, seen.scan, seen.base)
    return token


# A story page's name as ``story_slug`` makes it: the title's stem (ASCII letters, digits and
# hyphens), then at least 8 hex of the story's id (and, past a 256-bit collision, a counter).
_PAGE_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*-[0-9a-f]{8,}(?:-[0-9]+)?\.html")


def prune_pages(folder: Path, keep: set[str]) -> int:
    """Delete the story pages in ``folder``/stories/ not named in ``keep``; return how many.

    Only regular files named as a story page is named are candidates: temp files (``.*.tmp``),
    folders, symlinks and anything else a person put there stay.
    """
    removed = 0
    try:
        with os.scandir(folder / STORIES) as entries:
            doomed = [entry.path for entry in entries
                      if entry.name not in keep and _PAGE_NAME.fullmatch(entry.name)
                      and entry.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return 0
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed += 1
    if removed:
        sync_folder(folder / STORIES)
    return removed


def _stage_pages(folder: Path, renderer: StoryPages, env: jinja2.Environment, config: Config,
                 stories: Sequence[Story], meanwhile: Callable[[], T],
                 ) -> tuple[list[tuple[str, str]], int, Manifest, Path | None, T]:
    """Render and stage every page that changed; ``meanwhile()`` runs while they render.

    Into a folder that has no stories/ yet (a first build), pages are written under their own
    names into a private staging folder that then becomes stories/ with one rename (``fresh``),
    which saves a rename per page; otherwise each page is a temp file beside its final name.
    """
    pages = folder / STORIES
    on_disk: dict[str, tuple[int, int]] = {}
    missing = False
    stale = time.time_ns() - _STALE_NS
    try:
        with os.scandir(pages) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if entry.name[0] == "." and entry.name.endswith(".tmp") and st.st_mtime_ns < stale:
                    with contextlib.suppress(OSError):  # a temp page a killed build left
                        os.unlink(entry.path)
                    continue
                on_disk[entry.name] = (st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        missing = True
    manifest = Manifest(folder, config, env)
    remembered = manifest.remembered
    todo: Todo = []
    unchanged = 0
    for story in stories:
        name = story.slug + ".html"
        stat = on_disk.get(name)
        known = remembered.get(name) if stat is not None else None
        # The page's key is needed here only to skip a remembered page; a page to render has
        # its key computed where it is rendered (in a child process, when there is one).
        if known is not None and (known[1], known[2]) == stat and known[0] == page_key(story):
            manifest.pages[name] = known
            unchanged += 1
            continue
        todo.append((name, story, stat))
    fresh: Path | None = None
    _remove_stale_staging(folder)
    if todo and missing:
        fresh = Path(tempfile.mkdtemp(prefix=f".{STORIES}.", suffix=".tmp", dir=folder))
        os.chmod(fresh, 0o777 & ~current_umask())  # as mkdir would make stories/
    elif todo:
        pages.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, str]] = []
    try:
        done, result = render_all_while(fresh or pages, renderer, todo, fresh is not None, temp_token(),
                                        meanwhile)
    except BaseException:
        if fresh is not None:
            shutil.rmtree(fresh, ignore_errors=True)
        raise
    for name, tmp, key, size, mtime in done:
        manifest.pages[name] = (key, size, mtime)
        if tmp is None:
            unchanged += 1
        else:
            staged.append((f"{STORIES}/{name}", tmp))
    return staged, unchanged, manifest, fresh, result


_STALE_NS = 3600 * 10**9


def _remove_stale_staging(folder: Path) -> None:
    """Staging folders that a killed build left behind (an hour old: never a live one)."""
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if (entry.name.startswith(f".{STORIES}.") and entry.name.endswith(".tmp")
                    and entry.is_dir(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime_ns < time.time_ns() - _STALE_NS):
                shutil.rmtree(entry.path, ignore_errors=True)


def _commit_folder(fresh: Path, pages: Path, staged: list[tuple[str, str]], base: str) -> None:
    """Rename the staging folder into place; if stories/ appeared meanwhile, page by page."""
    try:
        os.rename(fresh, pages)  # also replaces an empty stories/
    except OSError:
        for name, tmp in staged:
            commit(tmp, os.path.join(base, name))
        shutil.rmtree(fresh, ignore_errors=True)
        return
    sync_folder(pages.parent)
