"""Feeds for the whole archive: RFC 5005 archive documents, per-tag feeds, sitemaps and
corrections, read back as readers and crawlers do, and validated by the W3C validator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
from lxml import etree

from syndicator.config import load_config
from syndicator.mail.edition import plan
from syndicator.site import sitemaps
from syndicator.site.build import BuildResult, build
from syndicator.state.store import Store
from syndicator.text import one_line
from tests import w3c
from tests.conftest import Project, assert_golden

SITE = "https://example.org/"
HISTORY = "{http://purl.org/syndication/history/1.0}archive"
SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


def _config(project: Project, limit: int, size: int) -> None:
    text = project.config.read_text().replace("limit = 50", f"limit = {limit}\narchive_size = {size}")
    project.config.write_text(text)


def _stories(project: Project, count: int, start: int = 0, tags: str = "") -> None:
    """``count`` one-story seed files (a new file per story, as a newsroom adds them)."""
    for n in range(start, start + count):
        front = f"---\nid: story-{n}\ntags: {tags}\n---\n" if tags else f"---\nid: story-{n}\n---\n"
        project.seed(f"{n:04d}_s.txt", f"{front}Story number {n}\n\nThe text of story {n}.\n")


def _only(project: Project) -> None:
    for path in project.seeds.iterdir():
        path.unlink()


def _build(project: Project, now: datetime) -> BuildResult:
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        return build(config, store, now)
    finally:
        store.close()


def _walk(out: Path, name: str) -> tuple[list[str], list[str]]:
    """Follow prev-archive from the subscription feed as a reader does: ids and documents."""
    ids: list[str] = []
    seen: list[str] = []
    url: str | None = SITE + name
    while url is not None:
        doc = url.removeprefix(SITE)
        assert doc not in seen, f"{doc} links back into the chain"
        seen.append(doc)
        parsed: Any = feedparser.parse((out / doc).read_bytes())
        assert not parsed.bozo, parsed.get("bozo_exception")
        ids += [e.id for e in parsed.entries]
        prev = [link.href for link in parsed.feed.get("links", []) if link.rel == "prev-archive"]
        url = prev[0] if prev else None
    return ids, seen


def _root(path: Path) -> Any:
    return etree.fromstring(path.read_bytes())


def _links(path: Path) -> dict[str, str]:
    root = _root(path)
    return {
        el.get("rel"): el.get("href").removeprefix(SITE)
        for el in root.iter("{http://www.w3.org/2005/Atom}link")
        if el.get("rel") != "alternate"
    }


def test_a_reader_walking_prev_archive_gets_every_story_once(project: Project, clock: datetime) -> None:
    _only(project)
    _stories(project, 57)
    _config(project, limit=10, size=20)
    result = _build(project, clock)
    out = result.output
    for name in ("atom.xml", "rss.xml"):
        ids, docs = _walk(out, name)
        assert len(ids) == len(set(ids)) == 57
        kind = name.split(".")[0]
        assert docs == [name, f"archive/{kind}-3.xml", f"archive/{kind}-2.xml", f"archive/{kind}-1.xml"]
    # Both ways: each archive names the current feed, its older and its newer neighbour.
    assert _links(out / "archive/atom-2.xml") == {
        "self": "archive/atom-2.xml",
        "current": "atom.xml",
        "prev-archive": "archive/atom-1.xml",
        "next-archive": "archive/atom-3.xml",
    }
    assert "next-archive" not in _links(out / "archive/atom-3.xml")
    assert "prev-archive" not in _links(out / "archive/atom-1.xml")
    assert _links(out / "atom.xml")["prev-archive"] == "archive/atom-3.xml"
    for doc in [f"archive/{k}-{n}.xml" for k in ("atom", "rss") for n in (1, 2, 3)]:
        assert _root(out / doc).find(f".//{HISTORY}") is not None, doc
    assert _root(out / "atom.xml").find(f".//{HISTORY}") is None
    # Pages are counted from the oldest: 20, 20, then the 7 the feed let go most recently.
    counts = [len(feedparser.parse((out / f"archive/atom-{n}.xml").read_bytes()).entries) for n in (1, 2, 3)]
    assert counts == [20, 20, 7]
    docs = ["atom.xml", "rss.xml", *(f"archive/{k}-{n}.xml" for k in ("atom", "rss") for n in (1, 2, 3))]
    w3c.assert_valid(out, SITE, *docs)


def test_a_full_archive_page_never_changes_again(project: Project, clock: datetime) -> None:
    _only(project)
    _stories(project, 50)
    _config(project, limit=10, size=20)
    out = _build(project, clock).output
    full = {n: (out / f"archive/{k}-{n}.xml").read_bytes() for n in (1,) for k in ("atom",)}
    before = {
        f"archive/{k}-{n}.xml": (out / f"archive/{k}-{n}.xml").read_bytes()
        for k in ("atom", "rss")
        for n in (1, 2)
    }
    assert full
    for step in range(1, 13):  # one new story at a time, past the end of page 2 and into page 3
        _stories(project, 1, start=100 + step)
        result = _build(project, clock + timedelta(hours=step))
        changed = {name for name in result.written if name.startswith("archive/")}
        assert changed <= {f"archive/{k}-{n}.xml" for k in ("atom", "rss") for n in (2, 3)}, changed
    for name in ("archive/atom-1.xml", "archive/rss-1.xml"):
        assert (out / name).read_bytes() == before[name]
    ids, _ = _walk(out, "atom.xml")
    assert len(ids) == len(set(ids)) == 62


def test_golden_archive_chain(project: Project, clock: datetime) -> None:
    _only(project)
    _stories(project, 7)
    _config(project, limit=3, size=2)
    out = _build(project, clock).output
    for name in ("atom.xml", "archive/atom-1.xml", "archive/atom-2.xml", "archive/rss-1.xml"):
        assert_golden(f"archive/{name.replace('/', '_')}", (out / name).read_bytes())


def test_every_tag_has_its_own_feeds_and_page(project: Project, clock: datetime) -> None:
    _only(project)
    _stories(project, 4, tags="Politics, Économie")
    _stories(project, 3, start=10, tags="Sport")
    _stories(project, 2, start=20, tags="日本")
    out = _build(project, clock).output
    folders = sorted(p.name for p in (out / "tags").iterdir() if p.is_dir())
    assert folders[:3] == ["economie", "politics", "sport"] and folders[3].startswith("tag-")
    sport = out / "tags" / "sport"
    for name in ("atom.xml", "rss.xml"):
        parsed: Any = feedparser.parse((sport / name).read_bytes())
        assert [e.title for e in parsed.entries] == [f"Story number {n}" for n in (10, 11, 12)]  # file order
        assert parsed.feed.title == "The Test Dispatch: Sport"
    feed = json.loads((sport / "feed.json").read_bytes())
    assert feed["feed_url"] == SITE + "tags/sport/feed.json" and len(feed["items"]) == 3
    assert all(i["tags"] == ["Sport"] for i in feed["items"])
    page = (sport / "index.html").read_text()
    for kind, name in (
        ("application/rss+xml", "rss.xml"),
        ("application/atom+xml", "atom.xml"),
        ("application/feed+json", "feed.json"),
    ):
        assert (
            f'type="{kind}" title="The Test Dispatch: Sport' in page
            and f'href="{SITE}tags/sport/{name}"' in page
        )
    story = next((out / "stories").glob("story-number-10-*.html")).read_text()
    assert '<a href="../tags/sport/index.html" rel="tag">Sport</a>' in story
    w3c.assert_valid(out, SITE, *(f"tags/{f}/{k}" for f in folders for k in ("atom.xml", "rss.xml")))


def test_sitemaps_name_every_page_and_robots_names_them(project: Project, clock: datetime) -> None:
    _only(project)
    _stories(project, 5, tags="Sport")
    out = _build(project, clock).output
    urls = {u.findtext(f"{SM}loc"): u.findtext(f"{SM}lastmod") for u in _root(out / "sitemap.xml")}
    stories = sorted(p.name for p in (out / "stories").iterdir())
    assert set(urls) == {SITE, SITE + "tags/sport/index.html", *(SITE + "stories/" + s for s in stories)}
    assert all(datetime.fromisoformat(v) <= clock + timedelta(minutes=1) for v in urls.values())
    news = _root(out / "news-sitemap.xml")
    news_ns = "{http://www.google.com/schemas/sitemap-news/0.9}"
    titles = [u.findtext(f"{news_ns}news/{news_ns}title") for u in news]
    assert sorted(titles) == sorted(f"Story number {n}" for n in range(5))
    assert news[0].findtext(f"{news_ns}news/{news_ns}publication/{news_ns}name") == "The Test Dispatch"
    assert news[0].findtext(f"{news_ns}news/{news_ns}publication/{news_ns}language") == "en"
    assert (out / "robots.txt").read_text() == (
        "User-agent: *\nAllow: /\n\nSitemap: https://example.org/sitemap.xml\n"
        "Sitemap: https://example.org/news-sitemap.xml\n"
    )
    # Two days later the news sitemap has let them go; the sitemap keeps them.
    later = _build(project, clock + timedelta(days=3)).output
    assert len(_root(later / "news-sitemap.xml")) == 0
    assert len(_root(later / "sitemap.xml")) == 7


def test_past_50000_urls_the_sitemap_becomes_an_index(
    project: Project, clock: datetime, monkeypatch: Any
) -> None:
    monkeypatch.setattr(sitemaps, "MAX_URLS", 3)
    _only(project)
    _stories(project, 5)
    out = _build(project, clock).output
    root = _root(out / "sitemap.xml")
    assert root.tag == f"{SM}sitemapindex"
    parts = [s.findtext(f"{SM}loc") for s in root]
    # The home page apart, then the stories in parts of fixed seq blocks (3 here: MAX_URLS),
    # so that a new story rewrites only the last part.
    assert parts == [SITE + "sitemap-pages.xml", SITE + "sitemap-1.xml", SITE + "sitemap-2.xml"]
    assert [len(_root(out / p.removeprefix(SITE))) for p in parts] == [1, 3, 2]


def test_a_correction_is_an_update_never_a_new_story(project: Project, clock: datetime) -> None:
    _only(project)
    project.seed("001_a.txt", "---\nid: budget\n---\nThe budget passes\n\nIt passed by 12 votes.\n")
    first = _build(project, clock).output
    atom = feedparser.parse((first / "atom.xml").read_bytes()).entries[0]
    page = next((first / "stories").iterdir())
    # The desk corrects the story: same id, new text, a correction note.
    project.seed(
        "001_a.txt",
        "---\nid: budget\ncorrection: An earlier version gave the margin as 12 votes.\n"
        "---\nThe budget passes\n\nIt passed by 21 votes.\n",
    )
    later = clock + timedelta(hours=5)
    out = _build(project, later).output
    (entry,) = feedparser.parse((out / "atom.xml").read_bytes()).entries
    assert (entry.id, entry.published) == (atom.id, atom.published)
    assert datetime(*entry.updated_parsed[:6]) > datetime(*atom.updated_parsed[:6])
    assert "Correction:" in entry.content[0].value and "21 votes" in entry.content[0].value
    (item,) = json.loads((out / "feed.json").read_bytes())["items"]
    assert item["date_modified"] > item["date_published"]
    text = next((out / "stories").iterdir()).read_text()
    assert next((out / "stories").iterdir()) == page  # the same page, same name
    assert "Updated <time" in text and "An earlier version gave the margin as 12 votes." in text
    lastmod = {u.findtext(f"{SM}loc"): u.findtext(f"{SM}lastmod") for u in _root(out / "sitemap.xml")}
    assert lastmod[entry.link] == datetime.fromisoformat(item["date_modified"]).isoformat()
    w3c.assert_valid(out, SITE, "atom.xml", "rss.xml")
    # Unchanged since: a rebuild is byte-identical.
    again = _build(project, later + timedelta(hours=1))
    assert [n for n in again.written if n != "news-sitemap.xml"] == []


def test_the_next_digest_lists_corrections_apart_and_does_not_mail_them_as_new(
    project: Project, clock: datetime
) -> None:
    from syndicator.mail.edition import open_edition

    _only(project)
    project.seed("001_a.txt", "---\nid: budget\n---\nThe budget passes\n\nIt passed by 12 votes.\n")
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        assert open_edition(config, store, clock) is not None
        project.seed(
            "001_a.txt",
            "---\nid: budget\ncorrection: The margin was 21 votes, not 12.\n---\n"
            "The budget passes\n\nIt passed by 21 votes.\n",
        )
        project.seed("002_b.txt", "A new story\n\nIts text.\n")
        planned = plan(config, store, clock + timedelta(days=1))
        assert planned is not None
        assert [s.title for s in planned.stories] == ["A new story"]
        assert [s.title for s in planned.corrections] == ["The budget passes"]
        edition = open_edition(config, store, clock + timedelta(days=1))
        assert edition is not None
        assert "CORRECTIONS\n\nThe budget passes\n" in edition.text
        assert "The margin was 21 votes, not 12." in edition.text
        assert ">Corrections</h2>" in edition.html
        # Listed once: the edition after does not list it again.
        project.seed("003_c.txt", "Another story\n\nMore.\n")
        third = plan(config, store, clock + timedelta(days=2))
        assert third is not None and third.corrections == ()
    finally:
        store.close()


def test_archive_entries_are_built_exactly_as_feedgen_builds_them(project: Project, clock: datetime) -> None:
    """The archive's fast entry builder must not drift from the subscription feeds' format."""
    from syndicator.seeds.identity import load_stories
    from syndicator.site import feeds
    from tests.test_feeds import rich_seeds

    rich_seeds(project, 12)
    project.seed("050_c.txt", "---\nid: c\ncorrection: A name was misspelled.\nauthor: A. Writer\n"
                              "tags: x & y, <b>\n---\nCorrected <story>\n\nText & more.\n")
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        stories = load_stories(config, store, clock)
    finally:
        store.close()
    channel = feeds.Channel.site(config)
    links = [("current", ""), ("prev-archive", "1")]
    for kind in (feeds.RSS, feeds.ATOM):
        name = feeds.archive_name(kind, 2)
        slow = feeds._xml(config, channel, list(stories), kind, name, links, archive=True)
        assert feeds._archive_xml(config, channel, list(stories), kind, name, links) == slow


def _lxml_archive(config: Any, channel: Any, items: list[Any], kind: str, name: str,
                  links: list[tuple[str, str]]) -> bytes:
    """An archive document with its entries built as lxml elements (the reference)."""
    from email.utils import format_datetime
    from html import escape

    from syndicator.site import feeds
    from syndicator.text import one_line

    a, dc, content = feeds.ATOM_NS, feeds.DC_NS, feeds.CONTENT_NS
    fg = feeds._generator(config, channel, [], name, kind)
    fg.updated(feeds.updated(items))
    fg.lastBuildDate(feeds.updated(items))
    root = etree.fromstring(fg.rss_str(pretty=False) if kind == feeds.RSS else fg.atom_str(pretty=False))
    if kind == feeds.RSS:
        root = feeds._rss_fixes(config, root, [])
        channel_el = root.find("channel")
        assert channel_el is not None
        for story in items:
            item = etree.SubElement(channel_el, "item")
            etree.SubElement(item, "title").text = one_line(story.title)
            etree.SubElement(item, "link").text = feeds.story_url(config, story)
            if story.author:
                etree.SubElement(item, f"{{{dc}}}creator").text = one_line(story.author)
            etree.SubElement(item, "description").text = escape(feeds.feed_summary(story), quote=False)
            etree.SubElement(item, f"{{{content}}}encoded").text = feeds.feed_content(story)
            etree.SubElement(item, "guid", isPermaLink="false").text = story.id
            for tag in story.tags:
                etree.SubElement(item, "category").text = one_line(tag)
            etree.SubElement(item, "pubDate").text = format_datetime(story.published)
        spaces = {"content": content, **({"dc": dc} if any(s.author for s in items) else {})}
        etree.cleanup_namespaces(root, top_nsmap=spaces)
    else:
        for story in items:
            entry = etree.SubElement(root, f"{{{a}}}entry")
            etree.SubElement(entry, f"{{{a}}}id").text = story.id
            etree.SubElement(entry, f"{{{a}}}title").text = one_line(story.title)
            etree.SubElement(entry, f"{{{a}}}updated").text = story.updated.isoformat()
            if story.author:
                author = etree.SubElement(entry, f"{{{a}}}author")
                etree.SubElement(author, f"{{{a}}}name").text = one_line(story.author)
            etree.SubElement(entry, f"{{{a}}}content", type="html").text = feeds.feed_content(story)
            etree.SubElement(entry, f"{{{a}}}link", href=feeds.story_url(config, story), rel="alternate",
                             type="text/html")
            etree.SubElement(entry, f"{{{a}}}summary").text = feeds.feed_summary(story)
            for tag in story.tags:
                etree.SubElement(entry, f"{{{a}}}category", term=one_line(tag))
            etree.SubElement(entry, f"{{{a}}}published").text = story.published.isoformat()
    feeds._history(config, channel, root, kind, links, True)
    return feeds._serialise(root)


def test_archive_entries_written_as_text_match_lxml_for_hostile_text(project: Project) -> None:
    """The entries are written as text, not through lxml: any text a seed can carry (markup,
    entities, quotes, CR, tabs, controls, astral and right-to-left characters, empty after
    clean-up) comes out as lxml writes it."""
    import random
    from datetime import UTC

    from syndicator.model import Story
    from syndicator.site import feeds

    pieces = ["plain", "<b>", "&amp;", "&", '"', "'", ">", "\r", "\t", "\n", "  ", "\x01", "\x85",
              "\u202e", "é", "\U0001f4f0", "]]>", "=?utf-8?q?x?=", "\u00a0", ""]
    rng = random.Random(11)

    def text() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    stories = [Story(id=f"urn:uuid:00000000-0000-4000-8000-{n:012d}", slug=f"story-{n}-0123abcd",
                     title=text() or "t", paragraphs=tuple(text() for _ in range(rng.randint(0, 3))),
                     is_lead=bool(n % 2), published=when + timedelta(minutes=n),
                     first_seen=when + timedelta(minutes=n), seq=n + 1,
                     author=rng.choice([None, text(), "A. Writer"]), url=None,
                     tags=tuple(t for t in (text() for _ in range(rng.randint(0, 3))) if t.strip()),
                     path=Path("x.txt"), line=1,
                     revised=rng.choice([None, when + timedelta(days=1)]),
                     correction=rng.choice([None, text()]))
               for n in range(300)]
    config = load_config(project.config)
    channel = feeds.Channel.site(config)
    for kind in (feeds.RSS, feeds.ATOM):
        for links in ([("current", ""), ("next-archive", "2")], [("current", ""), ("prev-archive", "1")]):
            name = feeds.archive_name(kind, 2)
            for start in range(0, 300, 50):
                page = stories[start:start + 50]
                expected = _lxml_archive(config, channel, page, kind, name, links)
                assert feeds._archive_xml(config, channel, page, kind, name, links) == expected, (kind, start)
                etree.fromstring(expected)  # well-formed, for what it is worth


def test_sitemaps_written_as_text_match_lxml_for_any_url() -> None:
    """Sitemaps and sitemap indexes are written as text, not through lxml: any URL and time
    (markup, entities, quotes, CR, astral and right-to-left characters, a few or none) come
    out as lxml writes them, and text XML cannot hold is refused as lxml refuses it."""
    import random

    import pytest

    pieces = ["https://example.org/", "stories/a-b-0123abcd.html", "?q=1&r=2", "<", ">", '"', "'",
              "\r", "\t", "\n", "é", "\U0001f4f0", "\u202e", "%20", "]]>", ""]
    rng = random.Random(7)

    def text() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))

    for n in (0, 1, 2, 7, 60):
        urls = [(text(), text()) for _ in range(n)]
        for root, item in (("urlset", "url"), ("sitemapindex", "sitemap")):
            expected = sitemaps._serialise(sitemaps._tree(root, item, urls))
            assert sitemaps._listing(root, item, urls) == expected, (n, root)
    with pytest.raises(ValueError):
        sitemaps.urlset([("https://example.org/a\x01b.html", "2026-01-02T03:04:05+00:00")])


def test_the_news_sitemap_written_as_text_matches_lxml_for_any_story(project: Project) -> None:
    """The news sitemap is written as text too: any URL, headline and site name (markup,
    entities, CR, astral and right-to-left characters) comes out as lxml writes the same tree,
    recent stories only and newest first; none, and text XML cannot hold, go to lxml itself."""
    import random

    import pytest

    config = load_config(project.config)
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    pieces = ["https://example.org/", "stories/a-b-0123abcd.html", "?q=1&r=2", "<", ">", '"', "'",
              "\r", "\t", "é", "\U0001f4f0", "\u202e", "]]>", "Harbour ", ""]
    rng = random.Random(11)

    def text() -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))

    for n in (0, 1, 2, 9, 40):
        items = [(text(), text(), now - timedelta(hours=rng.randint(-2, 60)), rng.randint(1, 50))
                 for _ in range(n)]
        site = config.model_copy(update={"site": config.site.model_copy(update={"title": text() or "T"})})
        recent = sorted((i for i in items if now - sitemaps.NEWS_WINDOW <= i[2] <= now + sitemaps.NEWS_AHEAD),
                        key=lambda i: (-i[2].timestamp(), i[3]))
        shown = [(loc, when.isoformat(timespec="seconds"), one_line(title)) for loc, title, when, _ in recent]
        tree = sitemaps._news_tree(one_line(site.site.title), site.site.language, shown)
        expected = sitemaps._serialise(tree)
        assert sitemaps.render_news(site, items, now) == expected, n
    with pytest.raises(ValueError):
        sitemaps.render_news(config, [("https://example.org/a\x01b.html", "A title", now, 1)], now)
