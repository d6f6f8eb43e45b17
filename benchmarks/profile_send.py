"""Profile one ``syndicator send`` into Postfix's smtp-sink: where the time per message goes.

    .venv/bin/python benchmarks/profile_send.py [--recipients 20000] [--concurrency 8] [--top 25]

The project, recipients and sink are bench_send's; the send runs in a child process under
cProfile (the command itself, not a copy of its loop), which writes ``--out`` (pstats) and
prints the functions with the most time of their own, each per message. cProfile slows
Python code more than the kernel's share (socket writes, SQLite), so read the shares, not
the totals; bench_send gives the real rate.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench_send import SECRET, SECRET_ENV, free_port, make_project, start_sink  # noqa: E402

# The child: ``syndicator send`` under cProfile, in-process (the console script's os._exit
# would end the process before the profile is written).
CHILD = """
import cProfile, sys
from syndicator.cli import cli
profile = cProfile.Profile()
profile.enable()
try:
    cli(prog_name="syndicator", args=["send"], standalone_mode=False)
finally:
    profile.disable()
    profile.dump_stats(sys.argv[1])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("send.prof"))
    args = parser.parse_args()

    port = free_port()
    sink = start_sink(port)
    folder = Path(tempfile.mkdtemp(prefix="profile-send-"))
    try:
        project = make_project(folder, port=port, recipients=args.recipients, concurrency=args.concurrency)
        env = {**os.environ, "SYNDICATOR_CONFIG": str(project / "config" / "syndicator.toml"),
               SECRET_ENV: SECRET, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", CHILD, str(args.out.resolve())], cwd=project, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"send failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        print(next((line for line in done.stdout.splitlines() if line.startswith("sent ")), done.stdout))
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(folder, ignore_errors=True)

    stats = pstats.Stats(str(args.out))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    print(f"\n{total:.2f} s profiled, {total / args.recipients * 1e6:.0f} us a message; "
          f"the top {args.top} by own time:")
    print(f"{'own us/msg':>10} {'share':>6} {'calls/msg':>9}  function")
    for (filename, line, name), (_, calls, own, _cumulative, _callers) in rows[:args.top]:
        where = name if filename == "~" else f"{Path(filename).name}:{line} {name}"
        per_message = own / args.recipients * 1e6
        print(f"{per_message:>10.1f} {own / total:>6.1%} {calls / args.recipients:>9.2f}  {where}")
    print(f"\nfull profile: {args.out} (python -m pstats {args.out})")


if __name__ == "__main__":
    main()
