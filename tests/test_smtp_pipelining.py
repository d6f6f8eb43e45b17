"""The pipelined session: a message's envelope rides with the last one's body, and nothing of a
message is delivered before its own ``send`` (against aiosmtpd, advertising PIPELINING or not)."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy

import pytest

from syndicator.config import Config, load_config
from syndicator.mail import smtp
from syndicator.mail.policy import Kind, Outcome
from syndicator.mail.smtp import Connection
from tests.conftest import Project, SmtpServer

SENDER = "digest@example.org"


def _config(project: Project, server: SmtpServer) -> Config:
    project.port = server.port
    return load_config(project.write_config())


def _message(rcpt: str, body: str = "Hello.\r\n.a line that starts with a dot\r\n") -> bytes:
    return (f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: test\r\nMessage-ID: <{rcpt}>\r\n\r\n"
            f"{body}").encode()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write the sessions make, in order."""
    seen: list[bytes] = []
    original = smtp._Wire._write

    def counting(self: smtp._Wire, data: bytes) -> None:
        seen.append(data)
        original(self, data)

    monkeypatch.setattr(smtp._Wire, "_write", counting)
    return seen


def _send_all(config: Config, plan: list[tuple[str, str | None]]) -> list[Outcome]:
    """Send (recipient, the recipient announced next) in order on one connection, then close."""

    async def run() -> list[Outcome]:
        connection = Connection(config, None)
        outcomes = []
        try:
            for rcpt, then in plan:
                outcomes.append(await connection.send(SENDER, rcpt, _message(rcpt), canonical=True,
                                                      then=(SENDER, then) if then else None))
        finally:
            await connection.close()
        return outcomes

    return asyncio.run(run())


def test_each_message_after_the_first_costs_one_write(project: Project, smtp_server: SmtpServer,
                                                      writes: list[bytes]) -> None:
    config = _config(project, smtp_server)
    rcpts = ["a@example.com", "b@example.com", "c@example.com"]
    outcomes = _send_all(config, [("a@example.com", "b@example.com"), ("b@example.com", "c@example.com"),
                                  ("c@example.com", None)])
    assert [o.kind for o in outcomes] == [Kind.SENT] * 3
    received = smtp_server.handler.wait_for(3)
    assert [r.rcpt_tos for r in received] == [[r] for r in rcpts]
    for item, rcpt in zip(received, rcpts, strict=True):
        assert item.data == _message(rcpt)  # dot-stuffing undone by the server: the same bytes
        assert message_from_bytes(item.data, policy=policy.default)["To"] == rcpt
    # MAIL+RCPT+DATA of a; a's body with b's envelope; b's body with c's; c's body; QUIT.
    assert len(writes) == 5
    assert writes[1].endswith(b"\r\n.\r\nMAIL FROM:<digest@example.org>\r\nRCPT TO:<b@example.com>\r\n"
                              b"DATA\r\n")
    assert writes[3].endswith(b"\r\n.\r\n") and writes[4] == b"QUIT\r\n"


def test_closing_with_an_announced_message_delivers_nothing_of_it(
        project: Project, smtp_server: SmtpServer, writes: list[bytes]) -> None:
    config = _config(project, smtp_server)
    outcomes = _send_all(config, [("a@example.com", "b@example.com")])  # b announced, never sent
    assert [o.kind for o in outcomes] == [Kind.SENT]
    assert b"QUIT\r\n" not in writes  # after DATA it would be message text: the session is dropped
    assert _send_all(config, [("c@example.com", None)])[0].kind is Kind.SENT
    received = smtp_server.handler.wait_for(2)
    assert [r.rcpt_tos for r in received] == [["a@example.com"], ["c@example.com"]]


def test_a_refused_announced_recipient_fails_alone_and_the_session_goes_on(
        project: Project, smtp_server: SmtpServer) -> None:
    smtp_server.handler.refuse["b@example.com"] = "550 5.1.1 no such user"
    config = _config(project, smtp_server)
    outcomes = _send_all(config, [("a@example.com", "b@example.com"), ("b@example.com", "c@example.com"),
                                  ("c@example.com", None)])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.MAILBOX, Kind.SENT]
    assert smtp_server.handler.connections == 1
    received = smtp_server.handler.wait_for(2)
    assert [r.rcpt_tos for r in received] == [["a@example.com"], ["c@example.com"]]


def test_sending_other_than_the_announced_message_starts_a_clean_session(
        project: Project, smtp_server: SmtpServer) -> None:
    config = _config(project, smtp_server)
    outcomes = _send_all(config, [("a@example.com", "b@example.com"), ("c@example.com", None)])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.SENT]
    assert smtp_server.handler.connections == 2
    received = smtp_server.handler.wait_for(2)
    assert [r.rcpt_tos for r in received] == [["a@example.com"], ["c@example.com"]]


def test_without_pipelining_commands_go_one_at_a_time(project: Project, smtp_server: SmtpServer,
                                                      writes: list[bytes]) -> None:
    smtp_server.handler.pipelining = False
    config = _config(project, smtp_server)
    outcomes = _send_all(config, [("a@example.com", "b@example.com"), ("b@example.com", None)])
    assert [o.kind for o in outcomes] == [Kind.SENT, Kind.SENT]
    assert [r.rcpt_tos for r in smtp_server.handler.wait_for(2)] == [["a@example.com"], ["b@example.com"]]
    assert writes[:4] == [b"MAIL FROM:<digest@example.org>\r\n", b"RCPT TO:<a@example.com>\r\n", b"DATA\r\n",
                          writes[3]]
    assert writes[3].endswith(b"\r\n.\r\n") and b"MAIL" not in writes[3]
    assert len(writes) == 9  # four a message, QUIT


REPLIES = (b"250 2.0.0 Ok: queued as 4F1\r\n250 2.1.0 Ok\r\n250-first line\r\n250-second\r\n250 last\r\n"
           b"354 End data with <CR><LF>.<CR><LF>\r\n550 5.1.1 <x@example.com>: unknown \xc3\xa9\r\n")
PARSED = [(250, "2.0.0 Ok: queued as 4F1"), (250, "2.1.0 Ok"), (250, "first line second last"),
          (354, "End data with <CR><LF>.<CR><LF>"), (550, "5.1.1 <x@example.com>: unknown é")]


@pytest.mark.parametrize("cuts", [[], [1], [3, 4], [27, 28, 29], list(range(1, len(REPLIES)))],
                         ids=["whole", "after 1", "inside a code", "around a CRLF", "byte by byte"])
def test_replies_are_read_whatever_the_reads_cut(cuts: list[int]) -> None:
    async def run() -> list[tuple[int, str]]:
        wire = smtp._Wire(timeout=5, pipelining=True)
        for start, end in zip([0, *cuts], [*cuts, len(REPLIES)], strict=True):
            wire.data_received(REPLIES[start:end])
        return list(wire.replies)

    assert asyncio.run(run()) == PARSED


def test_a_malformed_or_endless_reply_breaks_the_session() -> None:
    async def run(data: bytes) -> bool:
        wire = smtp._Wire(timeout=5, pipelining=True)
        wire.data_received(data)
        return wire.closed

    assert asyncio.run(run(b"250 ok\r\nhello there\r\n"))
    assert asyncio.run(run(b"250 " + b"x" * 70000))
    assert asyncio.run(run(b"250-more\r\n" * 1001))
    assert not asyncio.run(run(b"250 ok\r\n250-more\r\n"))
