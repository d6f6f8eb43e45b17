"""``syndicator send`` and ``syndicator status``: what they print; the work is done in syndicator.mail."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from syndicator.cli import State, address_argument, cli, clock, handled
from syndicator.config import Config
from syndicator.errors import DeliveryError, StrictWarnings
from syndicator.state import inbound, ledger
from syndicator.text import plural

if TYPE_CHECKING:
    from syndicator.mail.delivery import Stop, Tally
    from syndicator.state.store import Store

log = logging.getLogger("syndicator.send")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Render and write a preview; send nothing, change nothing.")
@click.option("--preview", "preview_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where --dry-run writes digest.html, digest.txt, digest.eml [default: preview/].")
@click.option("--to", "to", metavar="ADDRESS", help="Send one test copy to ADDRESS; mark nothing sent.")
@click.option("--retry-failed", is_flag=True, help="Retry permanent failures of earlier editions too.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output; errors only.")
@click.option("--strict", is_flag=True,
              help="With --dry-run: exit 1 when the deliverability report has a warning (for CI).")
@click.pass_obj
@handled
def send(state: State, dry_run: bool, preview_dir: Path | None, to: str | None,
         retry_failed: bool, quiet: bool, strict: bool) -> None:
    """Render the digest and mail it to every recipient."""
    if strict and not dry_run:
        raise click.UsageError("--strict goes with --dry-run (it makes the deliverability report's "
                               "warnings fail the run)")
    config = state.config
    if dry_run:
        _dry_run(config, clock(), preview_dir or config.root / "preview", strict=strict)
    elif to is not None:
        local = config.digest.allow_local_addresses
        _test_copy(config, clock(), address_argument(to, "--to", allow_local=local))
    else:
        _send(config, clock(), retry_failed=retry_failed, quiet=quiet)


@cli.command()
@click.pass_obj
@handled
def status(state: State) -> None:
    """Digest editions and their delivery counts, and the last error."""
    _status(state.config)


def _dry_run(config: Config, now: datetime, folder: Path, *, strict: bool = False) -> None:
    from syndicator.mail.audit import audit
    from syndicator.mail.preview import preview
    from syndicator.state.store import open_readonly

    store = open_readonly(config.store_url)
    try:
        result = preview(config, store, now, folder)
    finally:
        store.close()
    if result is None:
        click.echo("nothing to send: no new stories since the last edition (digest.send_when_empty is off)")
        return
    click.echo(f"dry run: nothing was sent and nothing was changed\n"
               f"subject: {result.subject}\n"
               f"stories: {result.stories}\n"
               f"recipients: {result.recipients}\n"
               f"preview: {', '.join(str(p) for p in result.files)}")
    report = audit(config, result.message, config.output_dir, pending=(result.web_url,))
    for finding in report.findings:
        click.echo(str(finding))
    click.echo(report.summary)
    if strict and report.warnings:
        raise StrictWarnings(f"{plural(len(report.warnings), 'deliverability warning')} (--strict)")


def _test_copy(config: Config, now: datetime, address: str) -> None:
    from syndicator.mail.preview import send_test_copy
    from syndicator.state.store import Store

    password = config.smtp_password()
    secret = config.secret()
    store = Store.open(config.store_url)
    try:
        outcome = asyncio.run(send_test_copy(config, store, now, address, password=password, secret=secret))
    finally:
        store.close()
    click.echo(f"test copy sent to {address}: {outcome.reply}")


def _send(config: Config, now: datetime, *, retry_failed: bool, quiet: bool) -> None:
    from syndicator.mail import workers
    from syndicator.mail.delivery import Stop
    from syndicator.state.store import Store

    password = config.smtp_password()
    secret = config.secret()
    store = Store.open(config.store_url)
    stop = Stop()
    try:
        if retry_failed:
            again = ledger.retry_failed(store, int(now.timestamp()))
            if not quiet:
                click.echo(f"retrying {again} failed deliveries", err=True)
        with _progress(store, quiet), _stop_on_signals(stop):
            tally = workers.send(config, store, now, password=password, secret=secret, stop=stop)
    finally:
        store.close()
    _summary(tally, quiet)


class _stop_on_signals:
    """SIGINT/SIGTERM: finish the messages in flight, leave the rest pending, exit 1."""

    def __init__(self, stop: Stop) -> None:
        self.stop = stop

    def __enter__(self) -> None:
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.stop.requested():
            raise DeliveryError("interrupted: what was not sent stays pending for the next `syndicator send`")

    def _handle(self, _signum: int, _frame: object) -> None:
        self.stop.request()


def _summary(tally: Tally, quiet: bool) -> None:
    if not tally.editions:
        if not quiet:
            click.echo("nothing to send: no new stories since the last edition")
        return
    line = (f"sent {tally.sent}, deferred {tally.deferred}, failed {tally.failed}, "
            f"suppressed {tally.suppressed} in {tally.seconds:.1f}s ({tally.rate:.0f} msg/s); "
            f"editions {', '.join(map(str, tally.editions))}")
    if not quiet or tally.failed or tally.deferred:
        click.echo(line)
    for error in tally.errors[:10]:
        click.echo(f"  failed: {error}", err=True)
    if tally.deferred:
        raise DeliveryError(f"{tally.deferred} deliveries still deferred; run `syndicator send` again "
                            "to retry them")
    if tally.failed:
        raise DeliveryError(f"{tally.failed} deliveries failed permanently "
                            "(see `syndicator status`; `send --retry-failed` retries them)")


class _progress:
    """A progress bar on a terminal, periodic log lines otherwise, nothing with --quiet."""

    def __init__(self, store: Store, quiet: bool, every: float = 5.0) -> None:
        self.store = store
        self.quiet = quiet
        self.every = every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.shown = False

    def __enter__(self) -> _progress:
        if not self.quiet:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        if self.shown and sys.stderr.isatty():
            click.echo(err=True)  # end the progress line before the summary

    def _loop(self) -> None:
        tty = sys.stderr.isatty()
        start = time.monotonic()
        while not self.stop.wait(1.0 if tty else self.every):
            try:
                for edition in ledger.open_editions(self.store):
                    counts = ledger.counts(self.store, edition.id)
                    self._show(edition.id, counts, time.monotonic() - start, tty)
                    self.shown = True
            except Exception as exc:  # progress is best effort; the send goes on
                log.debug("progress: %s", exc)

    @staticmethod
    def _show(edition_id: int, counts: dict[str, int], elapsed: float, tty: bool) -> None:
        total = sum(counts.values())
        done = counts[ledger.SENT] + counts[ledger.FAILED] + counts[ledger.SUPPRESSED]
        rate = counts[ledger.SENT] / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("inf")
        text = (f"edition {edition_id}: {done}/{total} ({100 * done / max(total, 1):.0f}%) "
                f"{rate:.0f} msg/s, ETA {'?' if eta == float('inf') else f'{eta:.0f}s'}")
        if tty:
            click.echo("\r" + text + " " * 8, nl=False, err=True)
        else:
            click.echo(text, err=True)


def _status(config: Config) -> None:
    from syndicator.state.store import open_readonly

    store = open_readonly(config.store_url)
    try:
        found = ledger.editions(store)
        if not found:
            click.echo("no editions yet")
            return
        click.echo(f"{'edition':>7}  {'created (UTC)':<16}  {'status':<8}  {'sent':>7}  {'pending':>7}  "
                   f"{'deferred':>8}  {'failed':>6}  {'suppr.':>6}  {'bounced':>7}  {'compl.':>6}  subject")
        last_error = None
        came_back = inbound.counts_by_edition(store, [e.id for e in found])
        for edition in found:
            c = ledger.counts(store, edition.id)
            back = came_back[edition.id]
            created = datetime.fromtimestamp(edition.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            click.echo(f"{edition.id:>7}  {created:<16}  {edition.status:<8}  {c[ledger.SENT]:>7}  "
                       f"{c[ledger.PENDING] + c[ledger.SENDING]:>7}  {c[ledger.DEFERRED]:>8}  "
                       f"{c[ledger.FAILED]:>6}  {c[ledger.SUPPRESSED]:>6}  {back.get('bounce', 0):>7}  "
                       f"{back.get('complaint', 0):>6}  {edition.subject}")
            if last_error is None and edition.last_error:
                last_error = (edition.id, edition.last_error)
        if last_error:
            click.echo(f"last error (edition {last_error[0]}): {last_error[1]}")
    finally:
        store.close()
