"""The build stage: seeds -> stories -> feeds and pages, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from syndicator.catalog import load_files, resolve
from syndicator.config import Config
from syndicator.feeds import render_feeds
from syndicator.model import SeedFile, Story
from syndicator.pages import render_pages
from syndicator.store import Store
from syndicator.templating import environment
from syndicator.writer import check_writable, write_atomic


@dataclass(frozen=True)
class BuildResult:
    output: Path
    stories: int
    written: tuple[str, ...]
    unchanged: int

    @property
    def feeds_changed(self) -> bool:
        return any(name in ("rss.xml", "atom.xml", "feed.json") for name in self.written)


def load_stories(config: Config, store: Store, clock: datetime, *, persist: bool = True) -> list[Story]:
    """Every story, newest first, with ids and times fixed by the store."""
    return resolve(load_files(config), store, clock, persist=persist)


def render_site(config: Config, stories: Sequence[Story]) -> dict[str, bytes]:
    env = environment(config.templates_dir)
    return {**render_feeds(config, stories), **render_pages(config, env, stories)}


def build(config: Config, store: Store, clock: datetime, output: Path | None = None, *,
          files: list[SeedFile] | None = None) -> BuildResult:
    """Write every output file; nothing is written unless every seed parses.

    ``files`` are seeds the caller has already loaded (and so validated).
    """
    folder = output or config.output_dir
    if files is None:
        files = load_files(config)
    check_writable(folder)
    stories = resolve(files, store, clock)
    rendered = render_site(config, stories)
    written = [name for name, data in rendered.items() if write_atomic(folder / name, data)]
    return BuildResult(folder, len(stories), tuple(written), len(rendered) - len(written))
