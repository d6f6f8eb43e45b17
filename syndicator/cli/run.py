"""``syndicator run`` (the scheduler) and ``syndicator serve`` (the web side)."""

from __future__ import annotations

import click

from syndicator.cli import State, cli, clock, handled


@cli.command()
@click.option("--serve", "serve_web", is_flag=True, help="Also serve the output folder and the web routes.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --serve: address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="With --serve: port (0 picks a free one).")
@click.pass_obj
@handled
def run(state: State, serve_web: bool, host: str, port: int) -> None:
    """The long-running scheduler: build and send on digest.schedule."""
    import asyncio

    from syndicator.scheduler import Runner

    asyncio.run(Runner(state.config, clock, serve_at=(host, port) if serve_web else None).run())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0 picks a free one).")
@click.pass_obj
@handled
def serve(state: State, host: str, port: int) -> None:
    """Serve the output folder and the subscribe/unsubscribe routes."""
    import asyncio

    from syndicator.web import app as web

    config = state.config
    store = state.store()
    try:
        site = web.create_app(config, store)  # without the secret: a warning, subscriptions 503
        sock = web.listen(host, port)
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"serving {config.output_dir} at http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops)")
        asyncio.run(web.run_server(site, sock))
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
