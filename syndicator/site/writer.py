"""Atomic file output: a reader never sees half a file, and unchanged files are left alone."""

from __future__ import annotations

import bisect
import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

from syndicator.errors import OutputError

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def same_content(path: Path, data: bytes, size: int | None = -1) -> bool:
    """Whether ``path`` already holds ``data``; the size is compared before any byte is read.

    ``size`` is the file's size when the caller already knows it (None: no such file).
    """
    try:
        if size == -1:
            size = os.stat(path).st_size
        if size != len(data):
            return False
        with open(path, "rb") as handle:
            return handle.read(len(data) + 1) == data
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot read: {exc.strerror}", path=path) from None


def write_atomic(path: Path, data: bytes, *, durable: bool = True, size: int | None = -1) -> bool:
    """Write ``data`` to ``path`` atomically; return False when the file already held it.

    With ``durable`` the data reaches the disk before the rename (fsync); without it the
    write is still atomic (a reader sees the old file or the new one), and the caller
    syncs the folder once after many files (see ``sync_folder``). ``size`` is the file's
    current size when the caller knows it (None: no such file).
    """
    if size is not None and same_content(path, data, size):
        return False
    commit(stage(path, data, durable=durable), path)
    return True


def stage(path: Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to a temp file beside ``path``; ``commit`` renames it into place."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        try:
            fd = os.open(tmp, _FLAGS, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, _FLAGS, 0o644)
        except FileExistsError:
            # A stale temp file of a killed process that had our pid: a fresh name.
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            tmp = Path(name)
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror}", path=path.parent) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # whatever the umask: pages are published
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write: {exc.strerror}", path=path) from None
    return tmp


def stage_page(path: str, data: bytes, umask: int, *, direct: bool = False,
               token: str = "") -> tuple[str, int, int]:
    """``stage`` for the many pages of a build: str paths, no fsync, one chmod only if needed.

    Returns the temp file, and its size and mtime (ns), which the rename into place keeps.
    ``umask`` is the process's (see ``current_umask``): the mode is fixed only when it would
    hide 0o644 bits, with fchmod on the open file rather than a second path lookup.
    ``direct``: ``path`` is in a private staging folder that is renamed into place as a
    whole, so the file is written under its own name. ``token`` names the temp file
    (``.{name}.{token}.tmp``; the pid when empty).
    """
    head, tail = os.path.split(path)
    tmp = path if direct else os.path.join(head, f".{tail}.{token or os.getpid()}.tmp")
    try:
        fd = os.open(tmp, _FLAGS, 0o644)
    except OSError as exc:
        if direct:
            raise OutputError(f"cannot write: {exc.strerror}", path=Path(path)) from None
        slow = stage(Path(path), data, durable=False)  # the slow path knows every case
        st = os.stat(slow)
        return str(slow), st.st_size, st.st_mtime_ns
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if umask & 0o644:
            os.fchmod(fd, 0o644)
        st = os.fstat(fd)
    except BaseException as exc:  # Ctrl-C included: the caller never learns of this file
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write: {exc.strerror}", path=Path(path)) from None
        raise
    os.close(fd)
    return tmp, st.st_size, st.st_mtime_ns


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def commit(tmp: Path | str, path: Path | str) -> None:
    """Rename a staged temp file into place (atomic)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write: {exc.strerror}", path=Path(path)) from None


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames into it) to disk."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(folder: Path) -> None:
    """Fail before any work when the output folder cannot be created or written."""
    if folder.exists() and not folder.is_dir():
        raise OutputError("output folder is a file, not a folder", path=folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder: {exc.strerror}", path=folder) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".probe.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"output folder is not writable: {exc.strerror}", path=folder) from None


class Names(Sequence[str]):
    """The names of the files a build wrote, for its report: held a run at a time as one
    string each, not one string object a name (a million seeds' build writes four million
    pages: 370 MB as a list of names, 150 MB so)."""

    _SEP = "\0"  # no file name holds it

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._runs: list[str] = []
        self._ends: list[int] = []  # the count of names up to and including each run
        self += names

    def __iadd__(self, names: Iterable[str]) -> Names:
        run = list(names)
        if run:
            self._runs.append(self._SEP.join(run))
            self._ends.append(len(self) + len(run))
        return self

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __iter__(self) -> Iterator[str]:
        for run in self._runs:
            yield from run.split(self._SEP)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("name index out of range")
        k = bisect.bisect_right(self._ends, index)
        return self._runs[k].split(self._SEP)[index - (self._ends[k - 1] if k else 0)]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Names | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"Names({list(self)!r})"
