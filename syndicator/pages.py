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
from syndicator.feeds import ATOM, JSON_FEED, RSS, content_html, story_url
from syndicator.model import Story

PAGE_TEMPLATES = ("base.html", "index.html", "story.html")


def render_pages(config: Config, env: jinja2.Environment, stories: Sequence[Story]) -> dict[str, bytes]:
    """``index.html`` and every story page, keyed by path under the output folder."""
    try:
        return _render_pages(config, env, stories)
    except jinja2.TemplateError as exc:
        raise template_error(exc) from None


def check_templates(env: jinja2.Environment) -> list[InputError]:
    """A syntax error in any page template (a project's own ``templates/`` included)."""
    problems: list[InputError] = []
    for name in PAGE_TEMPLATES:
        try:
            env.get_template(name)
        except jinja2.TemplateError as exc:
            problems.append(template_error(exc))
    return problems


def template_error(exc: jinja2.TemplateError) -> InputError:
    """A template problem as one line naming the template file and line."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return InputError(f"template error: {exc.message}", path=exc.filename or exc.name, line=exc.lineno)
    if isinstance(exc, jinja2.TemplateNotFound):
        return InputError(f"template not found: {exc.name}")
    # A render-time error (say an undefined name): Jinja2 puts the template's own
    # file and line into the traceback.
    path, line = None, None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith((".html", ".txt", ".xml")):
            path, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next
    return InputError(f"template error: {exc.message or exc}", path=path, line=line)


def _common(config: Config) -> dict[str, object]:
    site = config.site
    return {
        "site": site,
        "feeds": {
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
            **_common(config), stories=listed, url_for=lambda s: story_url(config, s), root=""
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
        self.common = {**_common(config), "root": "../"}
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
                   "body": Markup(content_html(story))}
        try:
            return self.template.render(context).encode("utf-8")
        except jinja2.TemplateError as exc:
            raise template_error(exc) from None


def page_key(story: Story) -> str:
    """A digest of everything of a story its page shows (with the same templates and site)."""
    fields = (story.id, story.slug, story.title, story.paragraphs, story.published.isoformat(),
              story.author, story.url, story.tags, story.is_lead)
    # marshal: half the cost of repr here. Format 2 writes no back-references, so equal values
    # give equal bytes however they are shared; the manifest's signature names Python's version.
    return hashlib.blake2b(marshal.dumps(fields, 2), digest_size=12).hexdigest()


def _render_pages(config: Config, env: jinja2.Environment, stories: Sequence[Story]) -> dict[str, bytes]:
    pages = {"index.html": render_index(config, env, stories)}
    renderer = StoryPages(config, env)
    for story in stories:
        pages[story.page] = renderer.render(story)
    return pages
