"""What ``syndicator send`` and ``syndicator status`` print; the work is done by syndicator.sender."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from syndicator import ledger, sender
from syndicator.config import Config, check_address
from syndicator.errors import DeliveryError, InputError
from syndicator.store import Store, open_readonly

log = logging.getLogger("syndicator.send")


def dry_run(config: Config, clock: datetime, folder: Path) -> None:
    store = open_readonly(config.store_url)
    try:
        result = sender.preview(config, store, clock, folder)
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


def test_copy(config: Config, clock: datetime, address: str) -> None:
    try:
        address = check_address(address)
    except ValueError as exc:
        raise InputError(str(exc), key="--to") from None
    password = config.smtp_password()
    secret = config.secret()
    store = Store.open(config.store_url)
    try:
        outcome = asyncio.run(sender.send_test_copy(config, store, clock, address,
                                                    password=password, secret=secret))
    finally:
        store.close()
    click.echo(f"test copy sent to {address}: {outcome.reply}")


def send(config: Config, clock: datetime, *, retry_failed: bool, quiet: bool) -> None:
    password = config.smtp_password()
    secret = config.secret()
    store = Store.open(config.store_url)
    try:
        if retry_failed:
            again = ledger.retry_failed(store, int(time.time()))
            if not quiet:
                click.echo(f"retrying {again} failed deliveries", err=True)
        with _progress(store, quiet), _stop_on_signals():
            tally = sender.send(config, store, clock, password=password, secret=secret)
    finally:
        store.close()
    _summary(tally, quiet)


class _stop_on_signals:
    """SIGINT/SIGTERM: finish the messages in flight, leave the rest pending, exit 1."""

    def __enter__(self) -> None:
        sender.clear_stop()
        self.previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if sender.stop_requested():
            raise DeliveryError("interrupted: what was not sent stays pending for the next `syndicator send`")

    @staticmethod
    def _handle(_signum: int, _frame: object) -> None:
        sender.request_stop()


def _summary(tally: sender.Tally, quiet: bool) -> None:
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


def status(config: Config) -> None:
    store = open_readonly(config.store_url)
    try:
        found = ledger.editions(store)
        if not found:
            click.echo("no editions yet")
            return
        click.echo(f"{'edition':>7}  {'created (UTC)':<16}  {'status':<6}  {'sent':>7}  {'pending':>7}  "
                   f"{'deferred':>8}  {'failed':>6}  {'suppr.':>6}  subject")
        last_error = None
        for edition in found:
            c = ledger.counts(store, edition.id)
            created = datetime.fromtimestamp(edition.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            click.echo(f"{edition.id:>7}  {created:<16}  {edition.status:<6}  {c[ledger.SENT]:>7}  "
                       f"{c[ledger.PENDING] + c[ledger.SENDING]:>7}  {c[ledger.DEFERRED]:>8}  "
                       f"{c[ledger.FAILED]:>6}  {c[ledger.SUPPRESSED]:>6}  {edition.subject}")
            if last_error is None and edition.last_error:
                last_error = (edition.id, edition.last_error)
        if last_error:
            click.echo(f"last error (edition {last_error[0]}): {last_error[1]}")
    finally:
        store.close()
