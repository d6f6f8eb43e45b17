"""Editions on the web: a page per digest edition, an index of them and an Atom feed.

A page is written when its edition opens (before the first message that links it goes out)
and afterwards only when missing: it records what was mailed, so later corrections or a
removed seed never rewrite it. The index and the feed follow every new edition.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import jinja2
from lxml import etree

from syndicator.config import Config
from syndicator.model import ID_NAMESPACE, Story, edition_page
from syndicator.site.feeds import ATOM_NS, story_url
from syndicator.site.pages import common_context
from syndicator.site.writer import write_atomic
from syndicator.state import ledger
from syndicator.state.ledger import Edition
from syndicator.state.store import Store
from syndicator.templating import template_error
from syndicator.text import one_line, plural

DIGESTS = "digests"
INDEX = f"{DIGESTS}/index.html"
FEED = f"{DIGESTS}/atom.xml"
TEMPLATES = ("edition.html", "editions.html")


def local_time(config: Config, edition: Edition) -> datetime:
    return datetime.fromtimestamp(edition.created_at, UTC).astimezone(ZoneInfo(config.digest.timezone))


def page_of(config: Config, edition: Edition) -> str:
    return edition_page(edition.slot, local_time(config, edition))


def render_page(config: Config, env: jinja2.Environment, edition: Edition,
                stories: Sequence[Story]) -> bytes:
    """One edition's page: every story it covered, no reader's address or token."""
    name = page_of(config, edition)
    try:
        page = env.get_template("edition.html").render(
            **common_context(config), subject=edition.subject, date=local_time(config, edition),
            stories=list(stories), story_url=lambda s: story_url(config, s),
            url=urljoin(config.site.url, name), index_url=urljoin(config.site.url, INDEX),
            feed_url=urljoin(config.site.url, FEED))
    except jinja2.TemplateError as exc:
        raise template_error(exc) from None
    return page.encode("utf-8")


def render_listing(config: Config, env: jinja2.Environment, editions: Sequence[Edition]) -> dict[str, bytes]:
    """``digests/index.html`` (every edition, newest first) and ``digests/atom.xml``."""
    listed = [(e, urljoin(config.site.url, page_of(config, e)), local_time(config, e)) for e in editions]
    try:
        index = env.get_template("editions.html").render(
            **common_context(config), editions=listed, url=urljoin(config.site.url, INDEX),
            feed_url=urljoin(config.site.url, FEED))
    except jinja2.TemplateError as exc:
        raise template_error(exc) from None
    return {INDEX: index.encode("utf-8"), FEED: _atom(config, listed[: config.feeds.limit])}


def published(store: Store) -> list[Edition]:
    """The editions that went (or are going) out, newest first: never a rejected one."""
    return [e for e in ledger.editions(store, limit=None) if e.status != ledger.REJECTED]


def outputs(config: Config, env: jinja2.Environment, store: Store, folder: Path,
            stories: Mapping[str, Story]) -> dict[str, bytes]:
    """What a build writes for the editions: the listing, and each page that is missing."""
    editions = published(store)
    files = render_listing(config, env, editions) if editions else {}
    for edition in editions:
        name = page_of(config, edition)
        if not (folder / name).exists():
            known = [stories[i] for i in edition.story_ids if i in stories]
            files[name] = render_page(config, env, edition, known)
    return files


def publish(config: Config, env: jinja2.Environment, store: Store, edition: Edition,
            stories: Iterable[Story]) -> list[str]:
    """Write a newly opened edition's page, then the listing; the names written."""
    folder = config.output_dir
    files = {page_of(config, edition): render_page(config, env, edition, list(stories)),
             **render_listing(config, env, published(store))}
    return [name for name, data in files.items() if write_atomic(folder / name, data)]


def _atom(config: Config, listed: Sequence[tuple[Edition, str, datetime]]) -> bytes:
    site = config.site
    root = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    root.set("{http://www.w3.org/XML/1998/namespace}lang", site.language)
    _text(root, "id", urljoin(site.url, f"{DIGESTS}/"))
    _text(root, "title", f"{one_line(site.title)}: the email digest")
    newest = listed[0][2] if listed else datetime(2000, 1, 1, tzinfo=UTC)
    _text(root, "updated", newest.isoformat(timespec="seconds"))
    author = etree.SubElement(root, f"{{{ATOM_NS}}}author")
    _text(author, "name", one_line(site.author_name or site.title))
    _link(root, "self", urljoin(site.url, FEED), "application/atom+xml")
    _link(root, "alternate", urljoin(site.url, INDEX), "text/html")
    for edition, url, when in listed:
        entry = etree.SubElement(root, f"{{{ATOM_NS}}}entry")
        _text(entry, "id", f"urn:uuid:{uuid.uuid5(ID_NAMESPACE, 'edition:' + edition.slot)}")
        _text(entry, "title", one_line(edition.subject))
        _text(entry, "updated", when.isoformat(timespec="seconds"))
        _text(entry, "published", when.isoformat(timespec="seconds"))
        _link(entry, "alternate", url, "text/html")
        summary = _text(entry, "summary", plural(len(edition.story_ids), "story"))
        summary.set("type", "text")
    etree.indent(root, space="  ")
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return data


def _text(parent: etree._Element, tag: str, value: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ATOM_NS}}}{tag}")
    element.text = value
    return element


def _link(parent: etree._Element, rel: str, href: str, kind: str) -> None:
    etree.SubElement(parent, f"{{{ATOM_NS}}}link", rel=rel, href=href, type=kind)

