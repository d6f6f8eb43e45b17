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

A complete build of more than ``BATCHED_FROM`` seeds goes through the same steps (``in_batches``):
an empty catalog, then each batch of seeds added as if it had just appeared, then every
archive page, feed, tag file and sitemap written from the catalog. Its memory follows the
batch, not the archive (a test holds its output to the one-pass build's).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import jinja2

from syndicator.config import Config
from syndicator.errors import InputError, InputErrors, OutputError, SeedError
from syndicator.model import SeedFile, Story, tag_slug
from syndicator.seeds.cache import Scan, count_entries, read_many
from syndicator.seeds.identity import NewTimes, Sources, resolve
from syndicator.seeds.parse import read_seed
from syndicator.site import editions, sitemaps, tags, unchanged
from syndicator.site.catalog import Catalog, freeze, thaw
from syndicator.site.feeds import (
    ATOM,
    EPOCH,
    RSS,
    ArchiveDoc,
    archive_docs,
    archive_name,
    current_feeds,
    newest_first,
    page_url,
)
from syndicator.site.manifest import Manifest, Pending
from syndicator.site.pages import StoryPages, page_key, render_index
from syndicator.site.parallel import (
    Job,
    Rendered,
    Todo,
    discard,
    render_all_while,
    render_jobs_while,
    temp_token,
)
from syndicator.site.unchanged import Record, Seen
from syndicator.site.writer import Names, commit, sync_folder, write_atomic
from syndicator.state.store import Store, StoredStory

STORIES = "stories"
MIN_CHANGES = 100  # up to this many changed seeds always go incremental
SHARE = 10  # past this fraction (1/SHARE) of the seeds changed, build it all
# Seeds: a complete build of more is made a batch at a time (``in_batches``). One pass is
# faster (at 50,000 seeds 37 to 41 s against 57 to 60 s in batches, one run each) but holds
# every story (1,040 MB there against 410 to 500 MB): up to 60,000 seeds its peak stays under
# the batched build's at a million seeds (1,348 MB), so that one is the ceiling at any size.
# A batch of 10,000 (40,000 stories) holds about what a complete build of 10,000 seeds holds;
# smaller batches cost more per seed, bigger ones hold more for no gain in time (at 50,000
# seeds in batches of 10,000 and 25,000: 107 and 106 s, 414 and 730 MB, an earlier stop).
BATCHED_FROM = 60_000
BATCH = 10_000
_DOCS_PARALLEL = 16  # archive documents (5 ms each): from this many, one process per core
_DOCS_AT_ONCE = 2_000  # archive documents rendered together (their stories held meanwhile)
T = TypeVar("T")


def _nothing() -> None:
    return None


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
    written: Names
    stories: int
    kept: int
    pruned: int = 0


def plan(config: Config, folder: Path, now_seen: Seen, record: Record) -> Plan | None:
    """The rebuild of the seeds changed since the record's build, or None: build it all.

    Raises InputErrors for a changed seed that does not parse (the others parsed before).
    """
    if not record.catalog or not now_seen.scan.names:
        return None
    catalog = Catalog.open(unchanged.state_folder(config, folder), record.catalog)
    if catalog is None:
        return None
    try:
        if now_seen.base is not None and now_seen.base.token == record.catalog:
            changed, gone_now = unchanged.changes_among(now_seen.scan, now_seen.base.before)
        else:
            found = unchanged.changes_since(config, folder, record.catalog, now_seen.scan)
            changed, gone_now = found or unchanged.changes(now_seen.scan, _scan(catalog.seeds()))
    except Exception:
        catalog.close()
        raise
    gone = frozenset(gone_now)
    if len(changed) + len(gone) > max(MIN_CHANGES, len(now_seen.scan.names) // SHARE):
        catalog.close()
        return None
    zone = ZoneInfo(config.digest.timezone)
    parsed: dict[str, SeedFile] = {}
    errors: list[InputError] = []
    for name in sorted(changed):
        try:
            parsed[name] = read_seed(config.seeds_dir / name, zone)
        except SeedError as exc:
            errors.append(exc)
    if errors:
        catalog.close()
        raise InputErrors(errors)
    return Plan(now_seen, record, catalog, parsed, gone)


def _scan(listing: Mapping[str, tuple[int, int]]) -> Scan:
    names = sorted(listing)
    return Scan(names, [listing[n][0] for n in names], [listing[n][1] for n in names])


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


def batched(seen: Seen) -> bool:
    """Whether a complete build of these seeds is made in batches (``in_batches``)."""
    return len(seen.scan.names) > BATCHED_FROM


def check_seeds(config: Config, seen: Seen) -> int:
    """How many entries the seeds hold; raises InputErrors naming every seed that does not
    parse. Each is read and let go (one process per core for many)."""
    counts = count_entries(config.seeds_dir, seen.scan.names, ZoneInfo(config.digest.timezone))
    errors: list[InputError] = [count for count in counts if isinstance(count, SeedError)]
    if errors:
        raise InputErrors(errors)
    return sum(count for count in counts if isinstance(count, int))


def in_batches(config: Config, env: jinja2.Environment, store: Store, folder: Path, now: datetime,
               seen: Seen, *, entries: int | None = None,
               prune: Callable[[Path, set[str]], int] | None = None) -> Done:
    """A complete build, ``BATCH`` seeds at a time: memory follows the batch, not the archive.

    Every seed is parsed first and let go (``entries``: the caller did, and counted their
    entries), so a bad one still stops the build before anything is written. Then, into a
    new catalog, each batch is resolved as an incremental rebuild resolves its changed
    seeds (closed over the stories they share with earlier batches' seeds, whose pages are
    then written again), and its story pages are written. New stories are first seen a
    second apart in seed order across the batches, as in one pass. Last come every archive
    page, feed, tag file and sitemap, each read from the catalog: until then nothing a
    reader follows has changed, so a new page is linked only once it is written.
    """
    if entries is None:
        entries = check_seeds(config, seen)
    unchanged.forget(config, folder)  # an interrupted build leaves no record: the next starts over
    state = unchanged.state_folder(config, folder)
    pending = Pending(folder, config)  # the pages' manifest, merged once at the end
    catalog = Catalog.open(state, Catalog.write(state, {}, [], {}))
    if catalog is None:
        raise OutputError("the build's catalog could not be opened", path=state)
    zone = ZoneInfo(config.digest.timezone)
    names = seen.scan.names
    seeds = config.seeds_dir
    written = Names()
    latest = store.latest_first_seen()
    # One pass starts at the newest stored time plus its new stories (``resolve``); their
    # count is not known before the last batch, the entries' is: the same unless builds
    # follow each other within as many seconds.
    times = NewTimes(int(now.timestamp()) if latest is None else max(int(now.timestamp()), latest + entries))
    starts = range(0, len(names), BATCH)

    def step(start: int | None) -> _Step | None:
        if start is None:
            return None
        some = names[start:start + BATCH]
        batch: dict[str, SeedFile] = {}
        for name, seed in zip(some, read_many(seeds, some, zone), strict=True):
            if isinstance(seed, SeedError):  # changed since it was checked
                raise InputErrors([seed])
            batch[name] = seed
        return _step(config, store, now, catalog, seen.scan, batch, frozenset(), times)

    try:
        todo, token = step(0), ""
        for later in [*starts[1:], None]:
            assert todo is not None  # only the step after the last batch is None
            token = todo.token
            manifest = Manifest(folder, config, env, [s.slug + ".html" for s in todo.changed], lean=True,
                                pending=pending)
            # The next batch is read and resolved while this one's pages render: its stories
            # are later ones, or earlier ones again, whose pages it then writes again after.
            pages, todo = _write_pages(config, env, folder, manifest, todo.changed,
                                       functools.partial(step, later))
            written += pages
            manifest.save()
        archived = max(0, catalog.count() - config.feeds.limit)
        numbers = set(range(1, math.ceil(archived / config.feeds.archive_size) + 1))
        manifest = Manifest(folder, config, env, _doc_names(numbers), lean=True, pending=pending)
        done = _publish(config, env, store, folder, now, catalog, seen, None, manifest, written, numbers,
                        {slug for slug, _ in catalog.tags()}, [], token)
        pending.merge()
        if prune is None:
            return done
        return replace(done, pruned=prune(folder, {slug + ".html" for slug in catalog.slugs()}))
    except BaseException:
        pending.discard()  # up to a manifest's size (hundreds of MB at a million seeds)
        raise
    finally:
        catalog.close()


@dataclass(frozen=True)
class _Step:
    """What one pass over some changed seeds did to the catalog."""

    changed: list[Story]  # new or changed stories, as they are now
    removed: list[Story]  # as they were
    added: list[Story]  # of ``changed``: those the catalog did not hold
    touched: set[str]  # the tags a changed or removed story had or has
    total_before: int
    token: str


def _rebuild(config: Config, env: jinja2.Environment, store: Store, folder: Path, now: datetime,
             plan: Plan) -> Done:
    catalog, record = plan.catalog, plan.record
    step = _step(config, store, now, catalog, plan.seen.scan, plan.changed, plan.gone)
    total = catalog.count()
    limit, size = config.feeds.limit, config.feeds.archive_size
    archived = max(0, total - limit)
    pages = math.ceil(archived / size)
    added = {s.id for s in step.added}
    edited = [s for s in step.changed if s.id not in added]
    numbers = _archive_numbers(catalog, [*step.removed, *step.added], edited, size, archived,
                               max(0, step.total_before - limit), pages, total != step.total_before)
    manifest = Manifest(folder, config, env, [s.slug + ".html" for s in step.changed] + _doc_names(numbers),
                        recent=True)
    written, _ = _write_pages(config, env, folder, manifest, step.changed, _nothing)
    return _publish(config, env, store, folder, now, catalog, plan.seen, record, manifest, Names(written),
                    numbers, step.touched, step.removed + step.changed, step.token)


def _step(config: Config, store: Store, now: datetime, catalog: Catalog,
          scan: Scan, changed: dict[str, SeedFile],
          gone: frozenset[str], times: NewTimes | None = None) -> _Step:
    """Re-resolve the stories the ``changed`` and ``gone`` seeds touch; apply them to the catalog."""
    files, ids, known = _close_over(config, store, catalog, changed, gone)
    sources: Sources = {}
    stories = resolve([files[name] for name in sorted(files)], store, now, sources=sources, partial=True,
                      times=times, known=known)
    before = catalog.stories(ids | {s.id for s in stories})
    removed = [thaw(before[i]) for i in before.keys() - {s.id for s in stories}]
    fresh = [s for s in stories if before.get(s.id) != freeze(s)]
    touched = catalog.tags_of([s.id for s in removed] + [s.id for s in fresh])
    touched |= {tag_slug(t) for s in fresh for t in s.tags}
    total_before = catalog.count()
    token = catalog.apply({name: scan.stat_of(name) for name in changed}, gone, sources, [*files, *gone],
                          [s.id for s in removed], fresh, touched)
    return _Step(fresh, removed, [s for s in fresh if s.id not in before], touched, total_before, token)


def _doc_names(numbers: set[int]) -> list[str]:
    return [archive_name(kind, n) for n in numbers for kind in (RSS, ATOM)]


def _publish(config: Config, env: jinja2.Environment, store: Store, folder: Path, now: datetime,
             catalog: Catalog, seen: Seen, record: Record | None, manifest: Manifest, written: Names,
             numbers: set[int], touched: set[str], moved: list[Story], token: str) -> Done:
    """Write the archive pages ``numbers``, the feeds, index and sitemaps, the ``touched`` tags'
    files, and the record; ``record``: the last build's (None: every file is new)."""
    total = catalog.count()
    limit, size = config.feeds.limit, config.feeds.archive_size
    archived = max(0, total - limit)
    pages = math.ceil(archived / size)

    def outputs() -> _Outputs:
        top = {**current_feeds(config, newest_first(catalog.newest_seen(min(limit, total))), pages),
               "index.html": render_index(config, env, catalog.newest(limit))}
        for slug in sorted(touched):
            name = catalog.tag_name(slug)
            if name is not None:
                top.update(tags.tag_files(config, env, slug, name, catalog.tagged(slug, limit)))
        top.update(tags.tag_list(catalog.tags()))
        top.update(editions.outputs(config, env, store, folder, _ById(catalog)))
        maps, live = _sitemaps(config, catalog, record, total, moved)
        recent = catalog.news((now - sitemaps.NEWS_WINDOW).timestamp(),
                              (now + sitemaps.NEWS_AHEAD).timestamp(), sitemaps.NEWS_MAX)
        news = sitemaps.news_candidates(config, recent, now)
        top[sitemaps.NEWS] = sitemaps.render_news(config, news, now)
        top["robots.txt"] = sitemaps.robots(config)
        return top, maps, live, news

    # The archive first (the feeds link its newest page); the rest is made while it renders.
    top, maps, live, news = _write_archive(config, folder, manifest, catalog, sorted(numbers), size,
                                           archived, pages, written, outputs)
    written += [name for name, data in top.items() if write_atomic(folder / name, data)]
    written += [name for name, render in maps.items() if write_atomic(folder / name, render())]
    manifest.save()
    kept = {} if record is None else _kept(record, catalog, live)
    for name in [*top, *maps]:
        st = os.stat(folder / name)
        kept[name] = [st.st_size, st.st_mtime_ns]
    folder_mtime = os.stat(folder / STORIES).st_mtime_ns if total else -1
    unchanged.save_scan(config, folder, token, seen.scan, seen.base)
    unchanged.save(config, folder, unchanged.Record(
        seen, unchanged.store_state(store), now.timestamp(), total, kept, folder_mtime, news, token,
        unchanged.archive_mtime(folder)))
    return Done(written, total, total + len(kept) + 2 * pages - len(written))  # 2: RSS and Atom a page


# What a build writes beside the pages and the archive: the feeds, index, tag files and the
# rest (bytes), the sitemap parts (each rendered as it is written), their names, the news.
_Outputs = tuple[dict[str, bytes], dict[str, Callable[[], bytes]], set[str], list[sitemaps.NewsItem]]


def _write_archive(config: Config, folder: Path, manifest: Manifest, catalog: Catalog, numbers: list[int],
                   size: int, archived: int, pages: int, written: Names, meanwhile: Callable[[], T]) -> T:
    """Write the archive pages ``numbers`` (the names of those written go to ``written``), a
    run of them at a time; ``meanwhile()`` runs while the first run renders."""
    run: list[ArchiveDoc] = []
    result: list[T] = []
    last = max(numbers, default=0)
    for number, page in catalog.seen_pages(numbers, size, archived):
        run += archive_docs(config, number, pages, page)
        if len(run) >= _DOCS_AT_ONCE or number == last:
            if result:
                written += write_docs(folder, manifest, run)
            else:
                done, got = write_docs_while(folder, manifest, run, meanwhile)
                written += done
                result.append(got)
            run = []
    return result[0] if result else meanwhile()


def _close_over(config: Config, store: Store, catalog: Catalog, changed: dict[str, SeedFile],
                gone: frozenset[str]) -> tuple[dict[str, SeedFile], set[str], dict[str, StoredStory]]:
    """The changed seeds, and every seed holding an entry of a story any of these holds (by
    the catalog: the stories they held; by the store: the stories their keys name), to a
    fixpoint; the ids of every story they held or hold; and the stored story of each of
    their keys that names one. Each round asks only about the seeds and stories it added (a
    batch of 10,000 seeds took six rounds, each asking again about all 40,000 keys)."""
    files = dict(changed)
    known: dict[str, StoredStory] = {}
    ids: set[str] = set()
    new_ids = catalog.stories_of_seeds([*files, *gone])
    added = list(files.values())
    zone = ZoneInfo(config.digest.timezone)
    while True:
        stored = store.keys_of(key for seed in added for entry in seed.entries for key in entry.keys)
        known.update(stored)
        new_ids |= {s.id for s in stored.values()}
        new_ids -= ids
        ids |= new_ids
        more = catalog.seeds_of_stories(new_ids) - files.keys() - gone
        if not more:
            return files, ids, known
        errors: list[InputError] = []
        seeds = config.seeds_dir
        added = []
        for name in sorted(more):
            try:
                files[name] = read_seed(seeds / name, zone)
                added.append(files[name])
            except SeedError as exc:  # changed since it was listed: the next build sees it
                errors.append(exc)
        if errors:
            raise InputErrors(errors)
        new_ids = catalog.stories_of_seeds(more)


def _archive_numbers(catalog: Catalog, moved: list[Story], edited: list[Story], size: int,
                     archived: int, archived_before: int, pages: int, resized: bool) -> set[int]:
    """The archive pages (numbers from 1) whose stories or links changed.

    ``moved``: stories removed or added. Every story seen after one moved a rank; a new story
    is seen last, but one that comes back (its seed restored) keeps the time it was first seen.
    """
    numbers: set[int] = set()
    first = min(moved, key=lambda s: (s.first_seen, s.seq)) if moved else None
    ranks = catalog.ranks(_seen_key(s) for s in [*edited, *([first] if first else [])])
    if first is not None:
        numbers.update(range(ranks[_seen_key(first)] // size + 1, pages + 1))
    for story in edited:
        rank = ranks[_seen_key(story)]
        if rank < archived:
            numbers.add(rank // size + 1)
    if resized:  # stories entered or left at the newest end; the newest page's links may change
        numbers.update(range(max(0, min(archived, archived_before) - 1) // size + 1, pages + 1))
    return {n for n in numbers if 1 <= n <= pages}


def _seen_key(story: Story) -> tuple[int, int]:
    return int(story.first_seen.timestamp()), story.seq


def _write_pages(config: Config, env: jinja2.Environment, folder: Path, manifest: Manifest,
                 stories: list[Story], meanwhile: Callable[[], T]) -> tuple[list[str], T]:
    """The pages of ``stories`` not on disk as the manifest remembers them (one process per
    core for many, as a complete build renders them); ``meanwhile()`` runs while they render."""
    if not stories:
        return [], meanwhile()
    pages = folder / STORIES
    pages.mkdir(parents=True, exist_ok=True)
    todo: Todo = []
    for story in stories:
        name = story.slug + ".html"
        try:
            st = os.stat(pages / name)
        except OSError:
            todo.append((name, story, None))
            continue
        known = manifest.remembered.get(name)
        stat = (st.st_size, st.st_mtime_ns)
        if known is not None and (known[1], known[2]) == stat and known[0] == page_key(story):
            continue
        todo.append((name, story, stat))
    done, result = render_all_while(pages, StoryPages(config, env), todo, False, temp_token(), meanwhile)
    written = [f"{STORIES}/{name}" for name in _commit_rendered(pages, done, manifest)]
    if written:
        sync_folder(pages)
    return written, result


def _commit_rendered(folder: Path, done: Rendered, manifest: Manifest) -> list[str]:
    """Rename the staged documents into place, remembering each; the names of those written.
    On an error, the ones not yet renamed are removed."""
    written = []
    committed = 0
    try:
        for name, tmp, key, size, mtime in done:
            if tmp is not None:
                commit(tmp, folder / name)
                written.append(name)
            manifest.pages[name] = (key, size, mtime)
            committed += 1
    except BaseException:
        discard(done[committed:])
        raise
    return written


def write_docs(folder: Path, manifest: Manifest, docs: list[ArchiveDoc]) -> list[str]:
    """Write the documents not on disk as the manifest remembers them (many: one process per
    core, as story pages are); return the names of those written."""
    return write_docs_while(folder, manifest, docs, _nothing)[0]


def write_docs_while(folder: Path, manifest: Manifest, docs: list[ArchiveDoc], meanwhile: Callable[[], T],
                     ) -> tuple[list[str], T]:
    """``write_docs``, and ``meanwhile()`` run while they render."""
    jobs: list[Job] = []
    for doc in docs:
        try:
            st = os.stat(folder / doc.name)
        except OSError:
            jobs.append((doc.name, functools.partial(_keyed, doc), None))
            continue
        known = manifest.remembered.get(doc.name)
        stat = (st.st_size, st.st_mtime_ns)
        if known is not None and known[0] == doc.key and (known[1], known[2]) == stat:
            manifest.pages[doc.name] = known
            continue
        jobs.append((doc.name, functools.partial(_keyed, doc), stat))
    parents = {(folder / name).parent for name, _, _ in jobs}
    for parent in parents:
        parent.mkdir(parents=True, exist_ok=True)
    done, result = render_jobs_while(folder, jobs, False, temp_token(), meanwhile,
                                     parallel_from=_DOCS_PARALLEL)
    written = _commit_rendered(folder, done, manifest)
    for parent in parents:
        sync_folder(parent)
    return written, result


def _keyed(doc: ArchiveDoc) -> tuple[bytes, str]:
    return doc.render(), doc.key


def _sitemaps(config: Config, catalog: Catalog, record: Record | None, total: int,
              touched: list[Story]) -> tuple[dict[str, Callable[[], bytes]], set[str]]:
    """The sitemap files to write (each rendered when called: at a million stories the parts
    are hundreds of megabytes), and the names of every sitemap file the site has now."""
    tag_pages = {f"tags/{slug}/index.html": catalog.tag_changed(slug) or EPOCH for slug, _ in catalog.tags()}
    pages = sitemaps.site_pages(config, catalog.last_changed() or EPOCH, tag_pages)
    if total + len(pages) <= sitemaps.block_size():
        urls = [(page_url(config, r.slug), r.lastmod) for r in catalog.urls()]
        return {"sitemap.xml": functools.partial(sitemaps.single, pages, urls)}, {"sitemap.xml"}
    size = sitemaps.block_size()
    blocks = catalog.seq_blocks(size)
    if record is not None and "sitemap-pages.xml" in record.files:
        due = {sitemaps.block_of(s.seq, size) for s in touched} & set(blocks)
    else:  # a site built anew, or one that outgrew one sitemap: every part is new
        due = set(blocks)

    def part(n: int) -> bytes:
        return sitemaps.urlset([(page_url(config, r.slug), r.lastmod)
                                for r in catalog.urls_by_seq((n - 1) * size + 1, n * size + 1)])

    files: dict[str, Callable[[], bytes]] = {sitemaps.part_name(n): functools.partial(part, n)
                                             for n in sorted(due)}
    lastmods = catalog.block_lastmods(blocks, size)
    index = sitemaps.split(config, pages, list(zip(blocks, lastmods, strict=True)))
    files.update({name: functools.partial(bytes, data) for name, data in index.items()})
    return files, {*files, *(sitemaps.part_name(n) for n in blocks)}


def _kept(record: Record, catalog: Catalog, maps: set[str]) -> dict[str, list[int]]:
    """The record's files a complete build would still write now (and, so, check later)."""
    live = {f"tags/{slug}/" for slug, _ in catalog.tags()}
    kept: dict[str, list[int]] = {}
    for name, stat in record.files.items():
        if name.startswith(unchanged.ARCHIVE):
            gone = True  # an older record's: the archive is trusted by its folder's mtime now
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

