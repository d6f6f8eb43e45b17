"""Per-tag feeds and pages: ``tags/<slug>/`` holds RSS, Atom and JSON Feed of the newest
``feeds.limit`` stories with that tag, and an index page that advertises them."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urljoin

import jinja2

from syndicator.config import Config
from syndicator.model import Story, tag_slug
from syndicator.site.feeds import ATOM, JSON_FEED, RSS, Channel, render_channel, story_url
from syndicator.site.pages import common_context
from syndicator.templating import template_error
from syndicator.text import one_line

TAG_LIST = "tags/tags.json"


Tagged = dict[str, tuple[str, list[Story]]]


def by_tag(stories: Sequence[Story]) -> Tagged:
    """slug -> (the tag as most often written, its stories newest first)."""
    spellings: dict[str, Counter[str]] = {}
    tagged: dict[str, list[Story]] = {}
    for story in stories:
        for slug, tag in {tag_slug(t): t for t in story.tags}.items():
            spellings.setdefault(slug, Counter())[one_line(tag)] += 1
            tagged.setdefault(slug, []).append(story)
    # most_common keeps first-seen order among equals: the newest story's spelling wins a tie.
    return {slug: (spellings[slug].most_common(1)[0][0], tagged[slug]) for slug in sorted(tagged)}


def page_times(tagged_by: Tagged) -> dict[str, datetime]:
    """Each tag page and the newest change among its stories (its sitemap lastmod)."""
    return {f"tags/{slug}/index.html": max(s.updated for s in tagged)
            for slug, (_, tagged) in tagged_by.items()}


def channel(config: Config, slug: str, name: str) -> Channel:
    title = f"{one_line(config.site.title)}: {name}"
    return Channel(f"tags/{slug}/", title, f"Stories tagged {name} from {one_line(config.site.title)}",
                   f"tags/{slug}/index.html")


def outputs(config: Config, env: jinja2.Environment, tagged_by: Tagged) -> dict[str, bytes]:
    """Every tag's feeds and page (``by_tag`` of the stories, newest first)."""
    files = tag_list([(slug, name) for slug, (name, _) in tagged_by.items()])
    for slug, (name, tagged) in tagged_by.items():
        files.update(tag_files(config, env, slug, name, tagged[: config.feeds.limit]))
    return files


def tag_list(tags: list[tuple[str, str]]) -> dict[str, bytes]:
    """The tags readers can choose on their preferences page (served by `serve`), by slug."""
    if not tags:
        return {}
    listing = [{"slug": slug, "name": name} for slug, name in tags]
    return {TAG_LIST: (json.dumps(listing, ensure_ascii=False, indent=1) + "\n").encode("utf-8")}


def tag_files(config: Config, env: jinja2.Environment, slug: str, name: str,
              listed: list[Story]) -> dict[str, bytes]:
    """One tag's feeds and page, of its newest ``feeds.limit`` stories (newest first)."""
    chan = channel(config, slug, name)
    files = render_channel(config, chan, listed)
    files[chan.page] = _page(config, env, chan, name, listed)
    return files


def _page(config: Config, env: jinja2.Environment, chan: Channel, name: str, listed: list[Story]) -> bytes:
    common = common_context(config)
    common["feeds"] = {"title": chan.title, "rss": chan.url(config, RSS), "atom": chan.url(config, ATOM),
                       "json": chan.url(config, JSON_FEED)}
    try:
        page = env.get_template("tag.html").render(
            **common, tag=name, stories=listed, url_for=lambda s: story_url(config, s),
            url=urljoin(config.site.url, chan.page))
    except jinja2.TemplateError as exc:
        raise template_error(exc) from None
    return page.encode("utf-8")
