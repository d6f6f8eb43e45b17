"""One pass over the inbound source: what ``syndicator inbound`` and ``run``'s poll do."""

from __future__ import annotations

import logging

from syndicator.config import Config
from syndicator.inbound.handle import COUNTED, Summary, process, returns_for
from syndicator.inbound.sources import open_source
from syndicator.state.store import Store
from syndicator.text import plural

log = logging.getLogger("syndicator.inbound")


def read_inbound(config: Config, store: Store, where: str, now: int) -> Report:
    returns = returns_for(config, config.secret())
    source = open_source(config, where)
    try:
        summary = process(config, store, source, returns, now)
    finally:
        source.close()
    for address in summary.suppressed:
        log.debug("suppressed %s", address)
    return Report(summary)


class Report:
    def __init__(self, summary: Summary) -> None:
        self.summary = summary

    def line(self) -> str:
        counts = self.summary.counts
        parts = ", ".join(f"{counts[name]} {name}" for name in COUNTED)
        return (f"inbound: {plural(self.summary.new, 'new message')} ({parts}); "
                f"{len(self.summary.suppressed)} suppressed")
