"""The fast send path, end to end: several connections, forced worker processes, every byte right.

Not a benchmark (no timing here; see benchmarks/bench_send.py): it proves that the pipelined
transactions, spliced messages, batched claims and group commits give every recipient exactly
their own message.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.mail.edition import factory_for, unsubscribe_url
from syndicator.state import ledger
from syndicator.state.store import Store
from tests.conftest import Project, SmtpServer

RECIPIENTS = [f"reader{n:04d}@example{n % 7}.com" for n in range(1200)]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "no pipelining"])
def test_every_recipient_gets_exactly_their_own_byte_correct_message(
        project: Project, smtp_server: SmtpServer, pipelining: bool) -> None:
    smtp_server.handler.pipelining = pipelining
    project.port = smtp_server.port
    (project.root / "config").mkdir(exist_ok=True)
    (project.root / "config" / "recipients.txt").write_text(
        "# the list\n" + "".join(f"{a.upper() if i % 5 == 0 else a}\n" for i, a in enumerate(RECIPIENTS)))
    project.recipients = []
    project.extra = ""
    text = project.write_config().read_text()
    text = text.replace('recipients = []', 'recipients = []\nrecipients_file = "config/recipients.txt"')
    text = text.replace("concurrency = 2", "concurrency = 6\nprocesses = 2")
    project.config.write_text(text)

    result = CliRunner().invoke(cli, ["send"])
    assert result.exit_code == 0, result.output
    assert f"sent {len(RECIPIENTS)}, deferred 0, failed 0" in result.output

    received = smtp_server.received
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(RECIPIENTS)  # each exactly once

    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        (edition,) = ledger.editions(store)
        counts = ledger.counts(store, edition.id)
        rows = ledger.message_ids(store, edition.id)
    finally:
        store.close()
    assert counts[ledger.SENT] == len(RECIPIENTS)
    assert len(set(rows.values())) == len(RECIPIENTS)

    secret = os.environ["SYNDICATOR_TEST_SECRET"].encode()
    factory = factory_for(config, edition, secret)
    links = unsubscribe_url(config, secret)
    for item in received:
        (rcpt,) = item.rcpt_tos
        expected = factory.build(rcpt, rows[rcpt])
        assert item.data == expected, rcpt  # byte for byte what the factory makes for them
        msg = message_from_bytes(item.data, policy=policy.default)
        assert msg["To"] == rcpt
        assert msg["Message-ID"] == rows[rcpt]
        assert item.mail_from == "digest@example.org"
        link = links(rcpt)
        assert msg["List-Unsubscribe"].startswith(f"<{link}>")
        body = msg.get_body(("plain",))
        assert body is not None and link in body.get_content()
    assert edition.created_at <= int(datetime.now(UTC).timestamp())
