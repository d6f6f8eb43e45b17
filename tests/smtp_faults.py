"""An aiosmtpd handler that misbehaves on purpose, and counts what it really accepted."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Faults:
    """What the server does wrong. Every fault is decided per DATA command."""

    transient_rate: float = 0.0  # answer 421 or 451 to this share of messages
    drop_first: set[str] = field(default_factory=set)  # drop the connection mid-DATA, first try only
    stall_first: set[str] = field(default_factory=set)  # stall past the client timeout, first try only
    stall_seconds: float = 5.0
    refuse: dict[str, str] = field(default_factory=dict)  # RCPT reply for an address
    delay: float = 0.0  # seconds to spend on each accepted message
    rcpt_ok: str = "250 OK"  # the success reply to RCPT (251 "will forward" is success too)
    mail_reply: str = ""  # a refusal for MAIL FROM, when set
    data_reply: str = ""  # a refusal at the end of DATA, when set (say a 552 for size)
    max_connections: int = 0  # more at once get a 421 greeting and are closed (0: no limit)
    gate: threading.Event | None = None  # when set, DATA waits for it (a barrier, not a delay)
    pipelining: bool = True  # advertise PIPELINING (RFC 2920), as real relays do
    seed: int = 7


class FaultyHandler:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self.accepted: list[tuple[str, str, bytes]] = []  # (rcpt, Message-ID, data)
        self.senders: dict[str, str] = {}  # rcpt -> the envelope sender (MAIL FROM) it came with
        self.tried: Counter[str] = Counter()
        self.arrived = threading.Condition()
        self.in_data = threading.Event()  # a DATA command has arrived (and may wait at the gate)

    def wait_accepted(self, count: int, timeout: float = 30) -> None:
        with self.arrived:
            got = self.arrived.wait_for(lambda: len(self.accepted) >= count, timeout)
        assert got, f"expected {count} accepted messages, got {len(self.accepted)}"

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return with_pipelining(responses) if self.faults.pipelining else responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.faults.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return self.faults.rcpt_ok

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.faults.mail_reply:
            return self.faults.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0].lower()
        self.in_data.set()
        if self.faults.gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.faults.gate.wait)
        self.tried[rcpt] += 1
        first = self.tried[rcpt] == 1
        if first and rcpt in self.faults.drop_first:
            assert server.transport is not None
            server.transport.close()
            return "421 connection dropped"  # never reaches the client
        if first and rcpt in self.faults.stall_first:
            await asyncio.sleep(self.faults.stall_seconds)
            return "451 too late"
        if self.faults.transient_rate and self.rng.random() < self.faults.transient_rate:
            return self.rng.choice(["421 4.3.2 Service shutting down", "451 4.3.0 Try again later"])
        if self.faults.data_reply:
            return self.faults.data_reply
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        data = envelope.original_content or b""
        msg = message_from_bytes(data, policy=policy.default)
        with self.arrived:
            self.senders[rcpt] = str(envelope.mail_from)
            self.accepted.append((rcpt, str(msg["Message-ID"]), data))
            self.arrived.notify_all()
        return "250 2.0.0 Ok: queued"

    def per_recipient(self) -> Counter[str]:
        return Counter(rcpt for rcpt, _, _ in self.accepted)


def with_pipelining(responses: list[str]) -> list[str]:
    """EHLO reply lines with PIPELINING among the extensions (aiosmtpd reads pipelined commands
    in order, as RFC 2920 asks, but does not say so)."""
    return [*responses[:-1], "250-PIPELINING", responses[-1]]


class LimitedSMTP(SMTP):
    """Answers 421 at the greeting when the handler's connection limit is reached."""

    open_sessions = 0

    def connection_made(self, transport: Any) -> None:
        handler: FaultyHandler = self.event_handler
        limit = handler.faults.max_connections
        if limit and LimitedSMTP.open_sessions >= limit:
            transport.write(b"421 4.7.0 Too many connections, try later\r\n")
            transport.close()
            return
        LimitedSMTP.open_sessions += 1
        self._counted = True
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_counted", False):
            LimitedSMTP.open_sessions -= 1
            self._counted = False
        super().connection_lost(exc)
