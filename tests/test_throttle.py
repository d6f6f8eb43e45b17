"""``Throttle``: sends spaced to ``smtp.rate``, and one shared, growing pause when the relay is busy."""

from __future__ import annotations

import asyncio

from syndicator.mail.policy import Kind, Outcome, Throttle


class FakeTime:
    """A clock that only moves when the throttle sleeps: every wait is exact and instant."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def throttle(rate: float) -> tuple[Throttle, FakeTime]:
    fake = FakeTime()
    return Throttle(rate, clock=fake.clock, sleep=fake.sleep), fake


def busy(code: int | None = 421) -> Outcome:
    return Outcome(Kind.TRANSIENT, code, "4.3.2 try later")


SENT = Outcome(Kind.SENT, 250, "ok")


def send_times(th: Throttle, fake: FakeTime, count: int) -> list[float]:
    async def run() -> list[float]:
        times = []
        for _ in range(count):
            await th.wait()
            times.append(round(fake.now - 1000.0, 6))
        return times

    return asyncio.run(run())


def test_rate_spaces_sends_evenly() -> None:
    th, fake = throttle(rate=4)
    assert send_times(th, fake, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_no_rate_never_waits() -> None:
    th, fake = throttle(rate=0)
    assert send_times(th, fake, 100) == [0.0] * 100
    assert fake.slept == []


def test_an_idle_sender_gets_no_burst_credit_but_no_wait_either() -> None:
    th, fake = throttle(rate=2)
    send_times(th, fake, 1)
    fake.now += 60  # a minute with nothing to send
    assert send_times(th, fake, 3) == [60.0, 60.5, 61.0]


def test_a_busy_relay_pauses_every_sender_longer_each_time() -> None:
    th, fake = throttle(rate=0)
    pauses = []
    for _ in range(10):
        th.feedback(busy())
        before = fake.now
        send_times(th, fake, 1)
        pauses.append(round(fake.now - before, 6))
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]


def test_a_sent_message_resets_the_pause() -> None:
    th, fake = throttle(rate=0)
    for _ in range(4):
        th.feedback(busy(451))
    send_times(th, fake, 1)
    th.feedback(SENT)
    th.feedback(busy(454))
    before = fake.now
    send_times(th, fake, 1)
    assert round(fake.now - before, 6) == 0.1


def test_a_dropped_connection_counts_as_busy_but_greylisting_does_not() -> None:
    th, fake = throttle(rate=0)
    th.feedback(busy(450))  # one recipient greylisted: no reason to slow the others
    th.feedback(Outcome(Kind.PERMANENT, 550, "no"))
    assert send_times(th, fake, 1) == [0.0]
    th.feedback(busy(None))
    assert send_times(th, fake, 1) == [0.1]


def test_idle_only_without_a_rate_or_a_pause() -> None:
    """``idle`` lets a sender take the next message ahead (its envelope pipelined): never when
    a rate spaces sends, nor during a pause after a busy reply."""
    free, fake = throttle(0)
    assert free.idle()
    free.feedback(busy())
    assert not free.idle()
    fake.now += Throttle.MAX_PAUSE
    assert free.idle()
    spaced, _ = throttle(300)
    assert not spaced.idle()
