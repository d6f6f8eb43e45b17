"""``syndicator subscribe / unsubscribe / subscribers / serve``: exact output and exit codes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.mail import subscriptions
from syndicator.state.store import Store
from tests.conftest import Project, SmtpServer


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def listed(project: Project, store_url: str, smtp_server: SmtpServer) -> Project:
    """The test project on SQLite and PostgreSQL, mailing through the recording SMTP server."""
    project.store = store_url
    project.port = smtp_server.port
    project.write_config()
    return project


def test_subscribers_of_a_fresh_project(listed: Project) -> None:
    result = run("subscribers")
    assert result.exit_code == 0
    assert result.stdout == (
        "recipients: 2\nconfigured: 2\nfile: 0\nconfirmed subscribers: 0\npending: 0\nsuppressed: 0\n"
        "recipient   alice@example.com  (config)\nrecipient   bob@example.net  (config)\n"
    )


def test_subscribe_mails_a_link_and_confirming_joins(listed: Project, smtp_server: SmtpServer) -> None:
    result = run("subscribe", "Carol@Example.com")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "sent a confirmation link to carol@example.com; it joins the list once confirmed\n")
    assert [r.rcpt_tos for r in smtp_server.received] == [["carol@example.com"]]
    assert "pending     carol@example.com\n" in run("subscribers").stdout
    body = smtp_server.received[0].message.get_body(("plain",))
    assert body is not None
    match = re.search(r"https://example\.org/confirm/(\S+)", body.get_content())
    assert match
    config = load_config(listed.config)
    store = Store.open(config.store_url)
    try:
        subscriptions.confirm(store, subscriptions.Signer.for_config(config), match.group(1),
                              int(time.time()))
    finally:
        store.close()
    assert "recipient   carol@example.com  (subscriber)\n" in run("subscribers").stdout
    again = run("subscribe", "carol@example.com")
    assert again.stdout == "carol@example.com is already on the list (subscriber); no confirmation sent\n"
    assert len(smtp_server.received) == 1


def test_subscribe_a_configured_address_sends_nothing(listed: Project, smtp_server: SmtpServer) -> None:
    result = run("subscribe", "alice@example.com")
    assert (result.exit_code, result.stdout) == (
        0, "alice@example.com is already on the list (config); no confirmation sent\n")
    assert smtp_server.received == []


def test_unsubscribe_then_subscribers(listed: Project) -> None:
    first = run("unsubscribe", "Alice@Example.com")
    assert (first.exit_code, first.stdout) == (
        0, "unsubscribed alice@example.com: no further digest goes to it\n")
    second = run("unsubscribe", "alice@example.com")
    assert (second.exit_code, second.stdout) == (0, "alice@example.com was already unsubscribed\n")
    listed_now = run("subscribers").stdout
    day = re.search(r"\(unsubscribed \(command line\), (\d{4}-\d\d-\d\d)\)", listed_now)
    assert day is not None  # the date it was suppressed, by the wall clock of the command
    assert listed_now == (
        "recipients: 1\nconfigured: 2\nfile: 0\nconfirmed subscribers: 0\npending: 0\nsuppressed: 1\n"
        "recipient   bob@example.net  (config)\n"
        f"suppressed  alice@example.com  (unsubscribed (command line), {day.group(1)})\n"
    )


@pytest.mark.parametrize("command", ["subscribe", "unsubscribe"])
def test_a_bad_address_is_bad_input(project: Project, command: str) -> None:
    result = run(command, "not-an-address")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ADDRESS: invalid email address 'not-an-address': ")
    assert result.stderr.count("\n") == 1


def test_subscribe_without_the_secret(project: Project, monkeypatch: pytest.MonkeyPatch,
                                      smtp_server: SmtpServer) -> None:
    monkeypatch.delenv("SYNDICATOR_TEST_SECRET")
    result = run("subscribe", "carol@example.com")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: the environment variable SYNDICATOR_TEST_SECRET (digest.secret_env) must hold the "
        "secret that signs unsubscribe links\n")
    assert smtp_server.received == []


def test_subscribe_with_the_relay_down(project: Project) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    project.port = closed.getsockname()[1]  # bound, not listening: connection refused
    project.write_config()
    try:
        result = run("subscribe", "carol@example.com")
    finally:
        closed.close()
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot connect to SMTP relay 127.0.0.1:{project.port}: ")


def test_subscribe_refused_by_the_relay(listed: Project, smtp_server: SmtpServer) -> None:
    smtp_server.handler.refuse["carol@example.com"] = "550 5.1.1 no such user"
    result = run("subscribe", "carol@example.com")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the confirmation mail to carol@example.com was not accepted: 550 5.1.1 no such user\n")


def test_serve_on_a_taken_port(project: Project) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        result = run("serve", "--port", str(taken.getsockname()[1]))
    finally:
        taken.close()
    assert result.exit_code == 1
    assert re.fullmatch(r"error: cannot listen on 127\.0\.0\.1:\d+: Address already in use\n", result.stderr)


def test_serve_end_to_end(project: Project) -> None:
    """The real command in a child process: it serves, then stops cleanly on Ctrl-C."""
    assert run("build").exit_code == 0
    exe = Path(sys.executable).with_name("syndicator")
    child = subprocess.Popen([str(exe), "serve", "--port", "0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        match = re.fullmatch(r"serving (\S+) at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)\n", line)
        assert match, line
        assert match.group(1) == str(project.output)
        response = httpx.get(match.group(2) + "rss.xml", timeout=5)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/rss+xml; charset=utf-8"
    finally:
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=10)
    assert child.returncode == 0, err
    assert "Traceback" not in err
