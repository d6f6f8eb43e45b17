"""Work shared with forked children, one process per core: seeds parsed, pages rendered.

A child gets a share of the items at the fork (nothing is sent to it), does it while this
process does its own, and sends back what it found through a pipe, as ``marshal`` bytes.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TypeVar

R = TypeVar("R")


def workers() -> int:
    """Processes to share work: one per usable core (four at most), one in a threaded process.

    A process with other threads is never forked: a lock another thread holds (Jinja's caches,
    logging) would stay locked forever in the child. `run` builds on worker threads, so there
    everything is done in one process.
    """
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 4))


def fork_map(items: Sequence[str], work: Callable[[Sequence[str]], list[R]],
             encode: Callable[[R], Any], decode: Callable[[str, Any], R], *,
             least: int, processes: int | None = None) -> list[R]:
    """``work(items)``, its results in the items' order, with every n-th item done by a forked
    child when there are ``least`` items or more. A child's results travel as
    ``encode(result)`` (marshal-able) and come back as ``decode(item, that)``.

    A child that fails (killed, out of memory) has its share done here instead: the work is
    only shared, never lost. ``work`` must not write anything a second run would double.
    """
    n = processes if processes is not None else workers()
    if n <= 1 or len(items) < least:
        return work(items)
    children: list[tuple[int, int]] = []
    gc.freeze()  # a child then copies no memory page just because the collector touched it
    try:
        for k in range(1, n):
            children.append(_start(items[k::n], work, encode))
    except OSError:
        pass  # fewer children: their shares are done here
    finally:
        gc.unfreeze()
    out: list[Any] = [None] * len(items)
    try:
        out[0::n] = work(items[0::n])
    finally:
        reports = [_finish(pid, fd) for pid, fd in children]
    for k in range(1, n):
        share = items[k::n]
        report = reports[k - 1] if k - 1 < len(reports) else None
        if report is not None and len(report) == len(share):
            out[k::n] = [decode(item, value) for item, value in zip(share, report, strict=True)]
        else:
            out[k::n] = work(share)
    return out


def spawn(child: Callable[[BinaryIO], object]) -> tuple[int, int]:
    """Fork a child that runs ``child(pipe)`` and exits, 0 if it returned and 1 if it raised;
    return its pid and the reading end of that pipe (for ``collect``)."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                child(pipe)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return pid, read_end


def collect(pid: int, fd: int) -> tuple[bytes, int]:
    """Everything a ``spawn``ed child wrote, and its exit status; it is waited for either way
    (a read that fails gives what came before)."""
    blob = b""
    try:
        with os.fdopen(fd, "rb") as pipe:
            blob = pipe.read()
    except OSError:
        pass
    finally:
        _, status = os.waitpid(pid, 0)
    return blob, status


def _start(share: Sequence[str], work: Callable[[Sequence[str]], list[R]],
           encode: Callable[[R], Any]) -> tuple[int, int]:
    return spawn(lambda pipe: pipe.write(marshal.dumps([encode(result) for result in work(share)])))


def _finish(pid: int, fd: int) -> list[Any] | None:
    """The child's results, or None if it failed."""
    blob, status = collect(pid, fd)
    if status != 0:
        return None
    with contextlib.suppress(ValueError, EOFError, TypeError):
        report = marshal.loads(blob)
        if isinstance(report, list):
            return report
    return None
