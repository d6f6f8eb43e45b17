"""Render one digest edition: subject, HTML (CSS inlined) and plain text, once per edition.

Per-recipient parts (the unsubscribe URL) are left as the edition's ``marker`` so the message
factory can splice them in cheaply without re-rendering anything. The marker is random per
edition: article text cannot contain it, so a seed that quotes a marker it has seen (in a
digest, in this code) gets its text mailed exactly as written, and no reader's link leaks.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import css_inline
import jinja2
from jinja2.sandbox import SandboxedEnvironment

from syndicator.config import Config
from syndicator.errors import InputError
from syndicator.model import Story
from syndicator.site.feeds import story_url
from syndicator.templating import environment, template_error
from syndicator.text import clean, excerpt, one_line, plural

# Plain ASCII letters, digits and underscores only: a marker survives HTML escaping, CSS
# inlining and quoted-printable encoding unchanged.
# A marker stands for the reader's token, so the message can link both pages the token opens
# (``u/<token>`` and ``preferences/<token>``). Editions opened before stored a marker that
# stands for the whole unsubscribe URL (MARKER_PREFIX): those are spliced as they were.
TOKEN_PREFIX = "SYNDICATOR_TOKEN_"
MARKER_PREFIX = "SYNDICATOR_UNSUBSCRIBE_URL_"
# The one fixed marker of the earliest editions (their stored bodies hold it).
LEGACY_MARKER = MARKER_PREFIX + "7F3A9C2E"


def new_marker() -> str:
    return TOKEN_PREFIX + secrets.token_hex(16)


def marks_token(marker: str) -> bool:
    """Whether ``marker`` stands for the reader's token (else for the whole unsubscribe URL)."""
    return marker.startswith(TOKEN_PREFIX)


def why_marker(marker: str) -> str:
    """Where the footer says why this reader gets the digest: they subscribed, or the
    publisher listed them (in the config or the recipients file). Random like the marker."""
    return "SYNDICATOR_WHY_" + marker.removeprefix(TOKEN_PREFIX)


def why_text(config: Config, listed: bool) -> str:
    site = one_line(config.site.title)
    host = urlsplit(config.site.url).hostname or config.site.url
    if listed:
        return f"You are getting this email because {site} ({host}) put this address on its digest list."
    return f"You are getting this email because you subscribed to the digest from {site} at {host}."

HTML_TEMPLATE = "digest.html"
TEXT_TEMPLATE = "digest.txt"
SUBJECT_LIMIT = 200  # characters; clients show far fewer, and it bounds the header's size
PREHEADER_LIMIT = 140
TEXT_WIDTH = 72


class EditionDate(datetime):
    """The edition date; ``{{ date }}`` prints it the way a reader says it."""

    def __str__(self) -> str:
        return f"{self:%A} {self.day} {self:%B %Y}"


@dataclass(frozen=True)
class Digest:
    subject: str
    html: str
    text: str
    story_ids: tuple[str, ...]
    marker: str  # where each reader's unsubscribe URL goes, in both bodies

    def personal(self, url: str, why: str = "") -> tuple[str, str]:
        """The HTML and text bodies with one reader's unsubscribe URL (and so their token) in
        place, and ``why`` they get it (``why_text``)."""
        if not marks_token(self.marker):
            return (self.html.replace(self.marker, escape(url)), self.text.replace(self.marker, url))
        value = url.rsplit("/", 1)[-1]
        mark = why_marker(self.marker)
        return (self.html.replace(self.marker, escape(value)).replace(mark, escape(why)),
                self.text.replace(self.marker, value).replace(mark, _wrap(why)))


def render_digest(config: Config, stories: Sequence[Story], date: datetime, *,
                  marker: str | None = None, shown: int | None = None, web_url: str = "",
                  corrections: Sequence[Story] = ()) -> Digest:
    """Render the edition of ``stories`` (the lead first, then newest first) dated ``date``.

    The message shows the first ``shown`` stories (default ``digest.max_stories``) and then
    "and N more stories", linking ``web_url`` (the edition's page; the site without one).
    ``marker`` is fixed only by tests that compare with golden files; by default it is new.
    """
    if date.tzinfo is None:
        raise ValueError("the edition date must be timezone-aware")
    marker = marker or new_marker()
    env = _environment(config)
    count = min(len(stories), config.digest.max_stories if shown is None else max(1, shown))
    context = _context(config, stories, _local(date, config.digest.timezone), marker)
    context["briefs"] = list(stories[1:count])  # the stories shown below the lead
    context["more"] = len(stories) - count
    context["web_url"] = web_url or config.site.url
    context["corrections"] = list(corrections)
    subject = _subject(config, context)
    context["subject"] = subject
    html = _render(env, HTML_TEMPLATE, context)
    text = _render(env.overlay(autoescape=False), TEXT_TEMPLATE, context)
    return Digest(
        subject=subject,
        html=_inline_css(html),
        text=_normalise_text(text),
        story_ids=tuple(s.id for s in stories),  # the edition covers all, shown or counted
        marker=marker,
    )


def _environment(config: Config) -> jinja2.Environment:
    env = environment(config.templates_dir)
    env.filters["one_line"] = one_line
    env.filters["wrap"] = _wrap
    limit = config.digest.summary_chars
    env.filters["excerpt"] = lambda text: excerpt(text, limit)
    return env


def _subject_environment() -> SandboxedEnvironment:
    # The config is trusted, but a sandbox costs nothing: no attribute walk to os or globals.
    env = SandboxedEnvironment(autoescape=False, undefined=jinja2.StrictUndefined)
    env.filters["plural"] = plural
    env.filters["one_line"] = one_line
    return env


def _local(date: datetime, zone: str) -> EditionDate:
    local = date.astimezone(ZoneInfo(zone))
    return EditionDate(local.year, local.month, local.day, local.hour, local.minute,
                       local.second, local.microsecond, tzinfo=local.tzinfo, fold=local.fold)


def _context(config: Config, stories: Sequence[Story], date: EditionDate, marker: str) -> dict[str, Any]:
    lead = stories[0] if stories else None
    return {
        "site": config.site,
        "site_host": urlsplit(config.site.url).hostname or config.site.url,
        "lead": lead,
        "briefs": list(stories[1:]),
        "stories": list(stories),
        "date": date,
        "story_url": lambda story: story_url(config, story),
        "unsubscribe_url": f"{config.site.url}u/{marker}" if marks_token(marker) else marker,
        "preferences_url": f"{config.site.url}preferences/{marker}" if marks_token(marker) else "",
        "why": why_marker(marker) if marks_token(marker) else why_text(config, listed=False),
        "preheader": _preheader(lead),
    }


def _subject(config: Config, context: dict[str, Any]) -> str:
    """The configured subject on one line; a fixed one when the edition has no story."""
    if context["lead"] is None:
        rendered = f"No new stories this time: {config.site.title}, {context['date']}"
    else:
        try:
            rendered = _subject_environment().from_string(config.digest.subject).render(context)
        except jinja2.TemplateError as exc:
            raise InputError(f"cannot render the subject template: {exc}", path=config.source,
                             key="digest.subject") from None
    subject = one_line(rendered)
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 1].rstrip() + "…"
    return subject or f"{config.site.title}, {context['date']}"


def _render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render a template; a broken user template is an input error naming file and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateError as exc:
        raise template_error(exc) from None


def _preheader(lead: Story | None) -> str:
    """The inbox preview line: the start of the lead's summary, cut at a word."""
    if lead is None:
        return ""
    text = one_line(lead.summary) or one_line(lead.title)
    if len(text) <= PREHEADER_LIMIT:
        return text
    return text[:PREHEADER_LIMIT].rsplit(" ", 1)[0].rstrip(" ,;:") + "…"


def _wrap(text: str, indent: str = "") -> str:
    """Plain-text paragraphs wrapped for reading; URLs and long words are never broken."""
    return textwrap.fill(one_line(text), width=TEXT_WIDTH, initial_indent=indent,
                         subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _inline_css(html: str) -> str:
    # keep_at_rules leaves @media blocks (dark mode, phone width) in a <style> tag,
    # since media queries cannot be expressed as inline styles.
    inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)
    return _normalise_text(inliner.inline(html))


def _normalise_text(text: str) -> str:
    """LF line ends, no illegal characters, one final newline."""
    lines = clean(text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"
