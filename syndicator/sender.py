"""The send stage: open an edition of new stories, then deliver it through the ledger.

Delivery runs ``smtp.concurrency`` kept-open connections per process, claims rows in
small leased batches, and records each outcome right after the server answers
(group-committed across connections), so a crash can duplicate at most the one
message each connection had in flight.
"""

from __future__ import annotations

import asyncio
import html
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from syndicator import ledger
from syndicator.audience import audience
from syndicator.build import load_stories
from syndicator.config import Config
from syndicator.digest import UNSUBSCRIBE_PLACEHOLDER, Digest, render_digest
from syndicator.errors import DeliveryError, StoreError
from syndicator.ledger import Claim, Edition, Result
from syndicator.mailer import Connection, Kind, Outcome, SmtpSetupError
from syndicator.message import MessageFactory, list_id, message_id
from syndicator.model import Story
from syndicator.store import Store
from syndicator.tokens import unsubscribe_token

log = logging.getLogger("syndicator.sender")
PREVIEW_TOKEN = "preview-token-not-valid"
# Set by SIGINT/SIGTERM handling: stop claiming, finish what is in flight, release the rest.
_STOP: threading.Event | Any = threading.Event()


def request_stop() -> None:
    _STOP.set()


def clear_stop() -> None:
    """A new run starts with no stop pending (a long-lived process may run several)."""
    _STOP.clear()


def stop_requested() -> bool:
    return bool(_STOP.is_set())


_WRITE_LOCK: Any = None


def _init_worker(stop: Any, write_lock: Any = None) -> None:
    """In a worker process: only the parent reacts to signals, and tells us through ``stop``."""
    global _STOP, _WRITE_LOCK
    _STOP = stop
    _WRITE_LOCK = write_lock
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@dataclass(frozen=True)
class Plan:
    """What the next edition would hold."""

    stories: tuple[Story, ...]
    max_seq: int
    slot: str


@dataclass
class Tally:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    seconds: float = 0.0
    editions: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        """Fold in a worker's or an edition's counts (deferred and suppressed are read from the
        ledger once an edition's run ends, so they come from there, not from workers)."""
        self.sent += other.sent
        self.failed += other.failed
        self.deferred += other.deferred
        self.suppressed += other.suppressed
        self.errors.extend(other.errors)
        self.editions.extend(e for e in other.editions if e not in self.editions)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


# -- planning an edition ------------------------------------------------------------


def plan(config: Config, store: Store, clock: datetime, *, persist: bool = True) -> Plan | None:
    """The stories first seen since the last edition (the first: within ``digest.lookback``)."""
    stories = load_stories(config, store, clock, persist=persist)
    top = max((s.seq for s in stories), default=0)
    mark = ledger.watermark(store)
    if mark is None:
        window = config.digest.lookback_delta
        new = [s for s in stories if window is None or s.first_seen >= clock - window]
    else:
        new = [s for s in stories if s.seq > mark]
    if new:
        return Plan(tuple(new), top, f"stories:{top}")
    if config.digest.send_when_empty:
        return Plan((), top, f"empty:{clock:%Y-%m-%d}")
    return None


def unsubscribe_url(config: Config, secret: bytes | None) -> Callable[[str], str]:
    lid = list_id(config)
    base = urljoin(config.site.url, "u/")
    if secret is None:
        return lambda _address: base + PREVIEW_TOKEN
    return lambda address: base + unsubscribe_token(secret, lid, address)


def open_edition(config: Config, store: Store, clock: datetime, slot: str | None = None) -> Edition | None:
    """Create the next edition (idempotent per slot), or None when there is nothing new."""
    if slot is not None and (existing := ledger.edition_for_slot(store, slot)) is not None:
        return existing  # another process (or machine) fired this slot first
    planned = plan(config, store, clock)
    if planned is None:
        # Nothing new can also mean the slot's edition was committed while we planned.
        return ledger.edition_for_slot(store, slot) if slot is not None else None
    digest = render_digest(config, planned.stories, clock)
    edition, created = ledger.create_edition(
        store, slot=slot or planned.slot, now=int(clock.timestamp()), max_seq=planned.max_seq,
        story_ids=digest.story_ids, subject=digest.subject, html=digest.html, text=digest.text,
        recipients=audience(config, store),
        message_id=lambda eid, address: message_id(eid, address, config),
    )
    if created:
        log.info("edition %d opened: %d stories, %r", edition.id, len(planned.stories), digest.subject)
    return edition


def factory_for(config: Config, edition: Edition, secret: bytes | None) -> MessageFactory:
    digest = Digest(edition.subject, edition.html, edition.text, edition.story_ids)
    return MessageFactory(config, digest, unsubscribe_url=unsubscribe_url(config, secret),
                          date=datetime.fromtimestamp(edition.created_at, UTC))


# -- delivering ------------------------------------------------------------------------


RELAY_BUSY = (None, 421, 451, 452, 454)  # None: disconnected or timed out


class Throttle:
    """``smtp.rate`` as evenly spaced send slots, plus a shared pause after 421/451/454."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0
        self.paused_until = 0.0
        self.strikes = 0

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if now < self.paused_until:
                await asyncio.sleep(self.paused_until - now)
                continue
            if self.interval:
                slot = max(now, self.next_slot)
                self.next_slot = slot + self.interval
                if slot > now:
                    await asyncio.sleep(slot - now)
            return

    def feedback(self, outcome: Outcome) -> None:
        # A greylisting 450 concerns one recipient; these say the relay itself is overloaded.
        if outcome.kind is Kind.TRANSIENT and outcome.code in RELAY_BUSY:
            # Slow everyone down, more with each consecutive refusal, instead of hammering.
            self.strikes += 1
            pause = min(10.0, 0.1 * 2 ** min(self.strikes - 1, 7))
            self.paused_until = max(self.paused_until, asyncio.get_running_loop().time() + pause)
        elif outcome.kind is Kind.SENT:
            self.strikes = 0


async def _call(store: Store, fn: Callable[..., Any], *args: Any) -> Any:
    """A ledger call: inline on SQLite (a local file, sub-millisecond; a thread hop and the GIL
    hand-over would cost more than the call), in a thread on a networked database."""
    if store.is_sqlite:
        return fn(store, *args)
    return await asyncio.to_thread(fn, store, *args)


class Recorder:
    """Group commit: outcomes that arrive while one commit runs (or in the same turn of the
    event loop) go into the next one. Each worker waits for its own outcome to be committed
    before it sends again, so at most its one in-flight message is ever unrecorded."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.queue: list[tuple[Result, tuple[str, str] | None, asyncio.Future[None]]] = []
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def submit(self, result: Result, suppress: tuple[str, str] | None = None) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.append((result, suppress, future))
        self.wakeup.set()
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        await future

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            batch, self.queue = self.queue, []
            if not batch:
                continue
            try:
                await _call(self.store, ledger.record, [r for r, _, _ in batch], int(time.time()),
                            [s for _, s, _ in batch if s is not None])
            except Exception as exc:  # the waiting workers must learn of it, not hang
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Feeder:
    """Hands out leased rows of one edition, claiming batches as workers need them.

    A claimed row whose lease is about to run out is not sent: another sender may reclaim
    it at any moment. It is dropped from the buffer and comes back through a later claim.
    """

    def __init__(self, store: Store, edition_id: int, batch: int, deadline: float, lease: int,
                 margin: float = 5.0) -> None:
        self.store = store
        self.lease = lease
        self.edition_id = edition_id
        self.batch = batch
        self.deadline = deadline
        self.margin = min(margin, lease / 2)
        self.buffer: deque[Claim] = deque()
        self.held: dict[str, int] = {}  # address -> lease end, for rows buffered or in flight
        self.leased_until = 0.0
        self.lock = asyncio.Lock()
        self.stopped = False

    async def next(self) -> Claim | None:
        if self.buffer and not self.lock.locked() and not _STOP.is_set() \
                and time.time() < self.leased_until - self.margin:
            return self.buffer.popleft()  # the common case, without the lock
        async with self.lock:
            if stop_requested():
                self.stopped = True
            if self.buffer and time.time() >= self.leased_until - self.margin:
                for dropped in self.buffer:
                    self.held.pop(dropped.address, None)
                self.buffer.clear()  # leases about to lapse: leave those rows to a later claim
            while not self.buffer and not self.stopped:
                now = time.time()
                claimed = await _call(self.store, ledger.claim, self.edition_id, int(now), self.batch,
                                      self.lease)
                if claimed:
                    self.buffer.extend(claimed)
                    self.held.update((c.address, c.lease_until) for c in claimed)
                    self.leased_until = int(now) + self.lease
                    break
                due = await _call(self.store, ledger.next_due, self.edition_id)
                if due is None or due > self.deadline:
                    return None
                await asyncio.sleep(min(max(due - time.time(), 0.05), 0.2))  # short: ends a run promptly
            return self.buffer.popleft() if self.buffer and not self.stopped else None

    def lease_left(self, item: Claim) -> float:
        return self.held.get(item.address, item.lease_until) - time.time()

    def done(self, item: Claim) -> None:
        self.held.pop(item.address, None)

    async def renew(self) -> None:
        """Keep the leases of held rows alive while this sender works through them."""
        now = int(time.time())
        addresses = list(self.held)
        await _call(self.store, ledger.renew, self.edition_id, addresses, now, self.lease)
        for address in addresses:
            if address in self.held:
                self.held[address] = now + self.lease

    def drain(self) -> list[Claim]:
        self.stopped = True
        left = list(self.buffer)
        self.buffer.clear()
        return left


def claim_batch(concurrency: int, rate: float, lease: int) -> int:
    """Rows per claim: enough that claiming is rare, few enough to send well within the lease."""
    batch = min(512, max(8, concurrency * 32))
    if rate > 0:
        batch = min(batch, max(1, int(rate * lease / 4)))
    return batch


@dataclass
class Delivery:
    """One process's share of the work on one edition."""

    config: Config
    store: Store
    edition: Edition
    factory: MessageFactory
    password: str | None
    deadline: float
    rate: float
    tally: Tally = field(default_factory=Tally)
    connections: int = 0  # workers whose connection has worked and is still in use

    async def run(self) -> Tally:
        smtp = self.config.smtp
        batch = claim_batch(smtp.concurrency, self.rate, smtp.lease)
        feeder = Feeder(self.store, self.edition.id, batch, self.deadline, smtp.lease,
                        margin=2 * smtp.timeout + 1)
        recorder = Recorder(self.store)
        throttle = Throttle(self.rate)
        workers = [self._worker(feeder, recorder, throttle) for _ in range(smtp.concurrency)]
        heartbeat = asyncio.create_task(self._heartbeat(feeder, max(1.0, smtp.lease / 3)))
        try:
            results = await asyncio.gather(*workers, return_exceptions=True)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        await recorder.close()
        ledger.release(self.store, feeder.drain(), int(time.time()))
        for outcome in results:
            if isinstance(outcome, SmtpSetupError):
                raise outcome
            if isinstance(outcome, BaseException):
                raise outcome
        return self.tally

    async def _heartbeat(self, feeder: Feeder, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await feeder.renew()
            except StoreError as exc:  # the pre-send lease check still guards every message
                log.warning("could not renew leases: %s", exc)

    async def _worker(self, feeder: Feeder, recorder: Recorder, throttle: Throttle) -> None:
        connection = Connection(self.config, self.password)
        mail_from = self.config.digest.from_address
        counted = False  # this worker's connection counts among the working ones
        try:
            while (item := await feeder.next()) is not None:
                await throttle.wait()
                if feeder.lease_left(item) < feeder.margin:
                    feeder.done(item)
                    continue  # the lease is about to lapse: the row may become another sender's
                try:
                    data = self.factory.build(item.address, item.message_id)
                except ValueError as exc:  # an address or URL unsafe to put in a header
                    await self._settle(recorder, feeder, item, Outcome(Kind.PERMANENT, None, str(exc)))
                    continue
                try:
                    outcome = await connection.send(mail_from, item.address, data, canonical=True)
                except SmtpSetupError as exc:
                    if not exc.transient:
                        ledger.release(self.store, [item, *feeder.drain()], int(time.time()))
                        raise
                    if counted:  # this worker's own connection is gone now
                        counted = False
                        self.connections -= 1
                    if self.connections > 0:
                        # The relay limits connections (a 421 greeting): carry on with fewer.
                        ledger.release(self.store, [item], int(time.time()))
                        feeder.done(item)
                        log.info("the relay refused another connection (%s); continuing with %d",
                                 exc, self.connections)
                        return
                    outcome = Outcome(Kind.TRANSIENT, None, str(exc))  # busy: wait and retry
                else:
                    if not counted:
                        counted = True
                        self.connections += 1
                throttle.feedback(outcome)
                await self._settle(recorder, feeder, item, outcome)
        finally:
            if counted:
                self.connections -= 1
            await connection.close()

    async def _settle(self, recorder: Recorder, feeder: Feeder, item: Claim, outcome: Outcome) -> None:
        result, suppress = settle(item, outcome, self.config.smtp.max_attempts)
        await recorder.submit(result, suppress)
        feeder.done(item)
        if result.state == ledger.SENT:
            self.tally.sent += 1
        elif result.state == ledger.FAILED:
            self.tally.failed += 1
            self.tally.errors.append(f"{item.address}: {outcome.reply}")


def settle(item: Claim, outcome: Outcome, max_attempts: int) -> tuple[Result, tuple[str, str] | None]:
    """The ledger row an SMTP outcome leads to, and a suppression for a dead mailbox."""
    if outcome.kind is Kind.SENT:
        return Result(item, ledger.SENT, outcome.code, outcome.reply), None
    if outcome.kind is Kind.TRANSIENT and item.attempts + 1 < max_attempts:
        retry_at = int(time.time() + ledger.backoff(item.attempts + 1))
        return Result(item, ledger.DEFERRED, outcome.code, outcome.reply, retry_at), None
    result = Result(item, ledger.FAILED, outcome.code, outcome.reply)
    if outcome.kind is Kind.MAILBOX:
        return result, (item.address, f"bounced: {outcome.reply}")
    return result, None


# -- the whole run ------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Everything a worker process needs (picklable)."""

    config: Config
    edition_id: int
    password: str | None
    secret: bytes | None
    deadline: float
    rate: float
    concurrency: int


def run_job(job: Job) -> Tally:
    store = Store.open(job.config.store_url)
    if store.is_sqlite:
        store.write_lock = _WRITE_LOCK
    try:
        edition = next(e for e in ledger.open_editions(store) if e.id == job.edition_id)
        smtp = job.config.smtp.model_copy(update={"concurrency": job.concurrency})
        config = job.config.model_copy(update={"smtp": smtp})
        delivery = Delivery(config, store, edition, factory_for(config, edition, job.secret),
                            job.password, job.deadline, job.rate)
        return asyncio.run(delivery.run())
    except StopIteration:
        return Tally()
    finally:
        store.close()


def processes_for(config: Config, pending: int) -> int:
    """Worker processes: ``smtp.processes`` if set, else one unless the edition is big enough
    for more cores to pay."""
    if config.smtp.processes:
        return max(1, min(config.smtp.processes, config.smtp.concurrency))
    if pending < 2000:
        return 1
    # Measured (benchmarks/bench_send.py, 2 cores): a process needs about 16 connections before a
    # second one pays; with fewer, one process's event loop keeps up and its commits group better.
    return max(1, min(os.cpu_count() or 1, config.smtp.concurrency // 16, 4))


def deliver_edition(config: Config, store: Store, edition: Edition, *, password: str | None,
                    secret: bytes | None, deadline: float) -> Tally:
    """Deliver one edition with one or more worker processes; return what they did."""
    counts = ledger.counts(store, edition.id)
    workers = processes_for(config, counts[ledger.PENDING] + counts[ledger.DEFERRED])
    share = max(1, config.smtp.concurrency // workers)
    jobs = [Job(config, edition.id, password, secret, deadline, config.smtp.rate / workers, share)
            for _ in range(workers)]
    tally = Tally()
    if workers == 1:
        tally.add(run_job(jobs[0]))
    else:
        for part in _run_processes(jobs):
            tally.add(part)
    tally.editions.append(edition.id)
    return tally


def _process_main(job: Job, stop: Any, write_lock: Any, results: Any) -> None:
    _init_worker(stop, write_lock)
    try:
        results.put(("ok", run_job(job)))
    except BaseException as exc:  # the parent re-raises it
        results.put(("error", exc))


def _run_processes(jobs: list[Job]) -> list[Tally]:
    """Run each job in a spawned process; the parent forwards a stop request and collects tallies.

    Plain processes rather than a Pool: workers ignore SIGTERM (the parent tells them to stop),
    which a Pool's terminate() would wait on forever.
    """
    context = multiprocessing.get_context("spawn")
    stop, write_lock, results = context.Event(), context.Lock(), context.SimpleQueue()
    if stop_requested():
        stop.set()
    procs = [context.Process(target=_process_main, args=(job, stop, write_lock, results), daemon=True)
             for job in jobs]
    for proc in procs:
        proc.start()
    done = threading.Event()
    watcher = threading.Thread(target=_forward_stop, args=(stop, done), daemon=True)
    watcher.start()
    tallies: list[Tally] = []
    errors: list[BaseException] = []
    try:
        while len(tallies) + len(errors) < len(procs):
            if not results.empty():
                kind, value = results.get()
                (tallies if kind == "ok" else errors).append(value)
                continue
            if all(not p.is_alive() for p in procs) and results.empty():
                errors.append(DeliveryError("a sender worker process died; run `syndicator send` again"))
                break
            time.sleep(0.05)
    finally:
        done.set()
        for proc in procs:
            proc.join(timeout=30)
    for error in errors:
        raise error
    return tallies


def _forward_stop(stop: Any, done: threading.Event) -> None:
    while not done.is_set():
        if _STOP.wait(0.2):
            stop.set()
            return


def send(config: Config, store: Store, clock: datetime, *, slot: str | None = None,
         password: str | None, secret: bytes | None) -> Tally:
    """Open the next edition if there is news, then finish every open edition."""
    start = time.monotonic()
    deadline = time.time() + config.smtp.retry_for
    open_edition(config, store, clock, slot)
    tally = Tally()
    for edition in ledger.open_editions(store):
        try:
            part = deliver_edition(config, store, edition, password=password, secret=secret,
                                   deadline=deadline)
        except SmtpSetupError as exc:
            ledger.set_error(store, edition.id, str(exc))
            raise
        if part.errors:
            ledger.set_error(store, edition.id, part.errors[-1])
        ledger.finish(store, edition.id, int(time.time()))
        counts = ledger.counts(store, edition.id)
        part.deferred = counts[ledger.DEFERRED] + counts[ledger.PENDING] + counts[ledger.SENDING]
        part.suppressed = counts[ledger.SUPPRESSED]
        tally.add(part)
    tally.seconds = time.monotonic() - start
    return tally


# -- previews and test copies -------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    subject: str
    stories: int
    recipients: int
    files: tuple[Path, ...]


def preview(config: Config, store: Store, clock: datetime, folder: Path) -> Preview | None:
    """Render exactly what ``send`` would mail, to files; no network, no state change."""
    from syndicator.writer import write_atomic

    planned = plan(config, store, clock, persist=False)
    if planned is None:
        return None
    digest = render_digest(config, planned.stories, clock)
    addresses = list(audience(config, store))
    secret = _optional_secret(config)
    factory = MessageFactory(config, digest, unsubscribe_url=unsubscribe_url(config, secret), date=clock)
    first = addresses[0] if addresses else "recipient@example.invalid"
    link = unsubscribe_url(config, secret)(first)
    files = {
        "digest.html": digest.html.replace(UNSUBSCRIBE_PLACEHOLDER, html.escape(link)).encode("utf-8"),
        "digest.txt": digest.text.replace(UNSUBSCRIBE_PLACEHOLDER, link).encode("utf-8"),
        "digest.eml": factory.build(first, message_id(0, first, config)),
    }
    for name, data in files.items():
        write_atomic(folder / name, data)
    return Preview(digest.subject, len(planned.stories), len(addresses),
                   tuple(folder / n for n in files))


def _optional_secret(config: Config) -> bytes | None:
    value = os.environ.get(config.digest.secret_env)
    return value.encode() if value else None


async def send_test_copy(config: Config, store: Store, clock: datetime, address: str, *,
                         password: str | None, secret: bytes | None) -> Outcome:
    """One copy of the next (or latest) edition to ``address``; nothing is marked sent."""
    planned = plan(config, store, clock, persist=False)
    if planned is not None and planned.stories:
        stories = planned.stories
    else:
        stories = tuple(load_stories(config, store, clock, persist=False)[: config.feeds.limit])
    digest = render_digest(config, stories, clock)
    factory = MessageFactory(config, digest, unsubscribe_url=unsubscribe_url(config, secret), date=clock)
    data = factory.build(address, message_id(-int(clock.timestamp()), address, config))
    connection = Connection(config, password)
    try:
        outcome = await connection.send(config.digest.from_address, address, data)
    finally:
        await connection.close()
    if outcome.kind is not Kind.SENT:
        raise DeliveryError(f"test copy to {address} not accepted: {outcome.reply}")
    return outcome
