"""Sitemaps for search engines: ``sitemap.xml`` (every page; a sitemap index past 50,000 URLs,
as the protocol requires), ``news-sitemap.xml`` (Google News: the last two days' stories, at
most 1,000) and ``robots.txt`` naming both."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urljoin

from lxml import etree

from syndicator.config import Config
from syndicator.model import Story
from syndicator.site.feeds import EPOCH, story_url
from syndicator.text import one_line

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
NEWS = "news-sitemap.xml"
MAX_URLS = 50_000  # per sitemap file (the protocol's limit)
NEWS_WINDOW = timedelta(days=2)
NEWS_MAX = 1_000


def outputs(config: Config, stories: Sequence[Story], tag_pages: dict[str, datetime],
            now: datetime) -> dict[str, bytes]:
    """``tag_pages``: each tag page's path and the newest change among its stories."""
    site = config.site.url
    newest = max((s.updated for s in stories), default=EPOCH)
    urls = [(site, newest)]
    urls += [(story_url(config, s), s.updated) for s in stories]
    urls += [(urljoin(site, page), when) for page, when in sorted(tag_pages.items())]
    files: dict[str, bytes] = {}
    if len(urls) <= MAX_URLS:
        files["sitemap.xml"] = _urlset(urls)
    else:
        parts = [urls[i:i + MAX_URLS] for i in range(0, len(urls), MAX_URLS)]
        for number, part in enumerate(parts, start=1):
            files[f"sitemap-{number}.xml"] = _urlset(part)
        files["sitemap.xml"] = _index([(urljoin(site, f"sitemap-{n}.xml"), max(w for _, w in part))
                                       for n, part in enumerate(parts, start=1)])
    files[NEWS] = _news(config, stories, now)
    files["robots.txt"] = (f"User-agent: *\nAllow: /\n\nSitemap: {urljoin(site, 'sitemap.xml')}\n"
                           f"Sitemap: {urljoin(site, 'news-sitemap.xml')}\n").encode()
    return files


def _urlset(urls: Sequence[tuple[str, datetime]]) -> bytes:
    return _listing("urlset", "url", urls)


def _index(sitemaps: Sequence[tuple[str, datetime]]) -> bytes:
    return _listing("sitemapindex", "sitemap", sitemaps)


def _listing(root_tag: str, item_tag: str, items: Sequence[tuple[str, datetime]]) -> bytes:
    """A sitemap (``urlset`` of ``url``) or a sitemap index (``sitemapindex`` of ``sitemap``)."""
    root = etree.Element(f"{{{SITEMAP_NS}}}{root_tag}", nsmap={None: SITEMAP_NS})
    for loc, when in items:
        item = etree.SubElement(root, f"{{{SITEMAP_NS}}}{item_tag}")
        etree.SubElement(item, f"{{{SITEMAP_NS}}}loc").text = loc
        etree.SubElement(item, f"{{{SITEMAP_NS}}}lastmod").text = _w3c(when)
    return _serialise(root)


NewsItem = tuple[str, str, datetime, int]  # the story's URL, title, publication time, seq


def news_candidates(config: Config, stories: Sequence[Story], now: datetime) -> list[NewsItem]:
    """What a news sitemap at ``now`` or at any later time can name: the newest ``NEWS_MAX``
    stories it names now (later, more stories enter only from the future, and the window's
    old end only lets stories go), and every future-dated story."""
    soon = now + timedelta(minutes=5)
    shown = [s for s in stories if now - NEWS_WINDOW <= s.published <= soon]
    shown.sort(key=lambda s: (-s.published.timestamp(), s.seq))
    ahead = [s for s in stories if s.published > soon]
    return [(story_url(config, s), s.title, s.published, s.seq) for s in [*ahead, *shown[:NEWS_MAX]]]


def _news(config: Config, stories: Sequence[Story], now: datetime) -> bytes:
    return render_news(config, news_candidates(config, stories, now), now)


def render_news(config: Config, items: Sequence[NewsItem], now: datetime) -> bytes:
    """Google News wants only recent articles: published within two days of this build."""
    recent = [i for i in items if now - NEWS_WINDOW <= i[2] <= now + timedelta(minutes=5)]
    recent.sort(key=lambda i: (-i[2].timestamp(), i[3]))
    root = etree.Element(f"{{{SITEMAP_NS}}}urlset", nsmap={None: SITEMAP_NS, "news": NEWS_NS})
    for loc, title, published, _seq in recent[:NEWS_MAX]:
        url = etree.SubElement(root, f"{{{SITEMAP_NS}}}url")
        etree.SubElement(url, f"{{{SITEMAP_NS}}}loc").text = loc
        news = etree.SubElement(url, f"{{{NEWS_NS}}}news")
        publication = etree.SubElement(news, f"{{{NEWS_NS}}}publication")
        etree.SubElement(publication, f"{{{NEWS_NS}}}name").text = one_line(config.site.title)
        etree.SubElement(publication, f"{{{NEWS_NS}}}language").text = config.site.language
        etree.SubElement(news, f"{{{NEWS_NS}}}publication_date").text = _w3c(published)
        etree.SubElement(news, f"{{{NEWS_NS}}}title").text = one_line(title)
    return _serialise(root)


def _w3c(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _serialise(root: etree._Element) -> bytes:
    etree.indent(root, space="  ")
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data
