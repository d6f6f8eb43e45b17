"""The list in the store: subscribers (pending and confirmed) and the suppression list.

Every query about who is on the list or off it runs here; ``syndicator.mail.audience`` and
``syndicator.mail.subscriptions`` decide, this module only stores and reads.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy import ColumnElement, Connection, and_, delete, func, or_, select, update

from syndicator.state import schema
from syndicator.state.store import Store

subscriber, suppression, preference = schema.subscribers, schema.suppressions, schema.preferences
DOUBLE_OPT_IN, IMPORTED = "double opt-in", "imported"
_REQUEST_LOCK = 7262514002  # PostgreSQL advisory lock: one confirmation request at a time (not 7262514001)


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


class Requested(enum.Enum):
    STORED = "stored"  # a confirmation mail may go out
    COOLING = "cooling"  # one went to the address (in some form) less than the cooldown ago
    CAPPED = "capped"  # the hour's confirmations, all addresses together, reached the cap


def request_confirmation(store: Store, address: str, digest: str, now: int, *, canonical: str,
                         cooldown: int | None, cap: int | None = None, window: int = 3600) -> Requested:
    """Record a pending request whose newest confirmation token has SHA-256 ``digest``.

    Nothing changes unless STORED: a request for an address of the same ``canonical`` form
    (``local@domain`` without the ``+tag``) came less than ``cooldown`` seconds ago, or a
    concurrent request for a new address won the insert (COOLING), or ``cap`` requests
    were recorded in the last ``window`` seconds (CAPPED).
    """
    with store.begin() as conn:
        if not store.is_sqlite:  # SQLite's BEGIN IMMEDIATE serialises already; several processes
            conn.execute(select(func.pg_advisory_xact_lock(_REQUEST_LOCK)))  # must not pass the cap together
        if cooldown is not None and _requested_since(conn, canonical, now - cooldown):
            return Requested.COOLING
        if cap is not None and _requests_since(conn, now - window) >= cap:
            return Requested.CAPPED
        return _record_request(conn, store, address, digest, now)


def _same_person(canonical: str) -> ColumnElement[bool]:
    """The stored addresses whose canonical form is ``canonical``: itself and its +tag forms."""
    local, _, domain = canonical.rpartition("@")
    tagged = and_(subscriber.c.address.startswith(local + "+", autoescape=True),
                  subscriber.c.address.endswith("@" + domain, autoescape=True))
    return or_(subscriber.c.address == canonical, tagged)


def _requested_since(conn: Connection, canonical: str, since: int) -> bool:
    query = select(subscriber.c.address).where(_same_person(canonical), subscriber.c.requested_at > since)
    return conn.execute(query.limit(1)).first() is not None


def _requests_since(conn: Connection, since: int) -> int:
    # An address asked for again after its cooldown has only its newest request here: the
    # count is of addresses mailed in the window (at most window/cooldown mails each).
    query = select(func.count()).select_from(subscriber).where(subscriber.c.requested_at > since)
    return int(conn.execute(query).scalar_one())


def _record_request(conn: Connection, store: Store, address: str, digest: str, now: int) -> Requested:
    row = conn.execute(select(subscriber.c.address).where(subscriber.c.address == address)).first()
    if row is None:
        new = store.insert_ignore(subscriber).values(address=address, confirmed=False, created_at=now,
                                                    requested_at=now, confirm_digest=digest)
        won = conn.execute(new.returning(subscriber.c.address)).first() is not None
        return Requested.STORED if won else Requested.COOLING
    conn.execute(update(subscriber).where(subscriber.c.address == address)
                 .values(requested_at=now, confirm_digest=digest))
    return Requested.STORED


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
            .values(confirmed=True, confirmed_at=now, confirm_digest=None, method=DOUBLE_OPT_IN)
        ).rowcount
        if done != 1:
            return False
        conn.execute(delete(suppression).where(suppression.c.address == address))
    return True


# -- preferences ---------------------------------------------------------------------


@dataclass(frozen=True)
class Preferences:
    tags: tuple[str, ...] = ()  # tag slugs; empty: every story
    timezone: str = ""  # empty: the digest's own


def preferences(store: Store, address: str) -> Preferences:
    with store.read() as conn:
        row = conn.execute(select(preference.c.tags, preference.c.timezone)
                           .where(preference.c.address == address.lower())).first()
    return Preferences() if row is None else Preferences(tuple(json.loads(row.tags)), row.timezone)


def all_preferences(store: Store) -> dict[str, Preferences]:
    with store.read() as conn:
        rows = conn.execute(select(preference.c.address, preference.c.tags, preference.c.timezone))
        return {r.address: Preferences(tuple(json.loads(r.tags)), r.timezone) for r in rows}


def set_preferences(store: Store, address: str, chosen: Preferences, now: int) -> None:
    with store.begin() as conn:
        _set_preferences(conn, store, address, chosen, now)


def _set_preferences(conn: Connection, store: Store, address: str, chosen: Preferences, now: int) -> None:
    values = {"tags": json.dumps(sorted(chosen.tags)), "timezone": chosen.timezone, "updated_at": now}
    conn.execute(delete(preference).where(preference.c.address == address.lower()))
    if chosen != Preferences():
        conn.execute(preference.insert().values(address=address.lower(), **values))


# -- portable lists ------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """Everything the store knows of one address: for export, and what an import writes."""

    address: str
    confirmed: bool | None  # None: not a subscriber (config- or file-listed, or only suppressed)
    created_at: int | None = None
    confirmed_at: int | None = None
    method: str | None = None
    prefs: Preferences = Preferences()
    suppressed: Suppressed | None = None


def members(store: Store) -> dict[str, Member]:
    """Every subscriber, every suppressed address and every reader with preferences."""
    found: dict[str, Member] = {}
    prefs = all_preferences(store)
    with store.read() as conn:
        rows = conn.execute(select(subscriber.c.address, subscriber.c.confirmed, subscriber.c.created_at,
                                   subscriber.c.confirmed_at, subscriber.c.method))
        for r in rows:
            found[r.address] = Member(r.address, bool(r.confirmed), r.created_at, r.confirmed_at, r.method)
    for s in suppressions(store):
        base = found.get(s.address, Member(s.address, None))
        found[s.address] = replace(base, suppressed=s)
    for address, chosen in prefs.items():
        base = found.get(address, Member(address, None))
        found[address] = replace(base, prefs=chosen)
    return found


def import_members(store: Store, rows: Iterable[Member], now: int) -> tuple[int, int]:
    """Write imported members in one transaction: (written, kept suppressed). A suppressed
    address (in the store or the file) never becomes a subscriber again by import."""
    written = kept = 0
    with store.begin() as conn:
        blocked = {r[0] for r in conn.execute(select(suppression.c.address))}
        for member in rows:
            address = member.address.lower()
            if member.suppressed is not None:
                suppress_in(conn, store, [(address, member.suppressed.reason)], member.suppressed.created_at)
                blocked.add(address)
            if member.confirmed is not None:
                if address in blocked and member.suppressed is None:
                    kept += 1
                    continue
                conn.execute(delete(subscriber).where(subscriber.c.address == address))
                conn.execute(subscriber.insert().values(
                    address=address, confirmed=member.confirmed, created_at=member.created_at or now,
                    confirmed_at=member.confirmed_at, method=member.method))
            if member.prefs != Preferences():
                _set_preferences(conn, store, address, member.prefs, now)
            written += 1
    return written, kept
