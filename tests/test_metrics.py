"""``/metrics`` of ``serve`` over real HTTP: what it counts agrees with the store, several
senders add up, and who may scrape it (loopback only, or a bearer token from anywhere)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import inspect

from syndicator.config import Config, load_config
from syndicator.errors import ConfigError, StoreError
from syndicator.mail import workers
from syndicator.site.build import build
from syndicator.state import inbound, ledger, lists, runs
from syndicator.state.store import Store
from syndicator.web import app as web
from tests.conftest import Project, SmtpServer
from tests.test_web import SECRET, configure, serving

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]
TOKEN = "scrape-token-4f1c9a0e2b7d"


def parse(text: str) -> Samples:
    """Every sample of a scrape by name, then by its sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def by(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in samples.get(name, {}).items()}


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert response.headers["cache-control"] == "no-store"
    return parse(response.text)


@contextmanager
def metrics_site(config: Config, store: Store) -> Iterator[httpx.Client]:
    with serving(web.create_app(config, store, secret=SECRET)) as served, \
            httpx.Client(base_url=served.base, timeout=10) as client:
        yield client


def ledger_totals(store: Store) -> dict[str, int]:
    totals = dict.fromkeys(ledger.STATES, 0)
    for edition in ledger.editions(store, limit=None):
        for state, n in ledger.counts(store, edition.id).items():
            totals[state] += n
    return totals


def add_subscriber(store: Store, address: str, now: int, *, confirm: bool) -> None:
    digest = hashlib.sha256(address.encode()).hexdigest()
    lists.request_confirmation(store, address, digest, now, canonical=address, cooldown=None)
    if confirm:
        assert lists.confirm(store, address, digest, now)


def test_metrics_agree_with_the_store(project: Project, store_url: str, clock: datetime,
                                      smtp_server: SmtpServer) -> None:
    config = configure(project, store=store_url, port=smtp_server.port)
    store = Store.open(config.store_url)
    try:
        now = int(time.time())
        add_subscriber(store, "carol@example.com", now, confirm=True)
        add_subscriber(store, "dave@example.com", now, confirm=False)
        add_subscriber(store, "erin@example.com", now, confirm=True)
        build(config, store, clock)
        tally = workers.send(config, store, clock, password=None, secret=SECRET)
        assert tally.sent == 4  # alice, bob (configured) and carol, erin (confirmed); not dave
        smtp_server.handler.wait_for(4)
        edition = ledger.editions(store)[0]
        inbound.record(store, "m1", "bounce", [inbound.Event("bounce", "erin@example.com", edition.id,
                                                             "5.1.1")], now, soft_limit=3)
        inbound.record(store, "m2", "complaint", [inbound.Event("complaint", "bob@example.net",
                                                                edition.id)], now, soft_limit=3)
        inbound.record(store, "m3", "delay", [inbound.Event("delay", "alice@example.com", edition.id)],
                       now, soft_limit=3)
        with metrics_site(config, store) as client:
            samples = scrape(client)
        expected = ledger_totals(store)
        suppressed = lists.suppressions(store)
    finally:
        store.close()
    assert by(samples, "syndicator_editions", "status") == {"open": 0, "done": 1, "rejected": 0}
    assert by(samples, "syndicator_deliveries", "state") == expected
    assert by(samples, "syndicator_deliveries", "state")["sent"] == len(smtp_server.received) == 4
    assert by(samples, "syndicator_inbound_events_total", "kind") == {
        "bounce": 1, "delay": 1, "complaint": 1, "unsubscribe": 0}
    # erin bounced and is suppressed now; bob complained but is a configured recipient, no subscriber.
    assert by(samples, "syndicator_subscribers", "state") == {"confirmed": 1, "pending": 1, "suppressed": 1}
    assert samples["syndicator_suppressed_addresses"][()] == len(suppressed) == 2
    took = by(samples, "syndicator_last_run_duration_seconds", "kind")
    ended = by(samples, "syndicator_last_run_finished_timestamp_seconds", "kind")
    assert set(took) == set(ended) == {"build", "send"}
    assert 0 <= took["send"] < 30 and 0 <= took["build"] < 30
    assert now - 5 <= ended["build"] <= ended["send"] <= time.time() + 1


def _spawn_send(project: Project) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SYNDICATOR_CONFIG": str(project.config)}
    return subprocess.Popen([sys.executable, "-m", "syndicator", "send", "--quiet"], cwd=project.root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_several_senders_add_up(project: Project, store_url: str, clock: datetime,
                                smtp_server: SmtpServer) -> None:
    """Two `syndicator send` processes at once share one edition, a third send (in this
    process) mails the next: one server on the store counts them all, at each scrape."""
    project.recipients = [f"reader{n:02d}@example.com" for n in range(40)]
    config = configure(project, store=store_url, port=smtp_server.port)
    store = Store.open(config.store_url)
    try:
        with metrics_site(config, store) as client:
            before = scrape(client)
            assert by(before, "syndicator_deliveries", "state")["sent"] == 0
            assert "syndicator_last_run_duration_seconds" not in before  # nothing ran yet
            first, second = _spawn_send(project), _spawn_send(project)
            outputs = [p.communicate(timeout=60) for p in (first, second)]
            assert [first.returncode, second.returncode] == [0, 0], outputs
            after_two = scrape(client)
            assert by(after_two, "syndicator_deliveries", "state")["sent"] == 40 == len(smtp_server.received)
            assert by(after_two, "syndicator_editions", "status")["done"] == 1
            assert runs_recorded(store) == 2  # each process noted its own send
            project.seed("001_later.txt", "A Later Story\n\nIt came after the first edition.\n")
            tally = workers.send(config, store, clock + timedelta(days=1), password=None, secret=SECRET)
            assert tally.sent == 40
            after_three = scrape(client)
        expected = ledger_totals(store)
    finally:
        store.close()
    assert by(after_three, "syndicator_deliveries", "state")["sent"] == 80 == len(smtp_server.received)
    assert by(after_three, "syndicator_editions", "status")["done"] == 2
    assert by(after_three, "syndicator_deliveries", "state") == expected


def runs_recorded(store: Store) -> int:
    from sqlalchemy import func, select

    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(runs.runs)
                                .where(runs.runs.c.kind == runs.SEND)).scalar_one())


# -- who may scrape ------------------------------------------------------------------------


def asgi_get(config: Config, store: Store, peer: str, path: str = "/metrics",
             headers: dict[str, str] | None = None) -> httpx.Response:
    """A request to the real app as if from ``peer`` (no socket: no address here but loopback)."""
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(web.create_app(config, store, secret=SECRET), client=(peer, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://syndicator.test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(go())


@pytest.fixture
def lite(project: Project, clock: datetime) -> Iterator[tuple[Config, Store]]:
    config = configure(project)
    store = Store.open(config.store_url)
    build(config, store, clock)
    try:
        yield config, store
    finally:
        store.close()


def test_without_a_token_only_loopback_peers_are_answered(lite: tuple[Config, Store],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config, store = lite
    monkeypatch.delenv("SYNDICATOR_METRICS_TOKEN", raising=False)
    with metrics_site(config, store) as client:
        assert client.get("/metrics").status_code == 200  # a real loopback connection
        # A request a proxy forwarded came from elsewhere, whichever peer handed it on.
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            assert client.get("/metrics", headers={header: "203.0.113.7"}).status_code == 404
        # Other methods: as on any path.
        assert client.post("/metrics").status_code == client.post("/no-such-file").status_code == 405
    for peer in ("203.0.113.7", "192.168.1.20", "2001:db8::5", "::ffff:203.0.113.7"):
        refused = asgi_get(config, store, peer)
        assert refused.status_code == 404 and refused.text == "Not found.\n"
    for peer in ("127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"):
        assert asgi_get(config, store, peer).status_code == 200, peer


def test_a_trusted_proxy_forwarding_a_remote_client_gets_404(project: Project, clock: datetime,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNDICATOR_METRICS_TOKEN", raising=False)
    project.extra = '\n[serve]\ntrusted_proxies = ["127.0.0.1"]\n'
    config = configure(project)
    store = Store.open(config.store_url)
    try:
        with metrics_site(config, store) as client:
            assert client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.4"}).status_code == 404
            assert client.get("/metrics").status_code == 200
    finally:
        store.close()


def test_with_a_token_it_is_required_from_anywhere(lite: tuple[Config, Store],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    config, store = lite
    monkeypatch.setenv("SYNDICATOR_METRICS_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    with metrics_site(config, store) as client:
        missing = client.get("/metrics")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        for wrong in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", TOKEN, "Bearer"):
            assert client.get("/metrics", headers={"Authorization": wrong}).status_code == 401, wrong
        assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get("/metrics", headers={"Authorization": f"bearer  {TOKEN}"}).status_code == 200
    remote = asgi_get(config, store, "203.0.113.7", headers={"Authorization": f"Bearer {TOKEN}"})
    assert remote.status_code == 200 and "syndicator_deliveries" in remote.text
    assert asgi_get(config, store, "203.0.113.7").status_code == 401
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_the_token_variable_is_configurable(project: Project, clock: datetime,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    project.extra = '\n[serve]\nmetrics_token_env = "NEWSROOM_SCRAPE"\n'
    config = configure(project)
    assert config.serve.metrics_token_env == "NEWSROOM_SCRAPE"
    project.extra = f'\n[serve]\nmetrics_token = "{TOKEN}"\n'
    project.write_config()
    with pytest.raises(ConfigError, match=r"the token never lives in the file.*serve\.metrics_token_env"):
        load_config(project.config)
    monkeypatch.setenv("NEWSROOM_SCRAPE", TOKEN)
    monkeypatch.setenv("SYNDICATOR_METRICS_TOKEN", "not-this-one-at-all")
    store = Store.open(config.store_url)
    try:
        assert asgi_get(config, store, "127.0.0.1").status_code == 401
        assert asgi_get(config, store, "127.0.0.1", headers={"Authorization": f"Bearer {TOKEN}"}
                        ).status_code == 200
    finally:
        store.close()


# -- the runs table ------------------------------------------------------------------------


def test_migration_0007_adds_and_removes_runs(store_url: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from syndicator.state.store import MIGRATIONS

    store = Store.open(store_url)
    try:
        with store.engine.begin() as conn:
            assert inspect(conn).has_table("runs")
            cfg = AlembicConfig()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0006")
            assert not inspect(conn).has_table("runs")
    finally:
        store.close()
    store = Store.open(store_url)  # upgrades again
    try:
        runs.record(store, runs.BUILD, 1_000_000, 1.5, "first")
        runs.record(store, runs.BUILD, 1_000_000 + runs.KEEP + 10, 2.5, "much later")
        remaining = _run_details(store)
        assert remaining == ["much later"]  # the one older than KEEP was pruned
    finally:
        store.close()


def _run_details(store: Store) -> list[str]:
    from sqlalchemy import select

    with store.read() as conn:
        return [str(d) for d in conn.execute(select(runs.runs.c.detail).order_by(runs.runs.c.id)).scalars()]


def test_a_store_failure_while_noting_a_run_is_logged_not_raised(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = Store.open("sqlite://")
    try:
        @contextmanager
        def broken() -> Iterator[object]:
            raise StoreError("store error: disk I/O error")
            yield  # pragma: no cover

        monkeypatch.setattr(store, "begin", broken)
        runs.record(store, runs.SEND, time.time(), 0.5, "3 sent")
    finally:
        store.close()
    assert any("send run was not recorded" in r.getMessage() for r in caplog.records)
