"""Rendering the digest: golden files, escaping, both parts alike, mail-client constraints."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from syndicator.config import Config, load_config
from syndicator.errors import InputError
from syndicator.mail.digest import TOKEN_PREFIX, Digest, render_digest, why_marker
from syndicator.model import Story
from syndicator.seeds.identity import load_stories
from syndicator.site.feeds import story_url
from syndicator.state.store import Store
from syndicator.text import excerpt

from .conftest import BASE_CONFIG, Project, assert_golden

GMAIL_CLIP = 102 * 1024
HOSTILE = '<script>alert(1)</script> & "quotes"'


def seed_stories(project: Project, clock: datetime) -> tuple[Config, list[Story]]:
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        return config, load_stories(config, store, clock)
    finally:
        store.close()


def configure(project: Project, **digest: str) -> Config:
    """Rewrite the project's config with some [digest] keys replaced."""
    text = BASE_CONFIG.format(store=project.store, port=project.port, recipients='["a@example.com"]')
    for key, value in digest.items():
        text, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        if not count:
            text = text.replace("[digest]\n", f"[digest]\n{key} = {value}\n")
    project.write_config(text)
    return load_config(project.config)


class Links(HTMLParser):
    """Collects (class of the enclosing heading, link text, href) and visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[tuple[str, str, str]] = []
        self.links: list[str] = []
        self._heading: str | None = None
        self._href: str | None = None
        self._text: list[str] = []
        self.data: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in ("h1", "h3"):
            self._heading = attr.get("class") or ""
        if tag == "a":
            self._href = attr.get("href") or ""
            self.links.append(self._href)
            self._text = []

    def handle_data(self, data: str) -> None:
        self._text.append(data)
        self.data.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._heading is not None and self._href is not None:
            self.headings.append((self._heading, "".join(self._text), self._href))
        if tag in ("h1", "h3"):
            self._heading = None


def parse(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


def text_headlines(text: str) -> list[tuple[str, str]]:
    """(headline, url) pairs from the text part: a headline line then its URL line (briefs),
    or a headline then "Read the full story: URL" (the lead)."""
    lines = text.splitlines()
    pairs = []
    lead = lines.index("TOP STORY") + 2
    url = next(line for line in lines if line.startswith("Read the full story: "))
    pairs.append((lines[lead], url.removeprefix("Read the full story: ")))
    pairs += [(lines[i - 1], line) for i, line in enumerate(lines)
              if line.startswith("https://example.org/stories/")]
    return pairs


def story(title: str, summary: str = "A summary.", n: int = 0) -> Story:
    when = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
    return Story(id=f"urn:uuid:test-{n}", slug=f"story-{n}", title=title, paragraphs=(summary,),
                 is_lead=n == 0, published=when, first_seen=when, seq=n, author=None, url=None,
                 tags=(), path=Path("seeds/x.txt"), line=1)


# -- golden files -------------------------------------------------------------------


def check_golden(name: str, actual: str) -> None:
    assert_golden(f"digest/{name}", actual.encode())


def test_seed_digest_matches_golden_files(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    digest = render_digest(config, stories, clock, marker=TOKEN_PREFIX + "0" * 32)  # golden: a fixed marker
    check_golden("digest.html", digest.html)
    check_golden("digest.txt", digest.text)
    check_golden("subject.txt", digest.subject + "\n")


def test_seed_digest_holds_every_story_lead_first(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    digest = render_digest(config, stories, clock)
    assert len(stories) == 7
    assert digest.story_ids == tuple(s.id for s in stories)
    headings = parse(digest.html).headings
    assert [h[0] for h in headings] == ["lead-title"] + ["headline"] * 6
    assert [(t, u) for _, t, u in headings] == [(s.title, story_url(config, s)) for s in stories]
    shown = parse(digest.html).data
    cut = [excerpt(s.summary, config.digest.summary_chars) for s in stories]
    assert cut == [text for text in shown if text in set(cut)]
    assert any(len(s.summary) > config.digest.summary_chars for s in stories)  # the cut is exercised


def test_both_parts_carry_the_same_headlines_and_links(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    digest = render_digest(config, stories, clock)
    from_html = [(title, url) for _, title, url in parse(digest.html).headings]
    assert text_headlines(digest.text) == from_html
    assert len(from_html) == len(stories)


def test_subject_from_template_does_not_start_with_the_brand(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    digest = render_digest(config, stories, clock)
    assert digest.subject == (f"{stories[0].title} and more: The Test Dispatch for "
                              "Wednesday 25 November 2026")
    assert not digest.subject.startswith(config.site.title)


def test_custom_subject_sees_site_lead_stories_and_date(project: Project, clock: datetime) -> None:
    config = configure(project, subject=(
        "'{{ lead.title[:6] }} +{{ stories|length - 1 }} | {{ site.title }} {{ date.strftime(\"%d/%m\") }}'"))
    _, stories = seed_stories(project, clock)
    assert render_digest(config, stories, clock).subject == "Grozev +6 | The Test Dispatch 25/11"


# -- footer, unsubscribe, date ---------------------------------------------------------


def test_both_parts_have_the_unsubscribe_placeholder_and_site_link(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    digest = render_digest(config, stories, clock)
    assert digest.marker.isascii() and digest.marker != render_digest(config, stories, clock).marker
    assert f'href="https://example.org/u/{digest.marker}"' in digest.html
    assert f"Unsubscribe with one click: https://example.org/u/{digest.marker}\n" in digest.text
    # The same token opens the reader's preferences page.
    assert f'href="https://example.org/preferences/{digest.marker}"' in digest.html
    assert f"Choose what you get: https://example.org/preferences/{digest.marker}\n" in digest.text
    assert "https://example.org/" in parse(digest.html).links
    assert "Read every story at https://example.org/\n" in digest.text
    # Why the reader gets it is said per reader (see test_rough_edges): here, its place.
    assert why_marker(digest.marker) in digest.html and why_marker(digest.marker) in digest.text


def test_date_is_shown_in_the_digest_timezone(project: Project) -> None:
    config = configure(project, timezone='"Pacific/Auckland"')
    late = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)  # already Thursday in Auckland
    _, stories = seed_stories(project, late)
    digest = render_digest(config, stories, late)
    assert "Thursday 26 November 2026" in digest.html
    assert "Thursday 26 November 2026" in digest.text
    assert "Wednesday" not in digest.text


def test_naive_date_is_refused(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    with pytest.raises(ValueError, match="timezone-aware"):
        render_digest(config, stories, clock.replace(tzinfo=None))


# -- escaping and control characters -------------------------------------------------


def test_hostile_title_is_text_everywhere(project: Project, clock: datetime) -> None:
    project.seed("000_3c621fef12599da2.txt", f"{HOSTILE}\n\nBody & <b>bold</b>\n\n{HOSTILE} brief\nSum\n")
    config, stories = seed_stories(project, clock)
    digest = render_digest(config, stories, clock)
    assert "<script" not in digest.html and "<b>" not in digest.html
    # In <title>, the lead headline and the brief headline.
    assert digest.html.count('&lt;script&gt;alert(1)&lt;/script&gt; &amp; "quotes"') == 3
    assert "Body &amp; &lt;b&gt;bold&lt;/b&gt;" in digest.html
    assert [t for _, t, _ in parse(digest.html).headings] == [HOSTILE, HOSTILE + " brief"]
    assert f"\n{HOSTILE}\n" in digest.text and "&amp;" not in digest.text
    assert digest.subject.startswith(HOSTILE + " and more:")


def test_control_characters_never_reach_the_subject(project: Project, clock: datetime) -> None:
    config, _ = seed_stories(project, clock)
    evil = story("Hello\r\nBcc: victim@example.com\x00\x1b[31m\u2028next\x85end")
    digest = render_digest(config, [evil], clock)
    assert digest.subject.isprintable()
    assert digest.subject.startswith("Hello Bcc: victim@example.com[31m next end and more:")
    assert "\x00" not in digest.html + digest.text and "\x1b" not in digest.html + digest.text


def test_very_long_subject_is_shortened(project: Project, clock: datetime) -> None:
    config, _ = seed_stories(project, clock)
    digest = render_digest(config, [story("word " * 100)], clock)
    assert len(digest.subject) == 200 and digest.subject.endswith("…")


def test_broken_user_template_is_an_input_error(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    (project.root / "templates").mkdir()
    (project.root / "templates" / "digest.txt").write_text("{{ nope }}\n", encoding="utf-8")
    with pytest.raises(InputError, match="'nope' is undefined") as raised:
        render_digest(config, stories, clock)
    assert raised.value.path == str(project.root / "templates" / "digest.txt")


def test_template_syntax_error_names_file_and_line(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    (project.root / "templates").mkdir()
    (project.root / "templates" / "digest.html").write_text("<p>\n{% for %}\n", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        render_digest(config, stories, clock)
    assert raised.value.path == str(project.root / "templates" / "digest.html")
    assert raised.value.line == 2


def test_project_template_overrides_the_default(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    (project.root / "templates").mkdir()
    (project.root / "templates" / "digest.txt").write_text(
        "{% for s in stories %}* {{ s.title }}\n{% endfor %}{{ unsubscribe_url }}\n", encoding="utf-8")
    digest = render_digest(config, stories, clock)
    assert digest.text.splitlines()[0] == f"* {stories[0].title}"
    assert digest.text.endswith(digest.marker + "\n")


def test_empty_edition_renders_a_notice(project: Project, clock: datetime) -> None:
    config, _ = seed_stories(project, clock)
    digest = render_digest(config, [], clock)
    assert digest.story_ids == ()
    assert "No new stories" in digest.subject
    assert "No new stories since the last edition." in digest.html
    assert digest.marker in digest.text


# -- mail-client constraints -----------------------------------------------------------


def html_checks(digest: Digest) -> None:
    html = digest.html
    assert html.startswith("<!DOCTYPE html>")
    # Inlined: the layout styles live on the elements; only @media rules stay in <style>.
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(styles) == 1 and "prefers-color-scheme: dark" in styles[0]
    assert re.sub(r"@media[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", styles[0]).strip() == ""
    assert 'width="600"' in html and "style=" in html
    assert re.search(r'<div class="preheader" style="display: none;[^"]*">\w', html)
    # Nothing to fetch: no images, stylesheets, fonts or scripts.
    for remote in ("<img", "<link", "<script", "src=", "url(", "@import", "@font-face"):
        assert remote not in html


def test_html_is_made_for_mail_clients(project: Project, clock: datetime) -> None:
    config, stories = seed_stories(project, clock)
    digest = render_digest(config, stories, clock)
    html_checks(digest)
    assert len(digest.html.encode()) < GMAIL_CLIP / 4


def test_a_large_edition_stays_under_gmail_clipping(project: Project, clock: datetime) -> None:
    config, _ = seed_stories(project, clock)
    summary = "A brief summary that runs to a realistic length for a news digest item. " * 4
    stories = [story(f"Headline number {n} about something newsworthy today", summary, n) for n in range(50)]
    digest = render_digest(config, stories, clock)
    html_checks(digest)
    encoded = len(digest.html.encode()) * 1.05  # quoted-printable soft breaks add about 3%
    assert encoded < GMAIL_CLIP, f"{encoded:.0f} bytes would be clipped by Gmail"


def test_story_summaries_keep_their_text(project: Project, clock: datetime) -> None:
    config, _ = seed_stories(project, clock)
    lead = story("Curly “quotes” — and 日本語 and 🎉", "Ünïcödé summary ‘here’.")
    digest = render_digest(config, [replace(lead, paragraphs=("Ünïcödé summary ‘here’.", "second"))], clock)
    assert "Curly “quotes” — and 日本語 and 🎉" in digest.html
    assert "Ünïcödé summary ‘here’." in digest.text
    assert "second" not in digest.text  # a digest carries the summary, not the whole story
