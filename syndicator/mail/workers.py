"""The whole send: open the next edition, then deliver every open one, in one or more processes.

Big editions on several cores get more processes, each running a ``Delivery`` with its share
of the connections and of ``smtp.rate``: this one and spawned workers; the parent forwards a
stop request and collects their tallies. Small ones run in this process alone.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syndicator.config import Config
from syndicator.errors import DeliveryError, EditionTooLarge, SmtpSetupError
from syndicator.mail.delivery import Delivery, Stop, Tally
from syndicator.mail.edition import factory_for, open_edition
from syndicator.state import ledger, runs
from syndicator.state.ledger import Edition
from syndicator.state.store import Store
from syndicator.text import plural

log = logging.getLogger("syndicator.send")


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


def run_job(job: Job, stop: Stop, write_lock: Any = None) -> Tally:
    store = Store.open(job.config.store_url)
    if store.is_sqlite:
        store.write_lock = write_lock
    try:
        edition = next(e for e in ledger.open_editions(store) if e.id == job.edition_id)
        smtp = job.config.smtp.model_copy(update={"concurrency": job.concurrency})
        config = job.config.model_copy(update={"smtp": smtp})
        delivery = Delivery(config, store, edition, factory_for(config, edition, job.secret, store),
                            job.password, job.deadline, job.rate, stop)
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
                    secret: bytes | None, deadline: float, stop: Stop) -> Tally:
    """Deliver one edition with one or more worker processes; return what they did."""
    counts = ledger.counts(store, edition.id)
    workers = processes_for(config, counts[ledger.PENDING] + counts[ledger.DEFERRED])
    share = max(1, config.smtp.concurrency // workers)
    jobs = [Job(config, edition.id, password, secret, deadline, config.smtp.rate / workers, share)
            for _ in range(workers)]
    tally = Tally()
    if workers == 1:
        tally.add(run_job(jobs[0], stop))
    else:
        for part in _run_processes(jobs, stop):
            tally.add(part)
    tally.editions.append(edition.id)
    return tally


def _process_main(job: Job, stop: Any, write_lock: Any, results: Any) -> None:
    # Only the parent reacts to signals, and tells its workers through ``stop``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        results.put(("ok", run_job(job, Stop(stop), write_lock)))
    except BaseException as exc:  # the parent re-raises it
        results.put(("error", exc))


def _run_processes(jobs: list[Job], parent_stop: Stop) -> list[Tally]:
    """Run the first job here and each other one in a spawned process; the parent forwards a
    stop request and collects their tallies.

    This process has its share too: it has nothing else to do meanwhile, and a process fewer
    is its memory (about 70 MB) and start-up fewer. Plain processes rather than a Pool: workers
    ignore SIGTERM (the parent tells them to stop), which a Pool's terminate() would wait on
    forever.
    """
    context = multiprocessing.get_context("spawn")
    stop, write_lock, results = context.Event(), context.Lock(), context.SimpleQueue()
    if parent_stop.requested():
        stop.set()
    procs = [context.Process(target=_process_main, args=(job, stop, write_lock, results), daemon=True)
             for job in jobs[1:]]
    for proc in procs:
        proc.start()
    done = threading.Event()
    watcher = threading.Thread(target=_forward_stop, args=(parent_stop, stop, done), daemon=True)
    watcher.start()
    tallies: list[Tally] = []
    errors: list[BaseException] = []
    try:
        try:
            tallies.append(run_job(jobs[0], parent_stop, write_lock))
        except Exception as exc:  # the others finish what they have in flight, then it is raised
            stop.set()
            errors.append(exc)
        collected = 0
        while collected < len(procs):
            if not results.empty():
                kind, value = results.get()
                (tallies if kind == "ok" else errors).append(value)
                collected += 1
                continue
            if all(not p.is_alive() for p in procs) and results.empty():
                errors.append(DeliveryError("a sender worker process died; run `syndicator send` again"))
                break
            time.sleep(0.05)
    finally:
        stop.set()  # they have all reported, or this process is on its way out: no more claims
        done.set()
        for proc in procs:
            proc.join(timeout=30)
    for error in errors:
        raise error
    return tallies


def _forward_stop(parent_stop: Stop, stop: Any, done: threading.Event) -> None:
    while not done.is_set():
        if parent_stop.wait(0.2):
            stop.set()
            return


def send(config: Config, store: Store, now: datetime, *, slot: str | None = None,
         password: str | None, secret: bytes | None, stop: Stop | None = None,
         open_new: bool = True) -> Tally:
    """Open the next edition if there is news, then finish every open edition.

    ``now`` is the edition's moment (its slot, lookback and date); leases, backoff and the
    retry deadline run on the wall clock, which every sender process shares.
    """
    stop = stop or Stop()
    start = time.monotonic()
    deadline = time.time() + config.smtp.retry_for
    if open_new:  # run's due-delivery job only finishes editions (readers' local times)
        open_edition(config, store, now, slot)
    tally = Tally()
    too_large: list[str] = []
    for edition in ledger.open_editions(store):
        try:
            part = deliver_edition(config, store, edition, password=password, secret=secret,
                                   deadline=deadline, stop=stop)
        except SmtpSetupError as exc:
            ledger.set_error(store, edition.id, str(exc))
            raise
        except EditionTooLarge as exc:
            too_large.append(_rejected(store, edition, str(exc)))
            continue
        if part.errors:
            ledger.set_error(store, edition.id, part.errors[-1])
        if ledger.finish(store, edition.id, int(time.time())) and config.digest.report_to:
            from syndicator.mail.report import mail_report  # only for a finished edition

            mail_report(config, store, edition.id, password, int(time.time()))
        counts = ledger.counts(store, edition.id)
        part.deferred = counts[ledger.DEFERRED] + counts[ledger.PENDING] + counts[ledger.SENDING]
        part.suppressed = counts[ledger.SUPPRESSED]
        tally.add(part)
    tally.seconds = time.monotonic() - start
    runs.record(store, runs.SEND, time.time() - tally.seconds, tally.seconds, f"{tally.sent} sent")
    if too_large:
        raise EditionTooLarge("; ".join(too_large))
    return tally


def _rejected(store: Store, edition: Edition, reply: str) -> str:
    message = (f"the relay refused edition {edition.id} as too large ({reply}); its "
               f"{plural(len(edition.story_ids), 'story')} go into the next edition: lower "
               "digest.max_bytes or digest.max_stories to fit the relay's limit")
    ledger.reject(store, edition.id, message, int(time.time()))
    log.error("%s", message)
    return message
