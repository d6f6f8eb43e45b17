"""The HTML pages the feeds link to: an index with feed autodiscovery and one page per story."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urljoin

import jinja2
from markupsafe import Markup

from syndicator.config import Config
from syndicator.feeds import ATOM, JSON_FEED, RSS, content_html, story_url
from syndicator.model import Story


def render_pages(config: Config, env: jinja2.Environment, stories: Sequence[Story]) -> dict[str, bytes]:
    """``index.html`` and every story page, keyed by path under the output folder."""
    site = config.site
    common = {
        "site": site,
        "feeds": {
            "rss": urljoin(site.url, RSS),
            "atom": urljoin(site.url, ATOM),
            "json": urljoin(site.url, JSON_FEED),
        },
    }
    listed = list(stories[: config.feeds.limit])
    index = env.get_template("index.html").render(
        **common, stories=listed, url_for=lambda s: story_url(config, s), root=""
    )
    pages = {"index.html": index.encode("utf-8")}
    story_template = env.get_template("story.html")
    for story in stories:
        html = story_template.render(
            **common, story=story, url=story_url(config, story),
            body=Markup(content_html(story)), root="../",
        )
        pages[story.page] = html.encode("utf-8")
    return pages
