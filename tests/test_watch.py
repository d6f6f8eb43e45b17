"""Watch mode: `build --watch` and `run` rebuild on seed changes; `build --prune`.

No test sleeps: each waits for the watcher's own report (a build it ran) with a deadline, and
the watch ends through its stop event. The watch is in place before the first build starts,
so every file a test writes after that first report is seen.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import Config, load_config
from syndicator.errors import InputErrors
from syndicator.scheduler import Runner
from syndicator.site.watch import Rebuild, build_and_watch, is_seed_change
from syndicator.websub import announce
from tests.conftest import CLOCK, EXAMPLE_SEED, Project
from tests.test_websub import Hub, hub, with_hub

__all__ = ["hub"]  # the fixture, imported for the test that pings a hub

DEADLINE = 20.0  # seconds: a failure's limit, never a wait the tests rely on
NEVER = CronTrigger.from_crontab("0 7 1 1 *", timezone="UTC")
SEED = """\
---
id: watched-{n}
---
Watched story {n}

{body}
"""

Scenario = Callable[["Watch"], Awaitable[None]]


class Watch:
    """``build_and_watch`` as a task; ``next()`` is its next report, within the deadline."""

    def __init__(self, config: Config, project: Project) -> None:
        self.config = config
        self.project = project
        self.stop = asyncio.Event()
        self.reports: asyncio.Queue[Rebuild] = asyncio.Queue()
        self.pinged: list[tuple[str, ...]] = []

    def ping(self, config: Config, written: Sequence[str]) -> None:
        self.pinged.append(tuple(written))
        announce(config, written)

    async def next(self) -> Rebuild:
        return await asyncio.wait_for(self.reports.get(), DEADLINE)

    def rss(self) -> str:
        return (self.project.output / "rss.xml").read_text()


def watching(project: Project, scenario: Scenario, clock: Callable[[], datetime] = lambda: CLOCK,
             *, prune: bool = False) -> tuple[Watch, int]:
    """Run ``scenario`` against a live watch (after its first build), then stop the watch."""
    watch = Watch(load_config(project.config), project)

    async def main() -> int:
        task = asyncio.create_task(build_and_watch(watch.config, clock, watch.reports.put_nowait,
                                                   watch.stop, prune=prune, ping=watch.ping))
        try:
            first = await watch.next()
            assert first.changes == frozenset() and first.result is not None
            await scenario(watch)
        finally:
            watch.stop.set()
        return await asyncio.wait_for(task, DEADLINE)

    return watch, asyncio.run(main())


def write_seed(project: Project, n: int, body: str) -> Path:
    return project.seed(f"watched-{n}.txt", SEED.format(n=n, body=body))


def test_a_seed_created_changed_and_removed_is_rebuilt_each_time(project: Project) -> None:
    pages = project.output / "stories"
    seen: dict[str, object] = {}

    async def scenario(watch: Watch) -> None:
        assert "Watched story 1" not in watch.rss()
        path = write_seed(project, 1, "The first version.")
        created = await watch.next()
        assert created.result is not None and created.result.stories == 8
        assert {os.path.basename(p) for _, p in created.changes} == {"watched-1.txt"}
        assert "Watched story 1" in watch.rss() and "The first version." in watch.rss()
        seen["page"] = page = next(pages.glob("watched-story-1-*.html"))

        write_seed(project, 1, "The second version, corrected.")
        changed = await watch.next()
        assert changed.result is not None and changed.result.stories == 8
        assert "The second version, corrected." in watch.rss()
        assert "The first version." not in watch.rss()
        assert "The second version, corrected." in page.read_text()

        path.unlink()
        removed = await watch.next()
        assert removed.result is not None and removed.result.stories == 7
        assert "Watched story 1" not in watch.rss()
        assert "Watched story 1" not in (project.output / "atom.xml").read_text()
        assert page.exists()  # its permalink keeps working: only --prune removes it

    watch, rebuilds = watching(project, scenario)
    assert rebuilds == 3
    page = seen["page"]
    assert isinstance(page, Path) and page.exists()
    # Every build changed the feeds, so each was announced (the hub itself: test_websub).
    assert len(watch.pinged) == 4 and all("rss.xml" in written for written in watch.pinged)


def test_a_bad_seed_is_reported_the_output_kept_and_the_watch_goes_on(project: Project) -> None:
    def snapshot() -> dict[str, bytes]:
        return {str(p.relative_to(project.output)): p.read_bytes()
                for p in sorted(project.output.rglob("*")) if p.is_file()}

    async def scenario(watch: Watch) -> None:
        before = snapshot()
        path = project.seed("broken.txt", "---\nid: broken\nweather: sunny\n---\nA broken story\n")
        failed = await watch.next()
        assert failed.result is None and failed.error is not None
        assert "broken.txt:3: weather: unknown front matter key" in str(failed.error)
        assert snapshot() == before  # nothing written, as for a failed `syndicator build`
        path.write_text("---\nid: broken\n---\nA mended story\n")
        mended = await watch.next()
        assert mended.result is not None and "A mended story" in watch.rss()

    _, rebuilds = watching(project, scenario)
    assert rebuilds == 2


def test_editor_files_and_other_files_are_not_seed_changes(project: Project) -> None:
    async def scenario(watch: Watch) -> None:
        for name in (".watched-1.txt.swp", "watched-1.txt~", "notes.md", "4913"):
            project.seed(name, "not a seed")
        (project.seeds / "drafts").mkdir()
        write_seed(project, 1, "The only change that counts.")
        rebuild = await watch.next()  # the temp files came first: a batch of their own, if seen
        assert {os.path.basename(p) for _, p in rebuild.changes} == {"watched-1.txt"}

    watching(project, scenario)
    from watchfiles import Change

    assert is_seed_change(Change.added, "/s/story.txt")
    assert is_seed_change(Change.deleted, "/s/story.txt")
    for name in ("story.txt.swp", ".story.txt.swx", "story.txt~", ".#story.txt", "story.md", ".txt"):
        assert not is_seed_change(Change.modified, f"/s/{name}"), name


def test_a_seed_saved_as_the_first_build_starts_is_seen(project: Project) -> None:
    calls = 0

    def clock() -> datetime:  # read just before each build, after the watch is in place
        nonlocal calls
        calls += 1
        if calls == 1:
            write_seed(project, 2, "Saved while the first build starts.")
        return CLOCK

    async def scenario(watch: Watch) -> None:
        again = await watch.next()
        assert {os.path.basename(p) for _, p in again.changes} == {"watched-2.txt"}
        assert "Watched story 2" in watch.rss()

    watching(project, scenario, clock)


def test_the_stop_event_ends_the_watch(project: Project) -> None:
    async def scenario(watch: Watch) -> None:
        watch.stop.set()

    watch, rebuilds = watching(project, scenario)
    assert rebuilds == 0 and watch.reports.empty()


def test_the_first_build_failing_fails_the_watch(project: Project) -> None:
    project.seed("broken.txt", "---\nweather: sunny\n---\nA broken story\n")
    config = load_config(project.config)

    async def main() -> None:
        stop = asyncio.Event()
        await asyncio.wait_for(build_and_watch(config, lambda: CLOCK, lambda _: None, stop), DEADLINE)

    with pytest.raises(InputErrors, match="weather: unknown front matter key"):
        asyncio.run(main())
    assert not project.output.exists()


def test_watch_pings_the_hub_after_builds_that_changed_a_feed(project: Project, hub: Hub) -> None:
    with_hub(project, hub.url)

    async def scenario(watch: Watch) -> None:
        write_seed(project, 1, "News for the hub.")
        await watch.next()
        os.utime(project.seeds / EXAMPLE_SEED.name)  # touched, not changed: no feed changes
        quiet = await watch.next()
        assert quiet.result is not None and "rss.xml" not in quiet.result.written

    watching(project, scenario)
    # The first build and the new story, three feeds each; the quiet rebuild pinged nothing.
    # (The watch awaits its pings before it returns.)
    assert sorted(form["hub.url"][0] for _, form in hub.posts) == sorted(
        [f"https://example.org/{name}" for name in ("rss.xml", "atom.xml", "feed.json")] * 2)


def test_watch_with_prune_removes_the_page_of_a_removed_seed(project: Project) -> None:
    async def scenario(watch: Watch) -> None:
        path = write_seed(project, 3, "Soon gone.")
        await watch.next()
        page = next((project.output / "stories").glob("watched-story-3-*.html"))
        path.unlink()
        removed = await watch.next()
        assert removed.result is not None and removed.result.pruned == 1
        assert not page.exists()

    watching(project, scenario, prune=True)


# -- build --prune -----------------------------------------------------------------------------


def test_build_prune_removes_only_the_pages_of_removed_seeds(project: Project) -> None:
    runner = CliRunner()
    extra = project.seed("lonely.txt", "A lonely story\n\nIt will not stay.\n")
    first = runner.invoke(cli, ["build"], catch_exceptions=False)
    assert first.exit_code == 0, first.output
    pages = project.output / "stories"
    lonely = next(pages.glob("a-lonely-story-*.html"))
    others = sorted(p.name for p in pages.iterdir() if p != lonely)
    assert len(others) == 7
    # Files a person (or an interrupted build) put in stories/: never a prune's to delete.
    decoys = ["notes.html", "README.txt", ".a-lonely-story-0123abcd.html.tmp", "Old-Story-0123abcd.html",
              "old-story-0123abcd.htm", "no-hex-suffix.html"]
    for name in decoys:
        (pages / name).write_text("kept")
    (pages / "folder-0123abcd.html").mkdir()
    (pages / "linked-0123abcd.html").symlink_to(pages / others[0])

    extra.unlink()
    kept = runner.invoke(cli, ["build"], catch_exceptions=False)
    assert kept.exit_code == 0, kept.output
    assert "pruned" not in kept.stdout
    assert lonely.exists()  # a removed seed's page stays without --prune
    assert "A lonely story" not in (project.output / "rss.xml").read_text()

    pruned = runner.invoke(cli, ["build", "--prune"], catch_exceptions=False)
    assert pruned.exit_code == 0, pruned.output
    assert pruned.stdout.endswith(", 1 story page pruned\n"), pruned.stdout
    assert not lonely.exists()
    left = sorted(p.name for p in pages.iterdir())
    assert left == sorted([*others, *decoys, "folder-0123abcd.html", "linked-0123abcd.html"])

    again = runner.invoke(cli, ["build", "--prune"], catch_exceptions=False)
    assert again.stdout.endswith(", 0 story pages pruned\n"), again.stdout


# -- run ----------------------------------------------------------------------------------------


def test_run_rebuilds_when_a_seed_changes_and_shutdown_awaits_the_watcher(project: Project) -> None:
    runner = Runner(load_config(project.config), lambda: CLOCK, NEVER)

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.ready.wait(), DEADLINE)
        assert "Watched story 4" not in (project.output / "rss.xml").read_text()
        write_seed(project, 4, "Seen by the scheduler.")
        await asyncio.wait_for(runner.built.wait(), DEADLINE)
        assert "Watched story 4" in (project.output / "rss.xml").read_text()
        runner.built.clear()
        (project.seeds / "watched-4.txt").unlink()
        await asyncio.wait_for(runner.built.wait(), DEADLINE)
        assert "Watched story 4" not in (project.output / "rss.xml").read_text()
        runner.request_stop()
        await asyncio.wait_for(task, DEADLINE)

    asyncio.run(scenario())
    assert runner.builds == 2 and runner.runs == 0
    assert runner.watcher is not None and runner.watcher.done() and not runner.watcher.cancelled()
    assert not runner.scheduler.running


# -- the command -------------------------------------------------------------------------------


def _lines(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The stream's lines as they come (a reader thread): ``get(timeout=)`` is a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_build_watch_command_rebuilds_and_stops_cleanly_on_a_signal(project: Project,
                                                                     sig: signal.Signals) -> None:
    env = {**os.environ, "SYNDICATOR_CONFIG": str(project.config)}
    proc = subprocess.Popen([sys.executable, "-m", "syndicator", "build", "--watch"], cwd=project.root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        (out, _), (err, err_reader) = _lines(proc.stdout), _lines(proc.stderr)
        assert out.get(timeout=DEADLINE).startswith("built 7 stories into ")
        assert err.get(timeout=DEADLINE) == f"watching {project.seeds} for changes (Ctrl-C stops)\n"
        project.seed("bad.txt", "---\nweather: sunny\n---\nA bad story\n")
        assert err.get(timeout=DEADLINE).endswith("bad.txt:2: weather: unknown front matter key "
                                                  "(known: id, date, author, url, tags, correction)\n")
        (project.seeds / "bad.txt").unlink()
        write_seed(project, 5, "From the command.")
        line = out.get(timeout=DEADLINE)
        if line.startswith("built 7 "):  # the removal and the new seed came as two batches
            line = out.get(timeout=DEADLINE)
        assert line.startswith("built 8 stories into "), line
        assert "Watched story 5" in (project.output / "rss.xml").read_text()
        proc.send_signal(sig)
        assert proc.wait(timeout=DEADLINE) == 0
        err_reader.join(DEADLINE)
        assert err.empty(), err.get()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_watched_rebuild_stats_the_changed_seeds_and_builds_what_a_scan_would(
        project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, listing_reads: list[int]) -> None:
    from syndicator.site import unchanged
    from syndicator.site.build import build
    from syndicator.state.store import Store

    scans: list[Path] = []
    real_scan = unchanged.scan_seeds  # type: ignore[attr-defined]

    def counted(folder: Path, sorted_as: Any = None) -> object:
        scans.append(folder)
        return real_scan(folder, sorted_as)

    monkeypatch.setattr(unchanged, "scan_seeds", counted)

    async def scenario(watch: Watch) -> None:
        assert len(scans) == 1  # the first build scanned the folder
        write_seed(project, 1, "The first version.")
        assert (await watch.next()).result is not None
        write_seed(project, 2, "Another story.")
        (project.seeds / "watched-1.txt").unlink()
        done = await watch.next()
        while done.result is not None and "Watched story 1" in watch.rss():  # the removal's own batch
            done = await watch.next()
        assert done.result is not None and "Another story." in watch.rss()
        # An hour old (trusted, not too recent), then saved again as it was, mtime and all: a
        # rebuild where no seed changed ...
        again = project.seeds / "watched-2.txt"
        hour_ago = time.time_ns() - 3600 * 10**9
        os.utime(again, ns=(hour_ago, hour_ago))
        assert (await watch.next()).result is not None
        again.write_bytes(again.read_bytes())
        os.utime(again, ns=(hour_ago, hour_ago))
        assert (await watch.next()).result is not None
        write_seed(project, 3, "A third story.")  # ... and one where one did
        done = await watch.next()
        assert done.result is not None and "A third story." in watch.rss()
        assert len(scans) == 1, "a watched rebuild scanned the seeds folder"
        assert not listing_reads, "a watched rebuild read the kept listing back from its file"

    hour_ago = time.time() - 3600
    for seed in project.seeds.iterdir():  # an archive's: none too recent to trust
        os.utime(seed, (hour_ago, hour_ago))
    watch, _ = watching(project, scenario)
    config = watch.config
    store = Store.open(config.store_url)
    try:
        build(config, store, CLOCK, tmp_path / "scanned")  # a complete build, every seed scanned
    finally:
        store.close()

    def files(folder: Path) -> dict[str, bytes]:
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    watched, scanned = files(project.output), files(tmp_path / "scanned")
    # The page of a removed story stays (permalinks keep working) where a new folder has none.
    assert {name: data for name, data in watched.items() if "watched-story-1-" not in name} == scanned


def test_templates_edited_while_watching_are_used_by_the_next_rebuild(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch keeps its compiled templates between rebuilds, and compiles them again when any
    template is added or edited, a partial only a page template includes too."""
    import jinja2

    compiled: list[str | None] = []
    real_compile = jinja2.Environment.compile

    def counted(self: jinja2.Environment, source: Any, name: str | None = None, *args: Any,
                **kwargs: Any) -> Any:
        compiled.append(name)
        return real_compile(self, source, name, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "compile", counted)
    templates = project.root / "templates"
    pages = project.output / "stories"

    def every_page_says(marker: str) -> bool:
        return all(marker in page.read_text() for page in pages.glob("*.html"))

    async def scenario(watch: Watch) -> None:
        first = len(compiled)
        assert first > 0
        write_seed(project, 1, "Nothing about templates.")
        assert (await watch.next()).result is not None
        assert len(compiled) == first, "a rebuild compiled templates none of which changed"

        templates.mkdir()
        (templates / "_marker.html").write_text("<p>MARK-ONE</p>\n")
        (templates / "story.html").write_text(
            '{% extends "base.html" %}\n{% block body %}{% include "_marker.html" %}'
            "<h1>{{ story.title|clean }}</h1>{{ body }}{% endblock %}\n")
        write_seed(project, 2, "A story after the templates came.")
        assert (await watch.next()).result is not None
        assert every_page_says("MARK-ONE")  # the project's story.html stands in for the shipped one

        (templates / "_marker.html").write_text("<p>MARK-TWO</p>\n")
        write_seed(project, 3, "A story after the partial changed.")
        assert (await watch.next()).result is not None
        assert every_page_says("MARK-TWO") and not any(
            "MARK-ONE" in page.read_text() for page in pages.glob("*.html"))

    watching(project, scenario)


def test_seed_changes_are_kept_until_a_build_that_saw_them_succeeds(tmp_path: Path) -> None:
    from watchfiles import Change

    from syndicator.site.watch import SeedChanges

    seeds = SeedChanges(tmp_path)
    assert seeds.to_check() is None  # no scan yet: the first build scans
    seeds.built(None, time.monotonic())
    seeds.add({(Change.modified, str(tmp_path / "b.txt")), (Change.added, str(tmp_path / "a.txt")),
               (Change.added, str(tmp_path / "elsewhere" / "c.txt"))})
    assert seeds.to_check() == frozenset({"a.txt", "b.txt"})
    # That build failed (a.txt did not parse); a.txt is mended: b.txt's change is not forgotten.
    seeds.add({(Change.modified, str(tmp_path / "a.txt"))})
    checked = seeds.to_check()
    assert checked == frozenset({"a.txt", "b.txt"})
    started = time.monotonic()
    seeds.add({(Change.modified, str(tmp_path / "d.txt"))})  # saved while that build runs
    seeds.built(checked, started)
    assert seeds.to_check() == frozenset({"d.txt"})
    # Many changes at once, or a last scan long ago: scan the folder (inotify can drop events).
    seeds.add({(Change.added, str(tmp_path / f"n{i}.txt")) for i in range(SeedChanges.MANY + 1)})
    assert seeds.to_check() is None
    seeds.built(None, time.monotonic())
    assert seeds.to_check() == frozenset()
    seeds.scanned_at = time.monotonic() - SeedChanges.FULL_SCAN_S - 1
    assert seeds.to_check() is None
