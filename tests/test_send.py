"""`syndicator send` against real SMTP servers that behave and misbehave, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syndicator.cli import cli
from syndicator.state import ledger, lists
from syndicator.state.store import Store
from tests.conftest import FaultyServer, Project

MANY = [f"reader{n:03d}@example.com" for n in range(60)]


@pytest.fixture(params=["sqlite", "postgres", "sqlite, relay without PIPELINING"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test on SQLite and PostgreSQL against a relay that pipelines, as real relays do
    (each message's envelope rides with the last one's body), and once more on SQLite against
    one that does not (command by command): how the relay talks does not depend on the store."""
    if request.param.endswith("PIPELINING") and "faulty_smtp" in request.fixturenames:
        server: FaultyServer = request.getfixturevalue("faulty_smtp")
        server.faults.pipelining = False
    if request.param.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def configure(project: Project, server: FaultyServer, store_url: str, recipients: list[str],
              **smtp: object) -> None:
    project.store = store_url
    project.port = server.port
    project.recipients = recipients
    settings = {"retry_for": 20, "lease": 2, **smtp}
    lines = project.write_config().read_text().splitlines()
    kept = [line for line in lines if line.split(" = ")[0] not in settings]
    extra = [f"{k} = {v}" for k, v in settings.items()]
    project.config.write_text("\n".join(kept + extra) + "\n")


def send(*args: str) -> Result:
    return CliRunner().invoke(cli, ["send", "--quiet", *args])


def ledger_counts(store_url: str) -> dict[str, int]:
    store = Store.open(store_url)
    try:
        totals: Counter[str] = Counter()
        for edition in ledger.editions(store):
            totals.update(ledger.counts(store, edition.id))
        return dict(totals)
    finally:
        store.close()


def test_every_recipient_gets_one_message_and_a_second_send_sends_nothing(
        project: Project, faulty_smtp: FaultyServer, store_url: str) -> None:
    configure(project, faulty_smtp, store_url, ["alice@example.com", "Bob@Example.net", "alice@EXAMPLE.com"])
    result = send()
    assert result.exit_code == 0, result.output
    assert faulty_smtp.handler.per_recipient() == {"alice@example.com": 1, "bob@example.net": 1}
    assert send().exit_code == 0
    assert len(faulty_smtp.handler.accepted) == 2
    assert ledger_counts(store_url)["sent"] == 2


def test_a_refused_mailbox_fails_alone_and_is_suppressed(
        project: Project, faulty_smtp: FaultyServer, store_url: str) -> None:
    faulty_smtp.faults.refuse["bob@example.net"] = "550 5.1.1 <bob@example.net>: Recipient address rejected"
    configure(project, faulty_smtp, store_url, ["alice@example.com", "bob@example.net", "carol@example.org"])
    result = send()
    assert result.exit_code == 1
    assert "failed 1" in result.output
    assert "bob@example.net: 550 5.1.1" in result.output
    assert "error: 1 deliveries failed permanently" in result.output
    assert set(faulty_smtp.handler.per_recipient()) == {"alice@example.com", "carol@example.org"}
    store = Store.open(store_url)
    try:
        assert lists.suppressed_addresses(store) == {"bob@example.net"}
    finally:
        store.close()


def test_transient_replies_and_drops_are_retried_until_each_recipient_has_exactly_one(
        project: Project, faulty_smtp: FaultyServer, store_url: str) -> None:
    faulty_smtp.faults.transient_rate = 0.2
    faulty_smtp.faults.drop_first = {MANY[3], MANY[17]}
    configure(project, faulty_smtp, store_url, MANY, concurrency=4, retry_for=60)
    result = send()
    assert result.exit_code == 0, result.output
    received = faulty_smtp.handler.per_recipient()
    assert received == dict.fromkeys(MANY, 1)
    assert ledger_counts(store_url)["sent"] == len(MANY)


def test_a_stalled_server_times_out_and_the_message_is_retried(
        project: Project, faulty_smtp: FaultyServer, store_url: str) -> None:
    faulty_smtp.faults.stall_first = {"alice@example.com"}
    faulty_smtp.faults.stall_seconds = 4
    configure(project, faulty_smtp, store_url, ["alice@example.com", "bob@example.net"], timeout=1)
    result = send()
    assert result.exit_code == 0, result.output
    assert faulty_smtp.handler.per_recipient() == {"alice@example.com": 1, "bob@example.net": 1}


def test_smtp_down_exits_1_and_loses_nothing(project: Project, faulty_smtp: FaultyServer,
                                             store_url: str) -> None:
    configure(project, faulty_smtp, store_url, ["alice@example.com", "bob@example.net"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    text = project.config.read_text()
    project.config.write_text(text.replace(f"port = {faulty_smtp.port}", f"port = {closed_port}"))
    result = send()
    assert result.exit_code == 1
    assert f"error: cannot connect to SMTP relay 127.0.0.1:{closed_port}" in result.output
    assert ledger_counts(store_url)["pending"] == 2
    project.config.write_text(text)
    assert send().exit_code == 0
    assert faulty_smtp.handler.per_recipient() == {"alice@example.com": 1, "bob@example.net": 1}


def test_retry_failed_sends_permanent_failures_again(project: Project, faulty_smtp: FaultyServer,
                                                     store_url: str) -> None:
    faulty_smtp.faults.refuse["bob@example.net"] = "554 5.7.1 Policy rejection"
    configure(project, faulty_smtp, store_url, ["alice@example.com", "bob@example.net"])
    assert send().exit_code == 1
    faulty_smtp.faults.refuse.clear()
    assert send().exit_code == 0  # failures are final until asked for
    assert "bob@example.net" not in faulty_smtp.handler.per_recipient()
    result = send("--retry-failed")
    assert result.exit_code == 0, result.output
    assert faulty_smtp.handler.per_recipient() == {"alice@example.com": 1, "bob@example.net": 1}


def test_an_unsubscribe_mid_edition_stops_the_rest(project: Project, faulty_smtp: FaultyServer,
                                                   store_url: str) -> None:
    configure(project, faulty_smtp, store_url, MANY[:10], concurrency=1)
    from syndicator.config import load_config
    from syndicator.mail.edition import open_edition
    from tests.conftest import CLOCK

    config = load_config(project.config)
    store = Store.open(store_url)
    try:
        edition = open_edition(config, store, CLOCK)
        assert edition is not None
        lists.suppress(store, MANY[5], "unsubscribed", int(time.time()))
    finally:
        store.close()
    assert send().exit_code == 0
    received = faulty_smtp.handler.per_recipient()
    assert MANY[5] not in received
    assert len(received) == 9
    assert ledger_counts(store_url)["suppressed"] == 1


def test_the_edition_is_frozen_when_seeds_change_between_crash_and_resume(
        project: Project, faulty_smtp: FaultyServer, store_url: str) -> None:
    configure(project, faulty_smtp, store_url, MANY[:4])
    from syndicator.config import load_config
    from syndicator.mail.edition import open_edition
    from tests.conftest import CLOCK

    store = Store.open(store_url)
    try:
        edition = open_edition(load_config(project.config), store, CLOCK)
        assert edition is not None
    finally:
        store.close()
    project.seed("001_later.txt", "A Later Story\n\nIt arrived after the crash.\n")
    assert send().exit_code == 0
    subjects = {msg.split(b"\r\nSubject: ", 1)[1].split(b"\r\n", 1)[0] for _, _, msg in
                faulty_smtp.handler.accepted[:4]}
    assert len(subjects) == 1
    first_edition = [r for r, _, _ in faulty_smtp.handler.accepted[:4]]
    assert sorted(first_edition) == sorted(MANY[:4])
    # The new story goes out in the next edition, to everyone, once.
    assert faulty_smtp.handler.per_recipient() == dict.fromkeys(MANY[:4], 2)


def _spawn_send(project: Project) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SYNDICATOR_CONFIG": str(project.config)}
    return subprocess.Popen([sys.executable, "-m", "syndicator", "send", "--quiet"], cwd=project.root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_9_mid_edition_then_resume_sends_everyone_once(project: Project, faulty_smtp: FaultyServer,
                                                            store_url: str) -> None:
    recipients = [f"r{n:03d}@example.com" for n in range(120)]
    faulty_smtp.faults.delay = 0.02
    configure(project, faulty_smtp, store_url, recipients, concurrency=2)
    proc = _spawn_send(project)
    faulty_smtp.handler.wait_accepted(30)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 30 <= len(faulty_smtp.handler.accepted) < len(recipients)
    faulty_smtp.faults.delay = 0
    result = send()
    assert result.exit_code == 0, result.output
    received = faulty_smtp.handler.per_recipient()
    assert set(received) == set(recipients)
    duplicates = [r for r, n in received.items() if n > 1]
    assert len(duplicates) <= 2  # at most the one message in flight on each connection
    for address in duplicates:  # and a duplicate is recognisably the same message
        assert len({mid for r, mid, _ in faulty_smtp.handler.accepted if r == address}) == 1
    assert ledger_counts(store_url)["sent"] == len(recipients)


def test_two_senders_at_once_split_the_work_and_never_double_send(
        project: Project, faulty_smtp: FaultyServer, store_url: str) -> None:
    recipients = [f"r{n:03d}@example.com" for n in range(150)]
    faulty_smtp.faults.delay = 0.005
    configure(project, faulty_smtp, store_url, recipients, concurrency=2)
    first, second = _spawn_send(project), _spawn_send(project)
    outputs = [p.communicate(timeout=60) for p in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    assert faulty_smtp.handler.per_recipient() == dict.fromkeys(recipients, 1)
    assert ledger_counts(store_url)["sent"] == len(recipients)


def test_dry_run_opens_no_connection_and_changes_no_state(project: Project, smtp_server: object,
                                                          tmp_path: Path) -> None:
    from tests.conftest import SmtpServer

    assert isinstance(smtp_server, SmtpServer)
    project.port = smtp_server.port
    project.write_config()
    preview = tmp_path / "out"
    result = CliRunner().invoke(cli, ["send", "--dry-run", "--preview", str(preview)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "dry run: nothing was sent and nothing was changed"
    assert lines[1].startswith("subject: Grozev: Putin Could Accept NATO Expansion")
    assert lines[2:4] == ["stories: 7", "recipients: 2"]
    assert sorted(p.name for p in preview.iterdir()) == ["digest.eml", "digest.html", "digest.txt"]
    assert b"To: alice@example.com\r\n" in (preview / "digest.eml").read_bytes()
    assert smtp_server.handler.connections == 0
    assert not (project.root / "state").exists()


def test_send_to_sends_one_test_copy_and_marks_nothing(project: Project, faulty_smtp: FaultyServer) -> None:
    configure(project, faulty_smtp, "sqlite:///state/syndicator.db", ["alice@example.com"])
    result = CliRunner().invoke(cli, ["send", "--to", "editor@example.org"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("test copy sent to editor@example.org: ")
    assert faulty_smtp.handler.per_recipient() == {"editor@example.org": 1}
    assert send().exit_code == 0  # the real edition still goes to the list
    assert faulty_smtp.handler.per_recipient() == {"editor@example.org": 1, "alice@example.com": 1}


def test_a_missing_secret_is_a_clear_error(project: Project, faulty_smtp: FaultyServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    configure(project, faulty_smtp, "sqlite:///state/syndicator.db", ["alice@example.com"])
    monkeypatch.delenv("SYNDICATOR_TEST_SECRET")
    result = send()
    assert result.exit_code == 2
    assert result.output == ("error: the environment variable SYNDICATOR_TEST_SECRET (digest.secret_env) "
                             "must hold the secret that signs unsubscribe links\n")
    assert faulty_smtp.handler.accepted == []


def test_a_251_will_forward_reply_is_a_real_delivery(project: Project, faulty_smtp: FaultyServer) -> None:
    faulty_smtp.faults.rcpt_ok = "251 2.1.5 User not local; will forward"
    configure(project, faulty_smtp, "sqlite:///state/syndicator.db", ["alice@example.com"])
    assert send().exit_code == 0
    ((rcpt, _mid, data),) = faulty_smtp.handler.accepted
    assert rcpt == "alice@example.com" and b"Grozev" in data


def test_a_refused_sender_stops_the_run_and_fails_or_suppresses_no_one(
        project: Project, faulty_smtp: FaultyServer, store_url: str) -> None:
    faulty_smtp.faults.mail_reply = "553 5.1.8 Sender address rejected: not owned by user"
    configure(project, faulty_smtp, store_url, ["alice@example.com", "bob@example.net"])
    result = send()
    assert result.exit_code == 1
    assert result.output == ("error: the relay refused the sender: 553 5.1.8 Sender address rejected: "
                             "not owned by user\n")
    counts = ledger_counts(store_url)
    assert (counts["failed"], counts["suppressed"], counts["pending"]) == (0, 0, 2)
    faulty_smtp.faults.mail_reply = ""
    assert send().exit_code == 0
    assert faulty_smtp.handler.per_recipient() == {"alice@example.com": 1, "bob@example.net": 1}


def test_a_relay_limiting_connections_slows_the_run_but_everyone_gets_one(
        project: Project, faulty_smtp: FaultyServer) -> None:
    faulty_smtp.faults.max_connections = 1
    configure(project, faulty_smtp, "sqlite:///state/syndicator.db", MANY[:20], concurrency=3, retry_for=60)
    result = send()
    assert result.exit_code == 0, result.output
    assert faulty_smtp.handler.per_recipient() == dict.fromkeys(MANY[:20], 1)


def test_only_a_dead_mailbox_status_suppresses(project: Project, faulty_smtp: FaultyServer) -> None:
    faulty_smtp.faults.refuse["alice@example.com"] = "552 5.2.2 Mailbox full"
    faulty_smtp.faults.refuse["bob@example.net"] = "550 5.1.1 No such user"
    configure(project, faulty_smtp, "sqlite:///state/syndicator.db", ["alice@example.com", "bob@example.net"])
    assert send().exit_code == 1
    store = Store.open("sqlite:///state/syndicator.db")
    try:
        assert lists.suppressed_addresses(store) == {"bob@example.net"}
    finally:
        store.close()
