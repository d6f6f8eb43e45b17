"""The list in the store: subscribers (pending and confirmed) and the suppression list.

Every query about who is on the list or off it runs here; ``syndicator.mail.audience`` and
``syndicator.mail.subscriptions`` decide, this module only stores and reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update

from syndicator.state import schema
from syndicator.state.store import Store

subscriber, suppression = schema.subscribers, schema.suppressions


@dataclass(frozen=True)
class Suppressed:
    address: str
    reason: str
    created_at: int


# -- suppressions ------------------------------------------------------------------


def suppress(store: Store, address: str, reason: str, now: int) -> bool:
    """Put an address on the suppression list; False when it already was. Idempotent."""
    with store.begin() as conn:
        return bool(suppress_in(conn, store, [(address, reason)], now))


def suppress_in(conn: Connection, store: Store, entries: Iterable[tuple[str, str]], now: int) -> int:
    """Suppress (address, reason) pairs inside the caller's transaction; how many were new.

    An address already suppressed keeps its first reason and date: no conflict, no error.
    """
    rows = [{"address": a.lower(), "reason": r[:500], "created_at": now} for a, r in entries]
    if not rows:
        return 0
    stmt = store.insert_ignore(suppression).returning(suppression.c.address)
    return sum(1 for row in rows if conn.execute(stmt.values(**row)).first() is not None)


def suppressed_addresses(store: Store) -> set[str]:
    with store.read() as conn:
        return {row[0] for row in conn.execute(select(suppression.c.address))}


def suppressions(store: Store) -> list[Suppressed]:
    with store.read() as conn:
        rows = conn.execute(select(suppression.c.address, suppression.c.reason, suppression.c.created_at)
                            .order_by(suppression.c.address))
        return [Suppressed(r.address, r.reason, r.created_at) for r in rows]


# -- subscribers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    address: str
    confirmed: bool
    created_at: int
    confirmed_at: int | None
    requested_at: int | None


def subscribers(store: Store) -> list[Subscriber]:
    """Every subscriber, pending or confirmed, by address."""
    with store.read() as conn:
        rows = conn.execute(select(subscriber.c.address, subscriber.c.confirmed, subscriber.c.created_at,
                                   subscriber.c.confirmed_at, subscriber.c.requested_at)
                            .order_by(subscriber.c.address))
        return [Subscriber(r.address, bool(r.confirmed), r.created_at, r.confirmed_at, r.requested_at)
                for r in rows]


def confirmed_subscribers(store: Store) -> list[str]:
    with store.read() as conn:
        rows = conn.execute(select(subscriber.c.address).where(subscriber.c.confirmed.is_(True))
                            .order_by(subscriber.c.address))
        return [row[0] for row in rows]


def request_confirmation(store: Store, address: str, digest: str, now: int, *,
                         cooldown: int | None) -> bool:
    """Record a pending request whose newest confirmation token has SHA-256 ``digest``.

    False (nothing changed) when a request for this address came less than ``cooldown``
    seconds ago, or a concurrent request for a new address won the insert.
    """
    with store.begin() as conn:
        row = conn.execute(select(subscriber.c.requested_at).where(subscriber.c.address == address)).first()
        if row is None:
            new = store.insert_ignore(subscriber).values(address=address, confirmed=False, created_at=now,
                                                        requested_at=now, confirm_digest=digest)
            return conn.execute(new.returning(subscriber.c.address)).first() is not None
        if cooldown is not None and row.requested_at is not None and now - row.requested_at < cooldown:
            return False
        conn.execute(update(subscriber).where(subscriber.c.address == address)
                     .values(requested_at=now, confirm_digest=digest))
    return True


def pending_digest(store: Store, address: str) -> str | None:
    """The SHA-256 of the newest unused confirmation token of ``address``."""
    with store.read() as conn:
        value = conn.execute(select(subscriber.c.confirm_digest)
                             .where(subscriber.c.address == address)).scalar()
    return None if value is None else str(value)


def confirm(store: Store, address: str, digest: str, now: int) -> bool:
    """Confirm once (the token's digest must be the newest issued): the address joins the list
    and leaves the suppression list. False when the token is unknown or already used."""
    with store.begin() as conn:
        # The conditional UPDATE makes the token single-use even under concurrent clicks.
        done = conn.execute(
            update(subscriber).where(subscriber.c.address == address, subscriber.c.confirm_digest == digest)
            .values(confirmed=True, confirmed_at=now, confirm_digest=None)
        ).rowcount
        if done != 1:
            return False
        conn.execute(delete(suppression).where(suppression.c.address == address))
    return True
