"""``syndicator subscribe``, ``unsubscribe`` and ``subscribers``: the list from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from syndicator.cli import State, address_argument, cli, clock, handled

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


@cli.command()
@click.pass_obj
@handled
def subscribers(state: State) -> None:
    """The list: counts by source, pending and suppressed addresses, then every address."""
    from syndicator.mail import subscriptions

    store = state.store()
    try:
        found = subscriptions.listing(state.config, store)
    finally:
        store.close()
    click.echo("\n".join(report(found)))


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
