"""Rough edges a newcomer hit: plurals, a closed pipe, counts of skipped readers, "the The"."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.mail.digest import render_digest
from syndicator.mail.subscriptions import confirmation_message
from syndicator.seeds.identity import load_stories
from syndicator.state import lists
from syndicator.state.store import Store
from syndicator.text import plural
from tests.conftest import CLOCK, FaultyServer, Project, SmtpServer
from tests.test_send import configure, ledger_counts, send

SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "config" / "syndicator.toml"


def test_plural_follows_english_counts() -> None:
    assert [plural(n, "story") for n in (0, 1, 2)] == ["0 stories", "1 story", "2 stories"]
    assert plural(2, "day") == "2 days"
    assert plural(3, "person", "people") == "3 people"


def test_the_shipped_subject_says_1_story(project: Project) -> None:
    text = project.config.read_text()
    shipped = next(line for line in SHIPPED_CONFIG.read_text().splitlines() if line.startswith("subject ="))
    kept = [line for line in text.splitlines() if not line.startswith("subject =")]
    project.config.write_text("\n".join(kept).replace("[digest]", "[digest]\n" + shipped, 1) + "\n")
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed("001_one.txt", "Only one story today\n\nIts text.\n")
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        stories = load_stories(config, store, CLOCK)
    finally:
        store.close()
    subject = render_digest(config, stories, CLOCK).subject
    assert "1 story," in subject and "stories" not in subject


def test_the_site_title_is_not_put_after_the(project: Project) -> None:
    config = load_config(project.config)
    mail = confirmation_message(config, "reader@example.com", "https://example.org/confirm/x", 0)
    parsed = email.message_from_bytes(mail, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_content()
    assert f"digest of {config.site.title}" in body
    assert f"the {config.site.title}" not in body


def test_status_into_a_closed_pipe_ends_quietly(project: Project) -> None:
    env = {**os.environ, "SYNDICATOR_CONFIG": str(project.config)}
    script = f"{sys.executable} -m syndicator status | head -c 0"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stderr and "Traceback" not in done.stderr


def test_an_edition_counts_the_readers_it_skipped(project: Project, faulty_smtp: FaultyServer,
                                                 store_url: str) -> None:
    configure(project, faulty_smtp, store_url, ["alice@example.com", "bob@example.net"])
    store = Store.open(store_url)
    try:
        lists.suppress(store, "bob@example.net", "unsubscribed", 0)
    finally:
        store.close()
    assert send().exit_code == 0
    assert faulty_smtp.handler.per_recipient().keys() == {"alice@example.com"}
    assert (ledger_counts(store_url)["sent"], ledger_counts(store_url)["suppressed"]) == (1, 1)
    status = CliRunner().invoke(cli, ["status"])
    assert status.exit_code == 0
    row = status.output.splitlines()[1].split()
    assert row[4:9] == ["1", "0", "0", "0", "1"]  # sent, pending, deferred, failed, suppressed


def test_a_test_copys_message_id_starts_with_no_hyphen(project: Project, smtp_server: SmtpServer) -> None:
    project.port = smtp_server.port
    project.write_config()
    result = CliRunner().invoke(cli, ["send", "--to", "editor@example.com"])
    assert result.exit_code == 0, result.output
    (received,) = smtp_server.received
    mid = str(received.message["Message-ID"])
    assert re.fullmatch(r"<test\.\d+\.[0-9a-f]{24}@example\.org>", mid), mid


def test_local_addresses_are_refused_with_a_hint_and_allowed_when_asked(project: Project) -> None:
    text = project.write_config().read_text()
    project.write_config(text.replace('recipients = ["alice@example.com", "bob@example.net"]',
                                      'recipients = ["me@localhost", "bob@news.test"]'))
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 2
    hint = "set digest.allow_local_addresses = true to mail localhost and special-use domains"
    assert hint in result.output
    anchor = 'secret_env = "SYNDICATOR_TEST_SECRET"'
    allowed = project.config.read_text().replace(anchor, anchor + "\nallow_local_addresses = true")
    project.write_config(allowed)
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    listed = CliRunner().invoke(cli, ["subscribers"]).output
    assert "recipient   me@localhost  (config)" in listed and "recipient   bob@news.test  (config)" in listed
    refused = CliRunner().invoke(cli, ["subscribe", "not an address@localhost"])
    assert refused.exit_code == 2


def test_the_footer_says_whether_the_reader_subscribed_or_was_listed(
        project: Project, faulty_smtp: FaultyServer) -> None:
    from syndicator.state import lists as store_lists

    configure(project, faulty_smtp, "sqlite:///" + str(project.root / "state.db"), ["listed@example.com"])
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        store_lists.request_confirmation(store, "fan@example.org", "d", 1, canonical="fan@example.org",
                                         cooldown=None)
        assert store_lists.confirm(store, "fan@example.org", "d", 2)
    finally:
        store.close()
    assert send().exit_code == 0
    footers = {}
    for rcpt, _, data in faulty_smtp.handler.accepted:
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        text = msg.get_body(("plain",))
        page = msg.get_body(("html",))
        assert text is not None and page is not None
        plain = " ".join(str(text.get_content()).split())
        footers[rcpt] = plain
        reason = ("The Test Dispatch (example.org) put this address on its digest list"
                  if rcpt == "listed@example.com" else "you subscribed to the digest from The Test Dispatch")
        assert reason in plain, rcpt
        assert reason in " ".join(str(page.get_content()).split()), rcpt
    assert set(footers) == {"listed@example.com", "fan@example.org"}


def test_clean_and_one_line_shortcuts_agree_with_the_rules_on_any_text() -> None:
    """ASCII printable text skips the regexes: every kind of character, in any mix, comes out
    as the regexes make it."""
    import random
    import re

    from syndicator.text import clean, one_line

    illegal = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\u202a-\u202e"
                         "\u2066-\u2069\ufffe\uffff\ud800-\udfff]")
    alphabet = ["a", "Z", "~", " ", "  ", "\t", "\n", "\r", "\x00", "\x0b", "\x7f", "\x85", "\xa0",
                "\u2028", "\u202e", "\u3000", "é", "\ud800", "<", "&"]
    rng = random.Random(3)
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert clean(text) == illegal.sub("", text), repr(text)
        assert one_line(text) == re.sub(r"\s+", " ", illegal.sub("", text)).strip(), repr(text)


def test_long_dates_are_strftimes_in_every_month_and_weekday() -> None:
    from datetime import date, datetime, timedelta

    from syndicator.templating import _longdate

    day = datetime(2026, 1, 1, 12, 0)
    for _ in range(400):
        assert _longdate(day) == f"{day:%A} {day.day} {day:%B %Y}"
        day += timedelta(days=1)
    assert _longdate(datetime.combine(date(999, 3, 2), datetime.min.time())) == "Saturday 2 March 999"
