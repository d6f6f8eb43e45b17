"""The run report: after an edition finishes, digest.report_to learns what it did, by mail, once."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage

from click.testing import CliRunner

from syndicator.cli import cli
from tests.conftest import FaultyServer, Project

READERS = ["alice@example.com", "bob@example.net", "gone@example.org"]


def _configure(project: Project, server: FaultyServer, report_to: str) -> None:
    project.port = server.port
    project.recipients = READERS
    text = project.write_config().read_text()
    anchor = 'secret_env = "SYNDICATOR_TEST_SECRET"\n'
    project.write_config(text.replace(anchor, anchor + f"report_to = {report_to}\n"))


def _reports(server: FaultyServer) -> list[tuple[str, EmailMessage]]:
    found = []
    for rcpt, _, data in server.handler.accepted:
        msg = message_from_bytes(data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        if str(msg["Subject"]).startswith("Digest report"):
            found.append((rcpt, msg))
    return found


def test_a_finished_edition_mails_its_report_once(project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, '["editor@example.com", "desk@example.com"]')
    faulty_smtp.faults.refuse["gone@example.org"] = "550 5.1.1 <gone@example.org>: no such user"
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 1  # one reader failed
    reports = _reports(faulty_smtp)
    assert sorted(r for r, _ in reports) == ["desk@example.com", "editor@example.com"]
    msg = reports[0][1]
    assert str(msg["Subject"]) == "Digest report: edition 1, 2 messages sent, 1 failed"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content().replace("\r\n", "\n")
    for line in ("sent        2", "deferred    0", "failed      1", "suppressed  0", "bounced     0",
                 "complained  0", "  1 x 550 5.1.1 <gone@example.org>: no such user"):
        assert line + "\n" in body, line
    assert re.search(r"The edition on the web: https://example\.org/digests/\d{4}-\d\d-\d\d-[0-9a-f]{8}\.html",
                     body)
    assert re.search(r"delivery took \d+ seconds?\.", body)
    # Nothing new: no edition, no second report.
    assert CliRunner().invoke(cli, ["send", "--quiet"]).exit_code in (0, 1)
    assert len(_reports(faulty_smtp)) == 2


def test_an_edition_still_retrying_sends_no_report_yet(project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, '"editor@example.com"')  # one address, as a plain string
    text = project.config.read_text().replace("timeout = 5", "timeout = 5\nretry_for = 0")
    project.config.write_text(text)
    faulty_smtp.faults.refuse["gone@example.org"] = "451 4.7.1 try again later"
    CliRunner().invoke(cli, ["send", "--quiet"])
    assert _reports(faulty_smtp) == []  # gone@ is deferred: the edition is not finished
    del faulty_smtp.faults.refuse["gone@example.org"]
    text = project.config.read_text().replace("retry_for = 0", "retry_for = 30")
    project.config.write_text(text)
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    ((rcpt, msg),) = _reports(faulty_smtp)
    assert rcpt == "editor@example.com"
    assert str(msg["Subject"]) == "Digest report: edition 1, 3 messages sent, 0 failed"


def test_a_test_copy_sends_no_report(project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, '"editor@example.com"')
    result = CliRunner().invoke(cli, ["send", "--to", "me@example.com"])
    assert result.exit_code == 0, result.output
    assert [r for r, _, _ in faulty_smtp.handler.accepted] == ["me@example.com"]


def test_a_bad_report_address_is_a_config_error(project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, '"not an address"')
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    assert "digest.report_to: invalid email address 'not an address'" in result.output
