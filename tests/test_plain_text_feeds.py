"""Seeds are plain text: every field of every feed shows what the author typed, decoded as a reader does."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import feedparser
import lxml.html
import pytest

from syndicator.config import load_config
from syndicator.site.build import build
from syndicator.state.store import Store

Project = Any  # tests/conftest.py's Project
HOSTILE_TITLE = "Markets <b>rally</b> & <img src=x onerror=alert(3)>"
HOSTILE_TEXT = "investors weighed <b>bold</b> claims <img src=x onerror=alert(3)> & more"


def _html_shows(html: str) -> tuple[str, list[str]]:
    """What a reader displays for an HTML field, and the element tags it would create."""
    root = lxml.html.fragment_fromstring(html, create_parent="div")
    return root.text_content(), [el.tag for el in root.iter() if el.tag != "div" and el.tag != "p"]


def test_every_feed_field_shows_the_seed_text_as_text(project: Project, clock: datetime) -> None:
    for path in project.seeds.iterdir():
        path.unlink()
    seed = (f"---\ntags: <b>bold</b> & news\n---\n{HOSTILE_TITLE}\n\n{HOSTILE_TEXT}\n\n"
            f"A brief <i>x</i>\n{HOSTILE_TEXT}\n")
    project.seed("001_hostile.txt", seed)
    # One story per subscription feed: the other goes to the archive, so every kind of feed
    # (the site's, its archive, the tag's) holds a hostile entry.
    text = project.config.read_text().replace("limit = 50", "limit = 1\narchive_size = 10")
    project.config.write_text(text)
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        result = build(config, store, clock)
    finally:
        store.close()
    out = result.output

    feeds = sorted(str(p.relative_to(out)) for p in out.rglob("*.xml") if "sitemap" not in p.name)
    assert {"rss.xml", "atom.xml", "archive/rss-1.xml", "archive/atom-1.xml"} <= set(feeds)
    assert any(f.startswith("tags/") and f.endswith("atom.xml") for f in feeds)
    leads = 0
    for name in feeds:
        kind = "rss.xml" if "rss" in name.rsplit("/", 1)[-1] else "atom.xml"
        parsed = feedparser.parse((out / name).read_bytes(), sanitize_html=False)
        assert not parsed.bozo, parsed.get("bozo_exception")
        for entry in parsed.entries:
            # RSS 2.0 titles are plain text by the spec (newsboat shows them literally, see
            # below), though feedparser guesses HTML; Atom says type="text" unambiguously.
            fields = ("summary_detail",) if kind == "rss.xml" else ("summary_detail", "title_detail")
            for field in fields:
                detail = entry[field]
                if detail.type == "text/plain":
                    shown, made = detail.value, list[str]()
                else:
                    shown, made = _html_shows(detail.value)
                assert made == [], (name, field, detail.value)
                assert "<b>" in shown or "<i>" in shown, (name, field, shown)  # the text, literally
        lead = next((e for e in parsed.entries if "Markets" in e.title), None)
        if lead is None:
            continue
        leads += 1
        for tag in lead.get("tags", []):
            assert tag.term == "<b>bold</b> & news"
        summary = lead.summary_detail
        shown = summary.value if summary.type == "text/plain" else _html_shows(summary.value)[0]
        assert shown == HOSTILE_TEXT
        content = lead.content[0]
        assert _html_shows(content.value) == (HOSTILE_TEXT, [])

    assert leads >= 3  # the site's feeds or their archive, and the tag's
    feed = json.loads((out / "feed.json").read_bytes())
    lead_item = next(i for i in feed["items"] if i["title"].startswith("Markets"))
    assert lead_item["title"] == HOSTILE_TITLE
    assert lead_item["summary"] == HOSTILE_TEXT
    assert _html_shows(lead_item["content_html"]) == (HOSTILE_TEXT, [])


@pytest.mark.skipif(shutil.which("newsboat") is None, reason="newsboat is not installed")
@pytest.mark.parametrize("name", ["rss.xml", "atom.xml"])
def test_newsboat_shows_a_hostile_title_as_text(project: Project, clock: datetime, tmp_path: Path,
                                                name: str) -> None:
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed("001_hostile.txt", f"{HOSTILE_TITLE}\n\n{HOSTILE_TEXT}\n")
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        out = build(config, store, clock).output
    finally:
        store.close()
    home = tmp_path / "newsboat"
    home.mkdir()
    (home / "urls").write_text((out / name).as_uri() + "\n")
    (home / "config").write_text("")
    cache = home / "cache.db"
    done = subprocess.run(
        ["newsboat", "-x", "reload", "-u", str(home / "urls"), "-c", str(cache), "-C", str(home / "config")],
        env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home), "XDG_DATA_HOME": str(home)},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(cache) as db:
        (title,) = db.execute("SELECT title FROM rss_item").fetchone()
    assert title == HOSTILE_TITLE
