"""Render benchmark: personalised digest messages per second, MessageFactory beside the naive way.

    .venv/bin/python benchmarks/bench_render.py [--recipients N]

Both build the complete RFC 5322 bytes of the real example digest for N different recipients
(To, Message-ID, signed unsubscribe link in List-Unsubscribe and both bodies), in the same run:
  naive    an EmailMessage per recipient (headers, text and HTML alternatives), as_bytes()
  factory  syndicator's MessageFactory: the skeleton serialised once, recipients spliced in
  wire     MessageFactory.build_wire, what ``send`` writes: the same, dot-stuffed for DATA
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_send import naive_message, real_digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=20_000)
    args = parser.parse_args()
    n = args.recipients

    from syndicator.mail.edition import unsubscribe_url
    from syndicator.mail.message import MessageFactory, message_id

    config, digest, clock = real_digest()
    links = unsubscribe_url(config, b"benchmark-secret-for-tokens")
    addresses = [f"reader{i:07d}@example{i % 97}.com" for i in range(n)]
    ids = [message_id(1, a, config) for a in addresses]

    start = time.perf_counter()
    factory = MessageFactory(config, digest, unsubscribe_url=links, date=clock)
    size = 0
    for address, mid in zip(addresses, ids, strict=True):
        size += len(factory.build(address, mid))
    fast = n / (time.perf_counter() - start)

    start = time.perf_counter()
    for address, mid in zip(addresses, ids, strict=True):
        factory.build_wire(address, mid)
    wire = n / (time.perf_counter() - start)

    naive_n = min(n, 2_000)
    start = time.perf_counter()
    for i in range(naive_n):
        naive_message(config, digest, clock, addresses[i], i)
    slow = naive_n / (time.perf_counter() - start)

    print(f"\nrender benchmark: real example digest, {size // n} bytes a message, "
          f"Python {sys.version.split()[0]}")
    print(f"{'what':<44} {'messages':>9} {'msg/s':>9}")
    print(f"{'naive EmailMessage per recipient':<44} {naive_n:>9} {slow:>9.0f}")
    print(f"{'MessageFactory (signed link, spliced bytes)':<44} {n:>9} {fast:>9.0f}")
    print(f"{'MessageFactory.build_wire (dot-stuffed, sent)':<44} {n:>9} {wire:>9.0f}")
    print(f"\nfactory / naive: {fast / slow:.0f}x; build_wire / naive: {wire / slow:.0f}x")


if __name__ == "__main__":
    main()
