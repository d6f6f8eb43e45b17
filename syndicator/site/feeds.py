"""RSS 2.0 and Atom 1.0 (through feedgen) and JSON Feed 1.1, from the newest stories."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
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
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
GENERATOR = "syndicator"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def story_url(config: Config, story: Story) -> str:
    return page_url(config, story.slug)


def page_url(config: Config, slug: str) -> str:
    """The URL of the story page named ``slug``."""
    if slug.isascii() and slug.replace("-", "").isalnum():
        return _stories_url(config.site.url) + slug + ".html"  # urljoin per story: a tenth of a feed
    return urljoin(config.site.url, f"stories/{slug}.html")


@functools.lru_cache(maxsize=8)
def _stories_url(site_url: str) -> str:
    return urljoin(site_url, "stories/")


def content_html(story: Story) -> str:
    """The story's full text as HTML: one escaped paragraph per line of the seed."""
    return "".join(f"<p>{escape(clean(p), quote=False)}</p>" for p in story.paragraphs)


def feed_summary(story: Story) -> str:
    """The summary every feed carries: the story's summary, else (a one-line brief) its title."""
    return one_line(story.summary) or one_line(story.title)


def feed_content(story: Story) -> str:
    """The full content every feed carries; a one-line brief's content is its title. A
    correction is said first, so a reader who sees the update sees why."""
    body = content_html(story) or f"<p>{escape(one_line(story.title), quote=False)}</p>"
    return correction_html(story) + body


def correction_html(story: Story) -> str:
    if not story.correction:
        return ""
    return f"<p><strong>Correction:</strong> {escape(one_line(story.correction), quote=False)}</p>"


def updated(stories: Sequence[Story]) -> datetime:
    """The feed's time comes from its newest change, never from the clock."""
    return max((s.updated for s in stories), default=EPOCH)


@dataclass(frozen=True)
class Channel:
    """One set of feeds: the site's own (``prefix`` "") or a tag's (``tags/<slug>/``)."""

    prefix: str
    title: str
    description: str
    page: str  # the HTML page the feeds stand for, relative to the site

    @classmethod
    def site(cls, config: Config) -> Channel:
        return cls("", config.site.title, config.site.description or config.site.title, "")

    def url(self, config: Config, name: str) -> str:
        return urljoin(config.site.url, self.prefix + name)


def render_feeds(config: Config, stories: Sequence[Story]) -> dict[str, bytes]:
    """The site's three feeds and, past ``feeds.limit`` stories, the RFC 5005 archive: every
    file byte-stable for the same stories."""
    files, archive = site_feeds(config, stories)
    files.update({doc.name: doc.render() for doc in archive})
    return files


@dataclass(frozen=True)
class ArchiveDoc:
    """One archive document, rendered only when needed: a full page is the same for good, so
    a build whose manifest remembers its ``key`` (and finds the file untouched) skips it."""

    name: str
    key: str
    render: Callable[[], bytes]


def site_feeds(config: Config, stories: Sequence[Story]) -> tuple[dict[str, bytes], list[ArchiveDoc]]:
    """The subscription feeds (rendered) and the archive documents (rendered on demand)."""
    current, pages = archive_pages(stories, config.feeds.limit, config.feeds.archive_size)
    files = current_feeds(config, current, len(pages))
    docs: list[ArchiveDoc] = []
    for number, page in enumerate(pages, start=1):
        docs += archive_docs(config, number, len(pages), page)
    return files, docs


def current_feeds(config: Config, current: Sequence[Story], pages: int) -> dict[str, bytes]:
    """The subscription feeds: ``current`` newest first, linking the newest of ``pages``."""
    return render_channel(config, Channel.site(config), current, archive_links=_current_links(pages))


def archive_docs(config: Config, number: int, pages: int, page: Sequence[Story]) -> list[ArchiveDoc]:
    """Archive page ``number`` of ``pages`` (its RSS and Atom documents), holding ``page``."""
    links = _archive_links(number, pages)
    shown = newest_first(page)
    key = _archive_key(number, links, shown)
    channel = Channel.site(config)
    return [ArchiveDoc(name, key, functools.partial(_archive_xml, config, channel, shown, kind, name, links))
            for kind in (RSS, ATOM) for name in (archive_name(kind, number),)]


def _archive_key(number: int, links: list[tuple[str, str]], shown: list[Story]) -> str:
    digest = hashlib.blake2b(repr((number, links)).encode(), digest_size=12)
    for story in shown:
        digest.update(repr((story.id, story.slug, story.title, story.paragraphs, story.published,
                            story.updated, story.author, story.url, story.tags,
                            story.correction)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def render_channel(config: Config, channel: Channel, items: Sequence[Story], *,
                   archive_links: Sequence[tuple[str, str]] = ()) -> dict[str, bytes]:
    """RSS, Atom and JSON Feed of ``items`` (newest first), under the channel's prefix."""
    items = list(items)
    return {
        channel.prefix + RSS: _xml(config, channel, items, RSS, RSS, archive_links),
        channel.prefix + ATOM: _xml(config, channel, items, ATOM, ATOM, archive_links),
        channel.prefix + JSON_FEED: _json(config, channel, items),
    }


# -- RFC 5005 archives -----------------------------------------------------------------------
HISTORY_NS = "http://purl.org/syndication/history/1.0"
ARCHIVE = "archive"


def archive_pages(stories: Sequence[Story], limit: int, size: int) -> tuple[list[Story], list[list[Story]]]:
    """The subscription feed's stories (newest first) and the archive pages (oldest first).

    Both go by the time stories were first seen: every new story is seen after every story
    before it (identity gives it a later ``first_seen``), so it enters the feed and pushes the
    feed's earliest-seen story onto the newest archive page. A page that is full never changes
    again (it can be cached for good), and every story is in exactly one place.
    """
    by_seq = sorted(stories, key=lambda s: (s.first_seen, s.seq))
    cut = max(0, len(by_seq) - limit)
    archived = by_seq[:cut]
    pages = [archived[i:i + size] for i in range(0, len(archived), size)]
    return newest_first(by_seq[cut:]), pages


def archive_name(kind: str, number: int) -> str:
    return f"{ARCHIVE}/{'rss' if kind == RSS else 'atom'}-{number}.xml"


def newest_first(stories: Sequence[Story]) -> list[Story]:
    return sorted(stories, key=lambda s: (-s.published.timestamp(), s.seq))


def _current_links(pages: int) -> list[tuple[str, str]]:
    return [("prev-archive", str(pages))] if pages else []


def _archive_links(number: int, pages: int) -> list[tuple[str, str]]:
    # (rel, archive page number, or "" for the subscription document itself)
    links = [("current", "")]
    if number > 1:
        links.append(("prev-archive", str(number - 1)))
    if number < pages:
        links.append(("next-archive", str(number + 1)))
    return links


def _xml(config: Config, channel: Channel, items: list[Story], kind: str, self_name: str,
         links: Sequence[tuple[str, str]], *, archive: bool = False) -> bytes:
    own = self_name if archive else channel.prefix + self_name
    fg = _generator(config, channel, items, own, kind)
    root = etree.fromstring(fg.rss_str(pretty=False) if kind == RSS else fg.atom_str(pretty=False))
    root = _rss_fixes(config, root, items) if kind == RSS else _atom_fixes(root)
    if links or archive:
        _history(config, channel, root, kind, links, archive)
    return _serialise(root)


def _archive_xml(config: Config, channel: Channel, items: list[Story], kind: str, name: str,
                 links: Sequence[tuple[str, str]]) -> bytes:
    """An archive document: the same XML ``_xml`` makes, its entries written as text.

    feedgen spends ~130 us an entry, and lxml's elements ~30; a 50,000-seed archive holds
    200,000 entries in each format. The head still comes from feedgen and lxml (no entries);
    the entries are written as lxml would serialise them at that depth and spliced in before
    the closing tags. Tests hold the result to ``_xml`` byte for byte, and to entries built
    with lxml for hostile text (which feedgen refuses or drops).
    """
    fg = _generator(config, channel, [], name, kind)
    fg.updated(updated(items))
    fg.lastBuildDate(updated(items))
    root = etree.fromstring(fg.rss_str(pretty=False) if kind == RSS else fg.atom_str(pretty=False))
    if kind == RSS:
        root = _rss_fixes(config, root, [])
        # Declared at the top in feedgen's order (content, then dc), as the subscription feed has them.
        spaces = {"content": CONTENT_NS, **({"dc": DC_NS} if any(s.author for s in items) else {})}
        etree.cleanup_namespaces(root, top_nsmap=spaces, keep_ns_prefixes=list(spaces) if items else None)
    # The entries, spliced in below, use the namespaces declared above: they stay declared.
    _history(config, channel, root, kind, links, True,
             keep=list(spaces) if kind == RSS and items else [])
    head = _serialise(root)
    if not items:
        return head
    close = b"\n  </channel>\n</rss>\n" if kind == RSS else b"\n</feed>\n"
    if not head.endswith(close):
        raise AssertionError(f"unexpected end of an archive document: {head[-40:]!r}")
    entry = _rss_item_text if kind == RSS else _atom_entry_text
    body = "".join([entry(config, story) for story in items]).encode("utf-8", "surrogatepass")
    return b"".join((head[:-len(close)], b"\n", body, close[1:]))


def _text(value: str) -> str:
    """Element text as libxml2 writes it."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    return value


def _attr(value: str) -> str:
    """An attribute value as libxml2 writes it (in double quotes)."""
    value = _text(value)
    for raw, written in (('"', "&quot;"), ("\n", "&#10;"), ("\t", "&#9;")):
        if raw in value:
            value = value.replace(raw, written)
    return value


def _rss_item_text(config: Config, story: Story) -> str:
    """An RSS item, serialised as lxml writes it at two levels deep (in the channel)."""
    parts = ["    <item>\n      <title>", _text(one_line(story.title)), "</title>\n      <link>",
             _text(story_url(config, story)), "</link>\n"]
    if story.author:
        parts += ["      <dc:creator>", _text(one_line(story.author)), "</dc:creator>\n"]
    parts += ["      <description>", _text(escape(feed_summary(story), quote=False)),
              "</description>\n      <content:encoded>", _text(feed_content(story)),
              '</content:encoded>\n      <guid isPermaLink="false">', _text(story.id), "</guid>\n"]
    for tag in story.tags:
        parts += ["      <category>", _text(one_line(tag)), "</category>\n"]
    parts += ["      <pubDate>", format_datetime(story.published), "</pubDate>\n    </item>\n"]
    return "".join(parts)


def _atom_entry_text(config: Config, story: Story) -> str:
    """An Atom entry, serialised as lxml writes it at one level deep (in the feed)."""
    parts = ["  <entry>\n    <id>", _text(story.id), "</id>\n    <title>", _text(one_line(story.title)),
             "</title>\n    <updated>", story.updated.isoformat(), "</updated>\n"]
    if story.author:
        parts += ["    <author>\n      <name>", _text(one_line(story.author)), "</name>\n    </author>\n"]
    parts += ['    <content type="html">', _text(feed_content(story)), '</content>\n    <link href="',
              _attr(story_url(config, story)), '" rel="alternate" type="text/html"/>\n    <summary>',
              _text(feed_summary(story)), "</summary>\n"]
    for tag in story.tags:
        parts += ['    <category term="', _attr(one_line(tag)), '"/>\n']
    parts += ["    <published>", story.published.isoformat(), "</published>\n  </entry>\n"]
    return "".join(parts)


def _history(config: Config, channel: Channel, root: etree._Element, kind: str,
             links: Sequence[tuple[str, str]], archive: bool, *, keep: Sequence[str] = ()) -> None:
    """RFC 5005 section 4: ``fh:archive`` on archive documents; prev/next/current links."""
    parent = root.find("channel") if kind == RSS else root
    assert parent is not None
    link_tag = f"{{{ATOM_NS}}}link"
    where = _index_after(parent, link_tag)
    added = []
    if archive:
        mark = etree.Element(f"{{{HISTORY_NS}}}archive", nsmap={"fh": HISTORY_NS})
        added.append(mark)
    for rel, number in links:
        name = archive_name(kind, int(number)) if number else channel.prefix + kind
        link = etree.Element(link_tag, href=channel.url(config, name) if number == "" else
                             urljoin(config.site.url, name), rel=rel,
                             type="application/rss+xml" if kind == RSS else "application/atom+xml")
        added.append(link)
    for offset, element in enumerate(added):
        parent.insert(where + offset, element)
    etree.cleanup_namespaces(root, top_nsmap={"fh": HISTORY_NS} if archive else None,
                             keep_ns_prefixes=["fh", *keep] if archive else None)


def _generator(config: Config, channel: Channel, items: list[Story], self_name: str,
               kind: str) -> FeedGenerator:
    site = config.site
    fg = FeedGenerator()
    fg.id(urljoin(site.url, channel.page) if channel.prefix else site.url)
    fg.title(one_line(channel.title))
    fg.subtitle(one_line(channel.description))
    fg.language(site.language)
    fg.generator(GENERATOR, uri="https://pypi.org/project/syndicator/")
    if site.author_name:
        fg.author(name=one_line(site.author_name), email=site.author_email or None)
    # feedgen takes RSS <link> from the last link(): the site page must come last.
    fg.link(href=urljoin(site.url, self_name), rel="self",
            type="application/rss+xml" if kind == RSS else "application/atom+xml")
    if config.feeds.websub_hub:
        fg.link(href=config.feeds.websub_hub, rel="hub")
    fg.link(href=urljoin(site.url, channel.page), rel="alternate", type="text/html")
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
    fe.updated(story.updated)
    fe.summary(feed_summary(story))
    fe.content(feed_content(story), type="html")
    if story.author:
        # Atom only: RSS <author> must be an email address, so RSS gets dc:creator (see _rss).
        fe.author(name=one_line(story.author))
    for tag in story.tags:
        fe.category(term=one_line(tag))


def _rss_fixes(config: Config, root: etree._Element, items: list[Story]) -> etree._Element:
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
    return root


def _atom_fixes(root: etree._Element) -> etree._Element:
    # feedgen drops rel and type from entry links; readers want the alternate page.
    for link in root.iterfind(f"{{{ATOM_NS}}}entry/{{{ATOM_NS}}}link"):
        link.set("rel", "alternate")
        link.set("type", "text/html")
    return root


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


def _json(config: Config, channel: Channel, items: list[Story]) -> bytes:
    site = config.site
    feed: dict[str, object] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": one_line(channel.title),
        "home_page_url": urljoin(site.url, channel.page),
        "feed_url": channel.url(config, JSON_FEED),
        "description": one_line(channel.description if channel.prefix else site.description),
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
        "date_modified": story.updated.isoformat(),
    }
    if story.url:
        item["external_url"] = story.url
    if story.author:
        item["authors"] = [{"name": one_line(story.author)}]
    if story.tags:
        item["tags"] = [one_line(t) for t in story.tags]
    return item
