"""What came back by mail, in the store: inbound events, handled messages, delivery lookups."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from syndicator.state import schema
from syndicator.state.lists import suppress_in
from syndicator.state.store import Store

events, seen, deliveries = schema.inbound_events, schema.inbound_seen, schema.deliveries
SOFT_WINDOW = 30 * 86400  # delays older than 30 days no longer count toward the limit


@dataclass(frozen=True)
class Event:
    kind: str  # bounce, delay, complaint, unsubscribe
    address: str
    edition_id: int | None
    status: str = ""
    detail: str = ""


def seen_outcome(store: Store, digest: str) -> str | None:
    """What a message handled before was counted as; None for a message not seen yet."""
    with store.read() as conn:
        row = conn.execute(select(seen.c.outcome).where(seen.c.digest == digest)).first()
    return None if row is None else str(row[0])


def delivery_by_hash(store: Store, edition_id: int, id_hash: str) -> str | None:
    """The address of the delivery whose Message-ID starts with ``<edition.hash``."""
    with store.read() as conn:
        row = conn.execute(
            select(deliveries.c.address).where(
                deliveries.c.edition_id == edition_id,
                deliveries.c.message_id.like(f"<{edition_id}.{id_hash}%"),
            ).limit(1)
        ).first()
    return None if row is None else str(row[0])


def delivery_by_message_id(store: Store, message_id: str) -> tuple[int, str] | None:
    """(edition, address) of the delivery that carried ``message_id``."""
    edition = message_id.strip("<>").split(".", 1)[0]
    if not edition.isdigit():
        return None
    with store.read() as conn:
        row = conn.execute(
            select(deliveries.c.edition_id, deliveries.c.address).where(
                deliveries.c.edition_id == int(edition), deliveries.c.message_id == message_id
            )
        ).first()
    return None if row is None else (int(row[0]), str(row[1]))


def record(store: Store, digest: str, outcome: str, found: Iterable[Event], now: int,
           soft_limit: int) -> list[str]:
    """Store a handled message and its events, and suppress whom they call for, in one
    transaction; the addresses newly suppressed. A message seen before changes nothing."""
    suppressed: list[str] = []
    with store.begin() as conn:
        fresh = conn.execute(store.insert_ignore(seen).values(digest=digest, at=now, outcome=outcome)
                             .returning(seen.c.digest)).first()
        if fresh is None:
            return suppressed
        for event in found:
            conn.execute(events.insert().values(
                at=now, kind=event.kind, address=event.address.lower(), edition_id=event.edition_id,
                status=event.status[:20], detail=event.detail[:2000]))
            reason = _reason(conn, event, now, soft_limit)
            if reason and suppress_in(conn, store, [(event.address, reason)], now):
                suppressed.append(event.address.lower())
    return suppressed


def _reason(conn: Connection, event: Event, now: int, soft_limit: int) -> str | None:
    if event.kind == "bounce":
        return f"bounce {event.status}".strip()
    if event.kind == "complaint":
        return "complaint"
    if event.kind == "unsubscribe":
        return "unsubscribed (mail)"
    delays = conn.execute(
        select(func.count()).where(events.c.address == event.address.lower(), events.c.kind == "delay",
                                   events.c.at >= now - SOFT_WINDOW)
    ).scalar_one()
    if delays >= soft_limit:
        return f"bounce (soft: {delays} delays in 30 days)"
    return None


def counts_by_edition(store: Store, edition_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Per edition: how many bounced, were delayed, complained or unsubscribed by mail."""
    ids = list(edition_ids)
    result: dict[int, dict[str, int]] = {i: {} for i in ids}
    if not ids:
        return result
    with store.read() as conn:
        rows = conn.execute(
            select(events.c.edition_id, events.c.kind, func.count(func.distinct(events.c.address)))
            .where(events.c.edition_id.in_(ids)).group_by(events.c.edition_id, events.c.kind)
        )
        for edition_id, kind, count in rows:
            result[int(edition_id)][str(kind)] = int(count)
    return result
