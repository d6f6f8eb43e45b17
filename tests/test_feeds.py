"""The feeds and pages ``build`` writes: golden files, readers' view, stability and escaping.

Regenerate the golden files after an intended change with ``SYNDICATOR_UPDATE_GOLDEN=1 pytest``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree

from syndicator.config import Config, load_config
from syndicator.site.build import BuildResult, build
from syndicator.state.store import Store
from tests import w3c
from tests.conftest import assert_golden

FEEDS = ("rss.xml", "atom.xml", "feed.json")
ATOM = "{http://www.w3.org/2005/Atom}"
SITE = "https://example.org/"
Project = Any  # tests/conftest.py's Project
NASTY = '<script>alert(1)</script> & "quotes"'


@dataclass
class Built:
    config: Config
    result: BuildResult

    @property
    def out(self) -> Path:
        return self.result.output

    def read(self, name: str) -> bytes:
        return (self.out / name).read_bytes()

    def parsed(self, name: str) -> Any:
        parsed = feedparser.parse(self.read(name))
        assert not parsed.bozo, parsed.get("bozo_exception")
        return parsed

    def json(self) -> Any:
        return json.loads(self.read("feed.json"))


def run_build(project: Project, clock: datetime) -> Built:
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        return Built(config, build(config, store, clock))
    finally:
        store.close()


def set_config(project: Project, old: str, new: str) -> None:
    text = project.config.read_text()
    assert old in text
    project.config.write_text(text.replace(old, new, 1))


def rich_seeds(project: Project, count: int = 30) -> None:
    """Many stories with every kind of front matter, alongside the example."""
    for n in range(1, count + 1):
        front = ""
        if n % 3 == 0:
            front = (f"---\nid: story-{n}\ndate: 2025-03-{n % 28 + 1:02d}T10:{n:02d}:00+02:00\n"
                     f"author: Zoë Ångström\nurl: https://news.example.com/a/{n}?x=1&y=2\n"
                     "tags: politics, économie, 日本\n---\n")
        elif n % 3 == 1:
            front = f"---\ndate: 2025-03-{n % 28 + 1:02d}\ntags:\n---\n"
        body = (f"Story {n}: “Quotes” & AT&T café 😀 日本語\n\nFirst paragraph of {n}, naïve.\n"
                f"Second <em>paragraph</em> & more.\n\nBrief {n} A\nSummary A {n}.\n\nBrief {n} B\n")
        project.seed(f"{n:03d}_rich.txt", front + body)


def only_seed(project: Project, text: str) -> None:
    """Replace the example with one seed file."""
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed("001_only.txt", text)


@pytest.fixture
def example(project: Project, clock: datetime) -> Built:
    return run_build(project, clock)


# -- golden files ----------------------------------------------------------------------


@pytest.mark.parametrize("name", FEEDS)
def test_golden_feed(example: Built, name: str) -> None:
    assert_golden(f"feeds/{name}", example.read(name))


# -- what readers see --------------------------------------------------------------------


def test_feedparser_reads_every_entry_with_every_field(example: Built, clock: datetime) -> None:
    for name, version in (("rss.xml", "rss20"), ("atom.xml", "atom10")):
        feed = example.parsed(name)
        assert feed.version == version
        assert feed.feed.title == "The Test Dispatch"
        assert len(feed.entries) == 7
        for entry in feed.entries:
            for field in ("id", "link", "title", "published", "summary", "content"):
                assert entry.get(field), (name, field, entry.get("title"))
            assert entry.content[0].value.startswith("<p>")
            assert entry.published_parsed is not None
        lead = feed.entries[0]
        assert lead.title.startswith("Grozev: Putin Could Accept NATO Expansion")
        assert lead.content[0].value.count("<p>") == 6
        assert lead.summary.startswith("Investigative journalist Christo Grozev")
        assert "Ukraine’s" in lead.summary


def test_json_feed_items_have_every_field(example: Built) -> None:
    feed = example.json()
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == "The Test Dispatch"
    assert feed["home_page_url"] == SITE
    assert len(feed["items"]) == 7
    for item in feed["items"]:
        for field in ("id", "url", "title", "content_html", "summary", "date_published"):
            assert item[field], (field, item)
        assert datetime.fromisoformat(item["date_published"]).tzinfo is not None


def ids(built: Built) -> dict[str, list[str]]:
    return {
        "rss.xml": [e.id for e in built.parsed("rss.xml").entries],
        "atom.xml": [e.id for e in built.parsed("atom.xml").entries],
        "feed.json": [i["id"] for i in built.json()["items"]],
    }


def test_the_same_id_in_rss_guid_atom_id_and_json_id(example: Built) -> None:
    found = ids(example)
    assert len(set(found["rss.xml"])) == 7
    assert found["rss.xml"] == found["atom.xml"] == found["feed.json"]
    rss = etree.fromstring(example.read("rss.xml"))
    guids = rss.findall("channel/item/guid")
    assert [g.text for g in guids] == found["rss.xml"]
    assert all(g.get("isPermaLink") == "false" for g in guids)


def test_links_are_absolute_and_every_linked_page_exists(example: Built) -> None:
    rss = example.parsed("rss.xml")
    atom = example.parsed("atom.xml")
    links = [e.link for e in rss.entries] + [e.link for e in atom.entries]
    links += [i["url"] for i in example.json()["items"]]
    assert links and all(link.startswith(SITE + "stories/") and link.endswith(".html") for link in links)
    for link in links:
        assert (example.out / link.removeprefix(SITE)).is_file()
    # No relative reference anywhere in the XML.
    for name in ("rss.xml", "atom.xml"):
        hrefs = re.findall(rb'href="([^"]*)"', example.read(name))
        assert hrefs and all(h.startswith(b"https://") for h in hrefs)


def test_self_links_are_site_url_plus_file_name(example: Built) -> None:
    rss = etree.fromstring(example.read("rss.xml"))
    (self_rss,) = [x for x in rss.iter(f"{ATOM}link") if x.get("rel") == "self"]
    assert self_rss.get("href") == SITE + "rss.xml"
    assert rss.findtext("channel/link") == SITE
    atom = etree.fromstring(example.read("atom.xml"))
    (self_atom,) = [x for x in atom.findall(f"{ATOM}link") if x.get("rel") == "self"]
    assert self_atom.get("href") == SITE + "atom.xml"
    assert example.json()["feed_url"] == SITE + "feed.json"


def test_self_links_follow_a_site_url_with_a_path(project: Project, clock: datetime) -> None:
    set_config(project, 'url = "https://example.org/"', 'url = "https://example.org/news"')
    built = run_build(project, clock)
    rss = built.parsed("rss.xml")
    assert {link.href for link in rss.feed.links if link.rel == "self"} == {"https://example.org/news/rss.xml"}
    assert all(e.link.startswith("https://example.org/news/stories/") for e in rss.entries)


def test_newest_first(project: Project, clock: datetime) -> None:
    rich_seeds(project)
    set_config(project, "limit = 50", "limit = 200")
    built = run_build(project, clock)
    for name in ("rss.xml", "atom.xml"):
        times = [e.published_parsed for e in built.parsed(name).entries]
        assert times == sorted(times, reverse=True)
        assert len(times) == 7 + 30 * 3
    dates = [datetime.fromisoformat(i["date_published"]) for i in built.json()["items"]]
    assert dates == sorted(dates, reverse=True)
    assert ids(built)["rss.xml"] == ids(built)["feed.json"]


def test_limit_caps_the_feeds_but_every_story_gets_a_page(project: Project, clock: datetime) -> None:
    set_config(project, "limit = 50", "limit = 3")
    built = run_build(project, clock)
    for name in ("rss.xml", "atom.xml"):
        assert len(built.parsed(name).entries) == 3
    assert len(built.json()["items"]) == 3
    assert len(list((built.out / "stories").glob("*.html"))) == 7
    assert built.parsed("rss.xml").entries[0].title.startswith("Grozev")


def test_feed_time_is_the_newest_story_not_the_clock(project: Project, clock: datetime) -> None:
    for path in project.seeds.iterdir():
        path.unlink()
    only_seed(project, "---\ndate: 2025-03-14T09:30:00+02:00\n---\nOlder\n\nBody.\n")
    project.seed("002.txt", "---\ndate: 2025-04-01T12:00:00Z\n---\nNewest\n\nBody.\n")
    built = run_build(project, clock)
    newest = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
    rss = etree.fromstring(built.read("rss.xml"))
    assert parsedate_to_datetime(rss.findtext("channel/lastBuildDate")) == newest
    assert rss.findtext("channel/lastBuildDate") == "Tue, 01 Apr 2025 12:00:00 +0000"  # RFC 822
    atom = etree.fromstring(built.read("atom.xml"))
    assert atom.findtext(f"{ATOM}updated") == "2025-04-01T12:00:00+00:00"  # RFC 3339 with zone
    assert atom.findtext(f"{ATOM}entry/{ATOM}published") == "2025-04-01T12:00:00+00:00"
    assert [e.title for e in built.parsed("atom.xml").entries] == ["Newest", "Older"]


def test_a_later_rebuild_with_no_change_leaves_every_file_byte_identical(
    project: Project, clock: datetime
) -> None:
    rich_seeds(project, 6)
    first = run_build(project, clock)
    files = sorted(p for p in first.out.rglob("*") if p.is_file())
    # 4 top files, 7 + 18 story pages, 3 tags x (3 feeds + a page) and their list, sitemap,
    # news sitemap, robots
    assert len(files) == 4 + 7 + 6 * 3 + 3 * 4 + 1 + 3
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    again = run_build(project, clock + timedelta(hours=3))
    assert again.result.written == () and again.result.unchanged == len(files)
    assert sorted(p for p in again.out.rglob("*") if p.is_file()) == files  # no temp files left
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before


def test_a_change_rewrites_only_what_changed(project: Project, clock: datetime) -> None:
    run_build(project, clock)
    project.seed("001_new.txt", "A new story\n\nIts body.\n")
    again = run_build(project, clock + timedelta(hours=1))
    assert set(again.result.written) == {"rss.xml", "atom.xml", "feed.json", "index.html", "sitemap.xml",
                                         "news-sitemap.xml",
                                         next(n for n in again.result.written if n.startswith("stories/"))}
    assert again.parsed("rss.xml").entries[0].title == "A new story"


# -- text: escaping, clean-up, unicode ------------------------------------------------------


def test_xml_illegal_control_characters_are_removed(project: Project, clock: datetime) -> None:
    only_seed(project, "Bad\x01 title\x0bwith\x1f controls\x7f\n\nBody\x02 text\x0c.\n\nBrief\x08 B\n")
    built = run_build(project, clock)
    for name in ("rss.xml", "atom.xml", "feed.json", "index.html"):
        data = built.read(name).decode()
        assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", data), name
    titles = [e.title for e in built.parsed("atom.xml").entries]
    assert "Bad title with controls" in titles and "Brief B" in titles
    assert "Bad title with controls" in [i["title"] for i in built.json()["items"]]
    assert "<p>Body text .</p>" in built.parsed("rss.xml").entries[0].content[0].value


def test_markup_in_a_title_is_escaped_once_in_xml_and_html_and_verbatim_in_json(
    project: Project, clock: datetime
) -> None:
    only_seed(project, f"{NASTY}\n\nBody with <b>bold</b> & more.\n")
    built = run_build(project, clock)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp;"
    rss, atom = built.read("rss.xml").decode(), built.read("atom.xml").decode()
    for xml in (rss, atom):
        assert f'<title>{escaped} "quotes"</title>' in xml  # escaped exactly once
        assert "<script>" not in xml
    assert built.parsed("rss.xml").entries[0].title == NASTY
    assert etree.fromstring(built.read("atom.xml")).findtext(f"{ATOM}entry/{ATOM}title") == NASTY
    assert built.json()["items"][0]["title"] == NASTY
    assert NASTY in built.read("feed.json").decode().replace('\\"', '"')
    # Content is HTML whose text is the body: markup in the seed is text, never markup.
    content = etree.fromstring(built.read("atom.xml")).findtext(f"{ATOM}entry/{ATOM}content")
    assert content == "<p>Body with &lt;b&gt;bold&lt;/b&gt; &amp; more.</p>"
    index = built.read("index.html").decode()
    assert "<script>" not in index and f">{escaped} &#34;quotes&#34;</a>" in index
    (page,) = [p for p in (built.out / "stories").iterdir() if p.name.startswith("script-alert-1")]
    html = page.read_text()
    assert "<script>" not in html
    assert f"<h1>{escaped} &#34;quotes&#34;</h1>" in html
    assert "<p>Body with &lt;b&gt;bold&lt;/b&gt; &amp; more.</p>" in html


def test_unicode_survives_into_every_output(project: Project, clock: datetime) -> None:
    title = "“Curly” quotes — café, naïve, Zoë 😀 日本語のニュース"
    only_seed(project, f"---\nauthor: Zoë Ångström\ntags: économie, 日本\n---\n{title}\n\n"
                 "Body: ‘single’, ß, 中文, 🚀.\n")
    built = run_build(project, clock)
    for name in ("rss.xml", "atom.xml"):
        entry = built.parsed(name).entries[0]
        assert entry.title == title
        assert entry.content[0].value == "<p>Body: ‘single’, ß, 中文, 🚀.</p>"
        assert entry.author == "Zoë Ångström"
        assert [t.term for t in entry.tags] == ["économie", "日本"]
    item = built.json()["items"][0]
    assert (item["title"], item["authors"]) == (title, [{"name": "Zoë Ångström"}])
    assert item["tags"] == ["économie", "日本"]
    assert title.encode() in built.read("feed.json")  # not \u-escaped
    assert title.encode() in built.read("rss.xml")  # UTF-8, not character references
    assert "“Curly” quotes" in built.read("index.html").decode()
    page = built.out / next(n for n in built.result.written if n.startswith("stories/curly-quotes-cafe"))
    assert title in page.read_text(encoding="utf-8")


def test_one_line_brief_still_has_summary_and_content(project: Project, clock: datetime) -> None:
    only_seed(project, "Lead\n\nBody.\n\nHeadline only\n")
    built = run_build(project, clock)
    entry = built.parsed("atom.xml").entries[1]
    assert entry.title == "Headline only"
    assert entry.summary == "Headline only" and entry.content[0].value == "<p>Headline only</p>"
    item = built.json()["items"][1]
    assert item["summary"] == "Headline only" and item["content_html"] == "<p>Headline only</p>"


def test_rss_byline_uses_dc_creator_without_inventing_an_email(project: Project, clock: datetime) -> None:
    only_seed(project, "---\nauthor: Ana Reporter\n---\nBylined\n\nBody.\n")
    built = run_build(project, clock)
    rss = etree.fromstring(built.read("rss.xml"))
    item = rss.find("channel/item")
    assert item.findtext("{http://purl.org/dc/elements/1.1/}creator") == "Ana Reporter"
    assert item.find("author") is None
    assert b"newsroom@example.org (Ana" not in built.read("rss.xml")


def test_front_matter_url_becomes_external_url(project: Project, clock: datetime) -> None:
    only_seed(project, "---\nurl: https://source.example.com/a?b=1&c=2\n---\nSourced\n\nBody.\n")
    built = run_build(project, clock)
    assert built.json()["items"][0]["external_url"] == "https://source.example.com/a?b=1&c=2"
    page = next(built.out.glob("stories/sourced-*.html")).read_text()
    assert 'href="https://source.example.com/a?b=1&amp;c=2"' in page


# -- pages ------------------------------------------------------------------------------------


def test_index_has_autodiscovery_links_for_all_three_feeds(example: Built) -> None:
    index = example.read("index.html").decode()
    found = re.findall(r'<link rel="alternate" type="([^"]+)" title="[^"]*" href="([^"]+)">', index)
    assert found == [
        ("application/rss+xml", SITE + "rss.xml"),
        ("application/atom+xml", SITE + "atom.xml"),
        ("application/feed+json", SITE + "feed.json"),
    ]
    for entry in example.parsed("rss.xml").entries:
        assert f'href="{entry.link}"' in index


def test_story_pages_have_canonical_links_and_the_full_text(example: Built) -> None:
    for entry in example.parsed("atom.xml").entries:
        page = (example.out / entry.link.removeprefix(SITE)).read_text()
        assert f'<link rel="canonical" href="{entry.link}">' in page
        assert entry.content[0].value in page


# -- outside checks -------------------------------------------------------------------------------

@pytest.mark.parametrize("rich", [False, True], ids=["example", "rich"])
def test_w3c_feed_validator_reports_nothing(project: Project, clock: datetime, rich: bool) -> None:
    if rich:
        rich_seeds(project)
        set_config(project, "limit = 50", "limit = 200")
    built = run_build(project, clock)
    w3c.assert_valid(built.out, SITE, "rss.xml", "atom.xml")


@pytest.mark.skipif(shutil.which("newsboat") is None, reason="newsboat is not installed")
@pytest.mark.parametrize("name", ["rss.xml", "atom.xml"])
def test_newsboat_reads_the_feed(project: Project, clock: datetime, tmp_path: Path, name: str) -> None:
    rich_seeds(project, 3)
    built = run_build(project, clock)
    home = tmp_path / "newsboat"
    home.mkdir()
    (home / "urls").write_text((built.out / name).as_uri() + "\n")
    (home / "config").write_text("")
    cache = home / "cache.db"
    out = subprocess.run(
        ["newsboat", "-x", "reload", "-u", str(home / "urls"), "-c", str(cache), "-C", str(home / "config")],
        env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_DATA_HOME": str(home)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    with sqlite3.connect(cache) as db:
        feeds = db.execute("SELECT title, url FROM rss_feed").fetchall()
        items = db.execute("SELECT guid, title, url, pubDate, content, author FROM rss_item").fetchall()
    assert feeds == [("The Test Dispatch", SITE)]
    expected = {e.id: e for e in built.parsed(name).entries}
    assert len(items) == len(expected) == 7 + 3 * 3
    for guid, title, url, pub, content, author in items:
        entry = expected[guid]
        assert (title, url) == (entry.title, entry.link)
        assert pub == int(datetime(*entry.published_parsed[:6]).replace(tzinfo=UTC).timestamp())
        assert content
        if entry.get("author"):
            assert author == entry.author
    assert any(t == "Story 3: “Quotes” & AT&T café 😀 日本語" for _, t, *_ in items)



def test_the_w3c_validator_catches_a_broken_feed(example: Built) -> None:
    broken = example.read("atom.xml").replace(b"<updated>", b"<updated>yesterday ", 1)
    found = w3c.problems(broken, SITE + "atom.xml")
    assert any("InvalidRFC3339Date" in problem or "Date" in problem for problem in found), found
