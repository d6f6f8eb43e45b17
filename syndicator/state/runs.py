"""Each build and send, in the store: when it started, how long it took, a short note.

Written once at the end of ``syndicator.site.build.build`` and ``syndicator.mail.workers.send``;
read by ``syndicator.state.reports`` for /metrics and /admin. Every sender process writes its
own row, so the store has them all, whichever process serves the page.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, insert

from syndicator.errors import StoreError
from syndicator.state import schema
from syndicator.state.store import Store

BUILD, SEND = "build", "send"
KINDS = (BUILD, SEND)
KEEP = 90 * 86400  # rows older than this are pruned as new ones come

log = logging.getLogger("syndicator.state.runs")
runs = schema.runs


def record(store: Store, kind: str, started_at: float, seconds: float, detail: str = "") -> None:
    """Note one finished run. A store that fails here is logged, never raised: the run itself
    (the files written, the mail sent) succeeded, and only its note is lost."""
    start = int(started_at)
    try:
        with store.begin() as conn:
            conn.execute(insert(runs).values(kind=kind, started_at=start, seconds=max(0.0, float(seconds)),
                                             detail=detail[:500]))
            conn.execute(delete(runs).where(runs.c.kind == kind, runs.c.started_at < start - KEEP))
    except StoreError as exc:
        log.warning("the %s run was not recorded: %s", kind, exc)
