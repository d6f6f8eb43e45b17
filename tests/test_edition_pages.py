"""Editions on the web: each edition's page exists before its first message arrives, holds every
story and no reader's data, is listed and in an Atom feed, and survives every later build."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import feedparser
import pytest

from syndicator.config import Config, load_config
from syndicator.mail import workers
from syndicator.site.build import build
from syndicator.state import ledger
from syndicator.state.store import Store
from tests import w3c
from tests.conftest import FaultyServer, Project

SECRET = b"test-secret-for-signing-tokens-0123456789"
SITE = "https://example.org/"
VIEW = re.compile(r"View this digest in your browser: (https://example\.org/(digests/\S+\.html))")


@pytest.fixture
def newsroom(project: Project, faulty_smtp: FaultyServer) -> Iterator[tuple[Config, Store]]:
    project.port = faulty_smtp.port
    text = project.write_config().read_text()
    project.write_config(text.replace('secret_env = "SYNDICATOR_TEST_SECRET"\n',
                                      'secret_env = "SYNDICATOR_TEST_SECRET"\nmax_stories = 4\n'))
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        yield config, store
    finally:
        store.close()


def _text_part(data: bytes) -> str:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _send(config: Config, store: Store, now: datetime) -> None:
    workers.send(config, store, now, password=None, secret=SECRET)


def test_the_page_exists_before_the_first_message_and_holds_the_whole_edition(
        newsroom: tuple[Config, Store], faulty_smtp: FaultyServer, clock: datetime) -> None:
    config, store = newsroom
    gate = threading.Event()
    faulty_smtp.faults.gate = gate
    seen: dict[str, bool] = {}
    sender = threading.Thread(target=_send, args=(config, store, clock))
    sender.start()
    try:
        assert faulty_smtp.handler.in_data.wait(30)  # the first message is at the relay
        pages = list((config.output_dir / "digests").glob("*.html"))
        seen["page"] = any(p.name != "index.html" for p in pages)
    finally:
        gate.set()
        sender.join(60)
    assert seen["page"]
    data = faulty_smtp.handler.accepted[0][2]
    match = VIEW.search(_text_part(data))
    assert match, "the text part links the edition's page"
    assert f'href="{match.group(1)}"'.encode() in data.replace(b"=\r\n", b"").replace(b"=3D", b"=")
    page = (config.output_dir / match.group(2)).read_text(encoding="utf-8")
    stories = ledger.editions(store)[0].story_ids
    assert len(stories) == 7
    for title in re.findall(r"<li>\n<a href=\"[^\"]+\">([^<]+)</a>", page):
        assert title
    assert page.count("<li>") == 7  # every story, though the message showed 4
    for address in config.digest.recipients:
        assert address not in page
    assert "/u/" not in page
    # "and N more stories" links the same page
    assert f"And 3 more stories: {match.group(1)}" in _text_part(data)


def test_the_listing_and_feed_name_every_edition_newest_first_and_validate(
        newsroom: tuple[Config, Store], project: Project, clock: datetime) -> None:
    config, store = newsroom
    _send(config, store, clock)
    project.seed("100_later.txt", "A later story\n\nIts text.\n")
    _send(config, store, clock + timedelta(hours=24))
    out = config.output_dir
    feed = feedparser.parse((out / "digests" / "atom.xml").read_bytes())
    assert not feed.bozo
    subjects = [e.subject for e in ledger.editions(store)]
    assert [e.title for e in feed.entries] == subjects  # newest first
    assert len({e.id for e in feed.entries}) == 2
    for entry in feed.entries:
        assert (out / entry.link.removeprefix(SITE)).exists()
    index = (out / "digests" / "index.html").read_text(encoding="utf-8")
    assert [index.index(s) for s in subjects] == sorted(index.index(s) for s in subjects)
    w3c.assert_valid(out, SITE, "digests/atom.xml")


def test_later_builds_keep_each_page_as_it_was_mailed(
        newsroom: tuple[Config, Store], project: Project, clock: datetime) -> None:
    config, store = newsroom
    _send(config, store, clock)
    (page,) = [p for p in (config.output_dir / "digests").glob("*.html") if p.name != "index.html"]
    before = page.read_bytes()
    project.seed("100_later.txt", "A later story\n\nIts text.\n")
    build(config, store, clock + timedelta(hours=1))
    assert page.read_bytes() == before
    page.unlink()  # lost (a fresh output folder): the next build writes it again
    build(config, store, clock + timedelta(hours=2))
    assert page.read_bytes() == before


def test_a_site_without_editions_has_no_digest_listing(project: Project, clock: datetime) -> None:
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        build(config, store, clock)
    finally:
        store.close()
    assert not Path(config.output_dir / "digests").exists()
