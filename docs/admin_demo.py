"""The demo store behind docs/admin.png: three editions really sent, throttled (smtp.rate) so
each takes a minute or more, to a local aiosmtpd that refuses a few mailboxes and defers a
few more for a while; then some bounces and complaints, and subscribers in each state.

    python docs/admin_demo.py /tmp/admin-demo       # about five minutes
    SYNDICATOR_DEMO_SECRET=... SYNDICATOR_ADMIN_PASSWORD=... \\
        syndicator --config /tmp/admin-demo/config/syndicator.toml serve --port 8099
    chromium --headless --no-sandbox --screenshot=docs/admin.png --window-size=1200,900 \\
        http://admin:PASSWORD@127.0.0.1:8099/admin
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from syndicator.config import Config, load_config
from syndicator.mail import workers
from syndicator.site.build import build
from syndicator.state import inbound, ledger, lists
from syndicator.state.store import Store

SECRET_ENV = "SYNDICATOR_DEMO_SECRET"
CONFIG = """\
[site]
title = "The Harbour Gazette"
url = "https://gazette.example.org/"
description = "News from the harbour"

[digest]
from = "Harbour Gazette <digest@gazette.example.org>"
recipients_file = "recipients.txt"
secret_env = "{secret_env}"
lookback = "all"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
concurrency = 4
retry_for = 900
"""
EDITIONS = [  # (stories, readers on the list by then, messages a second)
    (["Ferry timetable changes for the winter", "New berth opens at the east quay",
      "Harbour master retires after 30 years"], 150, 3.0),
    (["Storm closes the breakwater path", "Fish market moves indoors",
      "Council approves the marina <extension> & car park"], 190, 1.5),
    (["Lifeboat crew rescues three sailors", "Lighthouse open for visitors on Sunday"], 220, 2.5),
]


class Relay:
    """Refuses gone*@ for good; defers slow*@ for their first five attempts."""

    def __init__(self) -> None:
        self.tries: Counter[str] = Counter()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        local = address.split("@")[0]
        if local.startswith("gone"):
            return "550 5.1.1 No such mailbox"
        if local.startswith("slow"):
            self.tries[address] += 1
            if self.tries[address] <= 5:
                return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 Queued"


def readers(count: int) -> list[str]:
    special = {17: "gone.a", 61: "gone.b", 160: "gone.c", 40: "slow.a", 95: "slow.b", 200: "slow.c"}
    return [f"{special.get(n, 'reader')}{n:03d}@example.{'com' if n % 3 else 'net'}" for n in range(count)]


def main(folder: Path) -> None:
    os.environ.setdefault(SECRET_ENV, "demo-secret-" + hashlib.sha256(b"demo").hexdigest())
    with socket.socket() as probe:  # a free port (aiosmtpd's start-up check cannot use port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Relay(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        (folder / "config").mkdir(parents=True, exist_ok=True)
        (folder / "seeds").mkdir(exist_ok=True)
        (folder / "config" / "syndicator.toml").write_text(CONFIG.format(secret_env=SECRET_ENV, port=port))
        config = load_config(folder / "config" / "syndicator.toml")
        store = Store.open(config.store_url)
        try:
            now = int(time.time())
            for n in range(8):  # confirmed subscribers, on every edition
                subscribe(store, f"subscriber{n}@example.org", now, confirm=True)
            for n, (stories, count, rate) in enumerate(EDITIONS, start=1):
                for m, title in enumerate(stories):
                    story = f"{title}\n\nThe story of {title.lower()}.\n"
                    (folder / "seeds" / f"{n:02d}{m}.txt").write_text(story)
                (folder / "recipients.txt").write_text("\n".join(readers(count)) + "\n")
                send(config, store, rate, f"demo:{n}")
            came_back(store)
            for n in range(5):
                subscribe(store, f"pending{n}@example.org", int(time.time()), confirm=False)
        finally:
            store.close()
    finally:
        controller.stop()


def subscribe(store: Store, address: str, now: int, *, confirm: bool) -> None:
    digest = hashlib.sha256(address.encode()).hexdigest()
    lists.request_confirmation(store, address, digest, now, canonical=address, cooldown=None)
    if confirm:
        lists.confirm(store, address, digest, now)


def send(config: Config, store: Store, rate: float, slot: str) -> None:
    throttled = config.model_copy(update={"smtp": config.smtp.model_copy(update={"rate": rate})})
    now = datetime.now(UTC)
    build(config, store, now)
    tally = workers.send(throttled, store, now, slot=slot, password=None, secret=config.secret())
    print(f"{slot}: {tally.sent} sent, {tally.failed} failed in {tally.seconds:.0f} s", flush=True)


def came_back(store: Store) -> None:
    """Bounces and complaints as `syndicator inbound` records them (here without the mail)."""
    found = {e.slot: e.id for e in ledger.editions(store)}
    events = [
        ("bounce", "reader022@example.com", "demo:1", "5.2.2", "mailbox full"),
        ("complaint", "reader031@example.com", "demo:1", "", "abuse report (ARF)"),
        ("bounce", "reader118@example.net", "demo:2", "5.1.1", "user unknown"),
        ("delay", "reader070@example.com", "demo:2", "4.4.7", "delivery delayed"),
        ("bounce", "reader187@example.com", "demo:3", "5.7.1", "rejected by policy"),
        ("complaint", "reader004@example.com", "demo:3", "", "abuse report (ARF)"),
    ]
    for n, (kind, address, slot, status, detail) in enumerate(events):
        inbound.record(store, f"demo-{n}", kind, [inbound.Event(kind, address, found[slot], status, detail)],
                       int(time.time()), soft_limit=3)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
