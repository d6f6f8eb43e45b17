"""The retry policy, in one place: what an SMTP reply means, what is final, what suppresses
an address, how long to wait before the next attempt, and when the relay needs a pause.

A reply becomes an ``Outcome`` (``classify``); ``settle`` turns an outcome into the ledger
row it leads to (sent, deferred until a backoff time, or failed, with a suppression for a
dead mailbox); ``Throttle`` spaces sends to ``smtp.rate`` and pauses every worker after a
reply that says the relay itself is busy (421, 451, 452, 454, a dropped connection).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from syndicator.state import ledger
from syndicator.state.ledger import Claim, Result


class Kind(Enum):
    SENT = "sent"
    TRANSIENT = "transient"  # 4xx, disconnects, timeouts: try again later
    PERMANENT = "permanent"  # 5xx for this recipient: final
    MAILBOX = "mailbox"  # 5.1.x / 5.2.x: final, and the address is suppressed
    TOO_LARGE = "too large"  # 552 / 5.3.4 for the message: the edition's fault, not the reader's


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    code: int | None
    reply: str


# RFC 3463 statuses that say the mailbox itself is gone, not that this message was refused.
DEAD_MAILBOX = ("5.1.1", "5.1.2", "5.1.3", "5.1.10", "5.2.1")


def classify(code: int, message: str, *, rcpt: bool = False) -> Outcome:
    """What an SMTP reply means for this delivery (RFC 5321 / RFC 3463).

    Only a RCPT refusal with a dead-mailbox status suppresses the address: a content
    rejection, a full mailbox or a bare 550 may be about this message alone.
    """
    reply = f"{code} {message}".strip()
    if 200 <= code < 300:
        return Outcome(Kind.SENT, code, reply)
    if 400 <= code < 500:
        return Outcome(Kind.TRANSIENT, code, reply)
    enhanced = message.strip().split(" ", 1)[0]
    # 5.3.4 is "message too big for system"; a bare 552 after MAIL or DATA is "exceeded storage
    # allocation", the size again, unless it says the mailbox is full (5.2.2).
    if enhanced == "5.3.4" or (code == 552 and not rcpt and enhanced != "5.2.2"):
        return Outcome(Kind.TOO_LARGE, code, reply)
    if rcpt and enhanced in DEAD_MAILBOX:
        return Outcome(Kind.MAILBOX, code, reply)
    return Outcome(Kind.PERMANENT, code, reply)


def backoff(attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with jitter: seconds to wait after ``attempts`` failures."""
    delay: float = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.5, 1.0)


def settle(item: Claim, outcome: Outcome, max_attempts: int) -> tuple[Result, tuple[str, str] | None]:
    """The ledger row an SMTP outcome leads to, and a suppression for a dead mailbox."""
    if outcome.kind is Kind.SENT:
        return Result(item, ledger.SENT, outcome.code, outcome.reply), None
    if outcome.kind is Kind.TRANSIENT and item.attempts + 1 < max_attempts:
        retry_at = int(time.time() + backoff(item.attempts + 1))
        return Result(item, ledger.DEFERRED, outcome.code, outcome.reply, retry_at), None
    result = Result(item, ledger.FAILED, outcome.code, outcome.reply)
    if outcome.kind is Kind.MAILBOX:
        return result, (item.address, f"bounced: {outcome.reply}")
    return result, None


RELAY_BUSY = (None, 421, 451, 452, 454)  # None: disconnected or timed out


class Throttle:
    """``smtp.rate`` as evenly spaced send slots, plus a shared pause after 421/451/454.

    ``clock`` and ``sleep`` default to the running loop's; tests pass a fake pair.
    """

    MAX_PAUSE = 10.0  # seconds: the longest shared pause, however many refusals in a row

    def __init__(self, rate: float, *, clock: Callable[[], float] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0
        self.paused_until = 0.0
        self.strikes = 0
        self._clock = clock
        self._sleep = sleep

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def wait(self) -> None:
        while True:
            now = self._now()
            if now < self.paused_until:
                await self._sleep(self.paused_until - now)
                continue
            if self.interval:
                slot = max(now, self.next_slot)
                self.next_slot = slot + self.interval
                if slot > now:
                    await self._sleep(slot - now)
            return

    def idle(self) -> bool:
        """Whether ``wait`` would return at once for any number of sends: no rate, no pause."""
        return not self.interval and self._now() >= self.paused_until

    def feedback(self, outcome: Outcome) -> None:
        # A greylisting 450 concerns one recipient; these say the relay itself is overloaded.
        if outcome.kind is Kind.TRANSIENT and outcome.code in RELAY_BUSY:
            # Slow everyone down, more with each consecutive refusal, instead of hammering.
            self.strikes += 1
            pause = min(self.MAX_PAUSE, 0.1 * 2 ** min(self.strikes - 1, 7))
            self.paused_until = max(self.paused_until, self._now() + pause)
        elif outcome.kind is Kind.SENT:
            self.strikes = 0
