"""WebSub: hub links in every feed, and publish pings to a real local HTTP endpoint."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import feedparser
import pytest
from click.testing import CliRunner

from syndicator import websub
from syndicator.cli import cli
from syndicator.config import Config, load_config
from tests.conftest import Project

FEED_URLS = ["https://example.org/rss.xml", "https://example.org/atom.xml", "https://example.org/feed.json"]


@dataclass
class Hub:
    """A tiny HTTP hub on a free loopback port; ``answers`` are its next status codes."""

    url: str
    answers: list[int] = field(default_factory=list)
    posts: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)


@pytest.fixture
def hub() -> Iterator[Hub]:
    state = Hub("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            state.posts.append((self.headers["Content-Type"], parse_qs(body, strict_parsing=True)))
            self.send_response(state.answers.pop(0) if state.answers else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hub"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def with_hub(project: Project, url: str) -> Config:
    text = project.config.read_text().replace("limit = 50", f'limit = 50\nwebsub_hub = "{url}"')
    project.config.write_text(text)
    return load_config(project.config)


def test_ping_posts_one_form_per_feed(project: Project, hub: Hub) -> None:
    config = with_hub(project, hub.url)
    assert websub.ping_hub(config, FEED_URLS)
    assert hub.posts == [
        ("application/x-www-form-urlencoded", {"hub.mode": ["publish"], "hub.url": [url]})
        for url in FEED_URLS
    ]


def test_failed_ping_is_retried_with_backoff(project: Project, hub: Hub) -> None:
    config = with_hub(project, hub.url)
    hub.answers = [503, 502]
    delays: list[float] = []
    assert websub.ping_hub(config, FEED_URLS[:1], first_delay=0.5, sleep=delays.append)
    assert len(hub.posts) == 3
    assert delays == [0.5, 1.0]


def test_a_refusing_hub_is_not_retried(project: Project, hub: Hub) -> None:
    config = with_hub(project, hub.url)
    hub.answers = [400]
    delays: list[float] = []
    assert not websub.ping_hub(config, FEED_URLS[:1], sleep=delays.append)
    assert len(hub.posts) == 1 and delays == []


def test_an_unreachable_hub_gives_up_quietly(project: Project, caplog: pytest.LogCaptureFixture) -> None:
    config = with_hub(project, "http://127.0.0.1:9/hub?key=hubsecret")  # port 9: nothing listens
    delays: list[float] = []
    assert not websub.ping_hub(config, FEED_URLS, attempts=3, sleep=delays.append)
    assert delays == [1.0, 2.0]
    assert "gave up on 3 feed(s) after 3 attempt(s)" in caplog.text
    assert "hubsecret" not in caplog.text and "Traceback" not in caplog.text


def test_nothing_to_ping_without_hub_or_changes(project: Project, hub: Hub) -> None:
    assert websub.ping_hub(load_config(project.config), FEED_URLS)
    assert websub.ping_hub(with_hub(project, hub.url), [])
    assert hub.posts == []


def test_changed_feed_urls(project: Project) -> None:
    config = load_config(project.config)
    written = ["index.html", "feed.json", "stories/a.html", "rss.xml"]
    assert websub.changed_feed_urls(config, written) == [FEED_URLS[0], FEED_URLS[2]]


def test_every_feed_names_the_hub(project: Project, clock: datetime) -> None:
    from syndicator.site.build import build
    from syndicator.state.store import Store

    config = with_hub(project, "https://hub.example.net/")
    store = Store.open(config.store_url)
    try:
        build(config, store, clock)
    finally:
        store.close()
    for name in ("rss.xml", "atom.xml"):
        links = feedparser.parse((project.output / name).read_bytes()).feed.links
        assert {"rel": "hub", "href": "https://hub.example.net/"} in [
            {"rel": link.get("rel"), "href": link.get("href")} for link in links], name
    feed = json.loads((project.output / "feed.json").read_text())
    assert feed["hubs"] == [{"type": "WebSub", "url": "https://hub.example.net/"}]


def test_build_pings_the_hub_only_when_feeds_change(project: Project, hub: Hub) -> None:
    with_hub(project, hub.url)
    runner = CliRunner()
    first = runner.invoke(cli, ["build"])
    assert first.exit_code == 0, first.output
    assert [form["hub.url"][0] for _, form in hub.posts] == FEED_URLS
    again = runner.invoke(cli, ["build"])
    assert again.exit_code == 0 and "0 files written" in again.output
    assert len(hub.posts) == 3


def test_a_failing_hub_does_not_fail_the_build(project: Project, hub: Hub,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(websub, "FIRST_DELAY", 0.01)
    with_hub(project, hub.url)
    hub.answers = [500] * 9
    caplog.set_level(logging.WARNING)
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 0, result.output
    assert "built 7 stories" in result.output
    assert (project.output / "rss.xml").exists()
    assert len(hub.posts) == 9  # three feeds, three attempts each
    assert "the build is not affected" in caplog.text
