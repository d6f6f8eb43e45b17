"""Story page names: unique for every story, and never changed once published.

A page's name is ``stories/<stem>-<suffix>.html``: a 60-character stem from the title and 8 hex
of the story's id. Two long titles that differ only past the stem share the stem, so their
names collide whenever those 8 hex do (a 32-bit space). The pair below does.

How it was found: a birthday search over the numeric tail, computing today's name of every
``TITLE.format(n)`` for n in range(100_000) (the briefs carry no front matter id, so each
story's id is ``story_id("title:" + normalise_title(title))``) and keeping the first repeat:
26533 and 95680 (both ...-ee47ce57); 92904 and 99321 (both ...-f6417701) came next.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import feedparser
import pytest

from syndicator.config import Config, load_config
from syndicator.model import normalise_title, story_id, story_slug
from syndicator.site.build import BuildResult, build
from syndicator.state.store import Store, StoredStory

Project = Any  # tests/conftest.py's Project

TITLE = "Breaking news from the capital as the parliament votes on the budget tonight {}"
FIRST, SECOND = TITLE.format(26533), TITLE.format(95680)
THIRD, FOURTH = TITLE.format(92904), TITLE.format(99321)  # another pair, same stem
TEXT = {FIRST: "The first vote passed by a wide margin.",
        SECOND: "The second vote failed after a late amendment.",
        THIRD: "A third story about the same evening.",
        FOURTH: "A fourth story about the same evening."}
LEAD = "Lead of the evening\n\nThe lead story's body.\n"
SITE = "https://example.org/"
LATER = timedelta(hours=2)


def default_name(title: str) -> str:
    """Today's page name of a story first seen under ``title`` (no front matter id)."""
    return f"stories/{story_slug(title, story_id('title:' + normalise_title(title)))}.html"


# The premise of every test here: each pair's default names collide (and the pairs' do not).
assert default_name(FIRST) == default_name(SECOND) != default_name(THIRD) == default_name(FOURTH)


def briefs(*titles: str) -> str:
    return LEAD + "".join(f"\n{t}\n{TEXT[t]}\n" for t in titles)


def only_seed(project: Project, text: str, name: str = "001_evening.txt") -> None:
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed(name, text)


def run_build(project: Project, when: datetime, out: Path | None = None) -> BuildResult:
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        return build(config, store, when, out)
    finally:
        store.close()


def feed_links(out: Path) -> dict[str, dict[str, str]]:
    """Per feed (and the index page): each story's title and the page path it links to."""
    links: dict[str, dict[str, str]] = {}
    for name in ("rss.xml", "atom.xml"):
        parsed = feedparser.parse((out / name).read_bytes())
        assert not parsed.bozo, parsed.get("bozo_exception")
        links[name] = {e.title: e.link for e in parsed.entries}
    items = json.loads((out / "feed.json").read_text(encoding="utf-8"))["items"]
    links["feed.json"] = {i["title"]: i["url"] for i in items}
    for name, found in links.items():
        assert all(url.startswith(SITE) for url in found.values()), (name, found)
        links[name] = {title: urlsplit(url).path.lstrip("/") for title, url in found.items()}
    return links


def name_of(out: Path, title: str) -> str:
    """The page every feed links ``title`` to (they must agree)."""
    names = {feed: found[title] for feed, found in feed_links(out).items()}
    assert len(set(names.values())) == 1, names
    return next(iter(names.values()))


def assert_own_page(out: Path, title: str) -> str:
    """``title``'s page exists and shows that story (its title, its text), no other one."""
    name = name_of(out, title)
    page = (out / name).read_text(encoding="utf-8")
    assert f"<h1>{title}</h1>" in page and TEXT[title] in page, (name, title)
    others = [t for t in TEXT if t != title]
    assert not any(TEXT[t] in page or f"<h1>{t}</h1>" in page for t in others), (name, title)
    assert f'<link rel="canonical" href="{SITE}{name}">' in page
    return name


def pages(out: Path) -> set[str]:
    return {f"stories/{p.name}" for p in (out / "stories").iterdir()}


@pytest.fixture
def sqlite_or_postgres(project: Project, store_url: str) -> Iterator[Project]:
    """The project on an SQLite store and, when configured, on PostgreSQL."""
    project.store = store_url
    project.write_config()
    yield project


# -- (a) both stories get their own page ----------------------------------------------------


def test_fresh_build_gives_each_colliding_brief_its_own_page(project: Project, clock: datetime) -> None:
    only_seed(project, briefs(FIRST, SECOND))
    result = run_build(project, clock)
    first, second = assert_own_page(result.output, FIRST), assert_own_page(result.output, SECOND)
    assert first != second
    assert first == default_name(FIRST)  # the first in the file keeps the name it always had
    # A longer suffix: the same stem and the same 8 hex, then more hex of the same id.
    assert second.startswith(default_name(SECOND).removesuffix(".html"))
    assert len(pages(result.output)) == 3 and {first, second} <= pages(result.output)


def test_incremental_build_gives_the_later_colliding_brief_its_own_page(
        sqlite_or_postgres: Project, clock: datetime) -> None:
    project = sqlite_or_postgres
    only_seed(project, briefs(FIRST))
    out = run_build(project, clock).output
    first = assert_own_page(out, FIRST)
    only_seed(project, briefs(FIRST, SECOND))
    again = run_build(project, clock + LATER)
    second = assert_own_page(out, SECOND)
    assert assert_own_page(out, FIRST) == first != second
    assert f"{second}" in again.written and first not in again.written  # no page overwritten
    assert len(pages(out)) == 3


# -- (b) a published name never changes -----------------------------------------------------


def test_the_first_storys_name_survives_the_colliding_arrival_and_every_rebuild(
        project: Project, clock: datetime, tmp_path: Path) -> None:
    only_seed(project, briefs(FIRST))
    out = run_build(project, clock).output
    first = name_of(out, FIRST)
    assert first == default_name(FIRST)
    # The colliding story arrives, listed before the first one in another seed file.
    project.seed("000_earlier.txt", briefs(SECOND))
    run_build(project, clock + LATER)
    assert name_of(out, FIRST) == first
    second = name_of(out, SECOND)
    assert second != first
    # Later builds, incremental or into an empty folder, agree on both names, whatever the
    # order of the seeds, and so does a send's dry-run preview of the stories.
    only_seed(project, briefs(SECOND, FIRST))
    for when, folder in ((clock + 2 * LATER, None), (clock + 3 * LATER, tmp_path / "elsewhere")):
        built = run_build(project, when, folder).output
        assert (assert_own_page(built, FIRST), assert_own_page(built, SECOND)) == (first, second)
    # The first story leaves the seeds: the second keeps its own name, never taking the first's
    # (whose page, still published, is left as it was).
    only_seed(project, briefs(SECOND))
    run_build(project, clock + 4 * LATER)
    assert assert_own_page(out, SECOND) == second
    page = (out / first).read_text(encoding="utf-8")
    assert TEXT[FIRST] in page and TEXT[SECOND] not in page


def test_names_are_kept_in_the_store_and_a_dry_run_predicts_them(project: Project, clock: datetime) -> None:
    from syndicator.seeds.identity import load_stories

    only_seed(project, briefs(FIRST, SECOND, THIRD, FOURTH))
    config: Config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        preview = {s.title: s.page for s in load_stories(config, store, clock, persist=False)}
        built = build(config, store, clock)
        again = {s.title: s.page for s in load_stories(config, store, clock + LATER)}
    finally:
        store.close()
    assert len(set(preview.values())) == len(preview) == 5
    assert preview == again == {t: name_of(built.output, t) for t in preview}
    assert preview[FIRST] == default_name(FIRST) and preview[THIRD] == default_name(THIRD)
    with sqlite3.connect(project.root / "state" / "syndicator.db") as conn:
        stored = dict(conn.execute("SELECT id, slug FROM stories").fetchall())
    assert sorted(f"stories/{s}.html" for s in stored.values()) == sorted(preview.values())


def test_a_store_from_before_names_were_kept_keeps_todays_names(project: Project, clock: datetime) -> None:
    """Stories an older syndicator recorded (no stored name) keep the name their title gives, as
    before, and have it recorded once seen; of two that collide, the older keeps the plain name
    (as when they were first seen), and a new colliding story yields to both."""
    only_seed(project, briefs(FIRST, THIRD, FOURTH))
    out = run_build(project, clock).output
    before = {t: name_of(out, t) for t in (FIRST, THIRD, FOURTH)}
    assert before[FIRST] == default_name(FIRST) and before[THIRD] == default_name(THIRD)
    db = project.root / "state" / "syndicator.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE stories SET slug = NULL")  # as migration 0005 leaves an older store
    only_seed(project, briefs(FOURTH, SECOND, THIRD, FIRST))
    run_build(project, clock + LATER)
    assert {t: assert_own_page(out, t) for t in (FIRST, THIRD, FOURTH)} == before
    assert assert_own_page(out, SECOND) not in before.values()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM stories WHERE slug IS NULL").fetchone() == (0,)


# -- (c) the feeds link each story to its own page ------------------------------------------


def test_every_feed_and_the_index_link_each_colliding_story_to_its_own_page(
        project: Project, clock: datetime) -> None:
    only_seed(project, briefs(FIRST, THIRD))
    out = run_build(project, clock).output
    project.seed("002_later.txt", briefs(SECOND, FOURTH))
    run_build(project, clock + LATER)
    links = feed_links(out)
    assert links["rss.xml"] == links["atom.xml"] == links["feed.json"]
    named = {t: links["rss.xml"][t] for t in TEXT}
    assert len(set(named.values())) == 4
    assert {t: assert_own_page(out, t) for t in TEXT} == named
    index = (out / "index.html").read_text(encoding="utf-8")
    for name in named.values():
        assert index.count(f'href="{SITE}{name}"') == 1


# -- two writers at once --------------------------------------------------------------------


@contextmanager
def _opened(store_url: str) -> Iterator[Store]:
    store = Store.open(store_url)
    try:
        yield store
    finally:
        store.close()


def resolve_at_once(store_url: str, folders: tuple[Path, Path], clock: datetime) -> list[dict[str, str]]:
    """Two writers (two builds, or a build and a send) resolve the seeds of their folders at once,
    both having read the store before either writes; each one's page name by title."""
    from syndicator.seeds.identity import resolve
    from syndicator.seeds.parse import read_seeds

    barrier = threading.Barrier(2)
    results: dict[int, dict[str, str]] = {}
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        files, problems = read_seeds(folders[n], ZoneInfo("UTC"))
        assert not problems
        own = Store.open(store_url)
        try:
            original, first_read = own.story_keys, [True]

            def slow_keys() -> dict[str, StoredStory]:
                keys = original()
                if first_read.pop() if first_read else False:
                    barrier.wait(timeout=10)  # both have read: neither knows what the other writes
                return keys

            own.story_keys = slow_keys  # type: ignore[method-assign]
            results[n] = {s.title: s.page for s in resolve(files, own, clock + timedelta(seconds=n))}
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    return [results[0], results[1]]


def write_seed(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "001.txt").write_text(text, encoding="utf-8")
    return folder


def test_two_writers_naming_colliding_stories_at_once_give_them_two_names(
        tmp_path: Path, store_url: str, clock: datetime) -> None:
    """Each writer sees only its own story and gives it the plain name: one of them records it
    first, the other's write fails on the name's unique key, and it reads again and yields."""
    Store.open(store_url).close()
    other = f"Another lead\n\nIts body.\n\n{SECOND}\n{TEXT[SECOND]}\n"  # nothing else shared
    folders = (write_seed(tmp_path / "a", briefs(FIRST)), write_seed(tmp_path / "b", other))
    a, b = resolve_at_once(store_url, folders, clock)
    assert a[FIRST] != b[SECOND]
    assert {a[FIRST], b[SECOND]} >= {default_name(FIRST)}  # one kept the plain name
    with _opened(store_url) as store:
        stored = {s.id: s.slug for s in store.story_keys().values()}
    assert len(stored) == 4 and len(set(stored.values())) == 4


def test_two_writers_naming_an_older_story_at_once_agree(
        tmp_path: Path, store_url: str, clock: datetime) -> None:
    """Stories recorded without names (an older syndicator), named by two writers at once: the
    second finds them named meanwhile, reads again and takes the names the first recorded."""
    from syndicator.seeds.identity import resolve
    from syndicator.seeds.parse import read_seeds

    folder = write_seed(tmp_path / "s", briefs(FIRST, SECOND))
    with _opened(store_url) as store:
        files, _ = read_seeds(folder, ZoneInfo("UTC"))
        before = {s.title: s.page for s in resolve(files, store, clock)}
        with store.begin() as conn:
            conn.exec_driver_sql("UPDATE stories SET slug = NULL")
    a, b = resolve_at_once(store_url, (folder, folder), clock + LATER)
    assert a == b == before
