"""Send benchmark: syndicator end to end against Postfix's smtp-source at the same connection count.

    .venv/bin/python benchmarks/bench_send.py [--recipients N] [--concurrency 8[,64]] [--rounds 2]

Everything goes over loopback into one Postfix ``smtp-sink`` (package ``postfix``, installed
here if missing and run as root), started on a free port for this run only. Each round,
for each connection count C:

  ceiling     ``smtp-source -s C -d -m N -F digest``: Postfix's C load generator, C kept-open
              sessions, N copies of the real digest (same bytes on the wire as one of ours)
  syndicator  ``python -m syndicator send`` on a temp project (real example seed, N recipients
              in a recipients file, SQLite ledger, ``smtp.concurrency = C``): wall time from
              process start to exit, edition creation included; the sender's peak RSS (the
              largest process, and the sum over the sender and its workers, sampled)

and the ratio syndicator / ceiling of that round is printed. Then, once, two one-connection
baselines beside ``smtp-source -s 1``: stdlib ``smtplib`` with prebuilt bytes, and a naive
``EmailMessage`` per recipient sent with aiosmtplib (``--no-baselines`` skips them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import SITE_CONFIG  # noqa: E402

if TYPE_CHECKING:
    from datetime import datetime

    from syndicator.config import Config
    from syndicator.mail.digest import Digest
    from syndicator.model import Story

SEED = next((REPO / "seeds").glob("000_*.txt"))
SECRET_ENV = "SYNDICATOR_BENCH_SECRET"
# Fixed (runs are comparable) and strong enough for the sender's check on digest.secret_env.
SECRET = "bench-Secret-for-unsubscribe-tokens-7Qx2Lm9Vz4"

CONFIG = SITE_CONFIG + """\

[digest]
from = "Bench Digest <digest@example.org>"
schedule = "0 7 * * *"
timezone = "UTC"
lookback = "all"
recipients_file = "config/recipients.txt"
secret_env = "{secret_env}"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
timeout = 30
concurrency = {concurrency}
"""


# -- Postfix tools -----------------------------------------------------------------------


def postfix_tool(name: str) -> str:
    """The path of smtp-sink / smtp-source, installing the Debian package if needed (as root)."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit(f"{name} not found: install Postfix (apt-get install postfix) or run as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # policy-rc.d / no systemd here: make sure no Postfix MTA is left listening on port 25.
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postfix"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["postfix", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["systemctl", "disable", "--now", "postfix"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return f"/usr/sbin/{name}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    command = [postfix_tool("smtp-sink")]
    if os.geteuid() == 0:
        command += ["-u", "postfix" if _user_exists("postfix") else "nobody"]
    command += [f"127.0.0.1:{port}", "1000"]
    sink = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink
        except OSError:
            time.sleep(0.05)
    sink.kill()
    sys.exit("smtp-sink did not start")


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# -- running and measuring a program ---------------------------------------------------------


@dataclass
class Run:
    seconds: float  # wall time, start to exit
    cpu: float  # user + system seconds of the program and its children
    peak_rss_mb: float  # the largest single process (ru_maxrss)
    tree_rss_mb: float  # the largest sum over the program and its descendants, sampled every 20 ms
    stdout: str
    returncode: int


def run_measured(command: list[str], **popen: Any) -> Run:
    """Run ``command`` to its end: wall time, CPU, peak RSS of its largest process and of its tree."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, **popen)
        peak = 0
        while True:
            waited, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if waited:
                break
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, peak / 2**20, text,
               proc.returncode)


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every process descended from it (0 where /proc is missing)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the measurements ----------------------------------------------------------------------


def ceiling(port: int, count: int, sessions: int, message: Path) -> Run:
    """``smtp-source``: ``count`` copies of ``message`` over ``sessions`` kept-open connections."""
    run = run_measured([postfix_tool("smtp-source"), "-s", str(sessions), "-d", "-m", str(count),
                        "-F", str(message), "-f", "digest@example.org", "-t", "reader@example.com",
                        f"127.0.0.1:{port}"])
    if run.returncode != 0:
        sys.exit(f"smtp-source failed ({run.returncode}):\n{run.stdout}")
    return run


def source_file(folder: Path, message: bytes) -> Path:
    """The digest as smtp-source -F reads it: LF line ends (it sends each line with CRLF and
    dot-stuffs), so the bytes on the wire are the digest's own."""
    path = folder / "digest.eml"
    path.write_bytes(message.replace(b"\r\n", b"\n"))
    return path


def real_digest() -> tuple[Config, Digest, datetime]:
    """The example seed's digest, its config and a factory (as the sender builds them)."""
    from datetime import UTC, datetime

    from syndicator.config import load_config
    from syndicator.mail.digest import render_digest
    folder = Path(tempfile.mkdtemp(prefix="bench-digest-"))
    project = make_project(folder, port=25, recipients=1, concurrency=1)
    config = load_config(project / "config" / "syndicator.toml")
    stories = _stories(project)
    clock = datetime(2026, 11, 25, 7, tzinfo=UTC)
    digest = render_digest(config, stories, clock)
    shutil.rmtree(folder)
    return config, digest, clock


def _stories(project: Path) -> tuple[Story, ...]:
    from datetime import UTC, datetime

    from syndicator.config import load_config
    from syndicator.seeds.identity import load_stories
    from syndicator.state.store import Store

    config = load_config(project / "config" / "syndicator.toml")
    store = Store.open("sqlite://")
    try:
        return tuple(load_stories(config, store, datetime(2026, 11, 25, 7, tzinfo=UTC), persist=False))
    finally:
        store.close()


def naive_message(config: Config, digest: Digest, clock: datetime, address: str, n: int) -> bytes:
    """What a straightforward sender does: a fresh MIME tree for every recipient."""
    from email.utils import format_datetime

    msg = EmailMessage()
    msg["From"] = config.digest.from_
    msg["To"] = address
    msg["Subject"] = digest.subject
    msg["Date"] = format_datetime(clock)
    msg["Message-ID"] = f"<{n}.bench@example.org>"
    msg["List-Unsubscribe"] = f"<https://example.org/u/{n}>"
    page, text = digest.personal(f"https://example.org/u/{n}")
    msg.set_content(text)
    msg.add_alternative(page, subtype="html")
    return msg.as_bytes()


def naive(port: int, count: int, config: Config, digest: Digest, clock: datetime) -> float:
    import aiosmtplib

    async def run() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await client.connect()
        for n in range(count):
            address = f"reader{n}@example.com"
            data = naive_message(config, digest, clock, address, n)
            await client.sendmail("digest@example.org", [address], data)
        await client.quit()

    start = time.perf_counter()
    asyncio.run(run())
    return count / (time.perf_counter() - start)


def stdlib(port: int, count: int, data: bytes) -> float:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for n in range(count):
            client.sendmail("digest@example.org", [f"reader{n}@example.com"], data)
    return count / (time.perf_counter() - start)


def make_project(folder: Path, *, port: int, recipients: int, concurrency: int) -> Path:
    (folder / "seeds").mkdir(parents=True, exist_ok=True)
    (folder / "config").mkdir(exist_ok=True)
    shutil.copy(SEED, folder / "seeds" / SEED.name)
    with open(folder / "config" / "recipients.txt", "w") as out:
        out.writelines(f"reader{n:07d}@example{n % 97}.com\n" for n in range(recipients))
    (folder / "config" / "syndicator.toml").write_text(
        CONFIG.format(port=port, concurrency=concurrency, secret_env=SECRET_ENV))
    return folder


def syndicator(port: int, recipients: int, concurrency: int, processes: int = 0) -> tuple[Run, str]:
    """``syndicator send`` of a fresh project to ``recipients`` readers; its run and summary line."""
    folder = Path(tempfile.mkdtemp(prefix="bench-send-"))
    try:
        project = make_project(folder, port=port, recipients=recipients, concurrency=concurrency)
        if processes:
            config = project / "config" / "syndicator.toml"
            config.write_text(config.read_text() + f"processes = {processes}\n")
        env = {**os.environ, "SYNDICATOR_CONFIG": str(project / "config" / "syndicator.toml"),
               SECRET_ENV: SECRET}
        run = run_measured([sys.executable, "-m", "syndicator", "send"], cwd=project, env=env)
        summary = next((line for line in run.stdout.splitlines() if line.startswith("sent ")), "")
        if run.returncode != 0:
            sys.exit(f"syndicator send failed ({run.returncode}):\n{run.stdout}")
        found = re.match(r"sent (\d+)", summary)
        if found is None or int(found.group(1)) != recipients:
            sys.exit(f"syndicator did not send all {recipients}:\n{run.stdout}")
        return run, summary
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sample_message() -> bytes:
    """One reader's copy of the digest, made as ``send`` makes it: the edition opened on a
    project like the benchmark's, its factory, a recipient of the benchmark's list."""
    from datetime import UTC, datetime

    from syndicator.config import load_config
    from syndicator.mail.edition import factory_for, open_edition
    from syndicator.state import ledger
    from syndicator.state.store import Store

    folder = Path(tempfile.mkdtemp(prefix="bench-sample-"))
    try:
        project = make_project(folder, port=25, recipients=1, concurrency=1)
        config = load_config(project / "config" / "syndicator.toml")
        store = Store.open(config.store_url)
        try:
            edition = open_edition(config, store, datetime.now(UTC))
            assert edition is not None, "the example seed gives an edition"
            ((address, message_id),) = ledger.message_ids(store, edition.id).items()
            return factory_for(config, edition, SECRET.encode()).build(address, message_id)
        finally:
            store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers") from None
    if not counts or min(counts) < 1 or max(counts) > 64:
        raise argparse.ArgumentTypeError("connection counts from 1 to 64 (smtp.concurrency's range)")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--concurrency", type=_counts, default=[8],
                        help="connection counts C to compare at, e.g. 8,64 (default 8): "
                        "smtp.concurrency = C against smtp-source -s C")
    parser.add_argument("--processes", type=int, default=0,
                        help="smtp.processes for syndicator (default 0: the sender decides)")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each pair (default 2)")
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip the one-connection baselines (smtp-source -s 1, smtplib, naive)")
    parser.add_argument("--baseline", type=int, default=0,
                        help="messages for the one-connection baselines "
                        "(default: min(N, 3000) naive, min(N, 20000) the others)")
    args = parser.parse_args()
    n = args.recipients

    config, digest, clock = real_digest()
    sample = sample_message()
    folder = Path(tempfile.mkdtemp(prefix="bench-source-"))
    message = source_file(folder, sample)

    load_before = os.getloadavg()[0]
    port = free_port()
    sink = start_sink(port)
    pairs: list[tuple[int, int, Run, Run, tuple[float, float], str]] = []
    baselines: list[tuple[str, int, float]] = []
    try:
        for round_ in range(1, args.rounds + 1):
            for c in args.concurrency:
                # Side by side, the C load generator first: both see the machine as it is now.
                before = process_cpu(sink.pid)
                source = ceiling(port, n, c, message)
                middle = process_cpu(sink.pid)
                run, summary = syndicator(port, n, c, args.processes)
                sink_cpu = (middle - before, process_cpu(sink.pid) - middle)
                pairs.append((round_, c, source, run, sink_cpu, summary))
                print(f"round {round_}, {c} connections: smtp-source {n / source.seconds:,.0f} msg/s, "
                      f"syndicator {n / run.seconds:,.0f} msg/s, ratio {source.seconds / run.seconds:.2f}"
                      f"  ({summary})", flush=True)
        if not args.no_baselines:
            base_n = args.baseline or min(n, 20_000)
            one = ceiling(port, base_n, 1, message)
            baselines.append(("smtp-source -s 1 -d", base_n, base_n / one.seconds))
            stdlib_rate = stdlib(port, base_n, sample)
            baselines.append(("stdlib smtplib, prebuilt bytes", base_n, stdlib_rate))
            naive_n = args.baseline or min(n, 3_000)
            baselines.append(("naive EmailMessage + aiosmtplib", naive_n, naive(port, naive_n, config,
                                                                                  digest, clock)))
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\nsend benchmark: {n:,} recipients, {len(sample):,} byte messages (the real digest; "
          f"smtp-source sends the same bytes), one loopback smtp-sink, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after (other work on the machine skews both sides)")
    print(f"{'':>11} {'msg/s, end to end':^29}  {'syndicator':^33}  {'CPU seconds':^27}")
    print(f"{'round':>5} {'conns':>5} {'smtp-source':>11} {'syndicator':>10} {'ratio':>6}  "
          f"{'wall':>6} {'peak RSS':>9} {'all procs':>9} {'':>5}  {'source':>6} {'syndic.':>7} "
          f"{'sink':>11}")
    for round_, c, source, run, (sink_source, sink_syn), _summary in pairs:
        print(f"{round_:>5} {c:>5} {n / source.seconds:>11,.0f} {n / run.seconds:>10,.0f} "
              f"{source.seconds / run.seconds:>6.2f}  {run.seconds:>5.1f}s {run.peak_rss_mb:>6.0f} MB "
              f"{run.tree_rss_mb:>6.0f} MB {'':>5}  {source.cpu:>6.1f} {run.cpu:>7.1f} "
              f"{sink_source:>5.1f}/{sink_syn:<5.1f}")
    print("(ratio: syndicator / smtp-source at the same connection count in the same round; peak RSS:"
          " the sender's largest process; all procs: the largest sampled sum over the sender and its"
          " workers; CPU: user + system of smtp-source, of the sender with its workers, and of"
          " smtp-sink while it served each)")
    if baselines:
        print("\none connection, the same sink and message:")
        for name, count, rate in baselines:
            print(f"  {name:<34} {count:>7} messages {rate:>8,.0f} msg/s")
    for c in args.concurrency:
        ratios = [source.seconds / run.seconds for _, cc, source, run, _, _ in pairs if cc == c]
        print(f"\nsyndicator / smtp-source -s {c} -d: " + ", ".join(f"{r:.2f}" for r in ratios)
              + (f" (rounds disagree by {max(ratios) - min(ratios):.2f})" if len(ratios) > 1 else ""))


if __name__ == "__main__":
    main()
