"""Apply what came back: each inbound message becomes events in the store and suppressions.

A bounce or report can only suppress: it never subscribes, never changes an address and never
makes syndicator send mail. Who it concerns must be proven: a VERP token that verifies, or a
quoted Message-ID of ours that names a delivery to the very address the report is about.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from syndicator.config import Config
from syndicator.errors import InputError
from syndicator.inbound.classify import Verdict, classify
from syndicator.inbound.sources import Source
from syndicator.mail.returns import ReturnPaths
from syndicator.state import inbound as records
from syndicator.state.inbound import Event
from syndicator.state.store import Store

ACTS = ("bounce", "delay", "complaint", "unsubscribe")
# How each outcome is counted, in the order the summary line names them.
COUNTED = ("bounced", "delayed", "complaint", "unsubscribed", "auto-reply", "ignored", "unrecognised")
_COUNT_OF = {"bounce": "bounced", "delay": "delayed", "complaint": "complaint", "unsubscribe": "unsubscribed",
             "auto-reply": "auto-reply", "delivered": "ignored"}


@dataclass
class Summary:
    counts: Counter[str] = field(default_factory=Counter)
    suppressed: list[str] = field(default_factory=list)

    @property
    def new(self) -> int:
        return sum(self.counts.values())


def returns_for(config: Config, secret: bytes) -> ReturnPaths:
    returns = ReturnPaths.of(config, secret)
    if returns is None:
        raise InputError("inbound.address is not set: bounces cannot be matched to readers",
                         path=config.source, key="inbound.address")
    return returns


def process(config: Config, store: Store, source: Source, returns: ReturnPaths, now: int) -> Summary:
    summary = Summary()
    for item in source.unread():
        digest = hashlib.sha256(item.raw).hexdigest()
        before = records.seen_outcome(store, digest)
        if before is not None:
            if before != "unrecognised":
                source.done(item.key)  # recorded by a run that stopped before marking it
            continue
        outcome, events = judge(store, classify(item.raw, returns))
        summary.suppressed += records.record(store, digest, outcome, events, now,
                                             config.inbound.soft_bounce_limit)
        summary.counts[outcome] += 1
        if outcome != "unrecognised":
            source.done(item.key)  # an unrecognised message stays as it was, for a person
    return summary


def judge(store: Store, verdict: Verdict) -> tuple[str, list[Event]]:
    """The count a verdict adds to, and the events it records."""
    if verdict.kind not in ACTS:
        return _COUNT_OF.get(verdict.kind, "unrecognised"), []
    found = _deliveries(store, verdict)
    if not found:
        return "unrecognised", []  # about nobody we mailed, or forged: it proves nothing
    events = [Event(verdict.kind, address, edition, verdict.status, verdict.detail)
              for edition, address in found]
    return _COUNT_OF[verdict.kind], events


def _deliveries(store: Store, verdict: Verdict) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for named in verdict.named:
        address = records.delivery_by_hash(store, named.edition_id, named.id_hash)
        if address is not None and named.unsubscribe == (verdict.kind == "unsubscribe"):
            found.append((named.edition_id, address))
    if found or verdict.kind == "unsubscribe":
        return _unique(found)
    reported = {_bare(r) for r in verdict.recipients}
    for message_id in verdict.message_ids:
        delivery = records.delivery_by_message_id(store, message_id)
        # A complaint names the original by its Message-ID; a DSN without our token must also
        # be about the address that Message-ID went to.
        if delivery is not None and (verdict.kind == "complaint" or delivery[1] in reported):
            found.append(delivery)
    return _unique(found)


def _bare(address: str) -> str:
    return address.split(";", 1)[-1].strip().strip("<>").lower()


def _unique(found: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return list(dict.fromkeys(found))
