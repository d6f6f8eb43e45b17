"""The incremental rebuild: after a few seeds changed, a build parses only the seeds those
changes touch, and writes what a complete build into an empty folder writes, file for file."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from syndicator.config import Config, load_config
from syndicator.model import Story
from syndicator.seeds import parse
from syndicator.site import incremental, sitemaps
from syndicator.site.build import BuildResult, build
from syndicator.state.store import Store
from tests.conftest import CLOCK, Project

WORDS = ["harbour", "council", "vote", "storm", "ferry", "snow", "road", "budget", "school",
         "bridge", "market", "river"]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def age(project: Project) -> None:
    """Seeds saved in the last minute get an mtime an hour back, each time a new one (a seed
    saved within 2 s of a build counts as changed again at the next: it could change unseen)."""
    old = time.time() - 3600
    for seed in project.seeds.iterdir():
        if seed.stat().st_mtime > time.time() - 60:
            os.utime(seed, (old, old))


def seed_text(rng: random.Random, n: int, *, tags: str | None = None, brief_of: str | None = None) -> str:
    lines = []
    if n % 3 == 0 or tags:
        lines += ["---", f"id: story-{n}", f"date: 2026-11-{1 + n % 25:02d}T{n % 24:02d}:00:00Z",
                  f"tags: {tags or rng.choice(['weather', 'Weather, roads', 'council', 'roads'])}", "---"]
    lines += [f"Lead {n}: the {rng.choice(WORDS)} {rng.choice(WORDS)}", "",
              f"First paragraph of {n}.", f"Second paragraph of {n}.", ""]
    lines += [f"Brief {n}.{b} on the {rng.choice(WORDS)}\nOne line of brief {n}.{b}.\n" for b in range(2)]
    if brief_of:
        lines += [brief_of, "A follow-up line.", ""]
    return "\n".join(lines)


def lead_of(project: Project, name: str) -> str:
    text = (project.seeds / name).read_text()
    body = text.split("---\n")[-1] if text.startswith("---") else text
    return body.splitlines()[0]


@pytest.fixture
def newsroom(project: Project, clock: datetime) -> Iterator[tuple[Project, Config, Store]]:
    text = project.config.read_text().replace("limit = 50", "limit = 3\narchive_size = 2")
    project.write_config(text)
    for seed in project.seeds.iterdir():
        seed.unlink()
    rng = random.Random(5)
    for n in range(12):
        project.seed(f"{n:03d}_seed.txt", seed_text(rng, n))
    age(project)
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        build(config, store, clock)
        yield project, config, store
    finally:
        store.close()


def complete(config: Config, store: Store, now: datetime, where: Path) -> dict[str, bytes]:
    build(config, store, now, where)
    return files(where)


def assert_as_complete(config: Config, store: Store, now: datetime, where: Path) -> None:
    """The folder holds what a complete build into an empty folder writes, and beyond it only
    what such a build would leave in place (pages of stories gone, files of emptied tags or
    archive pages)."""
    done, full = files(config.output_dir), complete(config, store, now, where)
    assert [name for name in full if done.get(name) != full[name]] == []
    extra = set(done) - set(full)
    assert all(name.split("/")[0] in ("stories", "archive", "tags") or name.startswith("sitemap-")
               for name in extra), extra


Change = Callable[[Project, random.Random, int], None]


def edit_lead(project: Project, rng: random.Random, n: int) -> None:
    path = rng.choice(sorted(project.seeds.iterdir()))
    path.write_text(path.read_text().replace("Second paragraph", f"Second, edited ({n}) paragraph", 1))


def add_seed(project: Project, rng: random.Random, n: int) -> None:
    project.seed(f"{100 + n:03d}_new.txt", seed_text(rng, 100 + n))


def add_linked_seed(project: Project, rng: random.Random, n: int) -> None:
    """A new file repeats an older file's lead as a brief: one story in two files."""
    other = rng.choice(sorted(project.seeds.iterdir())).name
    project.seed(f"{100 + n:03d}_linked.txt", seed_text(rng, 100 + n, brief_of=lead_of(project, other)))


def remove_seed(project: Project, rng: random.Random, n: int) -> None:
    rng.choice(sorted(project.seeds.iterdir())).unlink()


def restore_seed(project: Project, rng: random.Random, n: int) -> None:
    """A removed file comes back: its stories return with the times they were first seen,
    between stories seen after them, not at the newest end."""
    path = rng.choice(sorted(project.seeds.iterdir()))
    text = path.read_text()
    path.unlink()
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        build(config, store, CLOCK + timedelta(hours=n, minutes=30))  # between the test's builds
    finally:
        store.close()
    age(project)
    path.write_text(text)


def retag(project: Project, rng: random.Random, n: int) -> None:
    path = rng.choice(sorted(p for p in project.seeds.iterdir() if p.read_text().startswith("---")))
    head, _, rest = path.read_text().partition("tags: ")
    old, _, rest = rest.partition("\n")
    new = rng.choice([t for t in ("Council", "schools", "weather", "roads, Weather") if t != old])
    path.write_text(f"{head}tags: {new}\n{rest}")


def correct(project: Project, rng: random.Random, n: int) -> None:
    path = rng.choice(sorted(p for p in project.seeds.iterdir() if p.read_text().startswith("---")))
    text = path.read_text().replace("First paragraph", "First corrected paragraph", 1)
    path.write_text(text.replace("---\n", f"---\ncorrection: A fix ({n}).\n", 1) if "correction:" not in text
                    else text)


def drop_brief(project: Project, rng: random.Random, n: int) -> None:
    path = rng.choice(sorted(project.seeds.iterdir()))
    blocks = path.read_text().rstrip("\n").split("\n\n")
    if len(blocks) > 3:
        path.write_text("\n\n".join(blocks[:-1]) + "\n")


def touch(project: Project, rng: random.Random, n: int) -> None:
    path = rng.choice(sorted(project.seeds.iterdir()))
    os.utime(path, (time.time() - 120, time.time() - 120))


CHANGES: list[Change] = [edit_lead, add_seed, add_linked_seed, remove_seed, retag, correct, drop_brief, touch,
                         restore_seed]


@pytest.mark.parametrize("max_urls", [50_000, 9], ids=["one-sitemap", "sitemap-parts"])
def test_after_each_kind_of_change_the_output_is_a_complete_builds(
        newsroom: tuple[Project, Config, Store], clock: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, max_urls: int) -> None:
    project, config, store = newsroom
    monkeypatch.setattr(sitemaps, "MAX_URLS", max_urls)
    build(config, store, clock, full=True)  # the first build's sitemaps, at this MAX_URLS
    rng = random.Random(max_urls)
    parsed: list[Path] = []
    done: list[incremental.Done | None] = []
    real_read, real_rebuild = parse.read_seed, incremental.rebuild

    def counted(path: Path, zone: object) -> object:
        parsed.append(path)
        return real_read(path, zone)  # type: ignore[arg-type]

    def spied(*args: object, **kwargs: object) -> incremental.Done | None:
        done.append(real_rebuild(*args, **kwargs))  # type: ignore[arg-type]
        return done[-1]

    monkeypatch.setattr(incremental, "read_seed", counted)
    monkeypatch.setattr(incremental, "rebuild", spied)
    for n, change in enumerate(CHANGES * 3):
        change(project, rng, n)
        if n % 4 != 3:
            age(project)  # else a seed saved just now: seen as changed, and next time again
        now = clock + timedelta(hours=n + 1)
        parsed.clear()
        done.clear()
        result: BuildResult = build(config, store, now)
        assert done and done[0] is not None, change.__name__  # not a complete build
        assert len(parsed) < len(list(project.seeds.iterdir())), (change.__name__, parsed)
        assert_as_complete(config, store, now, tmp_path / f"full-{n}")
        assert result.stories == len(list((tmp_path / f"full-{n}" / "stories").iterdir()))


def test_an_archive_document_removed_by_hand_is_written_again(
        newsroom: tuple[Project, Config, Store], clock: datetime, tmp_path: Path) -> None:
    """The archive is trusted by its folder's mtime, as stories/ is: a document taken out of
    it is seen, after a complete build and after an incremental one."""
    project, config, store = newsroom
    rng = random.Random(7)
    for n in range(2):
        if n:
            edit_lead(project, rng, n)
            age(project)
            build(config, store, clock + timedelta(hours=n))
        doc = sorted((config.output_dir / "archive").iterdir())[n]
        doc.unlink()
        now = clock + timedelta(hours=n, minutes=30)
        build(config, store, now)
        assert doc.exists()
        assert_as_complete(config, store, now, tmp_path / f"full-{n}")


@pytest.mark.parametrize("recent_max", [20_000, 1], ids=["kept-recent", "folded-into-shards"])
def test_an_incremental_rebuild_remembers_its_pages_without_rewriting_the_shards(
        newsroom: tuple[Project, Config, Store], clock: datetime, monkeypatch: pytest.MonkeyPatch,
        recent_max: int) -> None:
    """Its pages go into the manifest's small file of recent entries (the shards of a million
    pages are 7 MB each), which a complete build reads: it renders none of them again."""
    from syndicator.site import manifest, pages
    from syndicator.site.manifest import manifest_path

    project, config, store = newsroom
    monkeypatch.setattr(manifest, "RECENT_MAX", recent_max)
    state = manifest_path(config.output_dir, config.state_dir)
    shards_before = {p.name: p.stat().st_mtime_ns for p in state.glob("[0-9a-f][0-9a-f].bin")}
    edit_lead(project, random.Random(3), 1)
    age(project)
    build(config, store, clock + timedelta(hours=1))
    recent = state / manifest.RECENT
    shards_after = {p.name: p.stat().st_mtime_ns for p in state.glob("[0-9a-f][0-9a-f].bin")}
    if recent_max > 1:
        assert recent.exists() and shards_after == shards_before
    else:
        assert not recent.exists() and shards_after != shards_before
    rendered: list[str] = []
    real = pages.StoryPages.render

    def counted(self: pages.StoryPages, story: Story) -> bytes:
        rendered.append(story.slug)
        return real(self, story)

    monkeypatch.setattr(pages.StoryPages, "render", counted)
    result = build(config, store, clock + timedelta(hours=2), full=True)  # checks every page
    assert rendered == [], rendered
    assert not any(name.startswith("stories/") for name in result.written)


def test_catalog_ranks_of_many_stories_are_each_ones_rank(tmp_path: Path) -> None:
    """Several ranks counted in one walk (from the nearer end, then story to story) agree with
    each counted alone, ties in first-seen time and stories the catalog lacks included."""
    from datetime import UTC

    from syndicator.site.catalog import Catalog

    rng = random.Random(9)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    stories = [Story(id=f"s{n}", slug=f"s-{n}", title=f"Story {n}", paragraphs=(), is_lead=True,
                     published=when, first_seen=when + timedelta(seconds=rng.randrange(40)), seq=n + 1,
                     author=None, url=None, tags=(), path=Path("x.txt"), line=1)
               for n in range(120)]
    catalog = Catalog.open(tmp_path, Catalog.write(tmp_path, {}, stories, {}))
    assert catalog is not None
    try:
        base = int(when.timestamp())
        for _ in range(30):
            keys = [(base + rng.randrange(-2, 42), rng.randrange(0, 125)) for _ in range(rng.randrange(1, 6))]
            assert catalog.ranks(keys) == {key: catalog.rank(*key) for key in keys}
            assert all(catalog.rank(*key) == sum(1 for s in stories
                                                 if (int(s.first_seen.timestamp()), s.seq) < key)
                       for key in keys)
    finally:
        catalog.close()


def test_the_catalogs_sitemap_blocks_are_those_holding_a_story_after_any_change(tmp_path: Path) -> None:
    """The blocks whose last change is remembered are not looked up again: after stories
    come, go and change (a block emptied, one filled past a gap), each answer is the blocks
    that hold a story, counted from the stories themselves."""
    from datetime import UTC

    from syndicator.site.catalog import Catalog

    rng = random.Random(21)
    when = datetime(2026, 1, 1, tzinfo=UTC)

    def story(seq: int, minute: int = 0) -> Story:
        return Story(id=f"s{seq}", slug=f"s-{seq}", title=f"Story {seq}", paragraphs=(), is_lead=True,
                     published=when, first_seen=when, seq=seq, author=None, url=None, tags=(),
                     path=Path("x.txt"), line=1, revised=when + timedelta(minutes=minute) if minute else None)

    held = {seq: story(seq) for seq in rng.sample(range(1, 60), 25)}
    catalog = Catalog.open(tmp_path, Catalog.write(tmp_path, {}, list(held.values()), {}))
    assert catalog is not None
    try:
        for round_ in range(40):
            blocks = catalog.seq_blocks(4)
            assert blocks == sorted({(seq - 1) // 4 + 1 for seq in held}), round_
            catalog.block_lastmods(blocks, 4)  # remembered, as a build's sitemaps do
            removed = rng.sample(sorted(held), min(len(held), rng.randrange(4)))
            if held and rng.random() < 0.3:  # a whole block emptied
                block = rng.choice(blocks)
                removed += [seq for seq in held if (seq - 1) // 4 + 1 == block and seq not in removed]
            fresh = [story(seq, round_) for seq in {*rng.sample(range(1, 120), rng.randrange(4)),
                                                    *rng.sample(sorted(held), min(len(held), 2))}
                     if seq not in removed]
            catalog.apply({}, [], {}, [], [held.pop(seq).id for seq in removed], fresh, [])
            held.update((s.seq, s) for s in fresh)
    finally:
        catalog.close()


def test_a_chain_of_shared_stories_is_followed_to_its_end(
        newsroom: tuple[Project, Config, Store], clock: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Seed Y repeats X's lead, and X repeats 000's: a change to Y re-resolves all three
    (one more round each; each round asks the store only about the seeds it added), and the
    stories of the farthest, 000's, keep their ids and times."""
    project, config, store = newsroom
    rng = random.Random(11)
    project.seed("200_x.txt", seed_text(rng, 200, brief_of=lead_of(project, "000_seed.txt")))
    project.seed("201_y.txt", seed_text(rng, 201, brief_of=lead_of(project, "200_x.txt")))
    age(project)
    build(config, store, clock + timedelta(hours=1))
    y = project.seeds / "201_y.txt"
    y.write_text(y.read_text().replace("A follow-up line.", "A longer follow-up line."))
    age(project)
    parsed: list[str] = []
    asked: list[int] = []
    real_read, real_keys = parse.read_seed, Store.keys_of

    def counted(path: Path, zone: object) -> object:
        parsed.append(path.name)
        return real_read(path, zone)  # type: ignore[arg-type]

    def keys(self: Store, wanted: object) -> object:
        listed = list(wanted)  # type: ignore[call-overload]
        asked.append(len(listed))
        return real_keys(self, listed)

    monkeypatch.setattr(incremental, "read_seed", counted)
    monkeypatch.setattr(Store, "keys_of", keys)
    now = clock + timedelta(hours=2)
    build(config, store, now)
    assert parsed == ["201_y.txt", "200_x.txt", "000_seed.txt"]  # Y changed; then X, then 000
    assert len(asked) == 3 and max(asked) <= 8, asked  # Y's keys, then X's, then 000's: a few each
    monkeypatch.undo()
    assert_as_complete(config, store, now, tmp_path / "full")
