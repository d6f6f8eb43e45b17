"""The ledger's promises under concurrency, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

from syndicator.config import load_config
from syndicator.mail.edition import open_edition, plan
from syndicator.state import ledger
from syndicator.state.store import Store
from tests.conftest import CLOCK, Project

RECIPIENTS = [f"reader{n:03d}@example.com" for n in range(40)]


def _config(project: Project, store_url: str):  # type: ignore[no-untyped-def]
    project.store = store_url
    project.recipients = RECIPIENTS
    return load_config(project.write_config())


def test_two_processes_firing_one_slot_create_one_edition(project: Project, store_url: str) -> None:
    config = _config(project, store_url)
    Store.open(store_url).close()  # schema in place, as after any earlier run
    barrier = threading.Barrier(4)
    editions: list[int] = []

    def fire() -> None:
        store = Store.open(store_url)
        try:
            barrier.wait()
            edition = open_edition(config, store, CLOCK, slot="cron:2026-11-25T07:00:00+00:00")
            assert edition is not None
            editions.append(edition.id)
        finally:
            store.close()

    threads = [threading.Thread(target=fire) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(editions) == 4 and len(set(editions)) == 1
    store = Store.open(store_url)
    try:
        assert len(ledger.editions(store)) == 1
        assert ledger.counts(store, editions[0])[ledger.PENDING] == len(RECIPIENTS)
    finally:
        store.close()


def test_claims_never_overlap_and_lapsed_leases_come_back(project: Project, store_url: str) -> None:
    config = _config(project, store_url)
    store = Store.open(store_url)
    try:
        edition = open_edition(config, store, CLOCK)
        assert edition is not None
        now = int(time.time())
        first = ledger.claim(store, edition.id, now, 25, lease=30)
        second = ledger.claim(store, edition.id, now, 25, lease=30)
        assert len(first) == 25 and len(second) == 15
        assert not {c.address for c in first} & {c.address for c in second}
        assert all(c.lease_until == now + 30 for c in first)
        assert ledger.claim(store, edition.id, now, 25, lease=30) == []  # all leased
        later = ledger.claim(store, edition.id, now + 31, 100, lease=30)  # the holders died
        assert sorted(c.address for c in later) == sorted(RECIPIENTS)
        assert {c.message_id for c in later} == {c.message_id for c in first + second}
    finally:
        store.close()


def test_a_manual_send_racing_the_schedule_does_not_make_a_second_edition(project: Project,
                                                                          store_url: str) -> None:
    config = _config(project, store_url)
    store = Store.open(store_url)
    try:
        planned = plan(config, store, CLOCK)  # the manual send plans ...
        assert planned is not None
        scheduled = open_edition(config, store, CLOCK, slot="cron:2026-11-25T07:00:00+00:00")
        assert scheduled is not None  # ... the scheduler's edition commits meanwhile ...
        edition, created = ledger.create_edition(  # ... then the manual send creates its own
            store, slot=planned.slot, now=0, max_seq=planned.max_seq,
            story_ids=tuple(s.id for s in planned.stories), subject="s", html="h", text="t", marker="M",
            recipients=RECIPIENTS, message_id=lambda eid, a: f"<{eid}.{len(a)}@example.org>")
        assert (edition.id, created) == (scheduled.id, False)
        assert len(ledger.editions(store)) == 1
    finally:
        store.close()
