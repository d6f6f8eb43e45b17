"""The delivery ledger: digest editions and one row per (edition, recipient), claimed with leases."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, select, update
from sqlalchemy import text as sql
from sqlalchemy.exc import IntegrityError

from syndicator.state import lists, schema
from syndicator.state.store import Store, insert_many

PENDING, SENDING, SENT, DEFERRED, FAILED, SUPPRESSED = (
    "pending",
    "sending",
    "sent",
    "deferred",
    "failed",
    "suppressed",
)
OPEN, DONE = "open", "done"
# Refused by the relay for its size: not mailed, its stories go into the next edition.
REJECTED = "rejected"
STATES = (SENT, PENDING, SENDING, DEFERRED, FAILED, SUPPRESSED)
_CHUNK = 5000

deliveries, edition_table, suppressions = schema.deliveries, schema.editions, schema.suppressions


@dataclass(frozen=True)
class Edition:
    id: int
    slot: str
    created_at: int
    max_seq: int
    story_ids: tuple[str, ...]
    subject: str
    html: str
    text: str
    status: str
    last_error: str | None = None
    marker: str = ""
    finished_at: int | None = None


@dataclass(frozen=True)
class Claim:
    edition_id: int
    address: str
    message_id: str
    attempts: int
    lease_until: int = 0  # after this another sender may take the row: it must not be sent late


@dataclass(frozen=True)
class Result:
    """What happened to one claimed delivery."""

    claim: Claim
    state: str  # SENT, DEFERRED or FAILED
    code: int | None
    reply: str
    next_attempt: int | None = None


def _edition(row: object) -> Edition:
    m = row._mapping  # type: ignore[attr-defined]
    return Edition(
        m["id"],
        m["slot"],
        m["created_at"],
        m["max_seq"],
        tuple(json.loads(m["story_ids"])),
        m["subject"],
        m["html"],
        m["text"],
        m["status"],
        m["last_error"],
        m["marker"],
        m["finished_at"],
    )


def watermark(store: Store) -> int | None:
    """The newest story seq any edition has covered; None before the first edition."""
    with store.read() as conn:
        value = conn.execute(
            select(func.max(edition_table.c.max_seq)).where(edition_table.c.status != REJECTED)
        ).scalar_one_or_none()
    return None if value is None else int(value)


def last_opened(store: Store) -> int | None:
    """When the newest edition that went out (or is going out) was opened."""
    with store.read() as conn:
        value = conn.execute(
            select(func.max(edition_table.c.created_at)).where(edition_table.c.status != REJECTED)
        ).scalar_one_or_none()
    return None if value is None else int(value)


def open_editions(store: Store) -> list[Edition]:
    with store.read() as conn:
        return [
            _edition(r)
            for r in conn.execute(
                select(edition_table).where(edition_table.c.status == OPEN).order_by(edition_table.c.id)
            )
        ]


def edition_for_slot(store: Store, slot: str) -> Edition | None:
    with store.read() as conn:
        row = conn.execute(select(edition_table).where(edition_table.c.slot == slot)).one_or_none()
    return None if row is None else _edition(row)


def editions(store: Store, limit: int | None = 20) -> list[Edition]:
    """The newest editions first; ``limit=None``: all of them."""
    with store.read() as conn:
        rows = conn.execute(select(edition_table).order_by(edition_table.c.id.desc()).limit(limit))
        return [_edition(r) for r in rows]


def create_edition(
    store: Store,
    *,
    slot: str,
    now: int,
    max_seq: int,
    story_ids: tuple[str, ...],
    subject: str,
    html: str,
    text: str,
    marker: str,
    recipients: Iterable[str],
    suppressed: Iterable[str] = (),
    message_id: Callable[[int, str], str],
    variants: Sequence[Variant] = (),
    assigned: Mapping[str, int] | None = None,
    scheduled: Mapping[str, int] | None = None,
) -> tuple[Edition, bool]:
    """Create the edition for ``slot`` with a pending row per recipient (and a suppressed row
    per listed reader it skips), all or nothing.

    Returns the edition and whether this call created it: a second caller for the
    same slot (another process, another machine) gets the first one's edition.
    """
    try:
        with store.begin() as conn:
            # Editions are created one at a time (SQLite: BEGIN IMMEDIATE; PostgreSQL: this lock),
            # so a plan made before another process's edition committed is caught here.
            if not store.is_sqlite:
                conn.execute(sql("SELECT pg_advisory_xact_lock(7262514002)"))
            if story_ids:
                covering = conn.execute(
                    select(edition_table)
                    .where(edition_table.c.max_seq >= max_seq, edition_table.c.status != REJECTED)
                    .order_by(edition_table.c.id.desc())
                    .limit(1)
                ).first()
                if covering is not None:
                    return _edition(covering), False  # those stories already have their edition
            key = conn.execute(
                insert(edition_table).values(
                    slot=slot,
                    created_at=now,
                    max_seq=max_seq,
                    story_ids=json.dumps(list(story_ids)),
                    subject=subject,
                    html=html,
                    text=text,
                    marker=marker,
                    status=OPEN,
                )
            ).inserted_primary_key
            assert key is not None
            edition_id = key[0]
            # Suppressed readers get a settled row too: the edition's counts show whom it skipped.
            # Plain tuples to the driver: SQLAlchemy's per-row work was most of an edition's start.
            columns = ("edition_id", "address", "message_id", "state", "attempts", "updated_at")
            later = scheduled or {}
            now_due = (a for a in recipients if a not in later)
            for state, addresses in ((PENDING, now_due), (SUPPRESSED, suppressed)):
                for chunk in _chunks(addresses, _CHUNK):
                    insert_many(conn, deliveries, columns,
                                [(edition_id, a, message_id(edition_id, a), state, 0, now) for a in chunk])
            # A reader in a time zone of their own: deferred until the schedule fires there.
            insert_many(conn, deliveries, (*columns, "next_attempt"),
                        [(edition_id, a, message_id(edition_id, a), DEFERRED, 0, now, when)
                         for a, when in later.items()])
            for v in variants:
                conn.execute(insert(schema.edition_variants).values(
                    edition_id=edition_id, variant=v.number, tags=json.dumps(list(v.tags)),
                    story_ids=json.dumps(list(v.story_ids)), subject=v.subject, html=v.html, text=v.text))
            if assigned:
                insert_many(conn, schema.delivery_variants, ("edition_id", "address", "variant"),
                            [(edition_id, a, n) for a, n in assigned.items()])
    except IntegrityError:
        with store.begin() as conn:
            row = conn.execute(select(edition_table).where(edition_table.c.slot == slot)).one_or_none()
        if row is None:
            raise
        return _edition(row), False
    with store.begin() as conn:
        return _edition(
            conn.execute(select(edition_table).where(edition_table.c.id == edition_id)).one()
        ), True


@dataclass(frozen=True)
class Variant:
    """One rendering of an edition for readers who chose ``tags``."""

    number: int
    tags: tuple[str, ...]
    story_ids: tuple[str, ...]
    subject: str
    html: str
    text: str


def variants(store: Store, edition_id: int) -> tuple[list[Variant], dict[str, int]]:
    """An edition's variants and which reader gets which (readers not named get the edition)."""
    with store.read() as conn:
        rows = conn.execute(select(schema.edition_variants)
                            .where(schema.edition_variants.c.edition_id == edition_id)
                            .order_by(schema.edition_variants.c.variant))
        found = [Variant(r.variant, tuple(json.loads(r.tags)), tuple(json.loads(r.story_ids)), r.subject,
                         r.html, r.text) for r in rows]
        if not found:
            return [], {}
        who = conn.execute(select(schema.delivery_variants.c.address, schema.delivery_variants.c.variant)
                           .where(schema.delivery_variants.c.edition_id == edition_id))
        return found, {address: int(number) for address, number in who}


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# claim() on SQLite's own driver: the same three searches and updates, a third of the time.
_CLAIM_SQLITE = tuple(
    "SELECT d.address, d.message_id, d.attempts, s.address IS NOT NULL FROM deliveries d"
    " LEFT OUTER JOIN suppressions s ON s.address = d.address"
    f" WHERE d.edition_id = ? AND {condition} LIMIT ?"
    for condition in ("d.state = 'pending'", "d.state = 'deferred' AND d.next_attempt <= ?",
                      "d.state = 'sending' AND d.lease_until < ?")
)
_SET_STATE_SQLITE = (
    "UPDATE deliveries SET state = ?, lease_until = ?, updated_at = ? WHERE edition_id = ? AND address = ?"
)


def _claim_sqlite(store: Store, edition_id: int, now: int, limit: int, lease: int) -> list[Claim]:
    rows: list[Any] = []
    with store.begin_driver() as db:
        for n, query in enumerate(_CLAIM_SQLITE):
            params = (edition_id, limit - len(rows)) if n == 0 else (edition_id, now, limit - len(rows))
            rows += db.execute(query, params).fetchall()
            if len(rows) >= limit:
                break
        claimed = [r for r in rows if not r[3]]
        db.executemany(_SET_STATE_SQLITE, [(SUPPRESSED, None, now, edition_id, r[0]) for r in rows if r[3]])
        db.executemany(_SET_STATE_SQLITE, [(SENDING, now + lease, now, edition_id, r[0]) for r in claimed])
    return [Claim(edition_id, address, mid, attempts, now + lease) for address, mid, attempts, _ in claimed]


def claim(store: Store, edition_id: int, now: int, limit: int, lease: int) -> list[Claim]:
    """Lease up to ``limit`` deliverable rows; suppressed addresses are settled, never claimed."""
    if store.is_sqlite:
        return _claim_sqlite(store, edition_id, now, limit, lease)
    # Three index range searches on (edition_id, state), not one OR that scans the edition:
    # with a LIMIT, the OR would walk past every settled row on each claim.
    wanted = (
        deliveries.c.state == PENDING,
        and_(deliveries.c.state == DEFERRED, deliveries.c.next_attempt <= now),
        and_(deliveries.c.state == SENDING, deliveries.c.lease_until < now),
    )
    rows: list[Any] = []
    with store.begin() as conn:
        for condition in wanted:
            query = (
                select(
                    deliveries.c.address,
                    deliveries.c.message_id,
                    deliveries.c.attempts,
                    suppressions.c.address.is_not(None).label("suppressed"),
                )
                .select_from(
                    deliveries.outerjoin(suppressions, suppressions.c.address == deliveries.c.address)
                )
                .where(deliveries.c.edition_id == edition_id, condition)
                .limit(limit - len(rows))
            )
            if not store.is_sqlite:
                # Two senders on PostgreSQL skip each other's rows instead of waiting for them.
                query = query.with_for_update(of=deliveries, skip_locked=True)
            rows += conn.execute(query).all()
            if len(rows) >= limit:
                break
        if not rows:
            return []
        claimed = [r for r in rows if not r.suppressed]
        _set_state(conn, edition_id, [r.address for r in rows if r.suppressed], SUPPRESSED, now)
        _set_state(conn, edition_id, [r.address for r in claimed], SENDING, now, lease_until=now + lease)
    return [Claim(edition_id, r.address, r.message_id, r.attempts, now + lease) for r in claimed]


def _set_state(
    conn: Connection,
    edition_id: int,
    addresses: list[str],
    state: str,
    now: int,
    lease_until: int | None = None,
) -> None:
    if addresses:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.edition_id == edition_id, deliveries.c.address.in_(addresses))
            .values(state=state, lease_until=lease_until, updated_at=now)
        )


# Built once: constructing and cache-keying the statement per commit cost more than the commit.
_RECORD = (
    update(deliveries)
    # Only a row still being sent: never overwrite what another sender settled.
    .where(
        deliveries.c.edition_id == bindparam("e_id"),
        deliveries.c.address == bindparam("addr"),
        deliveries.c.state == SENDING,
    )
    .values(
        state=bindparam("new_state"),
        code=bindparam("new_code"),
        reply=bindparam("new_reply"),
        next_attempt=bindparam("new_next"),
        attempts=bindparam("new_attempts"),
        lease_until=None,
        updated_at=bindparam("now"),
    )
)


# The same update for SQLite's own driver (``Store.begin_driver``), the sender's hot path.
_RECORD_SQLITE = (
    "UPDATE deliveries SET state = ?, code = ?, reply = ?, next_attempt = ?, attempts = ?,"
    " lease_until = NULL, updated_at = ? WHERE edition_id = ? AND address = ? AND state = 'sending'"
)


def record(
    store: Store, results: list[Result], now: int, suppress_addresses: Iterable[tuple[str, str]] = ()
) -> None:
    """Write outcomes (and mailbox-error suppressions) in one transaction, right after the server answers."""
    if not results:
        return
    suppress_addresses = list(suppress_addresses)
    if store.is_sqlite and not suppress_addresses:
        rows = [
            (r.state, r.code, r.reply[:1000], r.next_attempt, r.claim.attempts + 1, now,
             r.claim.edition_id, r.claim.address)
            for r in results
        ]
        with store.begin_driver() as db:
            db.executemany(_RECORD_SQLITE, rows)
        return
    stmt = _RECORD
    params = [
        {
            "e_id": r.claim.edition_id,
            "addr": r.claim.address,
            "new_state": r.state,
            "new_code": r.code,
            "new_reply": r.reply[:1000],
            "new_next": r.next_attempt,
            "new_attempts": r.claim.attempts + 1,
            "now": now,
        }
        for r in results
    ]
    with store.begin() as conn:
        conn.execute(stmt, params)
        # In the same transaction as the outcome: a dead mailbox is never left unsuppressed.
        lists.suppress_in(conn, store, suppress_addresses, now)


def release(store: Store, claims: list[Claim], now: int) -> None:
    """Give back claims that were never tried (a clean stop), so the next run takes them at once."""
    if not claims:
        return
    with store.begin() as conn:
        for edition_id in {c.edition_id for c in claims}:
            addresses = [c.address for c in claims if c.edition_id == edition_id]
            # A lease still running is ours (nobody can take it before it lapses); a lapsed one
            # may already be another sender's, so it is left alone.
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.edition_id == edition_id,
                    deliveries.c.address.in_(addresses),
                    deliveries.c.state == SENDING,
                    deliveries.c.lease_until >= now,
                )
                .values(state=PENDING, lease_until=None, updated_at=now)
            )


def renew(store: Store, edition_id: int, addresses: list[str], now: int, lease: int) -> None:
    """Extend the leases this sender still holds (rows in flight or waiting in its buffer)."""
    if not addresses:
        return
    with store.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(
                deliveries.c.edition_id == edition_id,
                deliveries.c.address.in_(addresses),
                deliveries.c.state == SENDING,
                deliveries.c.lease_until >= now,
            )
            .values(lease_until=now + lease)
        )


def counts(store: Store, edition_id: int) -> dict[str, int]:
    with store.read() as conn:
        rows = conn.execute(
            select(deliveries.c.state, func.count())
            .where(deliveries.c.edition_id == edition_id)
            .group_by(deliveries.c.state)
        )
        found = {state: int(n) for state, n in rows}
    return {state: found.get(state, 0) for state in STATES}


def message_ids(store: Store, edition_id: int) -> dict[str, str]:
    """Each recipient's fixed Message-ID in an edition."""
    with store.read() as conn:
        rows = conn.execute(
            select(deliveries.c.address, deliveries.c.message_id).where(deliveries.c.edition_id == edition_id)
        )
        return {address: message_id for address, message_id in rows}


def next_due(store: Store, edition_id: int) -> int | None:
    """When the earliest unsettled row of an edition can next be tried; None when all are settled."""
    with store.read() as conn:
        row = conn.execute(
            select(
                func.min(deliveries.c.next_attempt).filter(deliveries.c.state == DEFERRED),
                func.min(deliveries.c.lease_until).filter(deliveries.c.state == SENDING),
                func.count().filter(deliveries.c.state == PENDING),
            ).where(deliveries.c.edition_id == edition_id)
        ).one()
    deferred, leased, pending = row
    if pending:
        return 0
    times = [t for t in (deferred, leased) if t is not None]
    return min(times) if times else None


def finish(store: Store, edition_id: int, now: int) -> bool:
    """Close the edition when every row is settled (sent, failed or suppressed); True only
    for the one call that closed it (so its run report goes out once, from one process)."""
    with store.begin() as conn:
        unsettled = conn.execute(
            select(func.count()).where(
                deliveries.c.edition_id == edition_id, deliveries.c.state.in_((PENDING, SENDING, DEFERRED))
            )
        ).scalar_one()
        if unsettled:
            return False
        closed = conn.execute(
            update(edition_table)
            .where(edition_table.c.id == edition_id, edition_table.c.status == OPEN)
            .values(status=DONE, finished_at=now)
        )
    return closed.rowcount == 1


def refusal_reasons(store: Store, edition_id: int, limit: int = 5) -> list[tuple[str, int]]:
    """The commonest replies of deliveries that did not go out (failed or still deferred)."""
    with store.read() as conn:
        rows = conn.execute(
            select(deliveries.c.reply, func.count().label("n"))
            .where(deliveries.c.edition_id == edition_id, deliveries.c.state.in_((FAILED, DEFERRED)),
                   deliveries.c.reply.is_not(None))
            .group_by(deliveries.c.reply)
            .order_by(func.count().desc(), deliveries.c.reply)
            .limit(limit)
        )
        return [(str(reply), int(n)) for reply, n in rows]


def edition(store: Store, edition_id: int) -> Edition | None:
    with store.read() as conn:
        row = conn.execute(select(edition_table).where(edition_table.c.id == edition_id)).one_or_none()
    return None if row is None else _edition(row)


def reject(store: Store, edition_id: int, message: str, now: int) -> None:
    """Give up an edition no reader can receive: its slot is freed for a new edition of the
    same stories (a retry after the config is fixed, the next cron firing), which the
    watermark no longer counts as covered."""
    with store.begin() as conn:
        conn.execute(
            update(edition_table)
            .where(edition_table.c.id == edition_id)
            .values(status=REJECTED, finished_at=now, last_error=message[:2000],
                    slot=func.substr(f"rejected:{edition_id}:" + edition_table.c.slot, 1, 100))
        )


def set_error(store: Store, edition_id: int, message: str) -> None:
    with store.begin() as conn:
        conn.execute(
            update(edition_table).where(edition_table.c.id == edition_id).values(last_error=message[:2000])
        )


def retry_failed(store: Store, now: int) -> int:
    """Put permanent failures (not suppressed addresses) back to pending and reopen their editions."""
    with store.begin() as conn:
        failed = select(deliveries.c.edition_id).where(deliveries.c.state == FAILED).distinct()
        edition_ids = [row[0] for row in conn.execute(failed)]
        if not edition_ids:
            return 0
        result = conn.execute(
            update(deliveries)
            .where(deliveries.c.state == FAILED, deliveries.c.address.not_in(select(suppressions.c.address)))
            .values(state=PENDING, next_attempt=None, attempts=0, updated_at=now)
        )
        conn.execute(
            update(edition_table)
            .where(edition_table.c.id.in_(edition_ids))
            .values(status=OPEN, finished_at=None)
        )
        return int(result.rowcount)
