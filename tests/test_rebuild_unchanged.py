"""The no-change rebuild: when no seed changed, a build writes only what the clock moves, and its
output is always what a complete build writes; any change since takes the complete build."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import Config, load_config
from syndicator.mail import workers
from syndicator.site import build as build_mod
from syndicator.site import incremental, unchanged
from syndicator.site.build import build
from syndicator.site.manifest import manifest_path
from syndicator.state.store import Store
from tests.conftest import FaultyServer, Project

SECRET = b"test-secret-for-signing-tokens-0123456789"


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def age(project: Project) -> None:
    """Seeds written an hour ago, as an archive's are (a seed written within 2 s of a build is
    never trusted to be unchanged: an edit in the same mtime tick could keep its size)."""
    old = time.time() - 3600
    for seed in project.seeds.iterdir():
        os.utime(seed, (old, old))


@pytest.fixture
def newsroom(project: Project, clock: datetime) -> Iterator[tuple[Config, Store]]:
    project.seed("010_recent.txt", "Harbour reopens after the storm\n\nBoats went out at dawn.\n\n"
                 "Ferry times change\n\nThe winter timetable starts on Monday.\n")
    project.seed("020_recent.txt", "---\ndate: 2026-11-24T18:00:00Z\ntags: weather\n---\n"
                 "Snow on the pass\n\nThe road is closed until noon.\n")
    age(project)
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        build(config, store, clock)
        yield config, store
    finally:
        store.close()


def complete(config: Config, store: Store, now: datetime, where: Path) -> dict[str, bytes]:
    """What a complete build into an empty folder writes at ``now``."""
    build(config, store, now, where)
    return files(where)


def test_no_seed_changed_writes_only_what_the_clock_moves_and_parses_no_seed(
        newsroom: tuple[Config, Store], clock: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = newsroom
    before = files(config.output_dir)

    def no_parsing(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a seed was parsed")

    monkeypatch.setattr(build_mod, "load_files", no_parsing)
    again = build(config, store, clock + timedelta(hours=1))
    assert again.written == () and again.stories == 11
    assert again.unchanged == len(before)
    assert files(config.output_dir) == before
    # Three days on, the news sitemap has let the stories go; nothing else moved.
    later = build(config, store, clock + timedelta(days=3))
    assert later.written == ("news-sitemap.xml",)
    assert b"Snow on the pass" not in (config.output_dir / "news-sitemap.xml").read_bytes()
    monkeypatch.undo()
    assert files(config.output_dir) == complete(config, store, clock + timedelta(days=3), tmp_path / "full")


def _edit_seed(project: Project, config: Config) -> None:
    path = project.seeds / "010_recent.txt"
    path.write_text(path.read_text() + "\nA late paragraph on the harbour.\n")


def _remove_seed(project: Project, config: Config) -> None:
    (project.seeds / "020_recent.txt").unlink()


def _add_seed(project: Project, config: Config) -> None:
    project.seed("030_new.txt", "Council approves the budget\n\nThe vote was close.\n")
    age(project)  # even a new seed as old as the rest is seen: the listing changed


def _remove_feed(project: Project, config: Config) -> None:
    (config.output_dir / "rss.xml").unlink()


def _remove_page(project: Project, config: Config) -> None:
    next((config.output_dir / "stories").iterdir()).unlink()


def _truncate_page(project: Project, config: Config) -> None:
    page = next((config.output_dir / "stories").iterdir())
    st = page.stat()
    page.write_bytes(b"")
    os.utime(page, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: the size tells


def _new_template(project: Project, config: Config) -> None:
    templates = project.root / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "story.html").write_text(
        '{% extends "base.html" %}\n'
        '{% block body %}<h1>{{ story.title }}</h1> (new template){% endblock %}\n')


def _lose_store(project: Project, config: Config) -> None:
    Path(config.store_url.removeprefix("sqlite:///")).unlink()


CHANGES: dict[str, Callable[[Project, Config], None]] = {
    "a seed edited": _edit_seed, "a seed removed": _remove_seed, "a seed added": _add_seed,
    "a feed removed": _remove_feed, "a story page removed": _remove_page,
    "a template changed": _new_template,
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_any_change_since_the_last_build_is_built_as_a_complete_build_would(
        newsroom: tuple[Config, Store], project: Project, clock: datetime, tmp_path: Path,
        change: str) -> None:
    config, store = newsroom
    before = files(config.output_dir)
    CHANGES[change](project, config)
    then = clock + timedelta(hours=1)
    build(config, store, then)
    after = files(config.output_dir)
    assert after != before or change in {"a feed removed", "a story page removed"}
    full = complete(config, store, then, tmp_path / "full")
    if change == "a seed removed":  # its stories leave the feeds; their pages stay (permalinks)
        kept = {name for name in after.keys() - full.keys() if name.startswith("stories/")}
        assert len(kept) == 1 and b"Snow on the pass" in after[kept.pop()]
        after = {name: data for name, data in after.items() if name in full}
    assert after == full
    if change == "a template changed":
        assert any(b"(new template)" in data for name, data in after.items() if name.startswith("stories/"))


def test_a_page_edited_in_place_is_put_right_by_a_full_build(
        newsroom: tuple[Config, Store], project: Project) -> None:
    config, _store = newsroom
    before = files(config.output_dir)
    _truncate_page(project, config)
    result = CliRunner().invoke(cli, ["build", "--full"])
    assert result.exit_code == 0, result.output
    after = files(config.output_dir)
    del before["news-sitemap.xml"], after["news-sitemap.xml"]  # the command runs on today's clock
    assert after == before


def test_a_lost_store_is_filled_again(newsroom: tuple[Config, Store], project: Project,
                                      clock: datetime) -> None:
    config, store = newsroom
    store.close()
    _lose_store(project, config)
    fresh = Store.open(config.store_url)
    try:
        result = build(config, fresh, clock + timedelta(hours=1))
        assert result.stories == 11
        assert len({s.id for s in fresh.story_keys().values()}) == 11  # the stories were recorded again
    finally:
        fresh.close()


def test_an_edit_in_the_same_mtime_tick_that_keeps_the_size_is_seen(
        project: Project, clock: datetime) -> None:
    config = load_config(project.config)
    path = project.seed("010_fresh.txt", "Bridge opens\n\nCars crossed at nine.\n")
    store = Store.open(config.store_url)
    try:
        build(config, store, clock)
        st = path.stat()
        path.write_text("Bridge shuts\n\nCars crossed at nine.\n")  # same size
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        build(config, store, clock + timedelta(minutes=1))
    finally:
        store.close()
    assert b"Bridge shuts" in (config.output_dir / "rss.xml").read_bytes()


def test_a_missing_edition_page_is_written_again(newsroom: tuple[Config, Store], faulty_smtp: FaultyServer,
                                                 project: Project, clock: datetime) -> None:
    config, store = newsroom
    project.port = faulty_smtp.port
    project.write_config()
    config = load_config(project.config)
    workers.send(config, store, clock, password=None, secret=SECRET)
    build(config, store, clock + timedelta(minutes=5))  # the record now knows the edition's files
    (page,) = [p for p in (config.output_dir / "digests").glob("*.html") if p.name != "index.html"]
    mailed = page.read_bytes()
    page.unlink()
    result = build(config, store, clock + timedelta(hours=1))
    assert str(page.relative_to(config.output_dir)) in result.written
    assert page.read_bytes() == mailed


def test_a_failed_build_leaves_no_record_to_skip_by(newsroom: tuple[Config, Store], project: Project,
                                                    clock: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = newsroom
    record = manifest_path(config.output_dir, config.state_dir) / unchanged.RECORD
    assert record.exists()
    _edit_seed(project, config)
    age(project)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(build_mod, "write_atomic", broken)
    monkeypatch.setattr(incremental, "write_atomic", broken)  # the rebuild of one changed seed
    with pytest.raises(OSError):
        build(config, store, clock + timedelta(hours=1))
    assert not record.exists()
    monkeypatch.undo()
    build(config, store, clock + timedelta(hours=2))
    assert b"A late paragraph" in (config.output_dir / "rss.xml").read_bytes()


def test_the_remembered_news_stories_give_the_news_sitemap_of_any_later_build(
        project: Project, clock: datetime) -> None:
    """The record keeps the newest 1,000 shown and the future-dated: later windows agree."""
    from syndicator.model import Story
    from syndicator.site import sitemaps

    config = load_config(project.config)
    stories = [Story(id=f"urn:uuid:{n:08d}", slug=f"story-{n:08d}", title=f"Story {n}", paragraphs=(),
                     is_lead=True, published=clock + timedelta(minutes=n - 1500),
                     first_seen=clock, seq=n, author=None, url=None, tags=(), path=project.seeds, line=1)
               for n in range(3000)]
    kept = sitemaps.news_candidates(config, stories, clock)
    assert len(kept) < 2500
    for later in (timedelta(0), timedelta(minutes=7), timedelta(hours=30), timedelta(days=3)):
        then = clock + later
        assert sitemaps.render_news(config, kept, then) == sitemaps._news(config, stories, then)


def test_a_revision_another_writer_records_is_seen_though_no_count_moves(
        newsroom: tuple[Config, Store], clock: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's state is its change counter: a write that moves no count and no newest time
    (a digest rewritten, no new row) still makes the next build a complete one."""
    config, store = newsroom
    before = unchanged.store_state(store)
    stored = next(iter(store.story_keys().values()))
    # A digest written anew, no revision time (as for a story an older syndicator recorded).
    store.revise([(stored.id, "0" * 32, None)])
    assert unchanged.store_state(store) != before
    complete_builds: list[object] = []
    real = build_mod.load_files  # type: ignore[attr-defined]

    def counted(*args: object, **kwargs: object) -> object:
        complete_builds.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(build_mod, "load_files", counted)
    build(config, store, clock + timedelta(hours=1))
    assert complete_builds, "the no-change rebuild trusted a store another writer changed"


def test_the_seed_listing_comparison_names_each_edit_addition_removal_and_recent_seed() -> None:
    from syndicator.seeds.cache import Scan

    before = Scan(["a.txt", "b.txt", "c.txt", "d.txt"], [10, 20, 30, 40], [1, 2, 3, 4])
    assert unchanged.changes(before, before) == (set(), set())
    same_names = Scan(["a.txt", "b.txt", "c.txt", "d.txt"], [10, 21, 30, 40], [1, 2, 9, -1])
    assert unchanged.changes(same_names, before) == ({"b.txt", "c.txt", "d.txt"}, set())
    # b removed, an edit to c after it (the lists no longer align by position), two added
    now = Scan(["a.txt", "aa.txt", "c.txt", "d.txt", "e.txt"], [10, 5, 30, 41, 50], [1, 5, 3, 4, 5])
    assert unchanged.changes(now, before) == ({"aa.txt", "d.txt", "e.txt"}, {"b.txt"})


def test_the_kept_scan_reads_back_only_with_its_catalogs_token(newsroom: tuple[Config, Store]) -> None:
    from syndicator.seeds.cache import Scan

    config, _ = newsroom
    # A complete build keeps its own scan, for the catalog it wrote.
    state = manifest_path(config.output_dir, config.state_dir)
    token = json.loads((state / unchanged.RECORD).read_text())["catalog"]
    kept = unchanged.load_scan(config, config.output_dir, token)
    assert kept is not None and kept.names == sorted(p.name for p in config.seeds_dir.iterdir())
    scan = Scan(["caf\u00e9.txt", "na\udcffme.txt", "z.txt"], [1, 2, 3], [10, -1, 2**62])
    unchanged.save_scan(config, config.output_dir, "token-a", scan)
    # This process kept it in memory too (a watching process builds again and again) ...
    assert unchanged.load_scan(config, config.output_dir, "token-a") is scan
    # ... and another process reads it from the file.
    unchanged._kept_here.clear()
    assert unchanged.load_scan(config, config.output_dir, "token-a") == scan
    assert unchanged.load_scan(config, config.output_dir, "token-b") is None
    assert unchanged.load_scan(config, config.output_dir, token) is None  # replaced


def test_a_scan_another_process_kept_since_is_read_from_its_file(newsroom: tuple[Config, Store]) -> None:
    from syndicator.seeds.cache import Scan

    config, _ = newsroom
    mine, theirs = Scan(["a.txt"], [1], [1]), Scan(["b.txt"], [2], [2])
    unchanged.save_scan(config, config.output_dir, "mine", mine)
    path = manifest_path(config.output_dir, config.state_dir) / unchanged.SCAN
    kept_here = dict(unchanged._kept_here)
    unchanged.save_scan(config, config.output_dir, "theirs", theirs)  # as another process would
    unchanged._kept_here.clear()
    unchanged._kept_here.update(kept_here)  # this process still holds its own
    assert path.exists()
    assert unchanged.load_scan(config, config.output_dir, "theirs") == theirs
    # A token names one catalog and the scan it was made with: "mine" is still that scan
    # (a record naming it would name a catalog that is gone, which the build checks first).
    assert unchanged.load_scan(config, config.output_dir, "mine") is mine


@pytest.mark.parametrize("journal", [4_096, 3], ids=["journal", "snapshot-written-again"])
def test_a_watched_listing_kept_as_a_journal_reads_back_as_a_fresh_scan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: int) -> None:
    """Watched rebuild after watched rebuild, the listing is the last one with the changed
    seeds put right in place, and kept as a journal of them beside the snapshot (or, past
    ``JOURNAL_MAX`` seeds, as a new snapshot): in memory and read back from the files by
    another process, it must be a fresh scan, whatever was added, removed or edited."""
    import random
    from types import SimpleNamespace
    from typing import cast

    from syndicator.seeds.cache import Scan, scan_seeds

    monkeypatch.setattr(unchanged, "JOURNAL_MAX", journal)
    rng = random.Random(journal)
    folder = tmp_path / "seeds"
    folder.mkdir()
    out = tmp_path / "public"
    config = cast(Config, SimpleNamespace(seeds_dir=folder, state_dir=tmp_path / "state"))
    stems = ["a", "ab", "b", "caf\u00e9", "z"]
    unchanged._kept_here.clear()
    unchanged.save_scan(config, out, "t0", scan_seeds(folder))
    snapshots = set()
    for round_ in range(1, 120):
        kept = unchanged._kept(config, out, f"t{round_ - 1}")
        assert kept is not None
        was = dict(zip(kept.scan.names, zip(kept.scan.sizes, kept.scan.mtimes, strict=True), strict=True))
        touched: set[str] = set()
        for _ in range(rng.randrange(6)):
            name = f"{rng.choice(stems)}{rng.randrange(8)}.txt"
            path = folder / name
            if path.exists() and rng.random() < 0.4:
                path.unlink()
            else:
                path.write_text("x" * rng.randrange(5))
                os.utime(path, ns=(rng.randrange(1, 10**18), rng.randrange(1, 10**18)))
            touched.add(name)
        extra = set(rng.sample(kept.scan.names, min(2, len(kept.scan.names))))
        fresh = scan_seeds(folder)
        # A plain build's comparison with the kept listing (as bytes, when the names are the same).
        copy = Scan(list(kept.scan.names), list(kept.scan.sizes), list(kept.scan.mtimes))
        expected = unchanged.changes(fresh, copy)
        assert unchanged.changes_since(config, out, f"t{round_ - 1}", fresh) == expected
        unchanged._kept_here.clear()
        before = unchanged._restat(config, kept.scan, touched | extra, 2**63 - 1)
        assert before == {name: was.get(name) for name in touched | extra}
        rescanned = Scan(kept.scan.names, kept.scan.sizes, kept.scan.mtimes)
        assert rescanned == fresh and rescanned.packed == fresh.packed
        base = unchanged.Base(kept.token, before, kept.snapshot, kept.journal, same=False)
        unchanged.save_scan(config, out, f"t{round_}", rescanned, base)
        assert unchanged.load_scan(config, out, f"t{round_}") is rescanned  # kept in memory
        if rng.random() < 0.5:  # another process, or the next watched rebuild, from the files
            unchanged._kept_here.clear()
            again = unchanged.load_scan(config, out, f"t{round_}")
            assert again == fresh and again.packed == fresh.packed
        assert unchanged.load_scan(config, out, f"t{round_ - 1}") is None  # that catalog's is gone
        snapshots.add(unchanged._kept(config, out, f"t{round_}").snapshot)  # type: ignore[union-attr]
    # A journal of every seed since the first build, or a snapshot each few rebuilds.
    assert len(snapshots) == 1 if journal > 100 else len(snapshots) > 10


def test_a_watched_rebuild_holds_a_seed_saved_just_now_untrusted_as_a_scan_does(
        newsroom: tuple[Config, Store], project: Project) -> None:
    """A seed saved within 2 s of the build counts as changed (mtime -1) in the watched
    listing as in a scanned one: neither build is taken for one where nothing changed."""
    from syndicator.templating import environment

    config, _ = newsroom
    project.seed("030_now.txt", "Just saved\n\nA line.\n")
    env = environment(config.templates_dir)
    watched = unchanged.seen(config, env, config.output_dir, {"030_now.txt"})
    scanned = unchanged.seen(config, env, config.output_dir)
    assert watched.base is not None  # made from the kept scan, not by scanning the folder
    assert watched.scan.mtimes == scanned.scan.mtimes and -1 in scanned.scan.mtimes
    assert watched.scan.packed == scanned.scan.packed
    assert not watched.settled and not scanned.settled


@pytest.mark.parametrize("few", [1_000, 0], ids=["few-changes", "many-changes"])
def test_every_way_of_comparing_listings_agrees(monkeypatch: pytest.MonkeyPatch, few: int) -> None:
    """The listing comparison (by bisection for a few additions and removals, else by masks),
    a watched rebuild's (only the seeds it stat'ed again) and the one against the kept
    listing's bytes find the same changes."""
    import random

    from syndicator.seeds.cache import Scan

    monkeypatch.setattr(unchanged, "_FEW", few)
    rng = random.Random(few)

    stems = ["", "a", "a ", "ab", "caf\u00e9", "\udcff"]  # prefixes of others, and not ASCII

    def name() -> str:
        return rng.choice(stems) + f"{rng.randrange(30):02d}.txt"

    for _ in range(200):
        names = sorted({name() for _ in range(rng.randrange(40))})
        before = Scan(names, [rng.randrange(3) for _ in names], [rng.choice([5, 6, -1]) for _ in names])
        now_names = sorted({n for n in names if rng.random() > 0.2}
                           | {name() for _ in range(rng.randrange(5))})
        old = dict(zip(before.names, zip(before.sizes, before.mtimes, strict=True), strict=True))
        stats = [old[n] if n in old and rng.random() > 0.3 else (rng.randrange(3), rng.choice([5, 7, -1]))
                 for n in now_names]
        now = Scan(now_names, [s for s, _ in stats], [m for _, m in stats])
        new = dict(zip(now.names, zip(now.sizes, now.mtimes, strict=True), strict=True))
        expected = ({n for n, st in new.items() if old.get(n) != st or st[1] == -1}, set(old) - set(new))
        assert unchanged.changes(now, before) == expected
        touched = {n for n in set(old) | set(new) if old.get(n) != new.get(n)} | {
            n for n, (_, m) in old.items() if m == -1} | {n for n, (_, m) in new.items() if m == -1}
        extra = set(rng.sample(names, min(3, len(names))))
        assert unchanged.changes_among(now, {n: old.get(n) for n in touched | extra}) == expected
        # A plain build's, against the kept listing's bytes.
        assert unchanged._changes_packed(now, before.packed) == (expected if names and now_names else None)


@pytest.mark.parametrize(("relative", "forking"),
                         [(True, False), (False, False), (True, True), (False, True)],
                         ids=["dir-fd", "paths", "dir-fd-forked", "paths-forked"])
def test_the_seed_scan_lists_regular_seed_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    relative: bool, forking: bool) -> None:
    """By name; not folders, dangling links, other names or ``.txt`` alone; the same where
    the system cannot stat relative to a folder, and with the chunks stat'ed by two processes."""
    from syndicator import forked
    from syndicator.seeds import cache

    if forking:
        monkeypatch.setattr(forked, "workers", lambda: 2)
        monkeypatch.setattr(cache, "_STAT_FORK_FROM", 1)

    if not relative:
        monkeypatch.setattr(os, "supports_dir_fd", set())
    (tmp_path / "b.txt").write_text("B\n")
    (tmp_path / "a.txt").write_text("Aaaa\n")
    (tmp_path / "c.md").write_text("C\n")
    (tmp_path / ".txt").write_text("x\n")
    (tmp_path / "d.txt").mkdir()
    (tmp_path / "e.txt").symlink_to(tmp_path / "missing.txt")
    (tmp_path / "f.txt").symlink_to(tmp_path / "a.txt")
    monkeypatch.setattr(cache, "_CHUNK", 2)  # chunks with and without a file that is no seed
    scan = cache.scan_seeds(tmp_path)
    assert scan.names == ["a.txt", "b.txt", "f.txt"]
    assert list(scan.sizes) == [5, 2, 5]
    assert list(scan.mtimes) == [os.stat(tmp_path / n).st_mtime_ns for n in scan.names]


def test_a_folder_listed_as_before_is_not_sorted_again_and_a_new_seed_is_still_seen(
        newsroom: tuple[Config, Store], project: Project, clock: datetime,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept scan's names stand for a listing in the same order (no sort of a million
    names); a listing that differs, or a name the last scan left out (a folder then, a seed
    now, under the same digest), is sorted from the listing."""
    from syndicator.seeds.cache import scan_seeds
    from syndicator.templating import environment

    config, store = newsroom
    env = environment(config.templates_dir)
    taken: list[list[str] | None] = []
    real = unchanged._sorted_as

    def spied(*args: Config | Path) -> Callable[[bytes], list[str] | None]:
        names = real(*args)  # type: ignore[arg-type]

        def answer(listed: bytes) -> list[str] | None:
            taken.append(names(listed))
            return taken[-1]

        return answer

    monkeypatch.setattr(unchanged, "_sorted_as", spied)
    unchanged._kept_here.clear()  # as a new process: from the kept file
    first = unchanged.seen(config, env, config.output_dir)
    assert taken[-1] is not None and first.scan == scan_seeds(config.seeds_dir)
    project.seed("030_new.txt", "A new seed\n\nA line.\n")
    age(project)
    second = unchanged.seen(config, env, config.output_dir)
    assert taken[-1] is None and "030_new.txt" in second.scan.names  # listed otherwise: sorted
    assert second.scan == scan_seeds(config.seeds_dir)

    (config.seeds_dir / "040_folder.txt").mkdir()  # listed, but no seed
    build(config, store, clock + timedelta(hours=1))
    (config.seeds_dir / "040_folder.txt").rmdir()
    project.seed("040_folder.txt", "Now a seed\n\nA line.\n")
    age(project)
    third = unchanged.seen(config, env, config.output_dir)
    assert taken[-1] is None and "040_folder.txt" in third.scan.names


def test_a_build_that_finds_no_change_keeps_the_listing_for_a_watched_rebuild_after_it(
        newsroom: tuple[Config, Store], project: Project, request: pytest.FixtureRequest) -> None:
    """``build --watch`` starting where nothing changed since the last build: its first
    rebuild after a save starts from the listing that build compared, not from the file
    (read back and unpacked: half a second at a million seeds)."""
    from syndicator.templating import environment

    config, _ = newsroom
    env = environment(config.templates_dir)
    unchanged._kept_here.clear()  # a new process
    first = unchanged.seen(config, env, config.output_dir)
    record = unchanged.load(config, config.output_dir, first)
    assert record is not None and unchanged.matches(config, config.output_dir, record, first)
    reads = request.getfixturevalue("listing_reads")  # counted from here on
    new = project.seed("030_new.txt", "A new seed\n\nA line.\n")
    os.utime(new, (time.time() - 3600, time.time() - 3600))
    watched = unchanged.seen(config, env, config.output_dir, {"030_new.txt"})
    assert watched.base is not None and watched.settled
    assert watched.scan == unchanged.scan_seeds(config.seeds_dir)  # type: ignore[attr-defined]
    assert not reads, "the watched rebuild read the kept listing back from its file"
