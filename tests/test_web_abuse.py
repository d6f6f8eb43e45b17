"""``serve`` against subscription bombing and cache exhaustion, over real HTTP on loopback."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from syndicator.state.store import Store
from syndicator.web import app as web
from syndicator.web import files, limits
from tests.conftest import Project, SmtpServer
from tests.test_web import Site, configure, serving


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
