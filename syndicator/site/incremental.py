"""The incremental rebuild: after a few seeds changed, only what they touch is written again.

The folder's last build left a record (``unchanged``) and a catalog of its stories
(``catalog``). A rebuild whose seeds differ from the catalog's listing in a few files parses
those files, and every other file holding an entry of a story they touch (closed over shared
stories: a story's text is its richest entry's, wherever that is); resolves those stories
alone against the store (``resolve(partial=True)``: the same ids, times and page names a
complete build gives them); and writes:

- the pages of the stories that changed, and nothing for a story that did not;
- the subscription feeds, the index, the news sitemap and the tag list (each a query);
- the feeds and page of every tag a changed story had or has;
- the archive pages whose stories moved: the one holding an edited story; from the newest
  page on, when stories were added (they are seen last, so they enter at the end); from a
  removed story's page on, when one left (every later story moves up a rank);
- the sitemap (one file up to 50,000 URLs, else the parts by seq block that changed, and
  the index).

Its output is a complete build's, file for file (a test holds it to that after every kind
of change). Anything in doubt takes the complete build: no catalog or another one, the store
changed by someone else, a file of the last build touched, the clock gone back, or more than
a tenth of the seeds changed (a complete build is then about as quick).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2

from syndicator.config import Config
from syndicator.errors import InputError, InputErrors, SeedError
from syndicator.model import SeedFile, Story, tag_slug
from syndicator.seeds.identity import Sources, resolve
from syndicator.seeds.parse import read_seed
from syndicator.site import editions, sitemaps, tags, unchanged
from syndicator.site.catalog import Catalog, freeze, thaw
from syndicator.site.feeds import EPOCH, archive_docs, current_feeds, newest_first, page_url
from syndicator.site.manifest import Manifest
from syndicator.site.pages import StoryPages, page_key, render_index
from syndicator.site.unchanged import Record, Seen
from syndicator.site.writer import sync_folder, write_atomic
from syndicator.state.store import Store

STORIES = "stories"
MIN_CHANGES = 100  # up to this many changed seeds always go incremental
SHARE = 10  # past this fraction (1/SHARE) of the seeds changed, build it all


@dataclass(frozen=True)
class Plan:
    """An incremental rebuild that passed its checks: the changed seeds parsed."""

    seen: Seen
    record: Record
    catalog: Catalog
    changed: dict[str, SeedFile]  # by file name
    gone: frozenset[str]


@dataclass(frozen=True)
class Done:
    written: list[str]
    stories: int
    kept: int


def plan(config: Config, folder: Path, now_seen: Seen, record: Record) -> Plan | None:
    """The rebuild of the seeds changed since the record's build, or None: build it all.

    Raises InputErrors for a changed seed that does not parse (the others parsed before).
    """
    if not record.catalog or not now_seen.listing:
        return None
    catalog = Catalog.open(unchanged.state_folder(config, folder), record.catalog)
    if catalog is None:
        return None
    try:
        before = catalog.seeds()
    except Exception:
        catalog.close()
        raise
    listing = now_seen.listing
    changed = [name for name, stat in listing.items() if before.get(name) != stat or stat[1] == -1]
    gone = frozenset(name for name in before if name not in listing)
    if len(changed) + len(gone) > max(MIN_CHANGES, len(listing) // SHARE):
        catalog.close()
        return None
    zone = ZoneInfo(config.digest.timezone)
    parsed: dict[str, SeedFile] = {}
    errors: list[InputError] = []
    for name in changed:
        try:
            parsed[name] = read_seed(config.seeds_dir / name, zone)
        except SeedError as exc:
            errors.append(exc)
    if errors:
        catalog.close()
        raise InputErrors(errors)
    return Plan(now_seen, record, catalog, parsed, gone)


def rebuild(config: Config, env: jinja2.Environment, store: Store, folder: Path, now: datetime,
            plan: Plan) -> Done | None:
    """Write what the changed seeds touch; None (nothing written): build it all."""
    try:
        if not unchanged.usable(store, folder, now, plan.record):
            return None
        # Before anything is written: an interrupted rebuild leaves no record, and the next
        # build is a complete one.
        unchanged.forget(config, folder)
        return _rebuild(config, env, store, folder, now, plan)
    finally:
        plan.catalog.close()


def _rebuild(config: Config, env: jinja2.Environment, store: Store, folder: Path, now: datetime,
             plan: Plan) -> Done:
    catalog, record = plan.catalog, plan.record
    files, ids = _close_over(config, store, catalog, plan)
    sources: Sources = {}
    stories = resolve([files[name] for name in sorted(files)], store, now, sources=sources, partial=True)
    before = catalog.stories(ids | {s.id for s in stories})
    removed = [thaw(before[i]) for i in before.keys() - {s.id for s in stories}]
    changed = [s for s in stories if before.get(s.id) != freeze(s)]
    touched = catalog.tags_of([s.id for s in removed] + [s.id for s in changed])
    touched |= {tag_slug(t) for s in changed for t in s.tags}
    total_before = catalog.count()
    token = catalog.apply({name: plan.seen.listing[name] for name in plan.changed}, plan.gone, sources,
                          [*files, *plan.gone], [s.id for s in removed], changed, touched)
    total = catalog.count()
    limit, size = config.feeds.limit, config.feeds.archive_size
    archived = max(0, total - limit)
    pages = math.ceil(archived / size)
    edited = [s for s in changed if s.id in before]
    added = [s for s in changed if s.id not in before]
    numbers = _archive_numbers(catalog, [*removed, *added], edited, size, archived,
                               max(0, total_before - limit), pages, total != total_before)
    docs = [doc for n in sorted(numbers) for doc in archive_docs(
        config, n, pages, catalog.by_seen((n - 1) * size, min(size, archived - (n - 1) * size)))]
    manifest = Manifest(folder, config, env, [s.slug + ".html" for s in changed] + [d.name for d in docs])
    written = _write_pages(config, env, folder, manifest, changed)
    for doc in docs:
        if _write_doc(folder, manifest, doc.name, doc.key, doc.render):
            written.append(doc.name)
    top = {**current_feeds(config, newest_first(catalog.by_seen(archived, limit)), pages),
           "index.html": render_index(config, env, catalog.newest(limit))}
    for slug in sorted(touched):
        name = catalog.tag_name(slug)
        if name is not None:
            top.update(tags.tag_files(config, env, slug, name, catalog.tagged(slug, limit)))
    top.update(tags.tag_list(catalog.tags()))
    top.update(editions.outputs(config, env, store, folder, _ById(catalog)))
    maps, live = _sitemaps(config, catalog, record, total, removed + changed)
    top.update(maps)
    recent = catalog.news((now - sitemaps.NEWS_WINDOW).timestamp(), (now + sitemaps.NEWS_AHEAD).timestamp(),
                          sitemaps.NEWS_MAX)
    news = sitemaps.news_candidates(config, recent, now)
    top[sitemaps.NEWS] = sitemaps.render_news(config, news, now)
    top["robots.txt"] = sitemaps.robots(config)
    written += [name for name, data in top.items() if write_atomic(folder / name, data)]
    manifest.save()
    kept = _kept(record, pages, catalog, live)
    for name in [*top, *(d.name for d in docs)]:
        st = os.stat(folder / name)
        kept[name] = [st.st_size, st.st_mtime_ns]
    folder_mtime = os.stat(folder / STORIES).st_mtime_ns if total else -1
    unchanged.save(config, folder, replace(
        record, seen=plan.seen, store=unchanged.store_state(store), now=now.timestamp(), stories=total,
        files=kept, folder_mtime=folder_mtime, news=news, catalog=token))
    return Done(written, total, total + len(kept) - len(written))


def _close_over(config: Config, store: Store, catalog: Catalog,
                plan: Plan) -> tuple[dict[str, SeedFile], set[str]]:
    """The changed seeds, and every seed holding an entry of a story any of these holds (by
    the catalog: the stories they held; by the store: the stories their keys name), to a
    fixpoint; and the ids of every story they held or hold."""
    files = dict(plan.changed)
    ids = catalog.stories_of_seeds([*files, *plan.gone])
    zone = ZoneInfo(config.digest.timezone)
    while True:
        stored = store.keys_of(key for seed in files.values() for entry in seed.entries for key in entry.keys)
        ids |= {s.id for s in stored.values()}
        more = catalog.seeds_of_stories(ids) - files.keys() - plan.gone
        if not more:
            return files, ids
        errors: list[InputError] = []
        for name in sorted(more):
            try:
                files[name] = read_seed(config.seeds_dir / name, zone)
            except SeedError as exc:  # changed since it was listed: the next build sees it
                errors.append(exc)
        if errors:
            raise InputErrors(errors)
        ids |= catalog.stories_of_seeds(more)


def _archive_numbers(catalog: Catalog, moved: list[Story], edited: list[Story], size: int,
                     archived: int, archived_before: int, pages: int, resized: bool) -> set[int]:
    """The archive pages (numbers from 1) whose stories or links changed.

    ``moved``: stories removed or added. Every story seen after one moved a rank; a new story
    is seen last, but one that comes back (its seed restored) keeps the time it was first seen.
    """
    numbers: set[int] = set()
    if moved:
        first = min(moved, key=lambda s: (s.first_seen, s.seq))
        start = catalog.rank(int(first.first_seen.timestamp()), first.seq) // size + 1
        numbers.update(range(start, pages + 1))
    for story in edited:
        rank = catalog.rank(int(story.first_seen.timestamp()), story.seq)
        if rank < archived:
            numbers.add(rank // size + 1)
    if resized:  # stories entered or left at the newest end; the newest page's links may change
        numbers.update(range(max(0, min(archived, archived_before) - 1) // size + 1, pages + 1))
    return {n for n in numbers if 1 <= n <= pages}


def _write_pages(config: Config, env: jinja2.Environment, folder: Path, manifest: Manifest,
                 stories: list[Story]) -> list[str]:
    if not stories:
        return []
    pages = folder / STORIES
    pages.mkdir(parents=True, exist_ok=True)
    renderer = StoryPages(config, env)
    written = []
    for story in stories:
        name = story.slug + ".html"
        render = functools.partial(renderer.render, story)
        if _write_doc(pages, manifest, name, page_key(story), render, durable=False):
            written.append(f"{STORIES}/{name}")
    if written:
        sync_folder(pages)
    return written


def _write_doc(folder: Path, manifest: Manifest, name: str, key: str, render: Callable[[], bytes],
               *, durable: bool = True) -> bool:
    """Write a document unless the manifest says it is on disk as it would be rendered now."""
    path = folder / name
    known = manifest.remembered.get(name)
    with contextlib.suppress(OSError):
        st = os.stat(path)
        if known is not None and known[0] == key and (known[1], known[2]) == (st.st_size, st.st_mtime_ns):
            return False
    wrote = write_atomic(path, render(), durable=durable)
    st = os.stat(path)
    manifest.pages[name] = (key, st.st_size, st.st_mtime_ns)
    return wrote


def _sitemaps(config: Config, catalog: Catalog, record: Record, total: int,
              touched: list[Story]) -> tuple[dict[str, bytes], set[str]]:
    """The sitemap files to write, and the names of every sitemap file the site has now."""
    tag_pages = {f"tags/{slug}/index.html": catalog.tag_changed(slug) or EPOCH for slug, _ in catalog.tags()}
    pages = sitemaps.site_pages(config, catalog.last_changed() or EPOCH, tag_pages)
    if total + len(pages) <= sitemaps.block_size():
        return {"sitemap.xml": sitemaps.single(pages, [(page_url(config, r.slug), r.lastmod)
                                                       for r in catalog.urls()])}, {"sitemap.xml"}
    size = sitemaps.block_size()
    blocks = catalog.seq_blocks(size)
    if "sitemap-pages.xml" in record.files:
        due = {sitemaps.block_of(s.seq, size) for s in touched} & set(blocks)
    else:  # the site outgrew one sitemap: every part is new
        due = set(blocks)
    files = {sitemaps.part_name(n): sitemaps.urlset([(page_url(config, r.slug), r.lastmod) for r in
                                                     catalog.urls_by_seq((n - 1) * size + 1, n * size + 1)])
             for n in sorted(due)}
    files.update(sitemaps.split(config, pages, [(n, catalog.block_lastmod(n, size)) for n in blocks]))
    return files, {*files, *(sitemaps.part_name(n) for n in blocks)}


def _kept(record: Record, pages: int, catalog: Catalog, maps: set[str]) -> dict[str, list[int]]:
    """The record's files a complete build would still write now (and, so, check later)."""
    live = {f"tags/{slug}/" for slug, _ in catalog.tags()}
    kept: dict[str, list[int]] = {}
    for name, stat in record.files.items():
        if name.startswith("archive/"):
            number = name.rsplit("-", 1)[-1].removesuffix(".xml")
            gone = not number.isdigit() or int(number) > pages
        elif name.startswith("tags/") and name != tags.TAG_LIST:
            gone = name[:name.index("/", 5) + 1] not in live  # a tag no story has now
        else:
            gone = name.startswith("sitemap") and name not in maps
        if not gone:
            kept[name] = stat
    return kept


class _ById(Mapping[str, Story]):
    """Stories by id, asked of the catalog (an edition page to write names a few)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def __getitem__(self, key: str) -> Story:
        found = self.catalog.stories([key])
        if key not in found:
            raise KeyError(key)
        return thaw(found[key])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self.catalog.stories([key])

    def __iter__(self) -> Iterator[str]:
        return iter(self.catalog.ids())

    def __len__(self) -> int:
        return self.catalog.count()

