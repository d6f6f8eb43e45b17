"""Inbound against real servers: Postfix mails its real DSNs to the VERP address, and Dovecot
serves the inbound mailbox over IMAPS."""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.mail.returns import ReturnPaths
from syndicator.state import lists
from syndicator.state.store import Store
from tests import inbound_mail as mail
from tests.conftest import Project
from tests.mta import dovecot, postfix, wait_for

SECRET = b"test-secret-for-signing-tokens-0123456789"
ALIVE, DEAD = "alice@readers.example.net", "dead@readers.example.net"


def _suppressed(project: Project) -> dict[str, str]:
    store = Store.open(load_config(project.config).store_url)
    try:
        return {s.address: s.reason for s in lists.suppressions(store)}
    finally:
        store.close()


def _configure(project: Project, port: int, inbound: str) -> None:
    project.port = port
    project.recipients = [ALIVE, DEAD]
    project.write_config(project.write_config().read_text() + inbound)


def test_postfix_bounces_a_dead_mailbox_and_the_next_edition_skips_it(
    project: Project, tmp_path: Path
) -> None:
    with postfix({"readers.example.net": ["alice"], "news.example.org": ["bounces"]}) as mta:
        _configure(project, mta.port, '\n[inbound]\naddress = "bounces@news.example.org"\n')
        result = CliRunner().invoke(cli, ["send", "--quiet"])
        assert result.exit_code == 0, result.output  # the relay took both: it bounces later, by mail
        bounces = mta.maildir("news.example.org", "bounces")
        wait_for(lambda: any((bounces / "new").glob("*")), "Postfix's DSN", timeout=60)
        assert "dsn=5.1.1, status=bounced" in mta.log()
        result = CliRunner().invoke(cli, ["inbound", f"maildir://{bounces}"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("inbound: 1 new message (1 bounced,")
        assert _suppressed(project) == {DEAD: "bounce 5.1.1"}

        project.seed("100_next.txt", "The next day's lead\n\nIts text.\n")
        result = CliRunner().invoke(cli, ["send", "--quiet"])
        assert result.exit_code == 0, result.output
        inbox = mta.maildir("readers.example.net", "alice")
        wait_for(lambda: len(list((inbox / "new").glob("*"))) == 2, "the second edition at alice's")
        assert mta.log().count("to=<dead@readers.example.net>") == 1  # never mailed again
        assert len(list((bounces / "new").glob("*"))) == 0


def test_inbound_reads_an_imaps_folder_and_marks_what_it_handled(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import FaultyServer  # noqa: F401 - only the type

    with dovecot("bounces", "imap-password-0123") as imap:
        _configure(
            project,
            25,
            f'\n[inbound]\naddress = "bounces@news.example.org"\n'
            f'source = "imaps://bounces@127.0.0.1:{imap.port}/INBOX"\n'
            'done_folder = "Handled"\n',
        )
        monkeypatch.setenv("SYNDICATOR_INBOUND_PASSWORD", imap.password)
        monkeypatch.setenv("SSL_CERT_FILE", str(imap.ca_file))  # trust the test CA, as a system store would
        config = load_config(project.config)
        store = Store.open(config.store_url)
        try:
            from datetime import UTC, datetime

            from syndicator.mail.edition import open_edition

            edition = open_edition(config, store, datetime(2026, 11, 25, 7, tzinfo=UTC))
            assert edition is not None
            from syndicator.state import ledger

            ids = ledger.message_ids(store, edition.id)
        finally:
            store.close()
        returns = ReturnPaths.of(config, SECRET)
        assert returns is not None
        for n, data in enumerate(
            [
                mail.dsn(returns.bounce_address(ids[DEAD]), DEAD, ids[DEAD]),
                mail.plain_letter("bounces@news.example.org"),
            ]
        ):
            path = imap.maildir / "new" / f"100{n}.test:2,"
            path.write_bytes(data)
            shutil.chown(path, "dovecot", "dovecot")
        result = CliRunner().invoke(cli, ["inbound"])
        assert result.exit_code == 0, result.output
        assert result.output.startswith("inbound: 2 new messages (1 bounced,")
        assert "1 unrecognised" in result.output
        assert _suppressed(project) == {DEAD: "bounce 5.1.1"}
        again = CliRunner().invoke(cli, ["inbound"])
        assert again.output.startswith("inbound: 0 new messages"), again.output
        # The DSN moved to the done folder, read; the letter nobody recognised stays in the inbox.
        from imapclient import IMAPClient

        client = IMAPClient(
            "127.0.0.1",
            port=imap.port,
            ssl=True,
            ssl_context=ssl.create_default_context(cafile=str(imap.ca_file)),
        )
        client.login(imap.user, imap.password)
        try:
            client.select_folder("Handled")
            handled = client.fetch(client.search(["ALL"]), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
            client.select_folder("INBOX")
            left = client.fetch(client.search(["ALL"]), ["FLAGS", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        finally:
            client.logout()
        assert [b"Undelivered Mail" in v[b"BODY[HEADER.FIELDS (SUBJECT)]"] for v in handled.values()] == [
            True
        ]
        assert [b"\\Seen" in v[b"FLAGS"] for v in handled.values()] == [True]
        assert [b"Loved the story" in v[b"BODY[HEADER.FIELDS (SUBJECT)]"] for v in left.values()] == [True]


def test_a_wrong_imap_password_is_one_line_and_exit_1(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dovecot("bounces", "imap-password-0123") as imap:
        _configure(
            project,
            25,
            '\n[inbound]\naddress = "bounces@news.example.org"\n'
            f'source = "imaps://bounces@127.0.0.1:{imap.port}/INBOX"\n',
        )
        monkeypatch.setenv("SYNDICATOR_INBOUND_PASSWORD", "wrong")
        monkeypatch.setenv("SSL_CERT_FILE", str(imap.ca_file))
        result = CliRunner().invoke(cli, ["inbound"])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot read imaps://127.0.0.1:{imap.port}/INBOX: ")
    assert "wrong" not in result.output  # no secret in the message
    assert len(result.output.splitlines()) == 1
    assert os.environ["SYNDICATOR_INBOUND_PASSWORD"] == "wrong"
