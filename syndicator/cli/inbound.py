"""``syndicator inbound``: read what came back by mail and suppress whom it calls for."""

from __future__ import annotations

import click

from syndicator.cli import State, cli, clock, handled
from syndicator.errors import InputError


@cli.command()
@click.argument("source", required=False, metavar="[SOURCE | -]")
@click.pass_obj
@handled
def inbound(state: State, source: str | None) -> None:
    """Read bounces, complaints and mailed unsubscribes from inbound.source (or SOURCE: a
    maildir://, mbox://, imap:// or imaps:// URL, a Maildir path, or - for one message on stdin)."""
    from syndicator.inbound.run import read_inbound

    config = state.config
    where = source or config.inbound.source
    if not where:
        raise InputError("no inbound source: give SOURCE or set inbound.source", path=config.source,
                         key="inbound.source")
    store = state.store()
    try:
        summary = read_inbound(config, store, where, int(clock().timestamp()))
    finally:
        store.close()
    click.echo(summary.line())
