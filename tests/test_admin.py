"""``/admin`` of ``serve`` over real HTTP: basic auth or nothing, a read-only page of what the
store holds (editions and their counts, a delivery chart, bounces, subscribers), escaped."""

from __future__ import annotations

import base64
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import html5lib
import httpx
import pytest
from sqlalchemy import select

from syndicator.config import Config, load_config
from syndicator.errors import ConfigError, SecretMissingError
from syndicator.mail import workers
from syndicator.site.build import build
from syndicator.state import inbound, ledger, lists, schema
from syndicator.state.reports import Curve
from syndicator.state.store import Store
from syndicator.web import app as web
from syndicator.web.admin import delivery_chart
from tests.conftest import EXAMPLE_SEED, Project, SmtpServer
from tests.test_web import SECRET, configure, serving

PASSWORD = "correct horse battery staple"
HOSTILE = '<script>alert("x")</script> & <b>Bold</b> news'
SVG = "{http://www.w3.org/2000/svg}"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


RIGHT = basic("admin", PASSWORD)


@dataclass
class AdminSite:
    config: Config
    store: Store
    client: httpx.Client


@pytest.fixture
def admin_site(project: Project, clock: datetime, smtp_server: SmtpServer,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[AdminSite]:
    """Two editions sent to the aiosmtpd fixture (the first led by a story whose title is
    markup), a bounce and a complaint, subscribers in each state; then serve."""
    monkeypatch.setenv("SYNDICATOR_ADMIN_PASSWORD", PASSWORD)
    (project.seeds / EXAMPLE_SEED.name).unlink()
    project.seed("000_hostile.txt", f"{HOSTILE}\n\nA story whose title is markup.\n")
    config = configure(project, port=smtp_server.port)
    store = Store.open(config.store_url)
    try:
        now = int(time.time())
        for address, confirmed in (("carol@example.com", True), ("dave@example.com", False)):
            digest = address.replace("@", "-at-")
            lists.request_confirmation(store, address, digest, now, canonical=address, cooldown=None)
            if confirmed:
                lists.confirm(store, address, digest, now)
        build(config, store, clock)
        assert workers.send(config, store, clock, password=None, secret=SECRET).sent == 3
        project.seed("001_later.txt", "A Later Story\n\nIt came after the first edition.\n")
        assert workers.send(config, store, clock + timedelta(days=1), password=None, secret=SECRET).sent == 3
        smtp_server.handler.wait_for(6)
        first = ledger.editions(store)[-1]
        inbound.record(store, "b1", "bounce", [inbound.Event("bounce", "carol@example.com", first.id,
                                                             "5.1.1", "mailbox <gone>")], now, soft_limit=3)
        inbound.record(store, "c1", "complaint", [inbound.Event("complaint", "bob@example.net", first.id)],
                       now + 1, soft_limit=3)
        with serving(web.create_app(config, store, secret=SECRET)) as served, \
                httpx.Client(base_url=served.base, timeout=10) as client:
            yield AdminSite(config, store, client)
    finally:
        store.close()


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: to show that reading the page changed none."""
    with store.read() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t)))
                for t in schema.metadata.sorted_tables}


def test_without_a_password_admin_is_a_missing_file(project: Project, clock: datetime,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNDICATOR_ADMIN_PASSWORD", raising=False)
    config = configure(project)
    store = Store.open(config.store_url)
    try:
        build(config, store, clock)
        with serving(web.create_app(config, store, secret=SECRET)) as served, \
                httpx.Client(base_url=served.base) as client:
            missing = client.get("/no-such-file")
            for headers in ({}, RIGHT):
                page = client.get("/admin", headers=headers)
                assert (page.status_code, page.text) == (missing.status_code, missing.text)
                assert page.status_code == 404
                assert "www-authenticate" not in page.headers
            assert client.post("/admin").status_code == client.post("/no-such-file").status_code == 405
    finally:
        store.close()


def test_wrong_or_missing_credentials_get_401_and_nothing_else(admin_site: AdminSite) -> None:
    client = admin_site.client
    asked = client.get("/admin")
    assert asked.status_code == 401
    assert asked.headers["www-authenticate"] == 'Basic realm="syndicator admin", charset="UTF-8"'
    assert asked.headers["cache-control"] == "no-store"
    wrong = [basic("admin", PASSWORD + "!"), basic("admin", PASSWORD[:-1]), basic("Admin", PASSWORD),
             basic("root", PASSWORD), basic("admin", ""), basic("", PASSWORD),
             {"Authorization": "Basic not base64!"}, {"Authorization": f"Bearer {PASSWORD}"},
             {"Authorization": "Basic " + base64.b64encode(PASSWORD.encode()).decode()}]
    for headers in wrong:
        refused = client.get("/admin", headers=headers)
        assert refused.status_code == 401, headers
        assert "Edition" not in refused.text and "carol@example.com" not in refused.text
    assert client.get("/admin", headers=RIGHT).status_code == 200


def test_the_page_shows_editions_a_chart_what_came_back_and_subscribers(admin_site: AdminSite) -> None:
    page = admin_site.client.get("/admin", headers=RIGHT)
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # The subject is text: escaped wherever it appears (table, chart title, legend).
    assert "<script>" not in page.text and "<b>Bold" not in page.text
    assert "&lt;script&gt;" in page.text
    tree = html5lib.parse(page.text, namespaceHTMLElements=False)
    assert tree.find(".//script") is None
    editions = ledger.editions(admin_site.store)
    assert len(editions) == 2
    tables = tree.findall(".//table")
    rows = {int(tr.findall("td")[0].text or ""): [(td.text or "") for td in tr.findall("td")]
            for tr in tables[0].findall("./tbody/tr")}
    assert set(rows) == {e.id for e in editions}
    header = [(th.text or "") for th in tables[0].findall("./thead/tr/th")]
    for edition in editions:
        counts = ledger.counts(admin_site.store, edition.id)
        cells = dict(zip(header, rows[edition.id], strict=True))
        assert cells["sent"] == str(counts["sent"]) == "3"
        assert cells["Status"] == edition.status == "done"
    first = min(rows)
    assert dict(zip(header, rows[first], strict=True))["bounced"] == "1"
    assert dict(zip(header, rows[first], strict=True))["complained"] == "1"
    # One line per edition that sent something, each rising to what that edition sent.
    svg = tree.find(f".//{SVG}svg")
    assert svg is not None
    lines = svg.findall(f".//{SVG}polyline")
    assert len(lines) == 2
    for line in lines:
        title = line.find(f"{SVG}title")
        assert title is not None and (title.text or "").endswith("(3 sent)")
    assert any(HOSTILE in (line.findtext(f"{SVG}title") or "") for line in lines)  # unescaped once parsed
    # The latest bounces and complaints, newest first.
    came_back = [[(td.text or "") for td in tr.findall("td")] for tr in tables[1].findall("./tbody/tr")]
    assert [(r[1], r[2]) for r in came_back] == [("complaint", "bob@example.net"),
                                                 ("bounce", "carol@example.com")]
    assert came_back[1][5] == "mailbox <gone>"
    # Subscribers by state: carol bounced (suppressed now), dave never confirmed.
    people = {tr.findall("td")[0].text: tr.findall("td")[1].text for tr in tables[2].findall("./tbody/tr")}
    assert people == {"confirmed": "0", "pending": "1", "suppressed": "1"}
    assert "Last build" in page.text and "Last send" in page.text and "none recorded" not in page.text


def test_nothing_is_writable(admin_site: AdminSite) -> None:
    client = admin_site.client
    before = snapshot(admin_site.store)
    for _ in range(3):
        assert client.get("/admin", headers=RIGHT).status_code == 200
    assert client.head("/admin", headers=RIGHT).status_code == 200
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = client.request(method, "/admin", headers=RIGHT, data={"status": "open"})
        assert answer.status_code == 405, method
    assert snapshot(admin_site.store) == before


def test_the_password_never_reaches_the_logs(admin_site: AdminSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admin_site.client.get("/admin", headers=basic("admin", PASSWORD + "x"))
    admin_site.client.get("/admin", headers=RIGHT)
    secrets = (PASSWORD, RIGHT["Authorization"].split()[1])
    assert any("wrong credentials" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert not any(s in record.getMessage() for s in secrets), record.getMessage()


def test_guessing_is_throttled_and_a_throttled_guess_tells_nothing(admin_site: AdminSite) -> None:
    client = admin_site.client
    codes = [client.get("/admin", headers=basic("admin", f"guess{n}")).status_code for n in range(25)]
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
    throttled = client.get("/admin", headers=RIGHT)  # even the right password, until the bucket refills
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0


def test_a_short_password_is_refused_at_start(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATOR_ADMIN_PASSWORD", "hunter2")
    config = configure(project)
    store = Store.open(config.store_url)
    try:
        with pytest.raises(SecretMissingError, match="SYNDICATOR_ADMIN_PASSWORD"):
            web.create_app(config, store, secret=SECRET)
    finally:
        store.close()


def test_the_password_variable_is_configurable_and_the_section_strict(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.extra = '\n[admin]\npassword_env = "NEWSROOM_ADMIN"\n'
    config = configure(project)
    monkeypatch.setenv("NEWSROOM_ADMIN", PASSWORD)
    monkeypatch.delenv("SYNDICATOR_ADMIN_PASSWORD", raising=False)
    assert config.admin.password() == PASSWORD
    project.extra = '\n[admin]\npassword = "in the file"\n'
    project.write_config()
    with pytest.raises(ConfigError, match=re.escape(
            "unknown key: the password never lives in the file; put it in the environment variable "
            "that admin.password_env names")):
        load_config(project.config)


# -- the chart alone ---------------------------------------------------------------------


def _points(line: ET.Element) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in line.attrib["points"].split())]


def test_the_chart_is_svg_rising_with_each_minute_that_sent() -> None:
    curves = [Curve(1, 0, ((0, 10), (60, 5), (240, 5))), Curve(2, 0, ((120, 30),))]
    markup = delivery_chart(curves, {1: 'Tom & "Jerry" </svg><script>', 2: "Second"})
    svg = ET.fromstring(str(markup))  # well-formed XML, whatever the subjects hold
    assert svg.tag == f"{SVG}svg" and not svg.findall(f".//{SVG}script")
    lines = svg.findall(f"{SVG}polyline")
    assert [ln.findtext(f"{SVG}title") for ln in lines] == [
        'Edition 1: Tom & "Jerry" </svg><script> (20 sent)', "Edition 2: Second (30 sent)"]
    for line in lines:
        points = _points(line)
        assert points == sorted(points, key=lambda p: p[0])  # time runs left to right
        ys = [y for _, y in points]
        assert ys == sorted(ys, reverse=True)  # SVG's y grows downward: the count never falls
    first, second = (_points(ln) for ln in lines)
    # Edition 1: 10 in its first 10 s, flat until 15 by 1 min 10 s, flat until 20 by 4 min 10 s.
    ys = [y for _, y in first]
    assert len(first) == 6 and ys[0] > ys[1] == ys[2] > ys[3] == ys[4] > ys[5]
    assert second[-1][1] < first[-1][1]  # 30 sent is higher on the chart than 20
    assert len(second) == 3 and second[0][1] == second[1][1] > second[2][1]  # nothing for 2 min, then 30
    labels = [t.text for t in svg.iter(f"{SVG}text")]
    assert "minutes since the edition opened" in labels


def test_the_chart_counts_in_hours_or_days_for_long_runs_and_says_when_empty() -> None:
    hours = ET.fromstring(str(delivery_chart([Curve(1, 0, ((0, 1), (600 * 60, 1)))], {1: "s"})))
    assert "hours since the edition opened" in [t.text for t in hours.iter(f"{SVG}text")]
    days = ET.fromstring(str(delivery_chart([Curve(1, 0, ((0, 1), (9 * 86400, 1)))], {1: "s"})))
    assert "days since the edition opened" in [t.text for t in days.iter(f"{SVG}text")]
    assert "<svg" not in delivery_chart([], {})


def test_a_long_throttled_run_is_drawn_in_a_few_hundred_points() -> None:
    one_a_step = tuple((n * 10, 1) for n in range(20_000))  # 20,000 sent over 55 hours
    svg = ET.fromstring(str(delivery_chart([Curve(1, 0, one_a_step)], {1: "s"})))
    line = svg.find(f"{SVG}polyline")
    assert line is not None and len(_points(line)) <= 402
    assert (line.findtext(f"{SVG}title") or "").endswith("(20,000 sent)")
