"""What comes back by mail reaches the list: hard bounces, repeated delays, complaints and mailed
unsubscribes suppress the reader; auto-replies, one delay and anything unproven change nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import Config, load_config
from syndicator.mail.returns import ReturnPaths
from syndicator.state import lists
from syndicator.state.store import Store
from tests import inbound_mail as mail
from tests.conftest import FaultyServer, Project

SECRET = b"test-secret-for-signing-tokens-0123456789"
READERS = [
    "alice@readers.example.net",
    "bob@readers.example.net",
    "carol@readers.example.net",
    "dead@readers.example.net",
]
INBOUND = '\n[inbound]\naddress = "bounces@news.example.org"\n'


@dataclass
class Sent:
    config: Config
    returns: ReturnPaths
    ids: dict[str, str]  # reader -> Message-ID of the digest they got
    senders: dict[str, str]  # reader -> the envelope sender (VERP) it went out with
    mailtos: dict[str, str]  # reader -> the mailto address of List-Unsubscribe

    def suppressed(self) -> dict[str, str]:
        store = Store.open(self.config.store_url)
        try:
            return {s.address: s.reason for s in lists.suppressions(store)}
        finally:
            store.close()


def _configure(project: Project, server: FaultyServer, extra: str = INBOUND) -> Config:
    project.port = server.port
    project.recipients = READERS
    project.write_config(project.write_config().read_text() + extra)
    return load_config(project.config)


@pytest.fixture
def sent(project: Project, faulty_smtp: FaultyServer) -> Iterator[Sent]:
    config = _configure(project, faulty_smtp)
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    returns = ReturnPaths.of(config, SECRET)
    assert returns is not None
    ids, senders, mailtos = {}, {}, {}
    for rcpt, mid, data in faulty_smtp.handler.accepted:
        ids[rcpt] = mid
        senders[rcpt] = faulty_smtp.handler.senders[rcpt]
        header = str(message_from_bytes(data, policy=policy.default)["List-Unsubscribe"])
        found = re.search(r"<mailto:([^?>]+)\?subject=unsubscribe>", header)
        assert found, header
        mailtos[rcpt] = found.group(1)
    assert set(ids) == set(READERS)
    yield Sent(config, returns, ids, senders, mailtos)


def _inbound(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["inbound", *args])
    return result.exit_code, result.output


def test_each_message_goes_out_from_its_own_signed_return_path(sent: Sent) -> None:
    for reader, sender in sent.senders.items():
        assert re.fullmatch(r"bounces\+[a-z2-7]{32}@news\.example\.org", sender)
        named = sent.returns.read(sender)
        assert named is not None and not named.unsubscribe
        assert sent.ids[reader].startswith(f"<{named.edition_id}.{named.id_hash}")
        assert re.fullmatch(r"bounces\+u-[a-z2-7]{32}@news\.example\.org", sent.mailtos[reader])
    assert len(set(sent.senders.values())) == len(READERS)


def test_a_hard_bounce_a_complaint_and_a_mailed_unsubscribe_suppress(sent: Sent, tmp_path: Path) -> None:
    box = mail.maildir(
        tmp_path / "Maildir",
        mail.dsn(
            sent.senders["dead@readers.example.net"],
            "dead@readers.example.net",
            sent.ids["dead@readers.example.net"],
        ),
        mail.complaint(
            "fbl@news.example.org", "bob@readers.example.net", sent.ids["bob@readers.example.net"]
        ),
        mail.unsubscribe_mail(sent.mailtos["carol@readers.example.net"], "carol@readers.example.net"),
        mail.out_of_office(sent.senders["alice@readers.example.net"], "alice@readers.example.net"),
        mail.plain_letter("bounces@news.example.org"),
    )
    code, output = _inbound(f"maildir://{box}")
    assert (code, output) == (
        0,
        "inbound: 5 new messages (1 bounced, 0 delayed, 1 complaint, 1 unsubscribed, "
        "1 auto-reply, 0 ignored, 1 unrecognised); 3 suppressed\n",
    )
    assert sent.suppressed() == {
        "dead@readers.example.net": "bounce 5.1.1",
        "bob@readers.example.net": "complaint",
        "carol@readers.example.net": "unsubscribed (mail)",
    }
    # Handled ones are marked read in place; the unrecognised letter stays new, for a person.
    assert len(list((box / "new").iterdir())) == 1
    assert all(name.endswith(":2,S") for name in (p.name for p in (box / "cur").iterdir()))
    assert len(list((box / "cur").iterdir())) == 4
    # A second run finds nothing new.
    assert _inbound(f"maildir://{box}") == (
        0,
        "inbound: 0 new messages (0 bounced, 0 delayed, 0 complaint, "
        "0 unsubscribed, 0 auto-reply, 0 ignored, 0 unrecognised); "
        "0 suppressed\n",
    )


def test_the_next_edition_skips_whom_inbound_suppressed(
    sent: Sent, project: Project, faulty_smtp: FaultyServer, tmp_path: Path
) -> None:
    box = mail.maildir(
        tmp_path / "Maildir",
        mail.dsn(
            sent.senders["dead@readers.example.net"],
            "dead@readers.example.net",
            sent.ids["dead@readers.example.net"],
        ),
    )
    assert _inbound(str(box))[0] == 0
    project.seed("100_next.txt", "Tomorrow's lead\n\nIts text.\n")
    faulty_smtp.handler.accepted.clear()
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(r for r, _, _ in faulty_smtp.handler.accepted) == sorted(
        set(READERS) - {"dead@readers.example.net"}
    )


def test_delays_suppress_only_past_the_soft_bounce_limit(sent: Sent, tmp_path: Path) -> None:
    reader = "alice@readers.example.net"
    delayed = [
        mail.dsn(
            sent.senders[reader],
            reader,
            sent.ids[reader],
            action="delayed",
            status=f"4.4.{n}",
            diagnostic="smtp; 451 4.4.1 try again later",
        )
        for n in range(1, 4)
    ]
    box = mail.maildir(tmp_path / "Maildir", *delayed[:2])
    assert "2 delayed" in _inbound(str(box))[1]
    assert sent.suppressed() == {}  # on holiday, or a full disk: still a reader
    mail.maildir(box, delayed[2])
    assert "1 suppressed" in _inbound(str(box))[1]
    assert sent.suppressed() == {reader: "bounce (soft: 3 delays in 30 days)"}


def test_forged_and_unproven_reports_suppress_nobody(sent: Sent, tmp_path: Path) -> None:
    forged_token = "bounces+" + "a" * 32 + "@news.example.org"
    victim = "alice@readers.example.net"
    box = mail.maildir(
        tmp_path / "Maildir",
        mail.dsn(forged_token, victim, "<1.0000@example.org>"),
        mail.unsubscribe_mail("bounces+u-" + "b" * 32 + "@news.example.org", victim),
        # our real Message-ID for bob, but a DSN about someone else: proves nothing about alice
        mail.dsn("bounces@news.example.org", victim, sent.ids["bob@readers.example.net"]),
    )
    code, output = _inbound(str(box))
    assert code == 0
    assert "3 unrecognised" in output
    assert sent.suppressed() == {}


def test_a_bounce_in_an_old_mtas_format_is_read_by_flufl_bounce(sent: Sent, tmp_path: Path) -> None:
    reader = "dead@readers.example.net"
    box = mail.maildir(tmp_path / "Maildir", mail.qmail_bounce(sent.senders[reader], reader))
    assert "1 bounced" in _inbound(str(box))[1]
    assert sent.suppressed() == {reader: "bounce 5.0.0"}


def test_a_complaint_found_by_its_verp_return_path(sent: Sent, tmp_path: Path) -> None:
    reader = "carol@readers.example.net"
    box = mail.maildir(
        tmp_path / "Maildir",
        mail.complaint(
            "fbl@news.example.org",
            "redacted@readers.example.net",
            "<redacted@provider>",
            return_path=sent.senders[reader],
        ),
    )
    assert "1 complaint" in _inbound(str(box))[1]
    assert sent.suppressed() == {reader: "complaint"}


def test_one_message_on_stdin_as_a_pipe_transport_hands_it_over(sent: Sent) -> None:
    reader = "dead@readers.example.net"
    data = mail.dsn(sent.senders[reader], reader, sent.ids[reader])
    result = CliRunner().invoke(cli, ["inbound", "-"], input=data)
    assert result.exit_code == 0, result.output
    assert "1 bounced" in result.output
    again = CliRunner().invoke(cli, ["inbound", "-"], input=data)  # the same message twice
    assert "0 new messages" in again.output


def test_an_mbox_source(sent: Sent, tmp_path: Path) -> None:
    import mailbox

    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    reader = "dead@readers.example.net"
    box.add(mail.dsn(sent.senders[reader], reader, sent.ids[reader]))
    box.close()
    assert "1 bounced" in _inbound(f"mbox://{path}")[1]
    assert "0 new messages" in _inbound(f"mbox://{path}")[1]


def test_a_source_that_cannot_be_read_is_one_line_and_exit_1(sent: Sent, tmp_path: Path) -> None:
    assert _inbound(f"maildir://{tmp_path}/nowhere") == (
        1,
        f"error: {tmp_path}/nowhere: not a Maildir (no cur/, new/ and tmp/)\n",
    )
    assert _inbound("pop3://host/")[0] == 1


def test_without_an_inbound_address_no_mailto_is_advertised_and_inbound_refuses(
    project: Project, faulty_smtp: FaultyServer, tmp_path: Path
) -> None:
    _configure(project, faulty_smtp, extra="")
    assert CliRunner().invoke(cli, ["send", "--quiet"]).exit_code == 0
    for rcpt, _, data in faulty_smtp.handler.accepted:
        assert b"mailto:" not in data
        assert faulty_smtp.handler.senders[rcpt] == "digest@example.org"
    box = mail.maildir(tmp_path / "Maildir")
    code, output = _inbound(str(box))
    assert code == 2 and "inbound.address is not set" in output


def test_run_reads_the_inbound_source_on_its_poll(
    project: Project, faulty_smtp: FaultyServer, tmp_path: Path
) -> None:
    import asyncio
    from datetime import UTC, datetime

    from apscheduler.triggers.cron import CronTrigger

    from syndicator.scheduler import Runner

    box = mail.maildir(tmp_path / "Maildir")
    config = _configure(
        project, faulty_smtp, INBOUND + f'source = "maildir://{box}"\npoll = "1h"\n'
    )
    assert CliRunner().invoke(cli, ["send", "--quiet"]).exit_code == 0
    returns = ReturnPaths.of(config, SECRET)
    assert returns is not None
    rcpt, mid, _ = next(a for a in faulty_smtp.handler.accepted if a[0] == "dead@readers.example.net")
    mail.maildir(box, mail.dsn(faulty_smtp.handler.senders[rcpt], rcpt, mid))
    runner = Runner(config, lambda: datetime.now(UTC), CronTrigger.from_crontab("0 7 1 1 *", timezone="UTC"))

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await asyncio.wait_for(runner.inbound_ran.wait(), 30)  # the first poll runs at start
        runner.request_stop()
        await asyncio.wait_for(task, 30)

    asyncio.run(scenario())
    store = Store.open(config.store_url)
    try:
        assert {s.address: s.reason for s in lists.suppressions(store)} == {rcpt: "bounce 5.1.1"}
    finally:
        store.close()
