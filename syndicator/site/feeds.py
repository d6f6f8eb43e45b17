"""RSS 2.0 and Atom 1.0 (through feedgen) and JSON Feed 1.1, from the newest stories."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from urllib.parse import urljoin

from feedgen.feed import FeedGenerator
from lxml import etree

from syndicator.config import Config
from syndicator.model import Story
from syndicator.text import clean, one_line

RSS, ATOM, JSON_FEED = "rss.xml", "atom.xml", "feed.json"
ATOM_NS = "http://www.w3.org/2005/Atom"
DC_NS = "http://purl.org/dc/elements/1.1/"
GENERATOR = "syndicator"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def story_url(config: Config, story: Story) -> str:
    return urljoin(config.site.url, story.page)


def content_html(story: Story) -> str:
    """The story's full text as HTML: one escaped paragraph per line of the seed."""
    return "".join(f"<p>{escape(clean(p), quote=False)}</p>" for p in story.paragraphs)


def feed_summary(story: Story) -> str:
    """The summary every feed carries: the story's summary, else (a one-line brief) its title."""
    return one_line(story.summary) or one_line(story.title)


def feed_content(story: Story) -> str:
    """The full content every feed carries; a one-line brief's content is its title."""
    return content_html(story) or f"<p>{escape(one_line(story.title), quote=False)}</p>"


def updated(stories: Sequence[Story]) -> datetime:
    """The feed's time comes from its newest story, never from the clock."""
    return max((s.published for s in stories), default=EPOCH)


def render_feeds(config: Config, stories: Sequence[Story]) -> dict[str, bytes]:
    """The three feed files, byte-stable for the same stories."""
    items = list(stories[: config.feeds.limit])
    return {
        RSS: _rss(config, items),
        ATOM: _atom(config, items),
        JSON_FEED: _json(config, items),
    }


def _generator(config: Config, items: list[Story], self_name: str) -> FeedGenerator:
    site = config.site
    fg = FeedGenerator()
    fg.id(site.url)
    fg.title(one_line(site.title))
    fg.subtitle(one_line(site.description or site.title))
    fg.language(site.language)
    fg.generator(GENERATOR, uri="https://pypi.org/project/syndicator/")
    if site.author_name:
        fg.author(name=one_line(site.author_name), email=site.author_email or None)
    # feedgen takes RSS <link> from the last link(): the site page must come last.
    fg.link(href=urljoin(site.url, self_name), rel="self",
            type="application/rss+xml" if self_name == RSS else "application/atom+xml")
    if config.feeds.websub_hub:
        fg.link(href=config.feeds.websub_hub, rel="hub")
    fg.link(href=site.url, rel="alternate", type="text/html")
    fg.updated(updated(items))
    fg.lastBuildDate(updated(items))
    for story in items:
        _entry(fg, config, story)
    return fg


def _entry(fg: FeedGenerator, config: Config, story: Story) -> None:
    fe = fg.add_entry(order="append")
    url = story_url(config, story)
    fe.id(story.id)
    fe.guid(story.id, permalink=False)
    fe.title(one_line(story.title))
    fe.link(href=url, rel="alternate", type="text/html")
    fe.published(story.published)
    fe.updated(story.published)
    fe.summary(feed_summary(story))
    fe.content(feed_content(story), type="html")
    if story.author:
        # Atom only: RSS <author> must be an email address, so RSS gets dc:creator (see _rss).
        fe.author(name=one_line(story.author))
    for tag in story.tags:
        fe.category(term=one_line(tag))


def _rss(config: Config, items: list[Story]) -> bytes:
    fg = _generator(config, items, RSS)
    root = etree.fromstring(fg.rss_str(pretty=False))
    channel = root.find("channel")
    assert channel is not None
    if config.feeds.websub_hub:
        # feedgen writes only rel="self" into RSS; the hub link is added here.
        hub = etree.SubElement(channel, f"{{{ATOM_NS}}}link", href=config.feeds.websub_hub, rel="hub")
        channel.remove(hub)
        channel.insert(_index_after(channel, f"{{{ATOM_NS}}}link"), hub)
    # feedgen drops an RSS item author without an email (and would put the newsroom's
    # address on it otherwise); a story's byline goes into dc:creator instead.
    # RSS <description> is HTML (entity-encoded in the XML); feedgen puts plain text there
    # escaped only once, so a seed's "<b>" would reach readers as a live element. Plain text
    # is escaped for HTML here, so the reader shows exactly what the author typed.
    description = channel.find("description")
    if description is not None and description.text:
        description.text = escape(description.text, quote=False)
    for item, story in zip(channel.iterfind("item"), items, strict=True):
        summary = item.find("description")
        if summary is not None:
            summary.text = escape(feed_summary(story), quote=False)
        for stale in item.findall("author"):
            item.remove(stale)
        if story.author:
            creator = etree.Element(f"{{{DC_NS}}}creator")
            creator.text = one_line(story.author)
            item.insert(_index_after(item, "link"), creator)
    etree.cleanup_namespaces(root, top_nsmap={"dc": DC_NS} if any(s.author for s in items) else None)
    return _serialise(root)


def _atom(config: Config, items: list[Story]) -> bytes:
    fg = _generator(config, items, ATOM)
    root = etree.fromstring(fg.atom_str(pretty=False))
    # feedgen drops rel and type from entry links; readers want the alternate page.
    for link in root.iterfind(f"{{{ATOM_NS}}}entry/{{{ATOM_NS}}}link"):
        link.set("rel", "alternate")
        link.set("type", "text/html")
    return _serialise(root)


def _index_after(parent: etree._Element, tag: str) -> int:
    last = -1
    for index, child in enumerate(parent):
        if child.tag == tag:
            last = index
    return last + 1


def _serialise(root: etree._Element) -> bytes:
    etree.indent(root, space="  ")
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


def _json(config: Config, items: list[Story]) -> bytes:
    site = config.site
    feed: dict[str, object] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": one_line(site.title),
        "home_page_url": site.url,
        "feed_url": urljoin(site.url, JSON_FEED),
        "description": one_line(site.description),
        "language": site.language,
    }
    if site.author_name:
        feed["authors"] = [{"name": one_line(site.author_name)}]
    if config.feeds.websub_hub:
        feed["hubs"] = [{"type": "WebSub", "url": config.feeds.websub_hub}]
    feed["items"] = [_json_item(config, s) for s in items]
    return (json.dumps(feed, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _json_item(config: Config, story: Story) -> dict[str, object]:
    item: dict[str, object] = {
        "id": story.id,
        "url": story_url(config, story),
        "title": one_line(story.title),
        "content_html": feed_content(story),
        "summary": feed_summary(story),
        "date_published": story.published.isoformat(),
        "date_modified": story.published.isoformat(),
    }
    if story.url:
        item["external_url"] = story.url
    if story.author:
        item["authors"] = [{"name": one_line(story.author)}]
    if story.tags:
        item["tags"] = [one_line(t) for t in story.tags]
    return item
