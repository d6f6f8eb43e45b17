"""An edition: the new stories since the last one, rendered once and frozen in the ledger."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from syndicator.config import Config
from syndicator.mail.audience import audience, listed_by_publisher, skipped
from syndicator.mail.digest import Digest, render_digest
from syndicator.mail.message import MessageFactory, list_id, message_id, message_ids
from syndicator.mail.returns import ReturnPaths
from syndicator.mail.tokens import unsubscribe_signer
from syndicator.model import Story, edition_page, tag_slug
from syndicator.seeds.identity import load_stories
from syndicator.site import editions as site_editions
from syndicator.state import ledger, lists
from syndicator.state.ledger import Edition
from syndicator.state.store import Store
from syndicator.templating import environment

log = logging.getLogger("syndicator.edition")
PREVIEW_TOKEN = "preview-token-not-valid"


@dataclass(frozen=True)
class Plan:
    """What the next edition would hold."""

    stories: tuple[Story, ...]
    max_seq: int
    slot: str
    corrections: tuple[Story, ...] = ()  # mailed before, corrected since the last edition


def plan(config: Config, store: Store, now: datetime, *, persist: bool = True) -> Plan | None:
    """The stories first seen since the last edition (the first: within ``digest.lookback``)."""
    stories = load_stories(config, store, now, persist=persist)
    top = max((s.seq for s in stories), default=0)
    mark = ledger.watermark(store)
    if mark is None:
        window = config.digest.lookback_delta
        new = [s for s in stories if window is None or s.first_seen >= now - window]
    else:
        new = [s for s in stories if s.seq > mark]
    if len(new) >= config.digest.min_stories:
        return Plan(tuple(new), top, f"stories:{top}", _corrected(store, stories, mark))
    if new:
        return None  # too few yet (digest.min_stories): they wait for a later slot
    if config.digest.send_when_empty:
        return Plan((), top, f"empty:{now:%Y-%m-%d}")
    return None


def _corrected(store: Store, stories: Sequence[Story], mark: int | None) -> tuple[Story, ...]:
    """Stories an earlier edition carried whose text changed since the last edition opened:
    listed in their own section, never mailed again as new."""
    since = ledger.last_opened(store)
    if mark is None or since is None:
        return ()
    return tuple(s for s in stories
                 if s.seq <= mark and s.revised is not None and s.revised.timestamp() > since)


def unsubscribe_url(config: Config, secret: bytes | None) -> Callable[[str], str]:
    lid = list_id(config)
    base = urljoin(config.site.url, "u/")
    if secret is None:
        return lambda _address: base + PREVIEW_TOKEN
    sign = unsubscribe_signer(secret, lid)
    return lambda address: base + sign(address)


def open_edition(config: Config, store: Store, now: datetime, slot: str | None = None) -> Edition | None:
    """Create the next edition (idempotent per slot), or None when there is nothing new."""
    if slot is not None and (existing := ledger.edition_for_slot(store, slot)) is not None:
        return existing  # another process (or machine) fired this slot first
    planned = plan(config, store, now)
    if planned is None:
        # Nothing new can also mean the slot's edition was committed while we planned.
        return ledger.edition_for_slot(store, slot) if slot is not None else None
    slot = slot or planned.slot
    page = web_url(config, slot, now)
    digest = fit_digest(config, planned.stories, now, web_url=page, corrections=planned.corrections)
    readers = list(audience(config, store))
    chosen = lists.all_preferences(store)
    variants, assigned, nothing = _variants(config, chosen, planned, readers, digest.marker, now, page)
    mailed = [r for r in readers if r not in nothing]
    edition, created = ledger.create_edition(
        store, slot=slot, now=int(now.timestamp()), max_seq=planned.max_seq,
        story_ids=digest.story_ids, subject=digest.subject, html=digest.html, text=digest.text,
        marker=digest.marker,
        recipients=mailed, suppressed=skipped(config, store),
        message_id=message_ids(config), variants=variants, assigned=assigned,
        scheduled=_local_times(config, chosen, mailed, now),
    )
    if created:
        log.info("edition %d opened: %d stories, %r", edition.id, len(planned.stories), digest.subject)
        # Its page is on the site before the first message that links it goes out.
        env = environment(config.templates_dir)
        site_editions.publish(config, env, store, edition, planned.stories)
    return edition


def _variants(config: Config, chosen: Mapping[str, lists.Preferences], planned: Plan,
              readers: Sequence[str], marker: str, now: datetime,
              page: str) -> tuple[list[ledger.Variant], dict[str, int], set[str]]:
    """One frozen rendering per distinct tag choice among the readers (``preferences``): only
    the new stories with one of those tags. Readers whose choice matches no new story get no
    message this edition (the third value). Readers who chose nothing get the edition."""
    by_choice: dict[tuple[str, ...], list[str]] = {}
    for address in readers:
        prefs = chosen.get(address)
        if prefs is not None and prefs.tags:
            by_choice.setdefault(prefs.tags, []).append(address)
    variants: list[ledger.Variant] = []
    assigned: dict[str, int] = {}
    nothing: set[str] = set()
    for number, (tags, who) in enumerate(sorted(by_choice.items()), start=1):
        wanted = set(tags)
        stories = [s for s in planned.stories if wanted & {tag_slug(t) for t in s.tags}]
        if not stories:
            nothing.update(who)
            continue
        digest = fit_digest(config, stories, now, web_url=page, marker=marker,
                            corrections=planned.corrections)
        variants.append(ledger.Variant(number, tags, digest.story_ids, digest.subject, digest.html,
                                       digest.text))
        assigned.update(dict.fromkeys(who, number))
    return variants, assigned, nothing


def _local_times(config: Config, chosen: Mapping[str, lists.Preferences], readers: Sequence[str],
                 now: datetime) -> dict[str, int]:
    """When each reader with a time zone of their own gets this edition: the next time
    ``digest.schedule`` fires in their zone (from the edition's moment on; APScheduler's cron
    keeps it DST-safe: 07:00 local in winter and in summer). Others get it at once."""
    zones = {a: p.timezone for a, p in chosen.items()
             if p.timezone and p.timezone != config.digest.timezone}
    wanted = set(readers)
    triggers: dict[str, CronTrigger] = {}
    scheduled: dict[str, int] = {}
    for address, zone in zones.items():
        if address not in wanted:
            continue
        trig = triggers.get(zone) or triggers.setdefault(
            zone, CronTrigger.from_crontab(config.digest.schedule, timezone=ZoneInfo(zone)))
        fire = trig.get_next_fire_time(None, now)
        if fire is not None and fire > now:
            scheduled[address] = int(fire.timestamp())
    return scheduled


def web_url(config: Config, slot: str, now: datetime) -> str:
    """The URL of the edition's page on the site (``digests/…``), which every message links."""
    local = now.astimezone(ZoneInfo(config.digest.timezone))
    return urljoin(config.site.url, edition_page(slot, local))


def fit_digest(config: Config, stories: Sequence[Story], now: datetime, *, web_url: str = "",
               marker: str | None = None, corrections: Sequence[Story] = ()) -> Digest:
    """The digest of ``stories`` showing ``digest.max_stories``, or fewer if one reader's
    message would pass ``digest.max_bytes`` (the rest are counted: "and N more stories")."""
    def render(shown: int) -> Digest:
        return render_digest(config, stories, now, marker=marker, shown=shown, web_url=web_url,
                             corrections=corrections)

    limit = config.digest.max_bytes
    digest = render(config.digest.max_stories)
    if len(stories) <= 1 or _largest_message(config, digest, now) <= limit:
        return digest
    low, high = 1, min(len(stories), config.digest.max_stories) - 1
    best = render(1)
    while low <= high:  # the most stories that fit: a few renders, only for an oversized edition
        middle = (low + high) // 2
        candidate = render(middle)
        if _largest_message(config, candidate, now) <= limit:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    size = _largest_message(config, best, now)
    if size > limit:
        log.warning("the digest is %d bytes with its lead alone, over digest.max_bytes (%d)", size, limit)
    return best


# The longest address a list may hold (RFC 5321: 64 + 1 + 255): its token and header are the
# longest too, so every real reader's message is at most this size.
_LONGEST = "x" * 64 + "@" + ("d" * 63 + ".") * 3 + "d" * 61


def _largest_message(config: Config, digest: Digest, now: datetime) -> int:
    links = unsubscribe_url(config, b"size-estimate-secret-not-used-for-mail")
    factory = MessageFactory(config, digest, unsubscribe_url=links, date=now,
                             returns=return_paths(config, None))
    return len(factory.build(_LONGEST, message_id(2**31, _LONGEST, config)))


def factory_for(config: Config, edition: Edition, secret: bytes | None,
                store: Store | None = None) -> MessageFactory | VariantFactory:
    """The message factory of an edition; with variants (readers who chose tags), one that
    builds each reader's message from their variant."""
    def make(subject: str, html: str, text: str, story_ids: tuple[str, ...]) -> MessageFactory:
        digest = Digest(subject, html, text, story_ids, edition.marker)
        return MessageFactory(config, digest, unsubscribe_url=links,
                              date=datetime.fromtimestamp(edition.created_at, UTC),
                              returns=returns, listed=listed)

    links, returns = unsubscribe_url(config, secret), return_paths(config, secret)
    listed = listed_by_publisher(config)
    base = make(edition.subject, edition.html, edition.text, edition.story_ids)
    found, assigned = ledger.variants(store, edition.id) if store is not None else ([], {})
    if not found:
        return base
    return VariantFactory(base, {v.number: make(v.subject, v.html, v.text, v.story_ids) for v in found},
                          assigned)


class VariantFactory:
    """A MessageFactory that picks each reader's variant: the same interface, per address."""

    def __init__(self, base: MessageFactory, variants: dict[int, MessageFactory],
                 assigned: dict[str, int]) -> None:
        self.base, self.variants, self.assigned = base, variants, assigned

    def _for(self, address: str) -> MessageFactory:
        number = self.assigned.get(address)
        return self.base if number is None else self.variants[number]

    def envelope_sender(self, message_id: str) -> str:
        return self.base.envelope_sender(message_id)

    def build(self, address: str, message_id: str) -> bytes:
        return self._for(address).build(address, message_id)

    def build_wire(self, address: str, message_id: str) -> bytes:
        return self._for(address).build_wire(address, message_id)


def return_paths(config: Config, secret: bytes | None) -> ReturnPaths | None:
    """The VERP addresses of ``[inbound]``; signed with an unknown key when there is no secret
    (a preview), so the addresses look real but name nothing."""
    return ReturnPaths.of(config, secret or b"preview-no-secret-" + secrets.token_bytes(16))
