"""Sitemaps for search engines: ``sitemap.xml`` (every page; past 5,000 URLs a sitemap index
of parts, each well under the protocol's 50,000), ``news-sitemap.xml`` (Google News: the last
two days' stories, at most 1,000) and ``robots.txt`` naming both."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urljoin

from lxml import etree

from syndicator.config import Config
from syndicator.model import Story

# ``_text``: element text as libxml2 writes it (the archive documents' entries are written so
# too). Not moved out of feeds.py: its bytes are part of every page's signature
# (``manifest``), and a change there rebuilds every page of a site.
from syndicator.site.feeds import EPOCH, _text, story_url
from syndicator.text import one_line

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
NEWS = "news-sitemap.xml"
MAX_URLS = 50_000  # per sitemap file (the protocol's limit)
NEWS_WINDOW = timedelta(days=2)
NEWS_MAX = 1_000
NEWS_AHEAD = timedelta(minutes=5)  # a story dated this little ahead of the clock is news now


# Past BLOCK URLs, the sitemap is an index of parts, each the stories of a block of BLOCK seqs:
# a new story (the newest seq) rewrites the last part, an edited one its own, never all.
BLOCK = 5_000
Url = tuple[str, str]  # a page's URL and its last change (W3C datetime)


def outputs(config: Config, stories: Sequence[Story], tag_pages: dict[str, datetime],
            now: datetime) -> dict[str, bytes]:
    """``tag_pages``: each tag page's path and the newest change among its stories."""
    pages = site_pages(config, max((s.updated for s in stories), default=EPOCH), tag_pages)
    if len(stories) + len(pages) <= block_size():
        files = {"sitemap.xml": single(pages, [(story_url(config, s), _w3c(s.updated)) for s in stories])}
    else:
        size = block_size()
        blocks: dict[int, list[Url]] = {}
        for s in sorted(stories, key=lambda s: s.seq):
            blocks.setdefault(block_of(s.seq, size), []).append((story_url(config, s), _w3c(s.updated)))
        files = {part_name(n): urlset(urls) for n, urls in blocks.items()}
        parts = [(n, max(w for _, w in urls)) for n, urls in blocks.items()]
        files.update(split(config, pages, parts))
    files[NEWS] = _news(config, stories, now)
    files["robots.txt"] = robots(config)
    return files


def robots(config: Config) -> bytes:
    site = config.site.url
    return (f"User-agent: *\nAllow: /\n\nSitemap: {urljoin(site, 'sitemap.xml')}\n"
            f"Sitemap: {urljoin(site, 'news-sitemap.xml')}\n").encode()


def site_pages(config: Config, newest: datetime, tag_pages: dict[str, datetime]) -> list[Url]:
    """The home page (its last change: the newest story's), then every tag page."""
    site = config.site.url
    tags = [(urljoin(site, page), _w3c(when)) for page, when in sorted(tag_pages.items())]
    return [(site, _w3c(newest)), *tags]


def single(pages: list[Url], stories: list[Url]) -> bytes:
    """The one sitemap of a site of at most BLOCK pages: home, stories newest first, tags."""
    return urlset([pages[0], *stories, *pages[1:]])


def block_size() -> int:
    return min(BLOCK, MAX_URLS)


def block_of(seq: int, size: int) -> int:
    """A story's sitemap part: by its seq, so a new story changes only the last."""
    return (seq - 1) // size + 1


def part_name(number: int) -> str:
    return f"sitemap-{number}.xml"


def split(config: Config, pages: list[Url], parts: Sequence[tuple[int, str]]) -> dict[str, bytes]:
    """The sitemap index over the story parts (number, last change) and the site's pages."""
    site = config.site.url
    files: dict[str, bytes] = {}
    listed: list[Url] = []
    for n, start in enumerate(range(0, len(pages), MAX_URLS), start=1):
        name = "sitemap-pages.xml" if n == 1 else f"sitemap-pages-{n}.xml"
        files[name] = urlset(pages[start:start + MAX_URLS])
        listed.append((urljoin(site, name), max(w for _, w in pages[start:start + MAX_URLS])))
    beside = urljoin(site, "x")[:-1]  # as urljoin places a plain name (800 of them at a million seeds)
    listed += [(beside + part_name(n), when) for n, when in sorted(parts)]
    files["sitemap.xml"] = _listing("sitemapindex", "sitemap", listed)
    return files


def urlset(urls: Sequence[Url]) -> bytes:
    return _listing("urlset", "url", urls)


def _listing(root_tag: str, item_tag: str, items: Sequence[Url]) -> bytes:
    """A sitemap (``urlset`` of ``url``) or a sitemap index (``sitemapindex`` of ``sitemap``).

    Written as text, as lxml writes the same tree (``_tree``): 50,000 URLs took lxml 210 ms,
    the text 43 ms. A string XML cannot hold goes to lxml, which refuses it as it always did.
    A test holds the two to the same bytes.
    """
    if not items or any(map(_UNFIT.search, (value for item in items for value in item))):
        return _serialise(_tree(root_tag, item_tag, items))
    open_item, close_item = f"  <{item_tag}>\n    <loc>", f"</lastmod>\n  </{item_tag}>\n"
    body = "".join([f"{open_item}{_text(loc)}</loc>\n    <lastmod>{_text(when)}{close_item}"
                    for loc, when in items])
    return (f"<?xml version='1.0' encoding='UTF-8'?>\n<{root_tag} xmlns=\"{SITEMAP_NS}\">\n"
            f"{body}</{root_tag}>\n").encode()


# What lxml refuses as element text (XML 1.0's excluded characters), or writes otherwise
# than ``_text`` does.
_UNFIT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _tree(root_tag: str, item_tag: str, items: Sequence[Url]) -> etree._Element:
    root = etree.Element(f"{{{SITEMAP_NS}}}{root_tag}", nsmap={None: SITEMAP_NS})
    for loc, when in items:
        item = etree.SubElement(root, f"{{{SITEMAP_NS}}}{item_tag}")
        etree.SubElement(item, f"{{{SITEMAP_NS}}}loc").text = loc
        etree.SubElement(item, f"{{{SITEMAP_NS}}}lastmod").text = when
    return root


NewsItem = tuple[str, str, datetime, int]  # the story's URL, title, publication time, seq


def news_candidates(config: Config, stories: Sequence[Story], now: datetime) -> list[NewsItem]:
    """What a news sitemap at ``now`` or at any later time can name: the newest ``NEWS_MAX``
    stories it names now (later, more stories enter only from the future, and the window's
    old end only lets stories go), and every future-dated story."""
    soon = now + NEWS_AHEAD
    shown = [s for s in stories if now - NEWS_WINDOW <= s.published <= soon]
    shown.sort(key=lambda s: (-s.published.timestamp(), s.seq))
    ahead = [s for s in stories if s.published > soon]
    return [(story_url(config, s), s.title, s.published, s.seq) for s in [*ahead, *shown[:NEWS_MAX]]]


def _news(config: Config, stories: Sequence[Story], now: datetime) -> bytes:
    return render_news(config, news_candidates(config, stories, now), now)


def render_news(config: Config, items: Sequence[NewsItem], now: datetime) -> bytes:
    """Google News wants only recent articles: published within two days of this build.

    Written as text, as lxml writes the same tree (``_news_tree``), like the other sitemaps:
    every rebuild writes this one, no change included (1,000 stories: lxml took 33 ms, the
    text 7 ms, one run with the machine busy).
    """
    recent = [i for i in items if now - NEWS_WINDOW <= i[2] <= now + NEWS_AHEAD]
    recent.sort(key=lambda i: (-i[2].timestamp(), i[3]))
    name, language = one_line(config.site.title), config.site.language
    shown = [(loc, _w3c(published), one_line(title)) for loc, title, published, _seq in recent[:NEWS_MAX]]
    if not shown or any(map(_UNFIT.search, (name, language, *(v for item in shown for v in item)))):
        return _serialise(_news_tree(name, language, shown))
    head = (f"\n    <news:news>\n      <news:publication>\n        <news:name>{_text(name)}</news:name>\n"
            f"        <news:language>{_text(language)}</news:language>\n      </news:publication>\n"
            "      <news:publication_date>")
    body = "".join([f"  <url>\n    <loc>{_text(loc)}</loc>{head}{_text(when)}</news:publication_date>\n"
                    f"      <news:title>{_text(title)}</news:title>\n    </news:news>\n  </url>\n"
                    for loc, when, title in shown])
    return (f"<?xml version='1.0' encoding='UTF-8'?>\n<urlset xmlns=\"{SITEMAP_NS}\" "
            f"xmlns:news=\"{NEWS_NS}\">\n{body}</urlset>\n").encode()


def _news_tree(name: str, language: str, shown: list[tuple[str, str, str]]) -> etree._Element:
    root = etree.Element(f"{{{SITEMAP_NS}}}urlset", nsmap={None: SITEMAP_NS, "news": NEWS_NS})
    for loc, when, title in shown:
        url = etree.SubElement(root, f"{{{SITEMAP_NS}}}url")
        etree.SubElement(url, f"{{{SITEMAP_NS}}}loc").text = loc
        news = etree.SubElement(url, f"{{{NEWS_NS}}}news")
        publication = etree.SubElement(news, f"{{{NEWS_NS}}}publication")
        etree.SubElement(publication, f"{{{NEWS_NS}}}name").text = name
        etree.SubElement(publication, f"{{{NEWS_NS}}}language").text = language
        etree.SubElement(news, f"{{{NEWS_NS}}}publication_date").text = when
        etree.SubElement(news, f"{{{NEWS_NS}}}title").text = title
    return root


def _w3c(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _serialise(root: etree._Element) -> bytes:
    etree.indent(root, space="  ")
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data
