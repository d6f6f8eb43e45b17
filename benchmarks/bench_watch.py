"""Publish latency of ``syndicator build --watch``: a new seed file saved -> ``rss.xml`` names it.

    .venv/bin/python benchmarks/bench_watch.py [--sizes 10000,50000] [--saves 3] [--keep]
                                               [--project DIR]

For every size N this generates N seed files with ``bench_build.generate`` (mtimes an hour
back, as an archive's are), runs a full ``syndicator build``, then, in the same run:

  plain   ``python -m syndicator build`` as a subprocess after one new seed file was saved:
          the wall time of that one-seed rebuild, process start-up included (``--saves``
          times, each with its own new seed)
  watch   ``python -m syndicator build --watch`` as a subprocess; once it says it is watching
          (its first build done), a new seed file is saved and the clock runs until rss.xml
          is replaced by one that names the new story (``--saves`` times, one at a time)

The script notices rss.xml being replaced through watchfiles on the output folder with a
1 ms step, so it adds a millisecond or two at most. It prints the median and the worst of
each, and the ratio watch/plain of the medians. Figures are from this run only.

Before each size the kernel's caches are flushed (as root), as bench_build does.

``--project DIR``: also a project built before (``bench_build --keep``, the million-seed one:
its full build takes most of an hour), measured the same way after one unmeasured rebuild.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from watchfiles import watch  # noqa: E402

from benchmarks.bench_build import CONFIG, PY, generate, measure, run_env  # noqa: E402

DEADLINE = 120.0  # seconds: a watch rebuild slower than this is a failure, not a figure


def settle() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("note: could not drop the kernel's caches (not root?)", file=sys.stderr)
    subprocess.run([PY, "-c", "import syndicator.cli, syndicator.site.build, syndicator.site.watch"],
                   check=True, env=run_env())


def new_seed(seeds: Path, tag: str) -> tuple[Path, str]:
    title = f"Breaking: the watched story {tag}"
    return seeds / f"zz_{tag}.txt", f"{title}\n\nSaved while the site was being watched.\n"


def time_to_publish(out: Path, path: Path, text: str, title: str) -> float:
    """Save ``path``, then seconds until out/rss.xml names ``title`` (watching out/ for it)."""
    rss = out / "rss.xml"
    stop = threading.Event()
    seen: queue.Queue[float] = queue.Queue()
    started = threading.Event()

    class Probe:
        def is_set(self) -> bool:
            started.set()
            return stop.is_set()

    def wait() -> None:
        for changes in watch(out, watch_filter=lambda _, p: p == str(rss), debounce=5, step=1,
                             stop_event=Probe(), recursive=False, rust_timeout=1000):
            if changes and title in rss.read_text():
                seen.put(time.perf_counter())
                return

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    started.wait(DEADLINE)  # the output folder's watch is in place
    start = time.perf_counter()
    path.write_text(text)
    try:
        done = seen.get(timeout=DEADLINE)
    except queue.Empty:
        raise SystemExit(f"rss.xml never named {title!r}") from None
    finally:
        stop.set()
        waiter.join()
    return done - start


def lines(stream: IO[str] | None) -> queue.Queue[str]:
    got: queue.Queue[str] = queue.Queue()
    assert stream is not None

    def read() -> None:
        for line in stream:
            got.put(line)

    threading.Thread(target=read, daemon=True).start()
    return got


def bench(n: int, root: Path, saves: int) -> tuple[int, list[float], list[float]]:
    settle()
    project = root / "project"
    (project / "config").mkdir(parents=True)
    config = project / "config" / "syndicator.toml"
    config.write_text(CONFIG)
    print(f"[{n}] generating seeds ...", file=sys.stderr, flush=True)
    stories = len(generate(project / "seeds", n))
    os.sync()
    print(f"[{n}] {n} seed files, {stories} stories; full build ...", file=sys.stderr, flush=True)
    return stories, *measure_project(n, project, saves)


def measure_project(n: int, project: Path, saves: int) -> tuple[list[float], list[float]]:
    """The plain and the watched one-seed rebuilds of a project (built once more first)."""
    env = run_env()
    config = project / "config" / "syndicator.toml"
    syn = [PY, "-m", "syndicator", "--config", str(config), "build"]
    measure(syn, project, env)
    measure(syn, project, env)  # no change: the caches settled, as a watched site's are
    tag = int(time.time())

    plain: list[float] = []
    for i in range(saves):
        path, text = new_seed(project / "seeds", f"plain-{tag}-{i}")
        path.write_text(text)
        plain.append(measure(syn, project, env).seconds)
        print(f"[{n}] plain one-seed rebuild: {plain[-1]:.2f} s", file=sys.stderr, flush=True)

    proc = subprocess.Popen([*syn, "--watch"], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    latency: list[float] = []
    try:
        err, out = lines(proc.stderr), lines(proc.stdout)
        while not (line := err.get(timeout=DEADLINE)).startswith("watching "):
            print(f"[{n}] watch said: {line.rstrip()}", file=sys.stderr)
        out.get(timeout=DEADLINE)  # its first build's line
        for i in range(saves):
            path, text = new_seed(project / "seeds", f"watch-{tag}-{i}")
            latency.append(time_to_publish(project / "public", path, text, text.split("\n", 1)[0]))
            out.get(timeout=DEADLINE)  # that rebuild finished (the caches saved) before the next
            print(f"[{n}] watch publish latency: {latency[-1]:.2f} s", file=sys.stderr, flush=True)
        proc.send_signal(signal.SIGTERM)
        if proc.wait(timeout=DEADLINE) != 0:
            raise SystemExit(f"build --watch exited {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return plain, latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000", help="comma-separated seed file counts")
    parser.add_argument("--saves", type=int, default=3, help="new seeds saved per measurement")
    parser.add_argument("--keep", action="store_true", help="keep the temp projects")
    parser.add_argument("--project", type=Path, help="also this project, built before (bench_build --keep)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = []
    roots = [Path(tempfile.mkdtemp(prefix=f"bench_watch_{n}_")) for n in sizes]
    try:
        for n, root in zip(sizes, roots, strict=True):
            rows.append((n, *bench(n, root, args.saves)))
    finally:
        for root in roots:
            if args.keep:
                print(f"kept {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
    if args.project is not None:
        settle()
        n = sum(1 for _ in os.scandir(args.project / "seeds"))
        print(f"[{n}] {args.project}: a rebuild, then the measurements ...", file=sys.stderr, flush=True)
        rows.append((n, -1, *measure_project(n, args.project.resolve(), args.saves)))
    print(f"\nsyndicator build --watch publish latency vs a plain one-seed rebuild "
          f"({os.cpu_count()} cores, same run, {args.saves} saves each)\n")
    head = (f"{'seeds':>7} {'stories':>8} {'plain s':>8} {'(worst)':>8} {'watch s':>8} {'(worst)':>8} "
            f"{'ratio':>6} {'watch-plain':>12}")
    print(head)
    print("-" * len(head))
    for n, stories, plain, latency in rows:
        p, w = statistics.median(plain), statistics.median(latency)
        counted = "-" if stories < 0 else str(stories)  # a --project's stories are not counted
        print(f"{n:>7} {counted:>8} {p:>8.2f} {max(plain):>8.2f} {w:>8.2f} {max(latency):>8.2f} "
              f"{w / p:>6.2f} {w - p:>+12.2f}")


if __name__ == "__main__":
    main()
