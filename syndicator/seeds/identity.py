"""Turn the entries of every seed file into stories with stable ids and publication times."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError

from syndicator.config import Config
from syndicator.errors import InputError, InputErrors, SeedError
from syndicator.gcpause import paused_gc
from syndicator.model import Entry, SeedFile, Story, content_digest, story_id, story_slug
from syndicator.seeds.parse import SeedFiles, read_seeds
from syndicator.state.store import NamesTaken, Store, StoredStory

_ATTEMPTS = 5


@dataclass
class _Group:
    entries: list[Entry]
    stored: list[StoredStory]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, node: str) -> str:
        parent = self.parent.setdefault(node, node)
        while parent != self.parent[parent]:
            self.parent[parent] = self.parent[self.parent[parent]]
            parent = self.parent[parent]
        self.parent[node] = parent
        return parent

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def seed_cache_path(config: Config) -> Path:
    """The parsed-seed cache: in the project's state/ folder, beside the build manifest."""
    where = hashlib.blake2b(str(config.seeds_dir.resolve()).encode("utf-8", "surrogatepass"),
                            digest_size=10).hexdigest()
    return config.state_dir / f"seeds-{where}"


def read_all(config: Config, *, cache: bool = False) -> tuple[SeedFiles, list[InputError]]:
    """Every seed that parses, and every problem with the others (a missing folder names the config).

    With ``cache``, seeds unchanged since the last such read come from the parsed-seed cache.
    """
    try:
        return read_seeds(config.seeds_dir, ZoneInfo(config.digest.timezone),
                          seed_cache_path(config) if cache else None)
    except SeedError as exc:
        if exc.key != "paths.seeds":
            raise
        where = SeedError(f"{exc.message}: {exc.path}", path=config.source,
                          line=config.line_of("paths.seeds"), key="paths.seeds")
        return SeedFiles(), [where]


def load_files(config: Config, *, cache: bool = True) -> SeedFiles:
    """Parse every seed; raise every problem at once before anything is written.

    ``cache``: use the parsed-seed cache in the project's state/ folder; the caller saves it
    (``files.save_cache()``) once its work has succeeded.
    """
    with paused_gc():
        files, errors = read_all(config, cache=cache)
    if errors:
        raise InputErrors(errors)
    return files


def count_stories(files: list[SeedFile]) -> int:
    """How many distinct stories the files hold (the same story in two files counts once)."""
    return len(_group([e for f in files for e in f.entries], {}))


Sources = dict[str, tuple[str, ...]]  # story id -> the names of the seed files holding it


@dataclass
class NewTimes:
    """First-seen times for the new stories of several resolves that make one build (a build
    in batches): the build's first new story is first seen at ``base``, each next one a
    second earlier, as if the batches were one resolve."""

    base: int
    given: int = 0  # new stories given a time so far


def resolve(files: list[SeedFile], store: Store, now: datetime, *, persist: bool = True,
            sources: Sources | None = None, partial: bool = False,
            times: NewTimes | None = None, known: dict[str, StoredStory] | None = None) -> list[Story]:
    """One story per identity, newest first; new stories are recorded unless ``persist`` is false.

    ``sources``: filled with the seed files each story's entries come from. ``partial``: the
    files are some of the seeds, holding every entry of each story they touch (the caller
    closed them over shared stories): the store is asked only for their keys, not for all.
    ``times``: where this resolve's new stories' first-seen times go on from (else from now).
    ``known``: with ``partial``, the stored story of each of the files' keys that names one,
    as the caller just asked the store (``Store.keys_of``): asked once, not twice.

    Another process (a second build, a send) may record the same new stories (or give a page
    name to another story) between our read and our write: then the write fails on a unique
    key, and we read again and use theirs.
    """
    with paused_gc():
        for _attempt in range(_ATTEMPTS - 1):
            try:
                return _resolve(files, store, now, persist, sources, partial, times, known)
            except (IntegrityError, NamesTaken):
                known = None  # another process recorded stories meanwhile: ask again
                continue
        return _resolve(files, store, now, persist, sources, partial, times, None)


class _StoredSlugs:
    """Page names taken, asked of the store one at a time (a partial resolve's few stories)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.owners: dict[str, str | None] = {}

    def get(self, slug: str, default: str) -> str:
        if slug not in self.owners:
            self.owners[slug] = self.store.slug_owner(slug)
        owner = self.owners[slug]
        return default if owner is None else owner

    def __setitem__(self, slug: str, owner: str) -> None:
        self.owners[slug] = owner

    def ask(self, slugs: Iterable[str]) -> None:
        """Ask the store about many names at once (a build in batches names 100,000 stories a
        batch: a query each took a minute)."""
        wanted = [slug for slug in slugs if slug not in self.owners]
        owners = self.store.slug_owners(wanted)
        for slug in wanted:
            self.owners[slug] = owners.get(slug)


def _resolve(files: list[SeedFile], store: Store, now: datetime, persist: bool,
             sources: Sources | None, partial: bool, times: NewTimes | None,
             known: dict[str, StoredStory] | None) -> list[Story]:
    entries = [e for f in files for e in f.entries]
    taken: _StoredSlugs | None = None
    if partial:
        if known is None:
            known = store.keys_of(key for entry in entries for key in entry.keys)
        latest = store.latest_first_seen()
        taken = _StoredSlugs(store)
    else:
        known = store.story_keys()
        latest = max((s.first_seen for s in known.values()), default=None)
    groups = _group(entries, known)
    fresh = sum(1 for g in groups if not g.stored)
    # New stories are newer than every stored one, so no two share a time even when
    # builds follow each other within seconds (or this machine's now is behind).
    base = int(now.timestamp())
    if times is not None:
        base = times.base - times.given
    elif latest is not None:
        base = max(base, latest + fresh)
    new: list[tuple[str, int]] = []
    aliases: dict[tuple[str, str], None] = {}  # ordered and de-duplicated
    resolved: list[tuple[_Group, str, int, int | None, str | None]] = []
    digests: dict[str, str] = {}
    revised: dict[str, int | None] = {}
    revisions: list[tuple[str, str, int | None]] = []
    for group in groups:
        best = _best(group.entries)[0]
        digest = content_digest(best.title, best.paragraphs, best.correction)
        if group.stored:
            oldest = min(group.stored, key=lambda s: s.seq)
            public_id, first_seen, seq, slug = oldest.id, oldest.first_seen, oldest.seq, oldest.slug
            revised[public_id] = oldest.revised_at
            if oldest.digest != digest:
                # A correction: its text changed since it was recorded (a store from before
                # digests were kept records the text as it is now, no correction).
                when = None if oldest.digest is None else max(int(now.timestamp()), first_seen + 1)
                revised[public_id] = when if when is not None else oldest.revised_at
                revisions.append((public_id, digest, revised[public_id]))
        else:
            # Stories first seen together keep file order, one second apart, lead first.
            public_id, first_seen, seq, slug = story_id(group.entries[0].keys[0]), base - len(new), None, None
            new.append((public_id, first_seen))
        digests[public_id] = digest
        for entry in group.entries:
            for key in entry.keys:
                if key not in known:
                    aliases[(key, public_id)] = None
        resolved.append((group, public_id, first_seen, seq, slug))
    slugs, named = _name_pages(resolved, known, taken)
    seqs = _record(store, [(i, f, slugs[i], digests[i]) for i, f in new], list(aliases), named, persist)
    if times is not None:
        times.given += len(new)
    if persist:
        store.revise(revisions)
    stories = [_story(g, i, f, seq if seq is not None else seqs[i], slug or slugs[i], revised.get(i))
               for g, i, f, seq, slug in resolved]
    stories.sort(key=lambda s: (-s.published.timestamp(), s.seq))
    if sources is not None:
        sources.clear()
        for group, public_id, _, _, _ in resolved:
            sources[public_id] = tuple(dict.fromkeys(e.path.name for e in group.entries))
    return stories


def _name_pages(resolved: list[tuple[_Group, str, int, int | None, str | None]],
                known: dict[str, StoredStory], stored: _StoredSlugs | None = None,
                ) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """A page name (slug) for every story that has none stored, by id: one no other story holds;
    and (slug, id) of those among them already recorded (to record their names too).

    A name, once recorded, is the story's for good: it is in feeds and mails already sent.
    A story gets today's name (``story_slug``: the title's stem and 8 hex of its id) unless
    another story holds it, stored or named here first; then the shortest longer suffix that
    is free (``_longer_slugs``). Stories already recorded (by a syndicator that kept no names)
    are named before new ones, oldest first, and new ones in the order they are recorded, so
    each name depends only on the store and the seeds: a dry run names them as a build will.
    """
    unnamed = [(seq, n) for n, (_, _, _, seq, slug) in enumerate(resolved) if slug is None]
    if not unnamed:  # a rebuild: every story has its stored name
        return {}, []
    taken: dict[str, str] | _StoredSlugs = (
        stored if stored is not None else {s.slug: s.id for s in known.values() if s.slug is not None})
    # Recorded (seq) before new (None), each in order; the index keeps new ones in file order.
    unnamed.sort(key=lambda u: (u[0] is None, u[0] or 0, u[1]))
    wished: dict[int, str] = {}
    for _, n in unnamed:
        entry = _best(resolved[n][0].entries)[0]
        wished[n] = story_slug(entry.title, resolved[n][1], entry.slug_stem)
    if isinstance(taken, _StoredSlugs):
        taken.ask(wished.values())
    slugs: dict[str, str] = {}
    named: list[tuple[str, str]] = []
    for seq, n in unnamed:
        group, public_id = resolved[n][0], resolved[n][1]
        entry = _best(group.entries)[0]
        slug = wished[n]
        if taken.get(slug, public_id) != public_id:
            slug = next(s for s in _longer_slugs(entry.slug_stem, public_id)
                        if taken.get(s, public_id) == public_id)
        taken[slug] = public_id
        slugs[public_id] = slug
        if seq is not None:
            named.append((slug, public_id))
    return slugs, named


def _longer_slugs(stem: str, public_id: str) -> Iterator[str]:
    """The page names to try, in order, when a story's own is another story's: the same stem
    and the same 8 hex, then one more hex at a time of the id's last group (its 12 hex) and on
    into a SHA-256 of the id; then, never needed (it would take a 256-bit collision), a counter."""
    digits = public_id.rsplit("-", 1)[-1] + hashlib.sha256(public_id.encode("utf-8")).hexdigest()
    for length in range(9, len(digits) + 1):
        yield f"{stem}-{digits[:length]}"
    for n in itertools.count(2):
        yield f"{stem}-{digits}-{n}"


def _record(store: Store, new: list[tuple[str, int, str, str]], aliases: list[tuple[str, str]],
            named: list[tuple[str, str]], persist: bool) -> dict[str, int]:
    if persist:
        return store.add_stories(new, aliases, named) if new or aliases or named else {}
    top = store.max_seq()
    return {story: top + n for n, (story, _, _, _) in enumerate(new, start=1)}


def _group(entries: list[Entry], known: dict[str, StoredStory]) -> list[_Group]:
    """Entries that share a key, or a stored story, are one story."""
    groups = _group_known(entries, known)
    return groups if groups is not None else _group_linked(entries, known)


def _group_known(entries: list[Entry], known: dict[str, StoredStory]) -> list[_Group] | None:
    """The groups of a rebuild in which every key is stored and names one story per entry
    (edits kept every headline): then the groups are the stored stories, which is what
    ``_group_linked`` finds too (a key names one stored story, so entries sharing a key share
    it), at a third of the cost. None when any entry is otherwise."""
    groups: dict[str, _Group] = {}
    for entry in entries:
        keys = entry.keys
        stored = known.get(keys[0])
        if stored is None:
            return None
        for key in keys[1:]:
            other = known.get(key)
            if other is None or other.id != stored.id:
                return None
        group = groups.get(stored.id)
        if group is None:
            groups[stored.id] = _Group([entry], [stored])
        else:
            group.entries.append(entry)
    return list(groups.values())


def _group_linked(entries: list[Entry], known: dict[str, StoredStory]) -> list[_Group]:
    """Connected entries (through a shared key or a stored story) as groups, by union-find."""
    uf = _UnionFind()
    for entry in entries:
        keys = entry.keys
        for key in keys:
            uf.union(keys[0], key)
            if key in known:
                uf.union(keys[0], "stored:" + known[key].id)
    groups: dict[str, _Group] = {}
    for entry in entries:
        group = groups.setdefault(uf.find(entry.keys[0]), _Group([], []))
        group.entries.append(entry)
        for key in entry.keys:
            stored = known.get(key)
            if stored is not None and stored not in group.stored:
                group.stored.append(stored)
    return list(groups.values())


def _best(entries: list[Entry]) -> tuple[Entry, datetime | None]:
    """The entry a story shows (the richest), and its date (the richest entry's that has one)."""
    if len(entries) == 1:  # most stories: nothing to choose
        return entries[0], entries[0].date
    best = max(entries, key=lambda e: e.richness)  # max keeps the first of equals
    dated = next((e.date for e in sorted(entries, key=lambda e: e.richness, reverse=True)
                  if e.date is not None), None)
    return best, dated


def _story(group: _Group, public_id: str, first_seen: int, seq: int, slug: str,
           revised: int | None) -> Story:
    best, dated = _best(group.entries)
    seen = datetime.fromtimestamp(first_seen, UTC)
    return Story(
        id=public_id,
        slug=slug,
        title=best.title,
        paragraphs=best.paragraphs,
        is_lead=best.is_lead,
        published=dated.astimezone(UTC) if dated else seen,
        first_seen=seen,
        seq=seq,
        author=best.author,
        url=best.url,
        tags=best.tags,
        path=best.path,
        line=best.line,
        revised=None if revised is None else datetime.fromtimestamp(revised, UTC),
        correction=best.correction,
    )


def load_stories(config: Config, store: Store, now: datetime, *, persist: bool = True) -> list[Story]:
    """Every story, newest first, with ids and times fixed by the store."""
    # Without persist (a dry run) nothing is written, the parsed-seed cache included.
    files = load_files(config, cache=persist)
    stories = resolve(files, store, now, persist=persist)
    files.save_cache()
    return stories
