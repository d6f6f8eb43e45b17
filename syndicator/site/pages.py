"""The HTML pages the feeds link to: an index with feed autodiscovery and one page per story."""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Sequence
from urllib.parse import urljoin

import jinja2
from markupsafe import Markup

from syndicator.config import Config
from syndicator.errors import InputError
from syndicator.model import Story, tag_page
from syndicator.site.feeds import ATOM, JSON_FEED, RSS, content_html, story_url
from syndicator.templating import template_error

PAGE_TEMPLATES = ("base.html", "_stories.html", "index.html", "story.html", "tag.html", "edition.html",
                  "editions.html")


def check_templates(env: jinja2.Environment) -> list[InputError]:
    """A syntax error in any page template (a project's own ``templates/`` included)."""
    problems: list[InputError] = []
    for name in PAGE_TEMPLATES:
        try:
            env.get_template(name)
        except jinja2.TemplateError as exc:
            problems.append(template_error(exc))
    return problems


def common_context(config: Config) -> dict[str, object]:
    site = config.site
    return {
        "site": site,
        "feeds": {
            "title": site.title,
            "rss": urljoin(site.url, RSS),
            "atom": urljoin(site.url, ATOM),
            "json": urljoin(site.url, JSON_FEED),
        },
    }


def render_index(config: Config, env: jinja2.Environment, stories: Sequence[Story]) -> bytes:
    """``index.html``: the newest ``feeds.limit`` stories."""
    try:
        listed = list(stories[: config.feeds.limit])
        index = env.get_template("index.html").render(
            **common_context(config), stories=listed, url_for=lambda s: story_url(config, s), root=""
        )
    except jinja2.TemplateError as exc:
        raise template_error(exc) from None
    return index.encode("utf-8")


class StoryPages:
    """Renders story pages with one compiled template and one shared context."""

    def __init__(self, config: Config, env: jinja2.Environment) -> None:
        self.config = config
        try:
            self.template = env.get_template("story.html")
        except jinja2.TemplateError as exc:
            raise template_error(exc) from None
        self.common = {**common_context(config), "root": "../"}
        # urljoin per page was a tenth of the render time; a slug is [a-z0-9-] only, so the
        # page's URL is the stories/ folder's URL plus its file name (checked once, below).
        self.prefix: str | None = urljoin(config.site.url, "stories/")
        self.checked = False

    def url(self, story: Story) -> str:
        slug = story.slug
        if self.prefix is not None and slug.isascii() and slug.replace("-", "").isalnum():
            url = f"{self.prefix}{slug}.html"
            if self.checked:
                return url
            self.checked = url == story_url(self.config, story)
            if self.checked:
                return url
            self.prefix = None
        return story_url(self.config, story)

    def render(self, story: Story) -> bytes:
        context = {**self.common, "story": story, "url": self.url(story),
                   "body": Markup(content_html(story)),
                   "tag_links": [(tag, f"../{tag_page(tag)}") for tag in story.tags]}
        try:
            return self.template.render(context).encode("utf-8")
        except jinja2.TemplateError as exc:
            raise template_error(exc) from None


def page_key(story: Story) -> str:
    """A digest of everything of a story its page shows (with the same templates and site)."""
    fields = (story.id, story.slug, story.title, story.paragraphs, story.published.isoformat(),
              story.author, story.url, story.tags, story.is_lead, story.updated.isoformat(),
              story.correction)
    # marshal: half the cost of repr here. Format 2 writes no back-references, so equal values
    # give equal bytes however they are shared; the manifest's signature names Python's version.
    return hashlib.blake2b(marshal.dumps(fields, 2), digest_size=12).hexdigest()
