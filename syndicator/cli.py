"""The command line: a thin click layer over the library; errors become one line and an exit code."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from syndicator import build as build_mod
from syndicator.catalog import count_stories, load_files, read_all
from syndicator.config import Config, find_config, load_config
from syndicator.errors import InputError, InputErrors, SyndicatorError
from syndicator.pages import check_templates
from syndicator.store import Store
from syndicator.templating import environment
from syndicator.writer import check_writable

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("syndicator")


@dataclass
class State:
    config_path: Path
    verbose: bool
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> Store:
        return Store.open(self.config.store_url)


def clock() -> datetime:
    """The wall clock; the one place the CLI reads it."""
    return datetime.now(UTC).replace(microsecond=0)


def handled(func: F) -> F:
    """Turn a SyndicatorError into one clear line and its exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = click.get_current_context().find_object(State)
        try:
            return func(*args, **kwargs)
        except SyndicatorError as exc:
            if state is not None and state.verbose:
                log.exception("failed")
            _report(exc)
            sys.exit(exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # a bug or an unforeseen failure: still one line, exit 1
            if state is not None and state.verbose:
                log.exception("failed")
            first = (str(exc).strip().splitlines() or [""])[0]
            click.echo(f"error: unexpected {type(exc).__name__}: {first} (--verbose shows the traceback)",
                       err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _report(exc: SyndicatorError) -> None:
    errors = exc.errors if isinstance(exc, InputErrors) else [exc]
    for error in errors:
        click.echo(f"error: {error}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH",
              help="Config file [default: $SYNDICATOR_CONFIG, else config/syndicator.toml].")
@click.option("--verbose", "-v", is_flag=True, help="Log more, and show tracebacks on errors.")
@click.version_option(package_name="syndicator")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Feeds and an email digest from a folder of plain-text articles."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = State(find_config(config_path), verbose)


@cli.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: paths.output].")
@click.pass_obj
@handled
def build(state: State, out: Path | None) -> None:
    """Write the feeds and the HTML pages they link to."""
    config = state.config
    # Seeds and templates are valid and the output folder is writable before the store is touched.
    files = load_files(config)
    broken = check_templates(environment(config.templates_dir))
    if broken:
        raise InputErrors(broken)
    check_writable(out or config.output_dir)
    store = state.store()
    try:
        result = build_mod.build(config, store, clock(), out, files=files)
    finally:
        store.close()
    click.echo(
        f"built {_plural(result.stories, 'story')} into {result.output}: "
        f"{len(result.written)} files written, {result.unchanged} unchanged"
    )
    from syndicator.websub import announce

    announce(config, result.written)
    _end_process_now()


@cli.command()
@click.pass_obj
@handled
def check(state: State) -> None:
    """Validate the config and every seed file; report every problem."""
    config = state.config
    problems: list[InputError] = []
    if config.recipients_path is not None:
        from syndicator.config import read_recipients_file

        try:
            for _address in read_recipients_file(config.recipients_path):
                pass
        except InputError as exc:
            problems.append(exc)
    files, errors = read_all(config)
    problems.extend(errors)
    problems.extend(check_templates(environment(config.templates_dir)))
    if problems:
        raise InputErrors(problems)
    stories = count_stories(files)
    click.echo(f"ok: {state.config_path}: {_plural(len(files), 'seed file')}, {_plural(stories, 'story')}")


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return f"1 {noun}"
    return f"{count} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"

@cli.command()
@click.option("--dry-run", is_flag=True, help="Render and write a preview; send nothing, change nothing.")
@click.option("--preview", "preview_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where --dry-run writes digest.html, digest.txt, digest.eml [default: preview/].")
@click.option("--to", "to", metavar="ADDRESS", help="Send one test copy to ADDRESS; mark nothing sent.")
@click.option("--retry-failed", is_flag=True, help="Retry permanent failures of earlier editions too.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output; errors only.")
@click.pass_obj
@handled
def send(state: State, dry_run: bool, preview_dir: Path | None, to: str | None,
         retry_failed: bool, quiet: bool) -> None:
    """Render the digest and mail it to every recipient."""
    from syndicator import sending_cli

    config = state.config
    if dry_run:
        sending_cli.dry_run(config, clock(), preview_dir or config.root / "preview")
    elif to is not None:
        sending_cli.test_copy(config, clock(), to)
    else:
        sending_cli.send(config, clock(), retry_failed=retry_failed, quiet=quiet)


@cli.command()
@click.pass_obj
@handled
def status(state: State) -> None:
    """Digest editions and their delivery counts, and the last error."""
    from syndicator import sending_cli

    sending_cli.status(state.config)

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


# -- serve and the list (issue 6) -------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port (0 picks a free one).")
@click.pass_obj
@handled
def serve(state: State, host: str, port: int) -> None:
    """Serve the output folder and the subscribe/unsubscribe routes."""
    import asyncio

    from syndicator import web

    config = state.config
    store = state.store()
    try:
        app = web.create_app(config, store)  # a missing secret fails here, before listening
        sock = web.listen(host, port)
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"serving {config.output_dir} at http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops)")
        asyncio.run(web.run_server(app, sock))
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


@cli.command()
@click.argument("address")
@click.pass_obj
@handled
def subscribe(state: State, address: str) -> None:
    """Mail ADDRESS a confirmation link; it joins the list once confirmed."""
    from syndicator import subscriptions

    address = subscriptions.valid_address(address)  # before the store is created or opened
    store = state.store()
    try:
        click.echo(subscriptions.invite(state.config, store, address, int(clock().timestamp())))
    finally:
        store.close()


@cli.command()
@click.argument("address")
@click.pass_obj
@handled
def unsubscribe(state: State, address: str) -> None:
    """Put ADDRESS on the suppression list: no further digest goes to it."""
    from syndicator import subscriptions

    address = subscriptions.valid_address(address)
    store = state.store()
    try:
        click.echo(subscriptions.remove(store, address, int(clock().timestamp())))
    finally:
        store.close()


@cli.command()
@click.pass_obj
@handled
def subscribers(state: State) -> None:
    """The list: counts by source, pending and suppressed addresses, then every address."""
    from syndicator import subscriptions

    store = state.store()
    try:
        lines = subscriptions.report(subscriptions.listing(state.config, store))
    finally:
        store.close()
    click.echo("\n".join(lines))


# Set by main(): there the process ends with the command.
_ENDS_PROCESS = False


def main() -> None:
    global _ENDS_PROCESS
    _ENDS_PROCESS = True
    cli(prog_name="syndicator")


def _end_process_now() -> None:
    """End the process of a command that has finished (and succeeded), heap and all.

    A build of 100,000 seeds holds millions of small objects, and Python frees them one by one
    on the way out: 1.2 s after the work was done. By now the output is written, the store is
    closed and nothing else is pending, so exit at once (but never under a test's CliRunner).
    """
    if not _ENDS_PROCESS:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader that went away (`| head`) loses nothing built
            stream.flush()
    logging.shutdown()
    os._exit(0)


__all__ = ["cli", "load_files", "main"]
