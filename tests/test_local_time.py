"""Delivery at the reader's local time: with a time zone chosen on the preferences page, a
reader's copy goes out when digest.schedule fires in their zone, DST-safe, once per edition."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from syndicator.config import load_config
from syndicator.mail import workers
from syndicator.mail.edition import open_edition
from syndicator.state import lists, schema
from syndicator.state.lists import Preferences
from syndicator.state.store import Store
from tests.conftest import FaultyServer, Project

SECRET = b"test-secret-for-signing-tokens-0123456789"
READERS = ["here@example.com", "ny@example.com", "tokyo@example.com"]


def _when(store: Store, edition_id: int) -> dict[str, datetime | None]:
    d = schema.deliveries
    with store.read() as conn:
        rows = conn.execute(select(d.c.address, d.c.next_attempt).where(d.c.edition_id == edition_id))
        return {a: None if t is None else datetime.fromtimestamp(t, UTC) for a, t in rows}


def _setup(project: Project, server: FaultyServer) -> Store:
    project.port = server.port
    project.recipients = READERS
    project.write_config()
    store = Store.open(load_config(project.config).store_url)
    lists.set_preferences(store, "ny@example.com", Preferences((), "America/New_York"), 1)
    lists.set_preferences(store, "tokyo@example.com", Preferences((), "Asia/Tokyo"), 1)
    return store


def test_each_reader_gets_the_edition_at_seven_their_time_across_a_dst_change(
    project: Project, faulty_smtp: FaultyServer
) -> None:
    store = _setup(project, faulty_smtp)
    config = load_config(project.config)
    try:
        # The newsroom's 07:00 UTC slot on the Saturday before US daylight saving time starts.
        saturday = datetime(2026, 3, 7, 7, 0, tzinfo=UTC)
        first = open_edition(config, store, saturday)
        assert first is not None
        assert _when(store, first.id) == {
            "here@example.com": None,  # the digest's own zone: at once
            "ny@example.com": datetime(2026, 3, 7, 12, 0, tzinfo=UTC),  # 07:00 EST
            "tokyo@example.com": datetime(2026, 3, 7, 22, 0, tzinfo=UTC),  # 07:00 JST on Sunday
        }
        project.seed("100_sunday.txt", "Sunday's lead\n\nIts text.\n")
        sunday = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
        second = open_edition(config, store, sunday)
        assert second is not None
        assert _when(store, second.id)["ny@example.com"] == datetime(2026, 3, 8, 11, 0, tzinfo=UTC)  # EDT
        # Those times have passed on this machine's clock: the due rows go out, each once.
        workers.send(config, store, sunday, password=None, secret=SECRET, open_new=False)
        workers.send(config, store, sunday, password=None, secret=SECRET, open_new=False)
    finally:
        store.close()
    assert faulty_smtp.handler.per_recipient() == dict.fromkeys(READERS, 2)


def test_a_reader_whose_hour_has_not_come_waits(project: Project, faulty_smtp: FaultyServer) -> None:
    store = _setup(project, faulty_smtp)
    config = load_config(project.config)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        edition = open_edition(config, store, now)
        assert edition is not None
        tally = workers.send(config, store, now, password=None, secret=SECRET, open_new=False)
        waiting = {a for a, t in _when(store, edition.id).items() if t is not None and t > now}
    finally:
        store.close()
    # The wall clock decides who is due: the ones whose 07:00 is still ahead wait.
    assert waiting <= {"ny@example.com", "tokyo@example.com"} and waiting
    assert set(faulty_smtp.handler.per_recipient()) == set(READERS) - waiting
    assert tally.deferred == len(waiting)
