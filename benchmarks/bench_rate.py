"""Rate benchmark: does ``smtp.rate`` hold within 5% over every 10 s window, across processes?

    .venv/bin/python benchmarks/bench_rate.py [--rate 300] [--seconds 30] [--processes 2]

A real aiosmtpd server on a free loopback port timestamps every accepted message;
``syndicator send`` (subprocess, real code path) mails rate x seconds recipients with
``smtp.rate`` set. Printed: the configured rate, the unthrottled rate into the same
server measured in the same run (the baseline), and the min / max messages per second
over every 10 s sliding window of the throttled run (first and last second excluded).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aiosmtpd.smtp import SMTP, Envelope, Session  # noqa: E402

from benchmarks.bench_send import SECRET, SECRET_ENV, make_project  # noqa: E402
from tests.conftest import LoopbackController  # noqa: E402


class Stamping:
    def __init__(self) -> None:
        self.times: list[float] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.times.append(time.monotonic())
        return "250 OK"


def run_send(port: int, recipients: int, rate: float, processes: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="bench-rate-"))
    try:
        project = make_project(folder, port=port, recipients=recipients, concurrency=8)
        config = project / "config" / "syndicator.toml"
        config.write_text(config.read_text() + f"rate = {rate}\nprocesses = {processes}\n")
        env = {**os.environ, "SYNDICATOR_CONFIG": str(config), SECRET_ENV: SECRET}
        start = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "syndicator", "send", "--quiet"], cwd=project,
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"send failed:\n{done.stdout}\n{done.stderr}")
        return time.monotonic() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def windows(times: list[float], width: float = 10.0) -> tuple[float, float]:
    """Min and max messages/s over every ``width``-second window, sliding by 0.1 s."""
    start, end = times[0] + 1.0, times[-1] - 1.0
    rates: list[float] = []
    t = start
    left = right = 0
    while t + width <= end:
        while left < len(times) and times[left] < t:
            left += 1
        while right < len(times) and times[right] < t + width:
            right += 1
        rates.append((right - left) / width)
        t += 0.1
    return (min(rates), max(rates)) if rates else (0.0, 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    handler: Any = Stamping()
    controller = LoopbackController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        baseline_n = 3000
        wall = run_send(controller.port, baseline_n, 0, args.processes)
        baseline = baseline_n / wall
        handler.times.clear()
        count = int(args.rate * args.seconds)
        run_send(controller.port, count, args.rate, args.processes)
        low, high = windows(handler.times)
    finally:
        controller.stop()
    print(f"{'what':<44}{'msg/s':>10}")
    print(f"{'unthrottled into aiosmtpd (baseline)':<44}{baseline:>10.0f}")
    print(f"{'smtp.rate configured':<44}{args.rate:>10.0f}")
    print(f"{'throttled, lowest 10 s window':<44}{low:>10.1f}  ({100 * (low / args.rate - 1):+.1f}%)")
    print(f"{'throttled, highest 10 s window':<44}{high:>10.1f}  ({100 * (high / args.rate - 1):+.1f}%)")
    print(f"messages {len(handler.times)}, processes {args.processes}, baseline/rate "
          f"{baseline / args.rate:.1f}x")


if __name__ == "__main__":
    main()
