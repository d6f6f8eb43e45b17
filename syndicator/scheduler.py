"""``syndicator run``: APScheduler 3 fires build + send on ``digest.schedule`` until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syndicator.config import Config
from syndicator.errors import SyndicatorError
from syndicator.mail import workers
from syndicator.mail.delivery import Stop
from syndicator.site.build import Templates, build
from syndicator.site.watch import FileChange, SeedChanges, build_once, start_watching
from syndicator.state import ledger
from syndicator.state.store import Store
from syndicator.websub import announce

if TYPE_CHECKING:
    from syndicator.inbound.run import Report

log = logging.getLogger("syndicator.run")
MISFIRE_GRACE = 15 * 60  # a send up to 15 min late (restart, sleep) still goes out, once


def trigger(config: Config) -> CronTrigger:
    return CronTrigger.from_crontab(config.digest.schedule, timezone=ZoneInfo(config.digest.timezone))


def slot_for(trig: CronTrigger, now: datetime) -> datetime:
    """The newest fire time at or before ``now``: the edition's idempotency key."""
    # Look back in growing windows so an every-second and a yearly schedule both stay cheap.
    for window in (timedelta(minutes=1), timedelta(hours=1), timedelta(days=1), timedelta(days=32),
                   timedelta(days=367)):
        fire = trig.get_next_fire_time(None, now - window)
        latest = None
        while fire is not None and fire <= now:
            latest = fire
            fire = trig.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        if isinstance(latest, datetime):
            return latest
    return now


def cycle(config: Config, clock: Callable[[], datetime], trig: CronTrigger, stop: Stop,
          building: threading.Lock | None = None) -> None:
    """One scheduled run: rebuild the feeds, then send the edition for this slot.

    ``building``: held for the build, so that it never runs beside another build of the runner's.
    """
    now = clock()
    slot = slot_for(trig, now)
    store = Store.open(config.store_url)
    try:
        with building or threading.Lock():
            result = build(config, store, now)
        log.info("built %d stories, %d files written", result.stories, len(result.written))
        announce(config, result.written)
        tally = workers.send(config, store, now, slot="cron:" + slot.isoformat(),
                             password=config.smtp_password(), secret=config.secret(), stop=stop)
        log.info("sent %d, deferred %d, failed %d (slot %s)", tally.sent, tally.deferred, tally.failed,
                 slot.isoformat())
    finally:
        store.close()


class Runner:
    """The long-running process: one AsyncIOScheduler with an in-memory job store."""

    def __init__(self, config: Config, clock: Callable[[], datetime],
                 trig: CronTrigger | None = None, serve_at: tuple[str, int] | None = None) -> None:
        self.config = config
        self.serve_at = serve_at
        self.clock = clock
        self.trigger = trig or trigger(config)
        self.stopping = asyncio.Event()
        self.stop = Stop()  # tells a send in flight to finish its messages and release the rest
        # The tasks running our jobs: APScheduler wraps each coroutine job in its own
        # run_coroutine_job task, so the only reliable handle is the one the job keeps itself.
        self.in_flight: set[asyncio.Task[Any]] = set()
        self.scheduler = AsyncIOScheduler(timezone=ZoneInfo(config.digest.timezone))
        self.runs = 0
        self.ready = asyncio.Event()  # the scheduler is running and the start-up build is done
        self.ran = asyncio.Event()  # a digest run finished (a caller clears it to await the next)
        self.inbound_runs = 0
        self.inbound_ran = asyncio.Event()  # an inbound poll finished
        # Seeds are watched from start to shutdown: a created, changed or removed seed rebuilds.
        self.watch_stop = asyncio.Event()
        self.watcher: asyncio.Task[None] | None = None
        self.seeds = SeedChanges(config.seeds_dir)  # what the watch saw since the last build
        self.builds = 0
        self.built = asyncio.Event()  # a rebuild for changed seeds finished
        self.building = threading.Lock()  # one build at a time: start-up, feeds, digest, watch
        self.templates = Templates(config)  # compiled once for the builds at start and of the watch

    async def job(self) -> None:
        with self._tracked():
            try:
                await asyncio.to_thread(cycle, self.config, self.clock, self.trigger, self.stop,
                                        self.building)
            except SyndicatorError as exc:
                log.error("scheduled run failed: %s", exc)
            self.runs += 1
            self.ran.set()
            self._log_next()

    async def due_job(self) -> None:
        with self._tracked():
            try:
                await asyncio.to_thread(self._deliver_due)
            except SyndicatorError as exc:
                log.error("delivering at readers' local times failed: %s", exc)

    def _deliver_due(self) -> None:
        store = Store.open(self.config.store_url)
        try:
            if ledger.open_editions(store):
                workers.send(self.config, store, self.clock(), password=self.config.smtp_password(),
                             secret=self.config.secret(), stop=self.stop, open_new=False)
        finally:
            store.close()

    async def inbound_job(self) -> None:
        """Read bounces, complaints and mailed unsubscribes every ``inbound.poll``."""
        with self._tracked():
            try:
                report = await asyncio.to_thread(self._read_inbound)
            except SyndicatorError as exc:
                log.error("reading inbound mail failed: %s", exc)
            else:
                if report.summary.new:
                    log.info("%s", report.line())
            self.inbound_runs += 1
            self.inbound_ran.set()

    def _read_inbound(self) -> Report:
        from syndicator.inbound.run import read_inbound

        store = Store.open(self.config.store_url)
        try:
            return read_inbound(self.config, store, self.config.inbound.source, int(self.clock().timestamp()))
        finally:
            store.close()

    async def build_job(self) -> None:
        with self._tracked():
            await asyncio.to_thread(self._build_now)

    @contextmanager
    def _tracked(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is not None:
            self.in_flight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self.in_flight.discard(task)

    def _log_next(self) -> None:
        job = self.scheduler.get_job("digest")
        if job is not None and job.next_run_time is not None:
            log.info("next digest run at %s", job.next_run_time.isoformat())

    def _listen(self, event: JobExecutionEvent) -> None:
        if event.exception is not None:
            log.error("scheduled job crashed: %r", event.exception)

    async def run(self) -> None:
        # Secrets are checked up front: a missing one is an error now, not at 7 a.m.
        self.config.smtp_password()
        self.config.secret()
        self.scheduler.add_job(self.job, self.trigger, id="digest", coalesce=True, max_instances=1,
                               misfire_grace_time=MISFIRE_GRACE, replace_existing=True)
        if self.config.feeds.schedule:
            self.scheduler.add_job(
                self.build_job, CronTrigger.from_crontab(self.config.feeds.schedule,
                                                         timezone=ZoneInfo(self.config.digest.timezone)),
                id="feeds", coalesce=True, max_instances=1, misfire_grace_time=MISFIRE_GRACE)
        # Readers in time zones of their own get an edition when the schedule fires there:
        # their rows wait, deferred, and this job mails whichever have come due.
        self.scheduler.add_job(self.due_job, IntervalTrigger(minutes=10), id="due", coalesce=True,
                               max_instances=1, misfire_grace_time=MISFIRE_GRACE)
        if self.config.inbound.source:
            every = IntervalTrigger(seconds=self.config.inbound.poll_seconds)
            self.scheduler.add_job(self.inbound_job, every, id="inbound", coalesce=True, max_instances=1,
                                   misfire_grace_time=MISFIRE_GRACE, next_run_time=datetime.now(UTC))
        self.scheduler.add_listener(self._listen, EVENT_JOB_ERROR | EVENT_JOB_EXECUTED)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        await self._watch()  # before the start-up build: a seed saved during it is seen
        started = time.monotonic()
        if await asyncio.to_thread(self._build_now):
            self.seeds.built(None, started)
        self.scheduler.start()
        self._log_next()
        server = self._start_server()
        self.ready.set()
        try:
            waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self.stopping.wait())}
            if server is not None:
                waits.add(server)
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if server is not None and server in done and not self.stopping.is_set():
                server.result()  # the web server died (port taken...): so does the run
        finally:
            if server is not None and not server.done():
                server.cancel()
                await asyncio.gather(server, return_exceptions=True)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.shutdown()

    def _build_now(self, when: str = "at start", changed: frozenset[str] | None = None) -> bool:
        """Feeds up to date from the start, not only at the first scheduled send; whether the
        build succeeded. ``changed``: only these seeds changed since the last (``SeedChanges``)."""
        try:
            with self.building:
                result = build_once(self.config, self.clock(), changed=changed, templates=self.templates)
        except SyndicatorError as exc:
            log.error("build %s failed: %s", when, exc)
            return False
        log.info("built %d stories, %d files written", result.stories, len(result.written))
        announce(self.config, result.written)
        return True

    async def _watch(self) -> None:
        """The seeds watcher (``syndicator.site.watch``), as a task until shutdown."""
        self.watcher = await start_watching(self.config.seeds_dir, self._seeds_changed, self.watch_stop)
        self.watcher.add_done_callback(self._watch_ended)

    async def _seeds_changed(self, changes: set[FileChange]) -> None:
        self.seeds.add(changes)
        checked, started = self.seeds.to_check(), time.monotonic()
        try:
            if await asyncio.to_thread(self._build_now, "after a seed change", checked):
                self.seeds.built(checked, started)
        except Exception:  # not the watcher's end: the next change may build fine
            log.exception("the build after a seed change crashed")
        self.builds += 1
        self.built.set()

    @staticmethod
    def _watch_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("not watching the seeds: %s", task.exception())

    def _start_server(self) -> asyncio.Task[None] | None:
        """The web side (feeds, unsubscribe, subscribe) in this process, when asked for."""
        if self.serve_at is None:
            return None
        from syndicator.web import app as web

        host, port = self.serve_at
        sock = web.listen(host, port)
        log.info("serving %s at http://%s:%d/", self.config.output_dir, host, sock.getsockname()[1])
        return asyncio.create_task(web.serve_app(self.config, store=None, sock=sock))

    def request_stop(self) -> None:
        log.info("stopping: finishing the messages in flight")
        self.stop.request()
        self.stopping.set()

    async def shutdown(self) -> None:
        # No new firings, but no shutdown yet: APScheduler's AsyncIOExecutor cancels the tasks
        # of running jobs when it shuts down, which would abandon the send in flight.
        self.scheduler.pause()
        # Let a running job finish its in-flight messages (the sender stops claiming new ones).
        self.watch_stop.set()  # no new rebuilds; one under way finishes (awaited below)
        pending = [t for t in self.in_flight if t is not asyncio.current_task()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self.watcher is not None:
            await asyncio.wait({self.watcher})
        self.scheduler.shutdown(wait=False)
        log.info("stopped")
