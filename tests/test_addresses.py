"""Addresses outside plain ASCII dot-atoms: display names with commas, IDN domains."""

from __future__ import annotations

from email import message_from_bytes, policy

from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.mail.message import list_id
from syndicator.mail.tokens import read_unsubscribe_token
from syndicator.state import lists
from syndicator.state.store import Store
from tests.conftest import FaultyServer, Project


def _configure(project: Project, server: FaultyServer, sender: str, recipients: list[str]) -> None:
    project.port = server.port
    project.recipients = recipients
    text = project.write_config().read_text()
    project.write_config(text.replace('from = "Test Digest <digest@example.org>"', f'from = "{sender}"'))


def test_a_display_name_with_a_comma_is_kept_whole(project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, "Smith, Jane <jane@example.org>", ["alice@example.com"])
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    ((_, _, data),) = faulty_smtp.handler.accepted
    msg = message_from_bytes(data, policy=policy.default)
    assert msg["From"].addresses[0].display_name == "Smith, Jane"
    assert msg["From"].addresses[0].addr_spec == "jane@example.org"


def test_an_idn_sender_domain_and_recipient_work_and_the_recipient_can_unsubscribe(
        project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, "Nachrichten <news@bücher.de>", ["leser@bücher.de"])
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    ((rcpt, message_id, data),) = faulty_smtp.handler.accepted
    assert rcpt == "leser@xn--bcher-kva.de"
    assert message_id.endswith("@xn--bcher-kva.de>")
    msg = message_from_bytes(data, policy=policy.default)
    token = msg["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0].rsplit("/u/", 1)[1]
    config = load_config(project.config)
    address = read_unsubscribe_token(config.secret(), list_id(config), token)
    store = Store.open(config.store_url)
    try:
        lists.suppress(store, address, "unsubscribed", 0)
        assert "leser@bücher.de" in lists.suppressed_addresses(store)
    finally:
        store.close()
    project.seed("001_more.txt", "Another Story\n\nMore news.\n")
    assert CliRunner().invoke(cli, ["send", "--quiet"]).exit_code == 0
    assert len(faulty_smtp.handler.accepted) == 1  # the unsubscribed reader got nothing more
