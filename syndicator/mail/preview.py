"""What ``send --dry-run`` and ``send --to`` produce: the next digest, without touching the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from syndicator.config import Config
from syndicator.errors import DeliveryError
from syndicator.mail.audience import audience, listed_by_publisher
from syndicator.mail.digest import why_text
from syndicator.mail.edition import fit_digest, plan, return_paths, unsubscribe_url, web_url
from syndicator.mail.message import MessageFactory, copy_message_id, message_id
from syndicator.mail.policy import Kind, Outcome
from syndicator.mail.smtp import Connection
from syndicator.seeds.identity import load_stories
from syndicator.site.writer import write_atomic
from syndicator.state.store import Store


@dataclass(frozen=True)
class Preview:
    subject: str
    stories: int
    recipients: int
    files: tuple[Path, ...]
    message: bytes  # digest.eml: the message as the first recipient would get it
    web_url: str  # the edition's page, which opening the edition writes


def preview(config: Config, store: Store, now: datetime, folder: Path) -> Preview | None:
    """Render exactly what ``send`` would mail, to files; no network, no state change."""
    planned = plan(config, store, now, persist=False)
    if planned is None:
        return None
    page_url = web_url(config, planned.slot, now)
    digest = fit_digest(config, planned.stories, now, web_url=page_url, corrections=planned.corrections)
    addresses = list(audience(config, store))
    # A preview is shared, pasted and forwarded: its unsubscribe link is an inert token, never
    # a live link that would unsubscribe the first real reader.
    links = unsubscribe_url(config, None)
    listed = listed_by_publisher(config)
    factory = MessageFactory(config, digest, unsubscribe_url=links, date=now,
                             returns=return_paths(config, None), listed=listed)
    first = addresses[0] if addresses else "recipient@example.invalid"
    page, text = digest.personal(links(first), why_text(config, listed(first)))
    files = {
        "digest.html": page.encode("utf-8"),
        "digest.txt": text.encode("utf-8"),
        "digest.eml": factory.build(first, message_id(0, first, config)),
    }
    for name, data in files.items():
        write_atomic(folder / name, data)
    return Preview(digest.subject, len(planned.stories), len(addresses),
                   tuple(folder / n for n in files), files["digest.eml"], page_url)


async def send_test_copy(config: Config, store: Store, now: datetime, address: str, *,
                         password: str | None, secret: bytes | None) -> Outcome:
    """One copy of the next (or latest) edition to ``address``; nothing is marked sent."""
    planned = plan(config, store, now, persist=False)
    if planned is not None and planned.stories:
        stories = planned.stories
    else:
        stories = tuple(load_stories(config, store, now, persist=False)[: config.feeds.limit])
    digest = fit_digest(config, stories, now)
    # No VERP: a test copy belongs to no edition, and its bounce is the publisher's to read.
    factory = MessageFactory(config, digest, unsubscribe_url=unsubscribe_url(config, secret), date=now)
    data = factory.build(address, copy_message_id(address, config, now))
    connection = Connection(config, password)
    try:
        outcome = await connection.send(config.digest.from_address, address, data)
    finally:
        await connection.close()
    if outcome.kind is not Kind.SENT:
        raise DeliveryError(f"test copy to {address} not accepted: {outcome.reply}")
    return outcome
