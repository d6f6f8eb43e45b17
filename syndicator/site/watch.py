"""Watch mode: rebuild when a seed file is created, changed or removed.

The watching is watchfiles' (inotify on Linux, through the Rust ``notify`` crate; FSEvents and
ReadDirectoryChangesW elsewhere): no folder is scanned on a timer. Its debounce groups the
events of one save, or of many files copied in at once, into one batch: a batch is handed
over once ``step`` ms pass without a new change, or ``debounce`` ms after its first change.
Changes made while a build runs are collected meanwhile and make the next batch.

Only the seed files themselves count: ``*.txt`` directly in the seeds folder, less what
editors leave beside them (``.swp``, ``~``, ``.#*``; watchfiles' ``DefaultFilter``).

The watch is in place before the first build starts, so a seed saved during that build (many
seconds at tens of thousands of seeds) is not missed: it makes the first batch.

``watch_seeds`` is the watcher both ``build --watch`` (``build_and_watch``) and ``run`` use;
it is an asyncio task that ends when its stop event is set, within one ``step``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from watchfiles import Change, DefaultFilter, awatch

from syndicator.config import Config
from syndicator.errors import SeedError, SyndicatorError
from syndicator.site.build import BuildResult, Templates, build, prepare
from syndicator.state.store import Store
from syndicator.websub import announce

DEBOUNCE_MS = 1_600  # watchfiles' defaults
STEP_MS = 50
FileChange = tuple[Change, str]
_EDITOR_FILES = DefaultFilter()


def is_seed_change(change: Change, path: str) -> bool:
    """A change to a seed file: ``*.txt`` (the reader's rule), not an editor's temp or lock file."""
    name = os.path.basename(path)
    return name.endswith(".txt") and name != ".txt" and _EDITOR_FILES(change, path)


class _StopEvent(asyncio.Event):
    """The stop event handed to watchfiles, which also tells when the watch is in place.

    watchfiles calls ``is_set()`` at every step of its wait, from its worker thread, and only
    once the inotify watch exists: the first call sets ``live`` (on the loop's thread).
    awatch ``set()``s it when it is cancelled; ``stop`` is the caller's.
    """

    def __init__(self, stop: asyncio.Event, live: asyncio.Event) -> None:
        super().__init__()
        self._stop = stop
        self._live = live
        self._loop = asyncio.get_running_loop()
        self._told = False

    def is_set(self) -> bool:
        if not self._told:
            self._told = True
            self._loop.call_soon_threadsafe(self._live.set)
        return self._stop.is_set() or super().is_set()


async def watch_seeds(folder: Path, on_change: Callable[[set[FileChange]], Awaitable[None]],
                      stop: asyncio.Event, *, live: asyncio.Event | None = None,
                      debounce: int = DEBOUNCE_MS, step: int = STEP_MS) -> None:
    """Await ``on_change(batch)`` for each debounced batch of seed changes until ``stop`` is set.

    ``live`` is set once the watch is in place (changes from then on are seen). A folder that
    cannot be watched (missing, or the system's limit on watches reached) is a SeedError.
    """
    live = live or asyncio.Event()
    probe = _StopEvent(stop, live)
    changes = awatch(folder, watch_filter=is_seed_change, debounce=debounce, step=step,
                     stop_event=probe, recursive=False)
    try:
        while not stop.is_set():
            try:
                batch = await anext(changes)
            except StopAsyncIteration:
                return
            except Exception as exc:
                if live.is_set():
                    raise
                if not folder.is_dir():
                    what = "is not a folder" if folder.exists() else "not found"
                    raise SeedError(f"seeds folder {what}", path=folder, key="paths.seeds") from None
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SeedError(f"cannot watch the seeds folder: {reason}", path=folder,
                                key="paths.seeds") from None
            await on_change(batch)
    finally:
        await changes.aclose()


async def start_watching(folder: Path, on_change: Callable[[set[FileChange]], Awaitable[None]],
                         stop: asyncio.Event, *, debounce: int = DEBOUNCE_MS,
                         step: int = STEP_MS) -> asyncio.Task[None]:
    """``watch_seeds`` as a task, returned once its watch is in place (or once it failed)."""
    live = asyncio.Event()
    task = asyncio.create_task(watch_seeds(folder, on_change, stop, live=live, debounce=debounce,
                                           step=step))
    waiting = asyncio.ensure_future(live.wait())
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    return task


class SeedChanges:
    """The seeds a watch saw change since the last build that succeeded, so that a rebuild
    stats those instead of every seed (``prepare(changed=...)``).

    inotify can lose events (its queue overflows, and watchfiles does not say so): a rebuild
    scans the whole folder anyway when the last scan is ``FULL_SCAN_S`` old or the changes
    are many. A failed build keeps its changes for the next one.
    """

    FULL_SCAN_S = 600.0
    MANY = 1_000

    def __init__(self, folder: Path) -> None:
        self.folder = os.path.abspath(folder)
        self.pending: dict[str, float] = {}  # seed file name -> when last seen changed (monotonic)
        self.scanned_at: float | None = None  # when the last build that scanned them all started

    def add(self, batch: set[FileChange]) -> None:
        now = time.monotonic()
        for _, path in batch:
            head, name = os.path.split(os.path.abspath(path))
            if head == self.folder:
                self.pending[name] = now

    def to_check(self) -> frozenset[str] | None:
        """The seeds to stat again for the next build; None: scan them all."""
        if (self.scanned_at is None or time.monotonic() - self.scanned_at > self.FULL_SCAN_S
                or len(self.pending) > self.MANY):
            return None
        return frozenset(self.pending)

    def built(self, checked: frozenset[str] | None, started: float) -> None:
        """A build that ``started`` (monotonic) with ``to_check()``'s answer succeeded: the
        changes it saw are built; one seen since (during the build) waits for the next."""
        self.pending = {name: when for name, when in self.pending.items()
                        if when >= started or (checked is not None and name not in checked)}
        if checked is None:
            self.scanned_at = started


@dataclass(frozen=True)
class Rebuild:
    """One build of a watch: the first (no changes), or one for a batch of seed changes."""

    changes: frozenset[FileChange]
    result: BuildResult | None  # None: the build failed (``error``), nothing was written
    error: SyndicatorError | None = None


def build_once(config: Config, now: datetime, output: Path | None = None, *,
               prune: bool = False, changed: frozenset[str] | None = None,
               templates: Templates | None = None) -> BuildResult:
    """One complete build, as ``syndicator build`` runs it: checks first, then the store.
    ``changed``: only these seeds can have changed since the last build (``SeedChanges``).
    ``templates``: the watching process's compiled templates (``build.Templates``).

    A watching process lives on: the few hundred reference cycles a build leaves behind (its
    template environment, its store's engine) are collected now, once its output is written,
    rather than whenever the collector's next full pass comes.
    """
    try:
        ready = prepare(config, output, changed=changed, templates=templates)
        store = Store.open(config.store_url)
        try:
            return build(config, store, now, prepared=ready, prune=prune)
        finally:
            store.close()
    finally:
        gc.collect()


async def build_and_watch(config: Config, clock: Callable[[], datetime], report: Callable[[Rebuild], None],
                          stop: asyncio.Event, *, output: Path | None = None, prune: bool = False,
                          ping: Callable[[Config, Sequence[str]], None] = announce,
                          debounce: int = DEBOUNCE_MS, step: int = STEP_MS) -> int:
    """``build --watch``: a build, then one per batch of seed changes until ``stop`` is set.

    ``report`` sees every build (on the loop's thread). The first build's failure is raised
    (nothing to watch for yet: the command fails as a build does); a later one is reported and
    the watch goes on, the output left as it was. After each build that wrote a feed, ``ping``
    tells the WebSub hub, in the background (a slow hub holds up no rebuild; the pings still
    under way are awaited before returning). Returns how many rebuilds followed the first.
    """
    first = asyncio.Event()  # batches wait for the first build (they arrive while it runs)
    seeds = SeedChanges(config.seeds_dir)
    pings: set[asyncio.Task[Any]] = set()
    rebuilds = 0
    templates = Templates(config)  # one build at a time uses them

    def announce_later(result: BuildResult) -> None:
        task = asyncio.create_task(asyncio.to_thread(ping, config, result.written))
        pings.add(task)
        task.add_done_callback(pings.discard)

    async def on_change(batch: set[FileChange]) -> None:
        nonlocal rebuilds
        seeds.add(batch)
        await first.wait()
        if stop.is_set():
            return
        checked, started = seeds.to_check(), time.monotonic()
        try:
            result = await asyncio.to_thread(build_once, config, clock(), output, prune=prune,
                                             changed=checked, templates=templates)
        except SyndicatorError as exc:
            report(Rebuild(frozenset(batch), None, exc))
        else:
            seeds.built(checked, started)
            report(Rebuild(frozenset(batch), result))
            announce_later(result)
        rebuilds += 1

    watcher = await start_watching(config.seeds_dir, on_change, stop, debounce=debounce, step=step)
    try:
        if watcher.done():
            watcher.result()  # it could not start: raise why
            return 0
        started = time.monotonic()
        result = await asyncio.to_thread(build_once, config, clock(), output, prune=prune,
                                         templates=templates)
        seeds.built(None, started)
        report(Rebuild(frozenset(), result))
        announce_later(result)
        first.set()
        await watcher
    finally:
        stop.set()
        first.set()  # a batch waiting on a first build that failed: it ends, unbuilt
        if not watcher.done():
            await asyncio.gather(watcher, return_exceptions=True)
        if pings:
            await asyncio.gather(*pings, return_exceptions=True)
    return rebuilds
