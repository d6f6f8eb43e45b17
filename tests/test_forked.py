"""Work shared with forked children: nothing lost, nothing done twice, the order kept; and
pages rendered while this process does something else."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from syndicator.forked import fork_map
from syndicator.site import parallel
from syndicator.site.parallel import Job, render_jobs_while


def _tagged(items: Sequence[str]) -> list[tuple[str, int]]:
    return [(item, os.getpid()) for item in items]


def _same(item: str, sent: Any) -> tuple[str, int]:
    return str(sent[0]), int(sent[1])


def test_fork_map_keeps_the_order_and_shares_the_items_among_processes() -> None:
    items = [f"{n:04d}" for n in range(101)]
    out = fork_map(items, _tagged, list, _same, least=1, processes=3)
    assert [name for name, _ in out] == items
    pids = [pid for _, pid in out]
    assert pids[0::3] == [os.getpid()] * 34  # every third item here
    children = {pids[1], pids[2]}
    assert os.getpid() not in children and len(children) == 2
    assert set(pids[1::3]) == {pids[1]} and set(pids[2::3]) == {pids[2]}


def test_fork_map_below_its_threshold_forks_nothing() -> None:
    out = fork_map(["a", "b", "c"], _tagged, list, _same, least=4, processes=2)
    assert out == [("a", os.getpid()), ("b", os.getpid()), ("c", os.getpid())]


def test_a_child_that_dies_has_its_share_done_here() -> None:
    parent = os.getpid()

    def dies_in_a_child(items: Sequence[str]) -> list[tuple[str, int]]:
        if os.getpid() != parent:
            os._exit(9)  # killed, out of memory: no report
        return _tagged(items)

    items = [str(n) for n in range(10)]
    out = fork_map(items, dies_in_a_child, list, _same, least=1, processes=2)
    assert out == [(item, parent) for item in items]


def _jobs(folder: Path, count: int, last_rendered: int | None = None) -> list[Job]:
    """Documents whose text names the process that rendered them; rendering the last one
    also writes a byte to ``last_rendered`` (a pipe)."""
    def render(n: int) -> tuple[bytes, str]:
        if n == count - 1 and last_rendered is not None:
            os.write(last_rendered, b"!")
        return str(os.getpid()).encode(), f"key{n}"

    return [(f"doc{n}.txt", lambda n=n: render(n), None) for n in range(count)]  # type: ignore[misc]


def test_pages_render_in_children_while_this_process_is_busy(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``meanwhile`` blocks until a child has rendered the last document: the child took every
    chunk, none is left for this process, and its result comes back with the pages."""
    monkeypatch.setattr(parallel, "_workers", lambda: 2)
    monkeypatch.setattr(parallel._Queue, "MIN_CHUNK", 1)
    read_end, write_end = os.pipe()
    jobs = _jobs(tmp_path, 3000, write_end)

    def meanwhile() -> str:
        assert os.read(read_end, 1) == b"!"
        return "done meanwhile"

    try:
        done, result = render_jobs_while(tmp_path, jobs, True, "tok", meanwhile, parallel_from=1)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result == "done meanwhile"
    assert sorted(name for name, *_ in done) == sorted(name for name, _, _ in jobs)
    texts = {(tmp_path / name).read_bytes() for name, *_ in done}
    assert len(texts) == 1 and texts != {str(os.getpid()).encode()}  # all by the one child


def test_every_document_is_rendered_once_by_whichever_process_takes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_workers", lambda: 3)
    monkeypatch.setattr(parallel._Queue, "MIN_CHUNK", 1)
    jobs = _jobs(tmp_path, 2500)  # 1024 chunks at most: chunks of 3
    done, _ = render_jobs_while(tmp_path, jobs, True, "tok", lambda: None, parallel_from=1)
    names = [name for name, *_ in done]
    assert sorted(names) == sorted(name for name, _, _ in jobs) and len(set(names)) == 2500
    assert {key for _, _, key, _, _ in done} == {f"key{n}" for n in range(2500)}


def test_an_error_meanwhile_leaves_no_document_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged beside their final names (not direct): the children's temp files go too."""
    monkeypatch.setattr(parallel, "_workers", lambda: 2)
    read_end, write_end = os.pipe()
    jobs = _jobs(tmp_path, 1500, write_end)

    def meanwhile() -> None:
        os.read(read_end, 1)  # the child has staged everything
        raise RuntimeError("the feeds failed")

    try:
        with pytest.raises(RuntimeError, match="the feeds failed"):
            render_jobs_while(tmp_path, jobs, False, "tok", meanwhile, parallel_from=1)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert list(tmp_path.iterdir()) == []
