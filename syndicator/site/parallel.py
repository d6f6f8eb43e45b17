"""Story pages rendered and staged by one process per core (forked children share the work).

With many pages and two or more cores, forked children render and write pages (they share
the stories and the compiled template) while this process does its own work (``meanwhile``:
the feeds, the catalog, the next batch of seeds) and then joins them. The pages are handed
out in chunks from a queue (a pipe of chunk numbers), so a process busy elsewhere takes
fewer; each child reports what it staged through a pipe of its own. Two processes creating
files in one folder took 0.46 s for 40,000 files where one took 0.77 s. On any error,
Ctrl-C included, every child is waited for and everything staged is removed.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import marshal
import os
import pickle
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

from syndicator.errors import OutputError
from syndicator.forked import collect, spawn, workers
from syndicator.model import Story
from syndicator.site.pages import StoryPages, page_key
from syndicator.site.writer import current_umask, same_content, stage_page

_PARALLEL_FROM = 1000  # pages: below this a second process costs more than it saves
# Per page: its name, the staged temp file (None: the page on disk already holds it), its key,
# and the size and mtime (ns) the page has once committed (a rename keeps both).
Rendered = list[tuple[str, str | None, str, int, int]]
Todo = list[tuple[str, Story, tuple[int, int] | None]]
# A document to write: its name under the folder, what renders it and its key, and the size
# and mtime it has on disk (None: not there).
Job = tuple[str, Callable[[], tuple[bytes, str]], tuple[int, int] | None]
T = TypeVar("T")


def _render_part(pages: Path, jobs: list[Job], direct: bool, token: str) -> Rendered:
    """Render and stage documents; on any error, remove what this call staged."""
    out: Rendered = []
    where = str(pages)
    umask = current_umask()
    try:
        for name, render, stat in jobs:
            data, key = render()
            path = os.path.join(where, name)
            if stat is not None and same_content(Path(path), data, stat[0]):
                out.append((name, None, key, *stat))
            else:
                tmp, size, mtime = stage_page(path, data, umask, direct=direct, token=token)
                out.append((name, tmp, key, size, mtime))
    except BaseException:
        discard(out)
        raise
    return out


def discard(done: Rendered) -> None:
    for _, tmp, *_ in done:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def temp_token() -> str:
    """This build's part of its temp pages' names: no other build, now or later, shares it,
    so the temp pages of a failed process can be found by name (and by nobody else's)."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def _workers() -> int:
    """Processes that render pages (``forked.workers``: one per core, one in a threaded process)."""
    return workers()


def render_all(pages: Path, renderer: StoryPages, todo: Todo, direct: bool, token: str) -> Rendered:
    """Every page of ``todo`` rendered and staged; on any error (Ctrl-C included), none is."""
    return render_jobs(pages, _page_jobs(renderer, todo), direct, token)


def render_all_while(pages: Path, renderer: StoryPages, todo: Todo, direct: bool, token: str,
                     meanwhile: Callable[[], T]) -> tuple[Rendered, T]:
    """``render_all``, and ``meanwhile()`` run here while the children start on the pages."""
    return render_jobs_while(pages, _page_jobs(renderer, todo), direct, token, meanwhile)


def _page_jobs(renderer: StoryPages, todo: Todo) -> list[Job]:
    return [(name, functools.partial(_page, renderer, story), stat) for name, story, stat in todo]


def _page(renderer: StoryPages, story: Story) -> tuple[bytes, str]:
    # The key is computed here, in the process that renders the page (a child, when there is one).
    return renderer.render(story), page_key(story)


def _nothing() -> None:
    return None


def render_jobs(pages: Path, jobs: list[Job], direct: bool, token: str, *,
                parallel_from: int | None = None) -> Rendered:
    """``render_all`` for any documents (archive pages too): each rendered by its job; in
    parallel from ``parallel_from`` of them (story pages': ``_PARALLEL_FROM``)."""
    return render_jobs_while(pages, jobs, direct, token, _nothing, parallel_from=parallel_from)[0]


def render_jobs_while(pages: Path, jobs: list[Job], direct: bool, token: str, meanwhile: Callable[[], T],
                      *, parallel_from: int | None = None) -> tuple[Rendered, T]:
    """``render_jobs``, and ``meanwhile()``'s result: it runs in this process while forked
    children render, then this process renders whatever chunks they have not taken yet.
    Without children (few jobs, one core, a threaded process) it runs first. If it raises,
    nothing rendered is kept."""
    least = _PARALLEL_FROM if parallel_from is None else parallel_from
    workers = _workers() if len(jobs) >= least else 1
    if workers == 1:
        result = meanwhile()
        return _render_part(pages, jobs, direct, token), result
    queue = _Queue(len(jobs))
    gc.freeze()  # a child then copies no memory page just because the collector touched it
    children: list[_Child] = []
    try:
        for _ in range(1, workers):
            children.append(_Child.start(pages, jobs, queue, direct, token))
    except OSError:  # no process to be had: those started are undone, and this one renders all
        queue.drain()
        _undo(children, [])
        queue.close()
        result = meanwhile()
        return _render_part(pages, jobs, direct, token), result
    finally:
        gc.unfreeze()
    out: Rendered = []
    results: list[Rendered] = []
    try:
        result = meanwhile()
        out = _render_queue(pages, jobs, queue, direct, token)
        for child in children:
            results.append(child.finish())
    except BaseException:
        # Our own error, a child's, or Ctrl-C (which the children get too): the chunks not
        # taken yet are dropped, every child is still waited for, then everything staged is
        # removed, the children's by name too.
        queue.drain()
        discard(out)
        _undo(children[len(results):], results)
        raise
    finally:
        queue.close()
    for part in results:
        out += part
    return out, result


class _Queue:
    """The jobs in chunks, as chunk numbers in a pipe: a process takes the next chunk with one
    read of 4 bytes, which a pipe hands to one reader whole. Every number is written (and the
    writing end closed) before any child starts, so a read that finds nothing means done."""

    MAX_CHUNKS = 1024  # 4 KB of numbers: never more than a pipe holds (PIPE_BUF on Linux)
    MIN_CHUNK = 16

    def __init__(self, count: int) -> None:
        self.size = max(self.MIN_CHUNK, -(-count // self.MAX_CHUNKS))
        chunks = -(-count // self.size)
        self.fd, write_end = os.pipe()
        try:
            os.write(write_end, b"".join(n.to_bytes(4, "little") for n in range(chunks)))
        finally:
            os.close(write_end)

    def take(self) -> slice | None:
        data = os.read(self.fd, 4)
        if not data:
            return None
        start = int.from_bytes(data, "little") * self.size
        return slice(start, start + self.size)

    def drain(self) -> None:
        """Take every chunk left, so that the children stop after the one in hand."""
        with contextlib.suppress(OSError):
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _render_queue(pages: Path, jobs: list[Job], queue: _Queue, direct: bool, token: str) -> Rendered:
    """Render chunks from the queue until none is left; on any error, remove what was staged."""
    out: Rendered = []
    try:
        while (chunk := queue.take()) is not None:
            out += _render_part(pages, jobs[chunk], direct, token)
    except BaseException:
        discard(out)
        raise
    return out


def _undo(children: list[_Child], finished: list[Rendered]) -> None:
    for result in finished:
        discard(result)
    for child in children:
        child.abandon()


@dataclass
class _Child:
    """A forked page renderer: renders and stages its share, then sends back what it staged."""

    pid: int
    pipe: int
    jobs: list[Job]  # all of them: which ones it took, only its report says
    pages: Path
    direct: bool
    token: str
    reaped: bool = False

    @classmethod
    def start(cls, pages: Path, jobs: list[Job], queue: _Queue, direct: bool, token: str) -> _Child:
        pid, read_end = spawn(functools.partial(_child_main, pages=pages, jobs=jobs, queue=queue,
                                                direct=direct, token=token))
        return cls(pid, read_end, jobs, pages, direct, token)

    def finish(self) -> Rendered:
        """What the child staged; raises the error that stopped it (it then removed its files)."""
        fd, self.pipe = self.pipe, -1
        self.reaped = True  # ``collect`` waits for it, whatever happens
        blob, status = collect(self.pid, fd)
        if blob[:1] == b"O" and status == 0:
            return [(name, tmp, key, size, mtime) for name, tmp, key, size, mtime in marshal.loads(blob[1:])]
        exc: object = None
        if blob[:1] == b"E":
            with contextlib.suppress(Exception):
                exc = pickle.loads(blob[1:])  # from our own child, through a pipe only we hold
        if isinstance(exc, BaseException):
            raise exc
        raise OutputError("the page rendering process ended early", path=self.pages)

    def abandon(self) -> None:
        """Wait for a child whose report will not be used, and remove whatever it staged."""
        if self.pipe >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pipe)  # a child still writing gets EPIPE and removes its files
            self.pipe = -1
        self._reap()
        if self.direct:
            return  # its files are in the staging folder, which goes as a whole
        where = str(self.pages)
        for name, _render, _stat in self.jobs:
            # Named as stage_page names it: beside the document, in its own folder (archive/).
            head, tail = os.path.split(os.path.join(where, name))
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(head, f".{tail}.{self.token}.tmp"))

    def _reap(self) -> int:
        if self.reaped:
            return -1
        _, status = os.waitpid(self.pid, 0)
        self.reaped = True
        return status


def _child_main(pipe: BinaryIO, *, pages: Path, jobs: list[Job], queue: _Queue, direct: bool,
                token: str) -> None:
    try:
        done = _render_queue(pages, jobs, queue, direct, token)
    except BaseException as exc:
        try:
            blob = pickle.dumps(exc)
        except Exception:
            blob = pickle.dumps(OutputError(f"page rendering failed: {exc!r}"))
        pipe.write(b"E" + blob)
        return
    try:
        pipe.write(b"O" + marshal.dumps(done))
        pipe.flush()
    except BaseException:
        discard(done)  # nobody is left to commit them (the parent is gone or gave up)
        raise
