"""``syndicator build`` and ``syndicator check``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from syndicator.cli import State, cli, clock, handled, report_error
from syndicator.errors import InputError, InputErrors
from syndicator.text import plural

if TYPE_CHECKING:
    from syndicator.site.build import BuildResult


@cli.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: paths.output].")
@click.option("--watch", is_flag=True,
              help="Then rebuild whenever a seed file is created, changed or removed (Ctrl-C stops).")
@click.option("--prune", is_flag=True,
              help="Delete the story pages of stories no seed holds any more (they stay by default).")
@click.option("--full", is_flag=True,
              help="Check every page even when no seed changed (a page edited by hand is put right).")
@click.pass_obj
@handled
def build(state: State, out: Path | None, watch: bool, prune: bool, full: bool) -> None:
    """Write the feeds and the HTML pages they link to."""
    if watch:
        _watch(state, out, prune)
        return
    from syndicator.site.build import build as build_site
    from syndicator.site.build import prepare
    from syndicator.websub import announce

    config = state.config
    ready = prepare(config, out)  # seeds, templates and output folder, before the store is touched
    store = state.store()
    try:
        result = build_site(config, store, clock(), prepared=ready, prune=prune, full=full)
    finally:
        store.close()
    click.echo(_built_line(result, prune))
    announce(config, result.written)


def _built_line(result: BuildResult, prune: bool) -> str:
    line = (f"built {plural(result.stories, 'story')} into {result.output}: "
            f"{len(result.written)} files written, {result.unchanged} unchanged")
    return line + (f", {plural(result.pruned, 'story page')} pruned" if prune else "")


def _watch(state: State, out: Path | None, prune: bool) -> None:
    """``build --watch``: one line a build, an error line a failed one; SIGINT/SIGTERM stop it."""
    import asyncio
    import signal

    from syndicator.site.watch import Rebuild, build_and_watch

    config = state.config

    def report(rebuild: Rebuild) -> None:
        if rebuild.result is not None:
            click.echo(_built_line(rebuild.result, prune))
        elif rebuild.error is not None:
            report_error(rebuild.error)
        if not rebuild.changes:
            click.echo(f"watching {config.seeds_dir} for changes (Ctrl-C stops)", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await build_and_watch(config, clock, report, stop, output=out, prune=prune)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    asyncio.run(main())


@cli.command()
@click.pass_obj
@handled
def check(state: State) -> None:
    """Validate the config and every seed file; report every problem."""
    from syndicator.config import recipients_file_problems
    from syndicator.seeds.identity import count_stories, read_all
    from syndicator.site.pages import check_templates
    from syndicator.templating import environment

    config = state.config
    problems: list[InputError] = []
    if config.recipients_path is not None:
        problems.extend(recipients_file_problems(config.recipients_path,
                                                 allow_local=config.digest.allow_local_addresses))
    files, errors = read_all(config)
    problems.extend(errors)
    problems.extend(check_templates(environment(config.templates_dir)))
    if problems:
        raise InputErrors(problems)
    stories = count_stories(files)
    click.echo(f"ok: {state.config_path}: {plural(len(files), 'seed file')}, {plural(stories, 'story')}")
