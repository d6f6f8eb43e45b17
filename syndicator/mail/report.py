"""The run report: once an edition has finished (every reader sent, failed or suppressed),
a short plain-text mail to ``digest.report_to`` says what it did. Never for a test copy."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from syndicator.config import Config
from syndicator.mail.edition import web_url
from syndicator.mail.message import plain_notice
from syndicator.mail.policy import Kind
from syndicator.mail.smtp import Connection
from syndicator.state import inbound, ledger
from syndicator.state.ledger import Edition
from syndicator.state.store import Store
from syndicator.text import one_line, plural

log = logging.getLogger("syndicator.report")


def report_text(config: Config, store: Store, edition: Edition) -> tuple[str, str]:
    """The report's subject and body."""
    counts = ledger.counts(store, edition.id)
    back = inbound.counts_by_edition(store, [edition.id])[edition.id]
    opened = datetime.fromtimestamp(edition.created_at, UTC)
    took = max(0, (edition.finished_at or edition.created_at) - edition.created_at)
    lines = [
        f"Edition {edition.id}: {one_line(edition.subject)}",
        f"Opened {opened:%Y-%m-%d %H:%M} UTC; delivery took {_duration(took)}.",
        "",
        f"sent        {counts[ledger.SENT]}",
        f"deferred    {counts[ledger.DEFERRED] + counts[ledger.PENDING] + counts[ledger.SENDING]}",
        f"failed      {counts[ledger.FAILED]}",
        f"suppressed  {counts[ledger.SUPPRESSED]}",
        f"bounced     {back.get('bounce', 0)}",
        f"complained  {back.get('complaint', 0)}",
    ]
    reasons = ledger.refusal_reasons(store, edition.id)
    if reasons:
        lines += ["", "Top refusal reasons:"]
        lines += [f"  {n} x {one_line(reply)[:200]}" for reply, n in reasons]
    lines += ["", f"The edition on the web: {web_url(config, edition.slot, opened)}", ""]
    subject = (f"Digest report: edition {edition.id}, {plural(counts[ledger.SENT], 'message')} sent, "
               f"{counts[ledger.FAILED]} failed")
    return subject, "\n".join(lines)


def _duration(seconds: int) -> str:
    if seconds < 120:
        return plural(seconds, "second")
    if seconds < 7200:
        return plural(round(seconds / 60), "minute")
    return f"{seconds / 3600:.1f} hours"


def report_message(config: Config, to: str, subject: str, body: str, now: int) -> bytes:
    return plain_notice(config, to, subject, body, now)


def mail_report(config: Config, store: Store, edition_id: int, password: str | None, now: int) -> None:
    """Mail the report of a finished edition to every ``digest.report_to`` address. A relay
    that refuses it is logged: the edition itself went out, and stays done."""
    found = ledger.edition(store, edition_id)
    if found is None or not config.digest.report_to:
        return
    subject, body = report_text(config, store, found)
    asyncio.run(_send_all(config, password, subject, body, now))


async def _send_all(config: Config, password: str | None, subject: str, body: str, now: int) -> None:
    connection = Connection(config, password)
    try:
        for to in config.digest.report_to:
            try:
                outcome = await connection.send(config.digest.from_address, to,
                                                report_message(config, to, subject, body, now))
            except Exception as exc:  # the relay is down: the report is lost, the edition is not
                log.warning("the run report to %s was not sent: %s", to, exc)
                continue
            if outcome.kind is not Kind.SENT:
                log.warning("the run report to %s was refused: %s", to, outcome.reply)
    finally:
        await connection.close()
