"""``syndicator subscribe``, ``unsubscribe`` and ``subscribers``: the list from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from syndicator.cli import State, address_argument, cli, clock, handled
from syndicator.text import plural

if TYPE_CHECKING:
    from syndicator.mail.subscriptions import Listing


@cli.command()
@click.argument("address")
@click.pass_obj
@handled
def subscribe(state: State, address: str) -> None:
    """Mail ADDRESS a confirmation link; it joins the list once confirmed."""
    from syndicator.mail import subscriptions

    # Checked before the store is created or opened.
    address = address_argument(address, allow_local=state.config.digest.allow_local_addresses)
    store = state.store()
    try:
        source = subscriptions.invite(state.config, store, address, int(clock().timestamp()))
    finally:
        store.close()
    if source is not None:
        click.echo(f"{address} is already on the list ({source}); no confirmation sent")
    else:
        click.echo(f"sent a confirmation link to {address}; it joins the list once confirmed")


@cli.command()
@click.argument("address")
@click.pass_obj
@handled
def unsubscribe(state: State, address: str) -> None:
    """Put ADDRESS on the suppression list: no further digest goes to it."""
    from syndicator.mail import subscriptions

    address = address_argument(address, allow_local=state.config.digest.allow_local_addresses)
    store = state.store()
    try:
        now = int(clock().timestamp())
        new = subscriptions.unsubscribe(store, address, "unsubscribed (command line)", now)
    finally:
        store.close()
    click.echo(f"unsubscribed {address}: no further digest goes to it" if new
               else f"{address} was already unsubscribed")


@cli.group(invoke_without_command=True)
@click.pass_context
@handled
def subscribers(ctx: click.Context) -> None:
    """The list: counts by source, pending and suppressed addresses, then every address.
    `subscribers export FILE` and `subscribers import FILE` carry it elsewhere, as CSV."""
    if ctx.invoked_subcommand is not None:
        return
    from syndicator.mail import subscriptions

    state = ctx.ensure_object(State)
    store = state.store()
    try:
        found = subscriptions.listing(state.config, store)
    finally:
        store.close()
    click.echo("\n".join(report(found)))


@subscribers.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
@handled
def export_list(state: State, file: Path) -> None:
    """Write the whole list to FILE as CSV: status, source, consent record, preferences,
    suppression reason and date."""
    from syndicator.mail import portable

    store = state.store()
    try:
        rows = portable.export_rows(state.config, store)
    finally:
        store.close()
    portable.write_csv(rows, file)
    click.echo(f"exported {plural(len(rows), 'address', 'addresses')} to {file}")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
@handled
def import_list(state: State, file: Path) -> None:
    """Read FILE (an export, or one address a line) into the list; every row is checked first."""
    from syndicator.mail import portable

    store = state.store()
    try:
        done = portable.import_file(state.config, store, file, int(clock().timestamp()))
    finally:
        store.close()
    click.echo(f"imported {plural(done.written, 'address', 'addresses')}"
               f"{f'; {done.kept_suppressed} kept suppressed' if done.kept_suppressed else ''}"
               f"{f'; {done.listed} already listed by the config' if done.listed else ''}")


def _day(stamp: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")


def report(found: Listing) -> list[str]:
    """Counts, then one line per address."""
    lines = [
        f"recipients: {len(found.recipients)}",
        f"configured: {len(found.configured)}",
        f"file: {len(found.from_file)}",
        f"confirmed subscribers: {len(found.confirmed)}",
        f"pending: {len(found.pending)}",
        f"suppressed: {len(found.suppressed)}",
    ]
    lines += [f"recipient   {address}  ({source})" for address, source in found.recipients]
    lines += [f"pending     {address}" for address in found.pending]
    lines += [f"suppressed  {s.address}  ({s.reason}, {_day(s.created_at)})" for s in found.suppressed]
    return lines
