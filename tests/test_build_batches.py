"""A complete build of many seeds is made a batch at a time (``incremental.in_batches``): its
output is the one-pass build's, file for file, and a bad seed still stops it before anything
is written. Here more than 4 seeds are built in batches of 4, so 14 seeds take four batches;
the store of the batches is SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from syndicator import forked
from syndicator.config import Config, load_config
from syndicator.errors import InputErrors
from syndicator.seeds import cache
from syndicator.site import incremental, parallel, sitemaps
from syndicator.site.build import build
from syndicator.site.manifest import PENDING, RECENT, Manifest, manifest_path
from syndicator.site.writer import Names
from syndicator.state import schema, shards
from syndicator.state.store import Store
from syndicator.templating import environment
from tests.conftest import Project
from tests.test_rebuild_incremental import age, files, lead_of, seed_text


@pytest.fixture
def archive(project: Project) -> Config:
    """14 seeds, two of them repeating a lead of a seed in another batch as a brief."""
    project.write_config(project.config.read_text().replace("limit = 50", "limit = 3\narchive_size = 2"))
    for seed in project.seeds.iterdir():
        seed.unlink()
    rng = random.Random(7)
    for n in range(12):
        project.seed(f"{n:03d}_seed.txt", seed_text(rng, n))
    project.seed("100_linked.txt", seed_text(rng, 100, brief_of=lead_of(project, "000_seed.txt")))
    project.seed("101_linked.txt", seed_text(rng, 101, brief_of=lead_of(project, "009_seed.txt")))
    age(project)
    return load_config(project.config)


@pytest.fixture
def stores(tmp_path: Path, store_url: str) -> Iterator[tuple[Store, Store]]:
    """A SQLite store for the one-pass build, and one on SQLite or PostgreSQL for the batches."""
    one, other = Store.open(f"sqlite:///{tmp_path}/one.db"), Store.open(store_url)
    try:
        yield one, other
    finally:
        one.close()
        other.close()


def stories_in(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(schema.stories)).scalar_one())


def fork_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds parsed and pages rendered by forked children however few there are."""
    monkeypatch.setattr(forked, "workers", lambda: 2)
    monkeypatch.setattr(cache, "_FORK_FROM", 1)
    monkeypatch.setattr(parallel, "_workers", lambda: 2)
    monkeypatch.setattr(parallel, "_PARALLEL_FROM", 1)


@pytest.mark.parametrize(("max_urls", "forking"), [(50_000, False), (9, False), (9, True)],
                         ids=["one-sitemap", "sitemap-parts", "sitemap-parts-forked"])
def test_a_build_in_batches_writes_what_one_pass_writes(
        project: Project, archive: Config, stores: tuple[Store, Store], clock: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, max_urls: int, forking: bool) -> None:
    """Forked: the seeds of each batch parsed by two processes, and each batch's pages
    rendered while the next batch is read and resolved."""
    monkeypatch.setattr(sitemaps, "MAX_URLS", max_urls)
    batches: list[incremental.Done] = []
    real = incremental.in_batches

    def spied(*args: object, **kwargs: object) -> incremental.Done:
        batches.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return batches[-1]

    monkeypatch.setattr(incremental, "in_batches", spied)
    one_pass = build(archive, stores[0], clock, tmp_path / "one-pass")
    assert not batches
    monkeypatch.setattr(incremental, "BATCH", 4)
    monkeypatch.setattr(incremental, "BATCHED_FROM", 4)
    if forking:
        fork_everything(monkeypatch)
    result = build(archive, stores[1], clock, tmp_path / "batched")
    assert len(batches) == 1
    assert files(tmp_path / "batched") == files(tmp_path / "one-pass")
    assert result.stories == one_pass.stories
    # The report names the same files (held a batch at a time as one string: ``Names``).
    assert isinstance(result.written, Names)
    assert sorted(result.written) == sorted(one_pass.written)
    # Each batch merged its pages into the manifest: a later build renders none of them again.
    remembered = Manifest(tmp_path / "batched", archive, environment(archive.templates_dir)).remembered
    written = {p.relative_to(tmp_path / "batched").as_posix() for p in (tmp_path / "batched").rglob("*.*")
               if p.parts[-2] in ("stories", "archive")}
    assert written and {name.removeprefix("stories/") for name in written} <= remembered.keys()

    # Its catalog and record serve the next rebuild: one seed changed is incremental, and
    # still a complete build's output.
    seed = archive.seeds_dir / "005_seed.txt"
    seed.write_text(seed.read_text().replace("Second paragraph", "Second, edited paragraph"))
    age(project)
    later = clock + timedelta(hours=1)
    spied_rebuild: list[incremental.Done | None] = []
    real_rebuild = incremental.rebuild

    def rebuilt(*args: object, **kwargs: object) -> incremental.Done | None:
        spied_rebuild.append(real_rebuild(*args, **kwargs))  # type: ignore[arg-type]
        return spied_rebuild[-1]

    monkeypatch.setattr(incremental, "rebuild", rebuilt)
    build(archive, stores[1], later, tmp_path / "batched")
    assert spied_rebuild and spied_rebuild[0] is not None
    build(archive, stores[0], later, tmp_path / "one-pass-later")
    assert files(tmp_path / "batched") == files(tmp_path / "one-pass-later")


@pytest.mark.parametrize("forking", [False, True], ids=["one-process", "forked"])
def test_a_bad_seed_stops_a_build_in_batches_before_anything_is_written(
        archive: Config, stores: tuple[Store, Store], clock: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, forking: bool) -> None:
    """Forked: the two bad seeds fall to different processes; both are named, with their lines."""
    monkeypatch.setattr(incremental, "BATCH", 4)
    monkeypatch.setattr(incremental, "BATCHED_FROM", 4)
    if forking:
        fork_everything(monkeypatch)
    (archive.seeds_dir / "010_seed.txt").write_bytes(b"\xff\xfe not UTF-8\n")
    (archive.seeds_dir / "003_seed.txt").write_text("---\nbogus: 1\n---\nA lead\n\nText.\n")
    with pytest.raises(InputErrors) as caught:
        build(archive, stores[0], clock, tmp_path / "out")
    assert [str(e) for e in caught.value.errors] == [
        f"{archive.seeds_dir / '003_seed.txt'}:2: bogus: unknown front matter key (known: id, date, "
        "author, url, tags, correction)",
        f"{archive.seeds_dir / '010_seed.txt'}:1: not valid UTF-8 (byte 0xff at offset 0)"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert stories_in(stores[0]) == 0


def test_prune_in_batches_deletes_the_pages_of_stories_gone(
        archive: Config, stores: tuple[Store, Store], clock: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(incremental, "BATCH", 4)
    monkeypatch.setattr(incremental, "BATCHED_FROM", 4)
    out = tmp_path / "out"
    build(archive, stores[0], clock, out)
    before = {p.name for p in (out / "stories").iterdir()}
    (archive.seeds_dir / "004_seed.txt").unlink()
    result = build(archive, stores[0], clock + timedelta(hours=1), out, prune=True)
    after = {p.name for p in (out / "stories").iterdir()}
    assert result.pruned == len(before - after) > 0
    assert after < before
    build(archive, stores[1], clock + timedelta(hours=1), tmp_path / "fresh")
    assert after == {p.name for p in (tmp_path / "fresh" / "stories").iterdir()}


def test_a_build_in_batches_merges_its_pages_into_the_manifest_once(
        archive: Config, stores: tuple[Store, Store], clock: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch's pages wait beside the shards and are merged once at the end: each shard is
    written once however many batches there are (merged after each batch, a build read and
    wrote the whole manifest so far each time). What an interrupted build left is dropped."""
    monkeypatch.setattr(incremental, "BATCH", 4)
    monkeypatch.setattr(incremental, "BATCHED_FROM", 4)
    out = tmp_path / "out"
    where = manifest_path(out, archive.state_dir)
    stale = where / PENDING / "00.000000.bin"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"what an interrupted build in batches left")
    writes: list[Path] = []
    real_write = shards.write_file

    def counted(path: Path, tag: shards.Tag, entries: shards.Shard) -> None:
        writes.append(path)
        real_write(path, tag, entries)

    monkeypatch.setattr(shards, "write_file", counted)
    build(archive, stores[0], clock, out)
    merged = [path for path in writes if path.parent == where and path.name != RECENT]
    assert merged and len(merged) == len(set(merged)), "a shard was written more than once"
    assert len([path for path in writes if path.parent == where / PENDING]) > len(merged)  # 4 batches
    assert not (where / PENDING).exists()
    remembered = Manifest(out, archive, environment(archive.templates_dir)).remembered
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.*")
               if p.parts[-2] in ("stories", "archive")}
    assert {name if name.startswith("archive/") else f"stories/{name}" for name in remembered} == on_disk


def test_a_build_in_batches_that_fails_leaves_no_pending_pages(
        archive: Config, stores: tuple[Store, Store], clock: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages waiting to be merged (a manifest's worth at a million seeds) go with a failed
    build; the next build renders and compares those pages, and writes what one pass would."""
    monkeypatch.setattr(incremental, "BATCH", 4)
    monkeypatch.setattr(incremental, "BATCHED_FROM", 4)
    out = tmp_path / "out"
    real_publish = incremental._publish

    def failing(*args: Any, **kwargs: Any) -> Any:
        assert any((manifest_path(out, archive.state_dir) / PENDING).iterdir())
        raise OSError("the disk filled")

    monkeypatch.setattr(incremental, "_publish", failing)
    with pytest.raises(OSError):
        build(archive, stores[0], clock, out)
    assert not (manifest_path(out, archive.state_dir) / PENDING).exists()
    monkeypatch.setattr(incremental, "_publish", real_publish)
    build(archive, stores[0], clock, out)
    build(archive, stores[1], clock, tmp_path / "fresh")
    assert files(out) == files(tmp_path / "fresh")


def test_names_hold_a_build_report_as_a_list_would() -> None:
    """The names of files a build in batches wrote: indexed, sliced, counted and compared as
    the list it stands for, across runs and empty ones."""
    rng = random.Random(7)
    expected: list[str] = []
    names = Names()
    for run in range(40):
        batch = [f"stories/s-{run}-{k}.html" for k in range(rng.choice([0, 1, 3, 17]))]
        names += batch
        expected += batch
    assert len(names) == len(expected) and list(names) == expected
    assert [names[i] for i in range(-len(expected), len(expected))] == expected + expected
    assert names[3:40:7] == expected[3:40:7]
    assert names == expected and names == tuple(expected) and names != expected[:-1]
    with pytest.raises(IndexError):
        names[len(expected)]
    assert len(Names()) == 0 and list(Names()) == [] and Names() == ()
