"""Read-only aggregates of the store, for ``/metrics`` and ``/admin``.

Everything is counted in the store at the moment it is asked, in one read transaction, so
what several sender processes (or machines) did adds up and the numbers agree with each
other. Nothing here writes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Column, Connection, func, select

from syndicator.state import ledger, schema
from syndicator.state.runs import KINDS as RUN_KINDS
from syndicator.state.store import Store

EDITION_STATUSES = (ledger.OPEN, ledger.DONE, ledger.REJECTED)
INBOUND_KINDS = ("bounce", "delay", "complaint", "unsubscribe")
PENDING, CONFIRMED, SUPPRESSED = "pending", "confirmed", "suppressed"
SUBSCRIBER_STATES = (CONFIRMED, PENDING, SUPPRESSED)

editions_t, deliveries, events = schema.editions, schema.deliveries, schema.inbound_events
subscribers, suppressions, runs = schema.subscribers, schema.suppressions, schema.runs


@dataclass(frozen=True)
class Run:
    kind: str  # build, send
    started_at: int
    seconds: float
    detail: str

    @property
    def finished_at(self) -> float:
        return self.started_at + self.seconds


@dataclass(frozen=True)
class Totals:
    """The whole store counted: what /metrics exposes."""

    editions: dict[str, int]  # by status: open, done, rejected
    deliveries: dict[str, int]  # every edition's rows, by state
    inbound: dict[str, int]  # events that came back by mail, by kind
    subscribers: dict[str, int]  # suppressed (on the suppression list), else confirmed or pending
    suppressions: int  # every suppressed address, subscriber or configured recipient
    runs: dict[str, Run]  # the latest build and send (absent: none recorded yet)


@dataclass(frozen=True)
class EditionReport:
    id: int
    slot: str
    subject: str
    status: str
    created_at: int
    finished_at: int | None
    last_error: str | None
    counts: dict[str, int]  # deliveries by state
    came_back: dict[str, int] = field(default_factory=dict)  # addresses by inbound kind


CURVE_STEP = 10  # seconds: the delivery chart's finest resolution


@dataclass(frozen=True)
class Curve:
    """One edition's delivery over time: how many were sent in each CURVE_STEP seconds after ``start``."""

    edition_id: int
    start: int  # when the edition opened (or its first send, if that is earlier)
    sent: tuple[tuple[int, int], ...]  # (seconds after start, a multiple of CURVE_STEP; sent then), ascending


@dataclass(frozen=True)
class InboundReport:
    at: int
    kind: str
    address: str
    edition_id: int | None
    status: str
    detail: str


@dataclass(frozen=True)
class Overview:
    """Everything /admin shows, read in one transaction."""

    totals: Totals
    editions: list[EditionReport]  # newest first
    curves: list[Curve]  # of those editions that sent anything, oldest first
    came_back: list[InboundReport]  # the latest bounces and complaints, newest first


def totals(store: Store) -> Totals:
    with store.read() as conn:
        return _totals(conn)


def overview(store: Store, editions: int = 20, events_shown: int = 20) -> Overview:
    with store.read() as conn:
        shown = _editions(conn, editions)
        return Overview(_totals(conn), shown, _curves(conn, {e.id: e.created_at for e in shown}),
                        _came_back(conn, events_shown))


# -- the parts ---------------------------------------------------------------------------


def _grouped(conn: Connection, column: Column[str], names: tuple[str, ...]) -> dict[str, int]:
    """Rows of ``column``'s table counted by its value: every one of ``names`` (0 if none),
    and any other value found (a status a newer syndicator wrote)."""
    rows = conn.execute(select(column, func.count()).group_by(column))
    found = {str(name): int(n) for name, n in rows}
    return {name: found.get(name, 0) for name in names} | {k: v for k, v in found.items() if k not in names}


def _totals(conn: Connection) -> Totals:
    by_status = _grouped(conn, editions_t.c.status, EDITION_STATUSES)
    by_state = _grouped(conn, deliveries.c.state, ledger.STATES)
    by_kind = _grouped(conn, events.c.kind, INBOUND_KINDS)
    suppressed = suppressions.c.address.is_not(None).label("suppressed")
    rows = conn.execute(
        select(subscribers.c.confirmed, suppressed, func.count())
        .select_from(subscribers.outerjoin(suppressions, suppressions.c.address == subscribers.c.address))
        .group_by(subscribers.c.confirmed, suppressed)
    )
    people = dict.fromkeys(SUBSCRIBER_STATES, 0)
    for confirmed, is_suppressed, n in rows:
        people[SUPPRESSED if is_suppressed else CONFIRMED if confirmed else PENDING] += int(n)
    suppressed_count = int(conn.execute(select(func.count()).select_from(suppressions)).scalar_one())
    latest: dict[str, Run] = {}
    for kind in RUN_KINDS:
        row = conn.execute(
            select(runs.c.started_at, runs.c.seconds, runs.c.detail).where(runs.c.kind == kind)
            .order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(1)
        ).first()
        if row is not None:
            latest[kind] = Run(kind, int(row.started_at), float(row.seconds), str(row.detail))
    return Totals(by_status, by_state, by_kind, people, suppressed_count, latest)


def _editions(conn: Connection, limit: int) -> list[EditionReport]:
    e = editions_t
    # Not ledger.editions: that reads every edition's whole HTML and text.
    rows = conn.execute(
        select(e.c.id, e.c.slot, e.c.subject, e.c.status, e.c.created_at, e.c.finished_at, e.c.last_error)
        .order_by(e.c.id.desc()).limit(limit)
    ).all()
    ids = [r.id for r in rows]
    counts: dict[int, dict[str, int]] = {i: dict.fromkeys(ledger.STATES, 0) for i in ids}
    came_back: dict[int, dict[str, int]] = {i: dict.fromkeys(INBOUND_KINDS, 0) for i in ids}
    if ids:
        for edition_id, state, n in conn.execute(
                select(deliveries.c.edition_id, deliveries.c.state, func.count())
                .where(deliveries.c.edition_id.in_(ids))
                .group_by(deliveries.c.edition_id, deliveries.c.state)):
            counts[int(edition_id)][str(state)] = int(n)
        for edition_id, kind, n in conn.execute(
                select(events.c.edition_id, events.c.kind, func.count(func.distinct(events.c.address)))
                .where(events.c.edition_id.in_(ids))
                .group_by(events.c.edition_id, events.c.kind)):
            came_back[int(edition_id)][str(kind)] = int(n)
    return [EditionReport(int(r.id), str(r.slot), str(r.subject), str(r.status), int(r.created_at),
                          None if r.finished_at is None else int(r.finished_at), r.last_error,
                          counts[r.id], came_back[r.id]) for r in rows]


def _curves(conn: Connection, created: dict[int, int]) -> list[Curve]:
    """Sent deliveries per edition and CURVE_STEP seconds after it opened, from each row's
    ``updated_at``: a sent row is settled and never changes again, so that is when the relay
    accepted it."""
    if not created:
        return []
    step = (deliveries.c.updated_at - editions_t.c.created_at) // CURVE_STEP
    rows = conn.execute(
        select(deliveries.c.edition_id, step.label("step"), func.count())
        .select_from(deliveries.join(editions_t, editions_t.c.id == deliveries.c.edition_id))
        .where(deliveries.c.edition_id.in_(list(created)), deliveries.c.state == ledger.SENT)
        .group_by(deliveries.c.edition_id, "step")
    )
    buckets: dict[int, dict[int, int]] = defaultdict(dict)
    for edition_id, at, n in rows:
        buckets[int(edition_id)][int(at)] = int(n)
    curves = []
    for edition_id in sorted(buckets):
        sent = buckets[edition_id]
        # An edition's moment is its slot, which its sends may precede (a slot set by hand):
        # then the curve starts at its first send.
        first = min(0, min(sent))
        curves.append(Curve(edition_id, created[edition_id] + first * CURVE_STEP,
                            tuple(sorted(((at - first) * CURVE_STEP, n) for at, n in sent.items()))))
    return curves


def _came_back(conn: Connection, limit: int) -> list[InboundReport]:
    rows = conn.execute(
        select(events.c.at, events.c.kind, events.c.address, events.c.edition_id, events.c.status,
               events.c.detail)
        .where(events.c.kind.in_(("bounce", "complaint")))
        .order_by(events.c.at.desc(), events.c.id.desc()).limit(limit)
    )
    return [InboundReport(int(r.at), str(r.kind), str(r.address),
                          None if r.edition_id is None else int(r.edition_id), str(r.status), str(r.detail))
            for r in rows]
