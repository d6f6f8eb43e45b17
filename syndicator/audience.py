"""Who receives a digest: config recipients, the recipients file, confirmed subscribers; never suppressed."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select

from syndicator import schema
from syndicator.config import Config, read_recipients_file
from syndicator.ledger import suppressed
from syndicator.store import Store


def audience(config: Config, store: Store) -> Iterator[str]:
    """Every address once (case-insensitively), in a stable order, never a suppressed one."""
    blocked = suppressed(store)
    seen: set[str] = set()
    for address in _sources(config, store):
        key = address.lower()
        if key not in seen and key not in blocked:
            seen.add(key)
            yield key


def _sources(config: Config, store: Store) -> Iterator[str]:
    yield from config.digest.recipients
    if config.recipients_path is not None:
        yield from read_recipients_file(config.recipients_path)
    yield from confirmed_subscribers(store)


def confirmed_subscribers(store: Store) -> Iterator[str]:
    subs = schema.subscribers
    with store.read() as conn:
        rows = conn.execute(select(subs.c.address).where(subs.c.confirmed.is_(True)).order_by(subs.c.address))
        addresses = [row[0] for row in rows]
    yield from addresses
