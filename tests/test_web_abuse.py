"""``serve`` against subscription bombing and cache exhaustion, over real HTTP on loopback."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from syndicator.config import load_config
from syndicator.errors import ConfigError
from syndicator.mail.audience import audience
from syndicator.state import lists
from syndicator.state.store import Store
from syndicator.web import app as web
from syndicator.web import files, limits
from tests.conftest import Project, SmtpServer
from tests.test_web import Site, configure, confirm_link, serving, unsub_path

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@contextmanager
def abuse_site(project: Project, smtp: SmtpServer, *, serve: str = "", store_url: str | None = None,
               burst: int = 50, cache_bytes: int = files.CACHE_BYTES) -> Iterator[Site]:
    """A running app whose config has ``serve`` as its [serve] section."""
    project.extra = f"\n[serve]\n{serve}\n" if serve else ""
    config = configure(project, store=store_url, port=smtp.port)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(config.store_url)
    app = web.create_app(config, store, limiter=limits.RateLimiter(burst=burst, every=60),
                         cache_bytes=cache_bytes)
    try:
        with serving(app) as served, httpx.Client(base_url=served.base, timeout=10) as client:
            yield Site(config, store, served, client)
    finally:
        store.close()


def subscribe(site: Site, email: str, **headers: str) -> httpx.Response:
    return site.client.post("/subscribe", data={"email": email}, headers=headers)


def mailed(smtp: SmtpServer) -> list[str]:
    return sorted(r.rcpt_tos[0] for r in smtp.received)


# -- 1. X-Forwarded-For only from trusted proxies ---------------------------------------


def test_forwarded_for_from_an_untrusted_peer_is_ignored(project: Project, smtp_server: SmtpServer) -> None:
    with abuse_site(project, smtp_server, burst=3) as site:
        # A local peer that is no configured proxy claims a new address each time: one bucket still.
        codes = [subscribe(site, f"u{i}@example.com", **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                 for i in range(4)]
    assert codes == [200, 200, 200, 429]


def test_a_trusted_proxy_names_the_right_most_untrusted_hop(project: Project,
                                                            smtp_server: SmtpServer) -> None:
    serve = 'trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]'
    with abuse_site(project, smtp_server, serve=serve, burst=3) as site:
        # The client rotates what it sends; the proxies (10.1.2.3 trusted, then us) append what they saw.
        codes = [subscribe(site, f"u{i}@example.com",
                           **{"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.9, 10.1.2.3"}).status_code
                 for i in range(4)]
        other = subscribe(site, "v@example.com", **{"X-Forwarded-For": "203.0.113.10"})
        with_port = subscribe(site, "w@example.com", **{"X-Forwarded-For": "203.0.113.9:4711"})
    assert codes == [200, 200, 200, 429]
    assert other.status_code == 200
    assert with_port.status_code == 429  # the same client, written with a port


def test_serve_config_is_checked(project: Project) -> None:
    for text, key in [('trusted_proxies = ["not-an-address"]', "serve.trusted_proxies"),
                      ("confirmations_per_hour = 0", "serve.confirmations_per_hour"),
                      ("trusted = []", "serve.trusted")]:
        project.extra = f"\n[serve]\n{text}\n"
        project.write_config()
        with pytest.raises(ConfigError) as caught:
            load_config(project.config)
        assert caught.value.key == key
    project.extra = '\n[serve]\ntrusted_proxies = ["192.0.2.1", "2001:db8::/32", "10.1.2.3/8"]\n'
    project.write_config()
    proxies = load_config(project.config).serve.trusted_proxies
    assert proxies == ("192.0.2.1/32", "2001:db8::/32", "10.0.0.0/8")
    project.extra = ""
    project.write_config()
    assert load_config(project.config).serve.trusted_proxies == ()  # nobody is trusted by default


# -- 2. IPv6 clients by their /64 -----------------------------------------------------------


def test_ipv6_clients_are_limited_by_their_64(project: Project, smtp_server: SmtpServer) -> None:
    with abuse_site(project, smtp_server, serve='trusted_proxies = ["127.0.0.1"]', burst=3) as site:
        one_64 = ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::3"]
        rotating = [subscribe(site, f"a{i}@example.com", **{"X-Forwarded-For": a}).status_code
                    for i, a in enumerate(one_64)]
        next_64 = subscribe(site, "b@example.com", **{"X-Forwarded-For": "2001:db8:1:3::1"})
        # An IPv4 client seen through a dual-stack socket is that IPv4 client.
        mapped = ["::ffff:192.0.2.5", "192.0.2.5", "[::ffff:192.0.2.5]", "::ffff:c000:205"]
        v4 = [subscribe(site, f"c{i}@example.com", **{"X-Forwarded-For": a}).status_code
              for i, a in enumerate(mapped)]
    assert rotating == [200, 200, 200, 429]
    assert next_64.status_code == 200
    assert v4 == [200, 200, 200, 429]


# -- 3. the confirmation mail: one per mailbox, and a cap for all -----------------------------


def test_plus_tags_share_one_cooldown(project: Project, store_url: str, smtp_server: SmtpServer) -> None:
    with abuse_site(project, smtp_server, store_url=store_url) as site:
        cases = ["target+1@example.com", "target+2@example.com", "TARGET+3@Example.com", "target@example.com",
                 "other+1@example.com",  # another mailbox
                 "target+1@example.net",  # another domain
                 "tar_et+1@example.com"]  # LIKE's '_' would match "target": escaped
        answers = {(r.status_code, r.text) for r in (subscribe(site, a) for a in cases)}
        site.served.stop()  # every background mail task has finished
        stored = [s.address for s in lists.subscribers(site.store)]
    assert len(answers) == 1  # the page reveals nothing
    expected = ["other+1@example.com", "tar_et+1@example.com", "target+1@example.com", "target+1@example.net"]
    assert mailed(smtp_server) == expected
    assert stored == expected  # each kept as typed (lower-cased), its +tag included


def test_confirmations_are_capped_per_hour_across_processes(project: Project, store_url: str,
                                                            smtp_server: SmtpServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with ExitStack() as stack:
        # Two servers on one store, as two processes would be: the cap counts what both sent.
        first, second = (stack.enter_context(abuse_site(project, smtp_server, store_url=store_url,
                                                        serve="confirmations_per_hour = 3"))
                         for _ in range(2))
        answers = {(r.status_code, r.text) for r in [subscribe(first, "a@example.com"),
                                                     subscribe(first, "b@example.com"),
                                                     subscribe(second, "c@example.com"),
                                                     subscribe(second, "d@example.com"),
                                                     subscribe(first, "e@example.com")]}
        first.served.stop()
        second.served.stop()
        stored = [s.address for s in lists.subscribers(first.store)]
    assert len(answers) == 1 and answers.pop()[0] == 200  # over the cap looks the same
    assert mailed(smtp_server) == ["a@example.com", "b@example.com", "c@example.com"]
    assert stored == ["a@example.com", "b@example.com", "c@example.com"]
    records = [r for r in caplog.records if r.name.startswith(("syndicator", "uvicorn"))]
    warnings = [r for r in records if r.name == "syndicator.mail.subscriptions"
                and r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("serve.confirmations_per_hour" in r.getMessage() for r in warnings)
    assert not any("@example.com" in r.getMessage() for r in records)


# -- 4. no cross-site POSTs --------------------------------------------------------------------


def test_cross_site_posts_to_subscribe_are_refused(project: Project, smtp_server: SmtpServer) -> None:
    with abuse_site(project, smtp_server) as site:
        own = site.base  # http://127.0.0.1:<port>, the Host this server answers to
        refused = [subscribe(site, "x1@example.com", Origin="https://evil.example"),
                   subscribe(site, "x2@example.com", **{"Sec-Fetch-Site": "cross-site"}),
                   subscribe(site, "x3@example.com", Origin="null"),
                   subscribe(site, "x4@example.com", Origin="https://example.org.evil.example"),
                   subscribe(site, "x5@example.com", Origin="https://example.org",
                             **{"Sec-Fetch-Site": "cross-site"})]
        allowed = [subscribe(site, "ok1@example.com"),  # curl: neither header
                   subscribe(site, "ok2@example.com", Origin="https://example.org",
                             **{"Sec-Fetch-Site": "same-origin"}),
                   subscribe(site, "ok3@example.com", Origin="https://EXAMPLE.org:443"),
                   subscribe(site, "ok4@example.com", Origin=own, **{"Sec-Fetch-Site": "same-origin"})]
        site.served.stop()
    assert [r.status_code for r in refused] == [403] * 5
    assert [r.status_code for r in allowed] == [200] * 4
    assert mailed(smtp_server) == ["ok1@example.com", "ok2@example.com", "ok3@example.com", "ok4@example.com"]


def test_cross_site_confirm_and_unsubscribe_posts_are_refused(project: Project,
                                                              smtp_server: SmtpServer) -> None:
    evil = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    with abuse_site(project, smtp_server) as site:
        subscribe(site, "carol@example.com")
        smtp_server.handler.wait_for(1)
        confirm = site.path_of(confirm_link(smtp_server))
        # The link in the mail is opened from the webmail's site: GET must work cross-site.
        assert site.client.get(confirm, headers=evil).status_code == 200
        assert site.client.post(confirm, headers=evil).status_code == 403
        assert "carol@example.com" not in list(audience(site.config, site.store))
        assert site.client.post(confirm, headers={"Origin": site.base}).status_code == 200
        assert "carol@example.com" in list(audience(site.config, site.store))

        unsubscribe = unsub_path(site.config, "alice@example.com")
        assert site.client.get(unsubscribe, headers=evil).status_code == 200
        assert site.client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"},
                                headers=evil).status_code == 403
        assert lists.suppressed_addresses(site.store) == set()
        # RFC 8058: the mail provider's server POSTs with neither header; that must keep working.
        one_click = site.client.post(unsubscribe, content=b"List-Unsubscribe=One-Click", headers=FORM)
        assert one_click.status_code == 200
        assert lists.suppressed_addresses(site.store) == {"alice@example.com"}
        button = unsub_path(site.config, "bob@example.net")  # the page's own button
        assert site.client.post(button, data={"List-Unsubscribe": "One-Click"},
                                headers={"Origin": "https://example.org",
                                         "Sec-Fetch-Site": "same-origin"}).status_code == 200
        assert lists.suppressed_addresses(site.store) == {"alice@example.com", "bob@example.net"}


# -- 5. the file cache is bounded in bytes -------------------------------------------------------


def test_file_cache_is_bounded_in_bytes(project: Project, smtp_server: SmtpServer) -> None:
    budget = 1_000_000
    noise = random.Random(5)
    with abuse_site(project, smtp_server, cache_bytes=budget) as site:
        out = site.config.output_dir
        bodies: dict[str, bytes] = {f"blob{i}.bin": noise.randbytes(200_000) for i in range(8)}
        bodies["page.txt"] = b"the same line of text\n" * 9_000  # textual: its gzip form counts too
        bodies["huge.bin"] = noise.randbytes(budget // 4 + 1)
        for name, body in bodies.items():
            (out / name).write_bytes(body)
        cache = site.served.server.config.app.state.site.files
        assert isinstance(cache, files.Files)
        for name, body in [*bodies.items(), *bodies.items()]:  # twice: the second time from the cache
            before = cache.cached_bytes
            response = site.client.get("/" + name, headers={"Accept-Encoding": "identity"})
            assert response.status_code == 200 and response.content == body, name
            assert cache.cached_bytes <= budget, name
            if name == "huge.bin":
                assert cache.cached_bytes == before  # over a quarter of the budget: never cached
        assert 0 < cache.cached_files <= budget // 200_000
        squeezed = site.client.get("/page.txt", headers={"Accept-Encoding": "gzip"})
        assert squeezed.headers["content-encoding"] == "gzip" and squeezed.content == bodies["page.txt"]


def test_a_file_that_grows_leaves_the_cache(tmp_path: Path) -> None:
    cache = files.Files(tmp_path, max_bytes=400)
    path = tmp_path / "grows.bin"
    path.write_bytes(b"x" * 100)
    assert cache.load(path) is not None and cache.cached_bytes == 100
    path.write_bytes(b"y" * 101)  # over a quarter now: served, and the old copy is dropped
    loaded = cache.load(path)
    assert loaded is not None and loaded.body == b"y" * 101
    assert cache.cached_bytes == 0 and cache.cached_files == 0
