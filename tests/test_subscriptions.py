"""Subscriptions over the store (SQLite and PostgreSQL): double opt-in, single-use links, the list."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, inspect

from syndicator.cli.lists import report
from syndicator.config import load_config
from syndicator.errors import BadToken
from syndicator.mail import subscriptions
from syndicator.mail.audience import audience
from syndicator.mail.subscriptions import RESEND_AFTER, Signer
from syndicator.mail.tokens import confirm_token
from syndicator.state import lists
from syndicator.state.store import MIGRATIONS, Store
from tests.conftest import Project

NOW = 1_790_000_000
SIGNER = Signer(b"test-secret", "<digest.example.org>")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


def test_confirm_joins_once(store: Store) -> None:
    token = subscriptions.request(store, SIGNER, "Carol@Example.com", NOW)
    assert token is not None
    assert subscriptions.check_confirm(store, SIGNER, token, NOW + 60) == "carol@example.com"
    assert subscriptions.confirm(store, SIGNER, token, NOW + 60) == "carol@example.com"
    with pytest.raises(BadToken):
        subscriptions.confirm(store, SIGNER, token, NOW + 61)  # replayed
    with pytest.raises(BadToken):
        subscriptions.check_confirm(store, SIGNER, token, NOW + 61)


def test_only_the_newest_link_works_and_resends_are_throttled(store: Store) -> None:
    first = subscriptions.request(store, SIGNER, "dan@example.com", NOW)
    assert subscriptions.request(store, SIGNER, "dan@example.com", NOW + RESEND_AFTER - 1) is None
    forced = subscriptions.request(store, SIGNER, "dan@example.com", NOW + 5, force=True)
    later = subscriptions.request(store, SIGNER, "dan@example.com", NOW + 5 + RESEND_AFTER)
    assert first and forced and later and len({first, forced, later}) == 3
    for stale in (first, forced):
        with pytest.raises(BadToken):
            subscriptions.confirm(store, SIGNER, stale, NOW + 700)
    subscriptions.confirm(store, SIGNER, later, NOW + 700)


def test_links_expire_and_are_bound_to_secret_and_list(store: Store) -> None:
    token = subscriptions.request(store, SIGNER, "eve@example.com", NOW)
    assert token is not None
    with pytest.raises(BadToken, match="expired"):
        subscriptions.confirm(store, SIGNER, token, NOW + subscriptions.CONFIRM_MAX_AGE + 1)
    for other in (Signer(b"other", SIGNER.list_id), Signer(SIGNER.secret, "<other.list>")):
        with pytest.raises(BadToken):
            subscriptions.confirm(store, other, token, NOW + 60)
    # A well-signed token that was never issued through request() is refused too.
    unissued = confirm_token(SIGNER.secret, SIGNER.list_id, "eve@example.com", NOW + 1)
    with pytest.raises(BadToken):
        subscriptions.confirm(store, SIGNER, unissued, NOW + 60)


def test_confirming_lifts_a_suppression(store: Store) -> None:
    assert subscriptions.unsubscribe(store, "Fay@example.com", "test", NOW)
    assert not subscriptions.unsubscribe(store, "fay@example.com", "again", NOW)
    token = subscriptions.request(store, SIGNER, "fay@example.com", NOW)
    assert token is not None
    assert lists.suppressed_addresses(store) == {"fay@example.com"}
    subscriptions.confirm(store, SIGNER, token, NOW + 1)
    assert lists.suppressed_addresses(store) == set()


def test_unsubscribe_tokens(store: Store) -> None:
    from syndicator.mail.tokens import unsubscribe_token

    token = unsubscribe_token(SIGNER.secret, SIGNER.list_id, "Gil@example.com")
    assert subscriptions.unsubscribe_token_owner(store, SIGNER, token, NOW) == "gil@example.com"
    assert subscriptions.unsubscribe_token_owner(store, SIGNER, token, NOW) == "gil@example.com"
    assert lists.suppressed_addresses(store) == {"gil@example.com"}
    with pytest.raises(BadToken):
        subscriptions.unsubscribe_token_owner(store, SIGNER, token[:-2], NOW)


def test_listing_and_audience_agree(project: Project, store_url: str) -> None:
    project.store = store_url
    (project.root / "config" / "recipients.txt").write_text("# file\nbob@example.net\nhal@example.com\n")
    project.extra = ""
    project.write_config()
    text = project.config.read_text().replace(
        'secret_env =', 'recipients_file = "config/recipients.txt"\nsecret_env =')
    project.config.write_text(text)
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        token = subscriptions.request(store, SIGNER, "ivy@example.com", NOW)
        assert token is not None
        subscriptions.confirm(store, SIGNER, token, NOW)
        subscriptions.request(store, SIGNER, "jo@example.com", NOW)
        subscriptions.unsubscribe(store, "alice@example.com", "unsubscribed (web)", NOW)
        found = subscriptions.listing(config, store)
        assert [a for a, _ in found.recipients] == list(audience(config, store))
        lines = report(found)
    finally:
        store.close()
    assert lines == [
        "recipients: 3",
        "configured: 2",
        "file: 2",
        "confirmed subscribers: 1",
        "pending: 1",
        "suppressed: 1",
        "recipient   bob@example.net  (config)",
        "recipient   hal@example.com  (file)",
        "recipient   ivy@example.com  (subscriber)",
        "pending     jo@example.com",
        "suppressed  alice@example.com  (unsubscribed (web), 2026-09-21)",
    ]


def test_migration_0002_upgrades_an_existing_store(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.exec_driver_sql("INSERT INTO subscribers (address, confirmed, created_at) "
                                 "VALUES ('old@example.com', true, 1)")
    finally:
        engine.dispose()
    store = Store.open(store_url)
    try:
        columns = {c["name"] for c in inspect(store.engine).get_columns("subscribers")}
        assert {"confirm_digest", "requested_at"} <= columns
        found = subscriptions.request(store, SIGNER, "old@example.com", NOW)
        assert found is not None  # an old row without requested_at is no cooldown
        assert subscriptions.confirm(store, SIGNER, found, NOW) == "old@example.com"
    finally:
        store.close()
