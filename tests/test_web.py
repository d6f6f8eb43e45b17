"""``syndicator serve`` over real HTTP on loopback: files, conditional GET, tokens, subscribe."""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from syndicator.config import Config, load_config
from syndicator.errors import ServeError
from syndicator.mail import subscriptions
from syndicator.mail.audience import audience
from syndicator.mail.message import list_id
from syndicator.mail.tokens import confirm_token, unsubscribe_token
from syndicator.site.build import build
from syndicator.state import ledger, lists
from syndicator.state.store import Store
from syndicator.web import app as web
from syndicator.web import limits
from tests.conftest import CLOCK, EXAMPLE_SEED, Project, SmtpServer

SECRET = b"test-secret-for-signing-tokens-0123456789"
HUB = "https://hub.example.net/publish"


@dataclass
class Served:
    base: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        """uvicorn's graceful shutdown: it returns once every response and background task is done."""
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "the server did not stop"


@contextmanager
def serving(app: Starlette) -> Iterator[Served]:
    """uvicorn in a thread on a free loopback port."""
    sock = web.listen("127.0.0.1", 0)
    server = web.make_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()  # the socket listens already: requests made before uvicorn is up just wait
    served = Served(f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread)
    try:
        yield served
    finally:
        served.stop()


@dataclass
class Site:
    config: Config
    store: Store
    served: Served
    client: httpx.Client

    @property
    def base(self) -> str:
        return self.served.base

    def path_of(self, url: str) -> str:
        """A site URL (https://example.org/...) as a path on the test server."""
        return "/" + url.removeprefix(self.config.site.url)


def configure(project: Project, *, hub: str = "", store: str | None = None, port: int | None = None,
              smtp_timeout: float = 5) -> Config:
    if store is not None:
        project.store = store
    if port is not None:
        project.port = port
    project.write_config()
    text = project.config.read_text().replace("timeout = 5", f"timeout = {smtp_timeout}")
    if hub:
        text = text.replace("limit = 50", f'limit = 50\nwebsub_hub = "{hub}"')
    project.config.write_text(text)
    return load_config(project.config)


@contextmanager
def running_site(project: Project, store_url: str | None, clock: datetime,
                 smtp: SmtpServer) -> Iterator[Site]:
    config = configure(project, hub=HUB, store=store_url, port=smtp.port)
    store = Store.open(config.store_url)
    build(config, store, clock)
    app = web.create_app(config, store, limiter=limits.RateLimiter(burst=50))
    try:
        with serving(app) as served, httpx.Client(base_url=served.base, timeout=10) as client:
            yield Site(config, store, served, client)
    finally:
        store.close()


@pytest.fixture
def site(project: Project, store_url: str, clock: datetime, smtp_server: SmtpServer) -> Iterator[Site]:
    """For flows whose outcome lives in the store: SQLite and PostgreSQL."""
    with running_site(project, store_url, clock, smtp_server) as running:
        yield running


@pytest.fixture
def lite_site(project: Project, clock: datetime, smtp_server: SmtpServer) -> Iterator[Site]:
    """For web behaviour that does not depend on the database: SQLite only."""
    with running_site(project, None, clock, smtp_server) as running:
        yield running


@pytest.fixture(scope="module")
def files_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One server for the file-serving tests (SQLite; they never touch subscriptions)."""
    root = tmp_path_factory.mktemp("files") / "site"
    (root / "seeds").mkdir(parents=True)
    shutil.copy(EXAMPLE_SEED, root / "seeds" / EXAMPLE_SEED.name)
    config = configure(Project(root=root, store="sqlite:///state/syndicator.db"), hub=HUB)
    store = Store.open(config.store_url)
    build(config, store, CLOCK)
    try:
        with serving(web.create_app(config, store, secret=SECRET)) as served, \
                httpx.Client(base_url=served.base) as client:
            yield Site(config, store, served, client)
    finally:
        store.close()


# -- files -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kind"), [
    ("rss.xml", "application/rss+xml"),
    ("atom.xml", "application/atom+xml"),
    ("feed.json", "application/feed+json"),
    ("index.html", "text/html"),
    ("", "text/html"),
])
def test_content_types_and_validators(files_site: Site, name: str, kind: str) -> None:
    response = files_site.client.get("/" + name)
    assert response.status_code == 200
    assert response.headers["content-type"] == kind + "; charset=utf-8"
    assert re.fullmatch(r'"[0-9a-f]{32}(-gz)?"', response.headers["etag"])  # strong: no W/
    assert response.headers["last-modified"].endswith(" GMT")
    assert response.headers["cache-control"].startswith("public, max-age=")
    expected = (files_site.config.output_dir / (name or "index.html")).read_bytes()
    assert response.content == expected


def test_story_pages_and_folder_redirect(files_site: Site) -> None:
    out = files_site.config.output_dir
    page = next(p for p in out.rglob("*.html") if p.parent != out)
    relative = page.relative_to(out).as_posix()
    assert files_site.client.get("/" + relative).content == page.read_bytes()
    folder = relative.rsplit("/", 1)[0]
    (page.parent / "index.html").write_text("folder index")
    redirect = files_site.client.get("/" + folder)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == f"/{folder}/"
    assert files_site.client.get(f"/{folder}/").text == "folder index"


def test_if_none_match_gives_304(files_site: Site) -> None:
    client = files_site.client
    first = client.get("/rss.xml", headers={"Accept-Encoding": "identity"})
    etag = first.headers["etag"]
    again = client.get("/rss.xml", headers={"If-None-Match": etag, "Accept-Encoding": "identity"})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == first.headers["cache-control"]
    assert client.get("/rss.xml", headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
    assert client.get("/rss.xml", headers={"If-None-Match": "*"}).status_code == 304
    assert client.get("/rss.xml", headers={"If-None-Match": '"0123"'}).status_code == 200


def test_etag_changes_with_content(files_site: Site) -> None:
    client = files_site.client
    etag = client.get("/feed.json").headers["etag"]
    path = files_site.config.output_dir / "feed.json"
    path.write_bytes(path.read_bytes().replace(b"The Test Dispatch", b"The Other Dispatch"))
    changed = client.get("/feed.json", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert b"The Other Dispatch" in changed.content


def test_if_modified_since(files_site: Site) -> None:
    client = files_site.client
    modified = client.get("/atom.xml").headers["last-modified"]
    assert client.get("/atom.xml", headers={"If-Modified-Since": modified}).status_code == 304
    later = formatdate(time.time() + 3600, usegmt=True)
    assert client.get("/atom.xml", headers={"If-Modified-Since": later}).status_code == 304
    earlier = formatdate(time.time() - 10 * 365 * 86400, usegmt=True)
    assert client.get("/atom.xml", headers={"If-Modified-Since": earlier}).status_code == 200
    assert client.get("/atom.xml", headers={"If-Modified-Since": "garbage"}).status_code == 200
    # If-None-Match wins: a stale tag means 200 even when the date says unmodified.
    both = {"If-Modified-Since": modified, "If-None-Match": '"stale"'}
    assert client.get("/atom.xml", headers=both).status_code == 200


def test_gzip_has_its_own_strong_etag(files_site: Site) -> None:
    client = files_site.client
    plain = client.get("/rss.xml", headers={"Accept-Encoding": "identity"})
    with client.stream("GET", "/rss.xml", headers={"Accept-Encoding": "gzip"}) as squeezed:
        raw = b"".join(squeezed.iter_raw())
    assert "content-encoding" not in plain.headers
    assert squeezed.headers["content-encoding"] == "gzip"
    assert squeezed.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(raw) == plain.content
    assert len(raw) < len(plain.content) / 2
    assert squeezed.headers["etag"] == plain.headers["etag"][:-1] + '-gz"'
    refused = client.get("/rss.xml", headers={"Accept-Encoding": "gzip;q=0, br"})
    assert "content-encoding" not in refused.headers
    revalidated = client.get("/rss.xml", headers={"Accept-Encoding": "gzip",
                                                  "If-None-Match": squeezed.headers["etag"]})
    assert revalidated.status_code == 304


def test_head_has_headers_and_no_body(files_site: Site) -> None:
    response = files_site.client.head("/atom.xml", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"].startswith("application/atom+xml")
    size = (files_site.config.output_dir / "atom.xml").stat().st_size
    assert int(response.headers["content-length"]) == size


def test_websub_link_headers_on_feeds_only(files_site: Site) -> None:
    for name in ("rss.xml", "atom.xml", "feed.json"):
        links = files_site.client.get("/" + name).headers["link"]
        assert f'<{HUB}>; rel="hub"' in links
        assert f'<https://example.org/{name}>; rel="self"' in links
        not_modified = files_site.client.get("/" + name, headers={"If-None-Match": "*"})
        assert not_modified.headers["link"] == links
    assert "link" not in files_site.client.get("/index.html").headers


def test_no_link_header_without_hub(project: Project, clock: datetime) -> None:
    config = configure(project)
    store = Store.open(config.store_url)
    try:
        build(config, store, clock)
        with serving(web.create_app(config, store)) as served:
            response = httpx.get(served.base + "/rss.xml")
    finally:
        store.close()
    assert response.status_code == 200
    assert "link" not in response.headers


def test_health(files_site: Site) -> None:
    response = files_site.client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")
    assert response.headers["cache-control"] == "no-store"


def test_other_methods_on_files_are_refused(files_site: Site) -> None:
    assert files_site.client.post("/rss.xml", content=b"x").status_code == 405
    assert files_site.client.delete("/rss.xml").status_code == 405


# -- path traversal, as a hostile client sends it (raw bytes, no client-side normalising) --


def raw_get(base: str, target: str) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, data


TRAVERSALS = [
    "/../config/syndicator.toml",
    "/%2e%2e/config/syndicator.toml",
    "/%2E%2E%2Fconfig%2Fsyndicator.toml",
    "/..%2fconfig%2fsyndicator.toml",
    "/.%2e/.%2e/.%2e/.%2e/etc/passwd",
    "/stories/../../config/syndicator.toml",
    "/index.html/../../config/syndicator.toml",
    "/..\\config\\syndicator.toml",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/etc/passwd",
    "/%00",
    "/rss.xml%00.html",
    "/leak.toml",
    "/leakdir/passwd",
    "/.hidden",
    "/%252e%252e/config/syndicator.toml",
    "http://x/../config/syndicator.toml",
]


def test_nothing_outside_the_output_folder_can_be_read(files_site: Site) -> None:
    out = files_site.config.output_dir
    (out / "leak.toml").symlink_to(files_site.config.source)
    (out / "leakdir").symlink_to("/etc")
    (out / ".hidden").write_text("hidden")
    (out / "alias.xml").symlink_to(out / "rss.xml")  # a link that stays inside is fine
    for target in TRAVERSALS:
        status, data = raw_get(files_site.base, target)
        assert status in (400, 404), (target, status)
        assert b"secret_env" not in data and b"root:" not in data and b"hidden" not in data.lower(), target
    assert raw_get(files_site.base, "/alias.xml")[0] == 200


# -- unsubscribe -------------------------------------------------------------------------


def unsub_path(config: Config, address: str, secret: bytes = SECRET) -> str:
    return "/u/" + unsubscribe_token(secret, list_id(config), address)


def test_get_only_shows_a_confirmation_page(lite_site: Site) -> None:
    response = lite_site.client.get(unsub_path(lite_site.config, "alice@example.com"))
    assert response.status_code == 200
    assert '<form method="post"' in response.text
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert lists.suppressed_addresses(lite_site.store) == set()


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_at_once(site: Site, encoding: str) -> None:
    path = unsub_path(site.config, "alice@example.com")
    if encoding == "urlencoded":
        response = site.client.post(path, data={"List-Unsubscribe": "One-Click"})
    else:
        response = site.client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers and "location" not in response.headers
    assert "alice@example.com" in response.text
    assert lists.suppressed_addresses(site.store) == {"alice@example.com"}
    assert list(audience(site.config, site.store)) == ["bob@example.net"]
    replay = site.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert replay.status_code == 200  # the link in every old digest keeps working
    assert lists.suppressed_addresses(site.store) == {"alice@example.com"}


def test_bad_tokens_get_the_same_plain_400(lite_site: Site) -> None:
    config = lite_site.config
    good = unsubscribe_token(SECRET, list_id(config), "alice@example.com")
    tampered = good[:-3] + ("AAA" if good[-3:] != "AAA" else "BBB")
    paths = [
        "/u/" + "x" * 40,
        "/u/!!!",
        "/u/" + unsubscribe_token(b"another secret", list_id(config), "alice@example.com"),
        "/u/" + unsubscribe_token(SECRET, "<other.list>", "alice@example.com"),
        "/u/" + tampered,
        "/u/" + confirm_token(SECRET, list_id(config), "alice@example.com"),  # wrong purpose
        "/confirm/" + good,
        "/confirm/" + confirm_token(SECRET, list_id(config), "new@example.com"),  # never requested
    ]
    bodies = set()
    for path in paths:
        for method in ("GET", "POST"):
            response = lite_site.client.request(method, path)
            assert response.status_code == 400, (method, path)
            assert "alice" not in response.text and "new@" not in response.text
            bodies.add(response.text)
    assert len(bodies) == 1
    assert lists.suppressed_addresses(lite_site.store) == set()


# -- subscribe with double opt-in ----------------------------------------------------------


def wait_for_mail(smtp: SmtpServer, count: int) -> None:
    smtp.handler.wait_for(count)


def confirm_link(smtp: SmtpServer, index: int = -1) -> str:
    body = smtp.received[index].message.get_body(("plain",))
    assert body is not None
    match = re.search(r"https://example\.org/confirm/\S+", body.get_content())
    assert match
    return match.group(0)


def test_subscribe_confirm_then_on_the_list_and_digest(site: Site, smtp_server: SmtpServer,
                                                       clock: datetime) -> None:
    assert "<form" in site.client.get("/subscribe").text
    response = site.client.post("/subscribe", data={"email": " Carol@Example.COM "})
    assert response.status_code == 200 and "Check your inbox" in response.text
    wait_for_mail(smtp_server, 1)
    mail = smtp_server.received[0]
    assert mail.rcpt_tos == ["carol@example.com"]
    assert mail.message["Date"] and mail.message["Message-ID"]
    assert "carol@example.com" not in list(audience(site.config, site.store))
    path = site.path_of(confirm_link(smtp_server))
    page = site.client.get(path)
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert "carol@example.com" not in list(audience(site.config, site.store))  # GET confirms nothing
    done = site.client.post(path)
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert list(audience(site.config, site.store)) == ["alice@example.com", "bob@example.net",
                                                       "carol@example.com"]
    assert site.client.post(path).status_code == 400  # single use
    _send_digest(site, clock)
    wait_for_mail(smtp_server, 4)
    assert sorted(r.rcpt_tos[0] for r in smtp_server.received[1:]) == [
        "alice@example.com", "bob@example.net", "carol@example.com"]


def test_unsubscribe_after_the_edition_opened_stops_its_mail(site: Site, smtp_server: SmtpServer,
                                                             clock: datetime) -> None:
    from syndicator.mail.edition import open_edition

    edition = open_edition(site.config, site.store, clock + timedelta(hours=1))
    assert edition is not None  # bob's delivery row is pending now
    site.client.post(unsub_path(site.config, "bob@example.net"), data={"List-Unsubscribe": "One-Click"})
    _send_digest(site, clock, sent=1)
    assert [r.rcpt_tos for r in smtp_server.received] == [["alice@example.com"]]
    assert ledger.counts(site.store, edition.id)[ledger.SUPPRESSED] == 1


def _send_digest(site: Site, clock: datetime, sent: int = 3) -> None:
    from syndicator.mail import workers

    tally = workers.send(site.config, site.store, clock + timedelta(hours=1), password=None, secret=SECRET)
    assert tally.sent == sent, tally


def test_resubscribing_a_suppressed_address_needs_confirmation(site: Site, smtp_server: SmtpServer) -> None:
    site.client.post(unsub_path(site.config, "alice@example.com"))
    assert "alice@example.com" not in list(audience(site.config, site.store))
    site.client.post("/subscribe", data={"email": "alice@example.com"})
    wait_for_mail(smtp_server, 1)
    assert lists.suppressed_addresses(site.store) == {"alice@example.com"}  # not before the click
    site.client.post(site.path_of(confirm_link(smtp_server)))
    assert lists.suppressed_addresses(site.store) == set()
    assert "alice@example.com" in list(audience(site.config, site.store))


def test_subscribe_reveals_nothing(site: Site, smtp_server: SmtpServer) -> None:
    subscriptions.unsubscribe(site.store, "gone@example.com", "test", int(time.time()))
    cases = ["fresh@example.com", "fresh@example.com", "alice@example.com", "gone@example.com"]
    answers = set()
    for address in cases:
        response = site.client.post("/subscribe", data={"email": address})
        answers.add((response.status_code, response.text, response.headers.get("content-length")))
    assert len(answers) == 1
    wait_for_mail(smtp_server, 3)
    site.served.stop()  # returns once every background mail task has finished
    # The repeat within the cooldown sent nothing more: no mail bombing through the form.
    assert sorted(r.rcpt_tos[0] for r in smtp_server.received) == [
        "alice@example.com", "fresh@example.com", "gone@example.com"]


def test_subscribe_answers_before_the_mail_is_sent(project: Project, clock: datetime) -> None:
    slow = socket.socket()
    slow.bind(("127.0.0.1", 0))
    slow.listen()  # accepts the connection but never greets: SMTP hangs until the socket closes
    config = configure(project, port=slow.getsockname()[1], smtp_timeout=60)
    store = Store.open(config.store_url)
    try:
        with serving(web.create_app(config, store)) as served:
            response = httpx.post(served.base + "/subscribe", data={"email": "x@example.com"}, timeout=20)
            # The page came back while the confirmation mail still waits for the relay's greeting.
            smtp_side, _ = slow.accept()
            smtp_side.close()
    finally:
        store.close()
        slow.close()
    assert response.status_code == 200
    assert "Check your inbox" in response.text


def test_invalid_address_gets_the_form_again(lite_site: Site, smtp_server: SmtpServer) -> None:
    response = lite_site.client.post("/subscribe", data={"email": "not an address<script>"})
    assert response.status_code == 400
    assert "valid email address" in response.text
    assert "<script>" not in response.text and "&lt;script&gt;" in response.text
    assert lite_site.client.post("/subscribe", data={}).status_code == 400
    assert smtp_server.received == []


def test_expired_confirmation_is_refused(site: Site, smtp_server: SmtpServer) -> None:
    signer = subscriptions.Signer(SECRET, list_id(site.config))
    issued = int(time.time()) - subscriptions.CONFIRM_MAX_AGE - 60
    token = subscriptions.request(site.store, signer, "late@example.com", issued)
    assert token is not None
    assert site.client.get("/confirm/" + token).status_code == 400
    assert site.client.post("/confirm/" + token).status_code == 400
    assert "late@example.com" not in list(audience(site.config, site.store))


def test_subscribe_is_rate_limited_per_client(project: Project, smtp_server: SmtpServer) -> None:
    project.extra = '\n[serve]\ntrusted_proxies = ["127.0.0.1"]\n'
    config = configure(project, port=smtp_server.port)
    store = Store.open(config.store_url)
    app = web.create_app(config, store, limiter=limits.RateLimiter(burst=3, every=60))
    try:
        with serving(app) as served, httpx.Client(base_url=served.base) as client:
            codes = [client.post("/subscribe", data={"email": f"u{i}@example.com"}).status_code
                     for i in range(4)]
            limited = client.post("/subscribe", data={"email": "u9@example.com"})
            # Behind a trusted local proxy, each forwarded client has its own bucket.
            other = client.post("/subscribe", data={"email": "v@example.com"},
                                headers={"X-Forwarded-For": "203.0.113.7"})
    finally:
        store.close()
    assert codes == [200, 200, 200, 429]
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert other.status_code == 200


def test_rate_limiter_refills() -> None:
    now = [0.0]
    limiter = limits.RateLimiter(burst=2, every=10, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")
    now[0] = 10.0
    assert limiter.allow("a") and not limiter.allow("a")


def test_request_bodies_are_size_limited(lite_site: Site) -> None:
    big = {"email": "a@example.com", "pad": "x" * (limits.MAX_BODY + 1)}
    assert lite_site.client.post("/subscribe", data=big).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
        yield b"email=a%40example.com&pad="
        for _ in range(40):
            yield b"x" * 1024

    streamed = lite_site.client.post("/subscribe", content=chunks(),
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413
    unsubscribe = unsub_path(lite_site.config, "alice@example.com")
    assert lite_site.client.post(unsubscribe, content=chunks()).status_code == 413
    assert lists.suppressed_addresses(lite_site.store) == set()


# -- failures never leak ---------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "short"])
def test_without_a_usable_secret_the_site_is_served_and_subscriptions_answer_503(
        project: Project, clock: datetime, monkeypatch: pytest.MonkeyPatch, secret: str | None) -> None:
    if secret is None:
        monkeypatch.delenv("SYNDICATOR_TEST_SECRET")
    else:
        monkeypatch.setenv("SYNDICATOR_TEST_SECRET", secret)
    config = configure(project)
    store = Store.open(config.store_url)
    try:
        build(config, store, clock)
        with serving(web.create_app(config, store)) as served, httpx.Client(base_url=served.base) as client:
            assert client.get("/rss.xml").status_code == 200
            assert client.get("/").status_code == 200
            for method, path in (("GET", "/subscribe"), ("POST", "/subscribe"), ("GET", "/u/abc"),
                                 ("POST", "/u/abc"), ("GET", "/confirm/abc")):
                form = {"email": "a@example.com"} if method == "POST" else None
                response = client.request(method, path, data=form)
                assert response.status_code == 503, (method, path)
                assert "Subscriptions are unavailable right now" in response.text
                assert response.headers["retry-after"] == "300"
    finally:
        store.close()


def test_serve_without_the_secret_says_what_it_serves(project: Project,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    monkeypatch.delenv("SYNDICATOR_TEST_SECRET")
    configure(project)
    env = {k: v for k, v in os.environ.items() if k != "SYNDICATOR_TEST_SECRET"}
    env["SYNDICATOR_CONFIG"] = str(project.config)
    proc = subprocess.Popen([sys.executable, "-m", "syndicator", "serve", "--port", "0"], cwd=project.root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        warning = proc.stderr.readline()
        assert warning == ("serving the site without subscriptions (they answer 503): the environment "
                           "variable SYNDICATOR_TEST_SECRET (digest.secret_env) must hold the secret that "
                           "signs unsubscribe links\n")
        assert proc.stdout.readline().startswith("serving ")
    finally:
        proc.terminate()
        proc.wait(10)


def test_errors_reach_the_client_without_detail(lite_site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from syndicator.errors import StoreError

    def broken_store(*_args: object) -> None:
        raise StoreError("store error: password authentication failed for user secretuser")

    def bug(*_args: object) -> None:
        raise RuntimeError("internal detail secretvalue")

    monkeypatch.setattr(subscriptions, "request", broken_store)
    down = lite_site.client.post("/subscribe", data={"email": "a@example.com"})
    assert down.status_code == 503 and "secretuser" not in down.text
    monkeypatch.setattr(subscriptions, "request", bug)
    crashed = lite_site.client.post("/subscribe", data={"email": "a@example.com"})
    assert crashed.status_code == 500
    assert "secretvalue" not in crashed.text and "Traceback" not in crashed.text


def test_tokens_and_secret_stay_out_of_the_logs(lite_site: Site, smtp_server: SmtpServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    token = unsubscribe_token(SECRET, list_id(lite_site.config), "alice@example.com")
    lite_site.client.get("/u/" + token)
    lite_site.client.post("/u/" + token)
    lite_site.client.post("/subscribe", data={"email": "dan@example.com"})
    wait_for_mail(smtp_server, 1)
    link = confirm_link(smtp_server)
    lite_site.client.post(lite_site.path_of(link))
    lite_site.served.stop()  # every request answered and logged
    # The server's own records (the test's httpx client logs its URLs itself).
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("uvicorn", "syndicator")))
    assert "/u/[token]" in text and "/confirm/[token]" in text  # the access log is on, redacted
    assert token not in text
    assert link.rsplit("/", 1)[1] not in text
    assert SECRET.decode() not in text


def test_serve_app_runs_until_cancelled(project: Project, clock: datetime) -> None:
    import asyncio

    config = configure(project)
    store = Store.open(config.store_url)
    build(config, store, clock)
    sock = web.listen("127.0.0.1", 0)
    port = sock.getsockname()[1]

    async def scenario() -> int:
        task = asyncio.create_task(web.serve_app(config, store=store, sock=sock))
        async with httpx.AsyncClient() as client:  # the socket listens already: no retry needed
            status = (await client.get(f"http://127.0.0.1:{port}/healthz", timeout=10)).status_code
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return status

    try:
        assert asyncio.run(scenario()) == 200
    finally:
        store.close()


def test_listen_reports_a_taken_port() -> None:
    taken = web.listen("127.0.0.1", 0)
    taken.listen()
    try:
        with pytest.raises(ServeError, match=r"cannot listen on 127\.0\.0\.1:\d+: "):
            web.listen("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


def test_dates_in_headers_are_http_dates(files_site: Site) -> None:
    modified = files_site.client.get("/rss.xml").headers["last-modified"]
    parsed = datetime.strptime(modified, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert abs(parsed.timestamp() - (files_site.config.output_dir / "rss.xml").stat().st_mtime) < 1
