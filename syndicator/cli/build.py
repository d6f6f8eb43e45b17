"""``syndicator build`` and ``syndicator check``."""

from __future__ import annotations

from pathlib import Path

import click

from syndicator.cli import State, cli, clock, handled
from syndicator.errors import InputError, InputErrors
from syndicator.text import plural


@cli.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [default: paths.output].")
@click.pass_obj
@handled
def build(state: State, out: Path | None) -> None:
    """Write the feeds and the HTML pages they link to."""
    from syndicator.site.build import build as build_site
    from syndicator.site.build import prepare
    from syndicator.websub import announce

    config = state.config
    ready = prepare(config, out)  # seeds, templates and output folder, before the store is touched
    store = state.store()
    try:
        result = build_site(config, store, clock(), prepared=ready)
    finally:
        store.close()
    click.echo(
        f"built {plural(result.stories, 'story')} into {result.output}: "
        f"{len(result.written)} files written, {result.unchanged} unchanged"
    )
    announce(config, result.written)


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
