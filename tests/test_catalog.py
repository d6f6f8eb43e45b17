"""Story identity: one story per headline however many files mention it, stable ids and times."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from syndicator.model import SeedFile, Story, normalise_title, story_id
from syndicator.seeds.identity import count_stories, resolve
from syndicator.seeds.parse import read_seeds
from syndicator.state import schema
from syndicator.state.store import Store, StoredStory

EXAMPLE_SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_3c621fef12599da2.txt"
UTC_ZONE = ZoneInfo("UTC")
LATER = timedelta(hours=5)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    try:
        yield opened
    finally:
        opened.close()


def seeds(folder: Path, **files: str) -> list[SeedFile]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    found, errors = read_seeds(folder, UTC_ZONE)
    assert not errors, errors
    return found


def by_title(stories: list[Story]) -> dict[str, Story]:
    return {s.title: s for s in stories}


def counts(store: Store) -> tuple[int, int]:
    with store.engine.connect() as conn:
        stories = conn.execute(select(func.count()).select_from(schema.stories)).scalar_one()
        keys = conn.execute(select(func.count()).select_from(schema.story_keys)).scalar_one()
    return int(stories), int(keys)


BRIEFS = "Lead A\n\nBody of A.\n\nBrief B\nSummary of B.\n\nBrief C\nSummary of C.\n"
B_AS_LEAD = "Brief B\n\nThe full story of B, first paragraph.\nSecond paragraph of B.\n"


def test_example_resolves_to_seven_stories_newest_first(
    tmp_path: Path, store: Store, clock: datetime
) -> None:
    folder = tmp_path / "seeds"
    folder.mkdir()
    shutil.copy(EXAMPLE_SEED, folder)
    files, _ = read_seeds(folder, UTC_ZONE)
    stories = resolve(files, store, clock)
    assert len(stories) == 7
    assert stories[0].is_lead and stories[0].title.startswith("Grozev:")
    assert len(stories[0].paragraphs) == 6
    # File order, lead first = newest, one second apart: no two share a time.
    assert [s.published for s in stories] == [clock - timedelta(seconds=n) for n in range(7)]
    assert [s.first_seen for s in stories] == [s.published for s in stories]
    assert len({s.id for s in stories}) == 7 and all(s.id.startswith("urn:uuid:") for s in stories)
    assert stories[0].id == story_id("title:" + normalise_title(stories[0].title))
    assert [s.seq for s in stories] == sorted(s.seq for s in stories)
    assert counts(store) == (7, 7)


def test_same_story_in_two_files_is_one_story_with_the_richest_version(
    tmp_path: Path, store: Store, clock: datetime
) -> None:
    files = seeds(tmp_path / "seeds", **{"001_a": BRIEFS, "002_b": B_AS_LEAD.replace("Brief B", "BRIEF  b")})
    assert count_stories(files) == 3
    stories = resolve(files, store, clock)
    assert [s.title for s in stories] == ["Lead A", "BRIEF b", "Brief C"]
    b = stories[1]
    assert b.is_lead and b.paragraphs == ("The full story of B, first paragraph.", "Second paragraph of B.")
    assert b.path.name == "002_b.txt" and b.line == 1
    # Its time is the one it got where it was first seen (file order): second of the batch.
    assert b.published == clock - timedelta(seconds=1)
    assert counts(store) == (3, 3)


def test_richest_version_wins_whichever_file_comes_first(
    tmp_path: Path, store: Store, clock: datetime
) -> None:
    files = seeds(tmp_path / "seeds", **{"001_b": B_AS_LEAD, "002_a": BRIEFS})
    stories = by_title(resolve(files, store, clock))
    assert set(stories) == {"Brief B", "Lead A", "Brief C"}
    assert len(stories["Brief B"].paragraphs) == 2 and stories["Brief B"].is_lead


def test_brief_that_comes_back_as_a_lead_keeps_its_id_and_time(tmp_path: Path, store: Store,
                                                                clock: datetime) -> None:
    first = by_title(resolve(seeds(tmp_path / "s", **{"001": BRIEFS}), store, clock))
    assert not first["Brief B"].is_lead
    files = seeds(tmp_path / "s", **{"002": B_AS_LEAD})
    second = by_title(resolve(files, store, clock + LATER))
    b = second["Brief B"]
    assert b.is_lead and len(b.paragraphs) == 2
    was = first["Brief B"]
    assert (b.id, b.published, b.seq) == (was.id, was.published, was.seq)
    assert b.published == clock - timedelta(seconds=1)
    assert counts(store) == (3, 3)  # nothing new


def test_front_matter_id_lead_matching_an_earlier_brief_keeps_the_briefs_id(
    tmp_path: Path, store: Store, clock: datetime
) -> None:
    first = by_title(resolve(seeds(tmp_path / "s", **{"001": BRIEFS}), store, clock))
    lead = "---\nid: b-2025\nauthor: Ana\n---\nBrief B\n\nNow a lead.\n"
    second = by_title(resolve(seeds(tmp_path / "s", **{"002": lead}), store, clock + LATER))
    b = second["Brief B"]
    assert (b.id, b.published) == (first["Brief B"].id, first["Brief B"].published)
    assert b.author == "Ana" and b.paragraphs == ("Now a lead.",)
    # The id is now an alias: a retitled version of the lead is still the same story.
    (tmp_path / "s" / "002.txt").write_text("---\nid: b-2025\n---\nBrief B, updated headline\n\nNew text.\n")
    (tmp_path / "s" / "001.txt").write_text("Lead A\n\nBody of A.\n")
    files, _ = read_seeds(tmp_path / "s", UTC_ZONE)
    third = by_title(resolve(files, store, clock + 2 * LATER))
    assert third["Brief B, updated headline"].id == first["Brief B"].id
    assert third["Brief B, updated headline"].published == first["Brief B"].published


def test_front_matter_id_is_the_identity_of_a_new_lead(tmp_path: Path, store: Store, clock: datetime) -> None:
    files = seeds(tmp_path / "s", **{"001": "---\nid: x-1\n---\nTitle one\n\nBody.\n",
                                     "002": "---\nid: x-1\n---\nTitle one, corrected\n\nLonger body text.\n"})
    (story,) = resolve(files, store, clock)
    assert story.id == story_id("id:x-1")
    assert story.title == "Title one, corrected"


def test_front_matter_date_is_the_publication_time(tmp_path: Path, store: Store, clock: datetime) -> None:
    dated = "---\ndate: 2025-03-14T09:30:00+02:00\n---\nDated\n\nBody.\n\nBrief\n"
    files = seeds(tmp_path / "s", **{"001": dated})
    stories = by_title(resolve(files, store, clock))
    assert stories["Dated"].published == datetime(2025, 3, 14, 7, 30, tzinfo=UTC)
    assert stories["Dated"].first_seen == clock
    assert stories["Brief"].published == clock - timedelta(seconds=1)
    assert [s.title for s in resolve(files, store, clock)] == ["Brief", "Dated"]  # newest first


def test_stories_first_seen_together_have_distinct_times_in_file_order(
    tmp_path: Path, store: Store, clock: datetime
) -> None:
    files = seeds(tmp_path / "s", **{"001": BRIEFS, "002": "Lead D\n\nBody D.\n\nBrief E\n"})
    stories = resolve(files, store, clock)
    assert [s.title for s in stories] == ["Lead A", "Brief B", "Brief C", "Lead D", "Brief E"]
    assert [s.published for s in stories] == [clock - timedelta(seconds=n) for n in range(5)]


def test_a_quick_second_build_never_reuses_a_time(tmp_path: Path, store: Store, clock: datetime) -> None:
    first = resolve(seeds(tmp_path / "s", **{"001": BRIEFS}), store, clock)
    newer = "New lead\n\nBody.\n\nNew brief 1\n\nNew brief 2\n\nNew brief 3\n"
    files = seeds(tmp_path / "s", **{"002": newer})
    second = resolve(files, store, clock + timedelta(seconds=1))
    times = [s.published for s in second]
    assert len(set(times)) == len(times) == 7
    new = [s for s in second if s.title.startswith("New")]
    assert min(s.published for s in new) > max(s.published for s in first)
    assert [s.title for s in second[:4]] == ["New lead", "New brief 1", "New brief 2", "New brief 3"]


def test_rebuild_with_the_same_store_changes_nothing(tmp_path: Path, store: Store, clock: datetime) -> None:
    files = seeds(tmp_path / "s", **{"001": BRIEFS, "002": B_AS_LEAD})
    first = resolve(files, store, clock)
    again = resolve(files, store, clock + LATER)
    assert again == first
    assert counts(store) == (3, 3)


def test_ids_and_times_are_the_same_on_another_machine(tmp_path: Path, store: Store, clock: datetime) -> None:
    texts = {"001": BRIEFS, "002": B_AS_LEAD, "003": "---\nid: z\n---\nLead Z\n\nBody Z.\n"}
    here = resolve(seeds(tmp_path / "here" / "seeds", **texts), store, clock)
    other = Store.open(f"sqlite:///{tmp_path / 'there' / 'state' / 'fresh.db'}")
    try:
        there = resolve(seeds(tmp_path / "there" / "seeds", **texts), other, clock)
    finally:
        other.close()
    assert [(s.id, s.published, s.title, s.slug) for s in there] == \
        [(s.id, s.published, s.title, s.slug) for s in here]


def test_resolve_without_persist_writes_nothing(tmp_path: Path, store: Store, clock: datetime) -> None:
    resolve(seeds(tmp_path / "s", **{"001": BRIEFS}), store, clock)
    before = counts(store)
    files = seeds(tmp_path / "s", **{"002": "Unseen lead\n\nBody.\n\nUnseen brief\n", "003": B_AS_LEAD})
    preview = resolve(files, store, clock + LATER, persist=False)
    assert counts(store) == before
    titles = [s.title for s in preview]
    assert titles[:2] == ["Unseen lead", "Unseen brief"]
    assert len({s.seq for s in preview}) == len(preview)
    # A persisted run afterwards gives the new stories the same ids the preview showed.
    persisted = resolve(files, store, clock + LATER)
    assert [(s.id, s.title, s.published) for s in persisted] == \
        [(s.id, s.title, s.published) for s in preview]
    assert counts(store) == (before[0] + 2, before[1] + 2)


def test_symbol_only_headlines_stay_distinct_stories(tmp_path: Path, store: Store, clock: datetime) -> None:
    files = seeds(tmp_path / "s", **{"001": "😀\n\nBody one.\n\n???\nA brief.\n\n😀 😀\nAnother.\n"})
    stories = resolve(files, store, clock)
    assert [s.title for s in stories] == ["😀", "???", "😀 😀"]
    assert len({s.id for s in stories}) == 3


def test_two_writers_at_once_agree_on_every_story(tmp_path: Path, store_url: str, clock: datetime) -> None:
    """Two builds (or a build and a send) resolving new stories at once: both succeed, one truth."""
    files = seeds(tmp_path / "s", **{"001": BRIEFS, "002": B_AS_LEAD, "003": "Lead D\n\nBody.\n\nBrief E\n"})
    Store.open(store_url).close()  # migrated up front, as a running site's store is
    barrier = threading.Barrier(2)
    results: list[list[Story]] = []
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        own = Store.open(store_url)
        try:
            original = own.story_keys
            first_read = [True]

            def slow_keys() -> dict[str, StoredStory]:
                keys = original()
                if first_read.pop() if first_read else False:
                    barrier.wait(timeout=10)  # both have read: both believe every story is new
                return keys

            own.story_keys = slow_keys  # type: ignore[method-assign]
            results.append(resolve(files, own, clock + timedelta(seconds=offset)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    first, second = results
    assert [(s.id, s.published) for s in first] == [(s.id, s.published) for s in second]
    check = Store.open(store_url)
    try:
        assert counts(check) == (5, 5)
    finally:
        check.close()


def test_rebuild_grouping_shortcut_finds_the_groups_union_find_finds() -> None:
    """The rebuild shortcut (every key stored) and the general union-find agree, on random
    stores and entries, whenever the shortcut applies; otherwise the shortcut stands aside."""
    import random

    from syndicator.model import Entry
    from syndicator.seeds.identity import _group_known, _group_linked

    rng = random.Random(5)
    applied = 0
    for _round in range(300):
        titles = [f"headline {n}" for n in range(rng.randint(1, 12))]
        ids = [f"x{n}" for n in range(4)]
        stored = [StoredStory(f"urn:s{n}", n + 1, 1000 + n) for n in range(rng.randint(0, 6))]
        keys = [f"title:{t}" for t in titles] + [f"id:{i}" for i in ids]
        known = {k: rng.choice(stored) for k in keys if stored and rng.random() < 0.9}
        entries = [
            Entry(title=rng.choice(titles), paragraphs=(), position=n, line=n + 1, path=Path("s.txt"),
                  id=rng.choice([None, *ids]))
            for n in range(rng.randint(1, 15))
        ]
        fast = _group_known(entries, known)
        if fast is None:
            continue
        applied += 1
        slow = _group_linked(entries, known)
        assert sorted((sorted(e.position for e in g.entries), [s.id for s in g.stored]) for g in fast) == \
            sorted((sorted(e.position for e in g.entries), [s.id for s in g.stored]) for g in slow)
    assert applied > 20  # the comparison really ran
