"""The reader's preferences page: reached by the token in every message, it shows the site's
tags and a time zone choice, saves them (same-origin only), and offers the unsubscribe."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime

import pytest

from syndicator.mail.message import list_id
from syndicator.mail.tokens import unsubscribe_token
from syndicator.state import lists
from syndicator.state.lists import Preferences
from tests.conftest import FaultyServer, Project, SmtpServer
from tests.test_web import SECRET, Site, running_site


@pytest.fixture
def tagged_site(project: Project, store_url: str, clock: datetime, smtp_server: SmtpServer) -> Iterator[Site]:
    project.seed("010_tagged.txt", "---\ntags: Politics, Sport\n---\nA tagged story\n\nIts text.\n")
    project.seed("011_tagged.txt", "---\ntags: Économie\n---\nAnother one\n\nMore text.\n")
    with running_site(project, store_url, clock, smtp_server) as running:
        yield running


def _path(site: Site, address: str) -> str:
    return "/preferences/" + unsubscribe_token(SECRET, list_id(site.config), address)


def test_the_page_shows_the_sites_tags_and_the_readers_choices(tagged_site: Site) -> None:
    page = tagged_site.client.get(_path(tagged_site, "alice@example.com"))
    assert page.status_code == 200
    assert "alice@example.com" in page.text
    boxes = re.findall(
        r'<input type="checkbox" name="tags" value="([^"]+)"( checked)?> ([^<]+)</label>', page.text
    )
    assert [(slug, name) for slug, _, name in boxes] == [
        ("economie", "Économie"),
        ("politics", "Politics"),
        ("sport", "Sport"),
    ]
    assert not any(checked for _, checked, _ in boxes)
    assert '<option value="Asia/Tokyo">' in page.text
    assert re.search(r'href="https://example\.org/u/[A-Za-z0-9_-]+">unsubscribe</a>', page.text)


def test_saving_keeps_the_choice_and_only_known_values(tagged_site: Site) -> None:
    path = _path(tagged_site, "alice@example.com")
    saved = tagged_site.client.post(
        path, data={"tags": ["sport", "politics", "made-up"], "timezone": "Asia/Tokyo"}
    )
    assert saved.status_code == 200 and "Saved." in saved.text
    assert lists.preferences(tagged_site.store, "alice@example.com") == Preferences(
        ("politics", "sport"), "Asia/Tokyo"
    )
    shown = tagged_site.client.get(path).text
    assert 'value="sport" checked' in shown and 'value="economie">' in shown
    assert '<option value="Asia/Tokyo" selected>' in shown
    # A zone nobody has is not stored; choosing nothing means every story again.
    tagged_site.client.post(path, data={"timezone": "Mars/Olympus"})
    assert lists.preferences(tagged_site.store, "alice@example.com") == Preferences()


def test_a_cross_site_post_changes_nothing(tagged_site: Site) -> None:
    path = _path(tagged_site, "alice@example.com")
    refused = tagged_site.client.post(
        path, data={"tags": ["sport"]}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403
    assert lists.preferences(tagged_site.store, "alice@example.com") == Preferences()


def test_a_forged_token_is_refused(tagged_site: Site) -> None:
    forged = unsubscribe_token(
        b"another-secret-of-thirty-two-bytes!!", list_id(tagged_site.config), "alice@example.com"
    )
    for method in ("GET", "POST"):
        response = tagged_site.client.request(method, "/preferences/" + forged)
        assert response.status_code == 400


def test_a_reader_who_chose_tags_gets_only_those_stories_and_none_when_nothing_matches(
    project: Project, faulty_smtp: FaultyServer
) -> None:
    from click.testing import CliRunner

    from syndicator.cli import cli
    from syndicator.config import load_config
    from syndicator.state.store import Store

    project.port = faulty_smtp.port
    project.recipients = ["all@example.com", "sport@example.com", "chess@example.com"]
    project.write_config()
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed("001_sport.txt", "---\ntags: Sport\n---\nThe final tonight\n\nA match.\n")
    project.seed("002_politics.txt", "---\ntags: Politics\n---\nThe budget vote\n\nA vote.\n")
    project.seed("003_untagged.txt", "A weather story\n\nRain.\n")
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        lists.set_preferences(store, "sport@example.com", Preferences(("sport",), ""), 1)
        lists.set_preferences(store, "chess@example.com", Preferences(("chess",), ""), 1)
    finally:
        store.close()
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    got = {rcpt: data for rcpt, _, data in faulty_smtp.handler.accepted}
    assert set(got) == {"all@example.com", "sport@example.com"}  # nothing new for chess
    assert all(title.encode() in got["all@example.com"] for title in ("The final tonight", "The budget vote"))
    assert b"The final tonight" in got["sport@example.com"]
    assert b"The budget vote" not in got["sport@example.com"]
    assert b"A weather story" not in got["sport@example.com"]
    # One ledger row per reader mailed, and the variant frozen with the edition, so a resumed
    # send mails the same stories even if the reader changes their choice meanwhile.
    from syndicator.state import ledger

    store = Store.open(config.store_url)
    try:
        (edition,) = ledger.editions(store)
        assert ledger.counts(store, edition.id)[ledger.SENT] == 2
        found, assigned = ledger.variants(store, edition.id)
        assert [v.tags for v in found] == [("sport",)]
        assert assigned == {"sport@example.com": found[0].number}
    finally:
        store.close()


def test_the_unsubscribe_button_on_the_page_unsubscribes(tagged_site: Site) -> None:
    page = tagged_site.client.get(_path(tagged_site, "alice@example.com")).text
    action = re.search(r'<form method="post" action="https://example\.org(/u/[A-Za-z0-9_-]+)">', page)
    assert action is not None
    done = tagged_site.client.post(action.group(1), data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert "alice@example.com" in lists.suppressed_addresses(tagged_site.store)
