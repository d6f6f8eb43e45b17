"""A digest has a size bound: a seed with thousands of briefs still mails one readable message
per reader under Gmail's 102 KB clip, and a relay's 552 for size fails the edition, not readers."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage

from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.state import ledger
from syndicator.state.store import Store
from tests.conftest import FaultyServer, Project

GMAIL_CLIP = 102 * 1024


def _configure(project: Project, server: FaultyServer, digest: str = "",
               recipients: tuple[str, ...] = ("alice@example.com", "bob@example.net")) -> None:
    project.port = server.port
    project.recipients = list(recipients)
    text = project.write_config().read_text()
    anchor = 'secret_env = "SYNDICATOR_TEST_SECRET"\n'
    project.write_config(text.replace(anchor, anchor + digest))


def _only(project: Project, name: str, text: str) -> None:
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed(name, text)


def _briefs(count: int, words: int = 12) -> str:
    body = " ".join(["word"] * words)
    briefs = "".join(f"Brief number {n} about the budget\n{body} {n}.\n\n" for n in range(count))
    return f"The lead story of a very long day\n\nThe lead's first paragraph.\n\n{briefs}"


def _parts(data: bytes) -> tuple[str, str]:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    text, page = (part.get_content() for part in msg.iter_parts())
    return text, page


def _send(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["send", "--quiet", *args])
    return result.exit_code, result.output


def test_thousands_of_briefs_make_one_readable_message_under_the_clip(
        project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp)
    _only(project, "001_flood.txt", _briefs(3000))
    code, output = _send()
    assert code == 0, output
    assert len(faulty_smtp.handler.accepted) == 2
    for _, _, data in faulty_smtp.handler.accepted:
        assert len(data) < GMAIL_CLIP
        text, page = _parts(data)
        shown = re.findall(r"Brief number (\d+) about the budget", text)
        assert len(shown) == 19  # the lead and the newest 19 others: digest.max_stories = 20
        match = re.search(r"And 2981 more stories: (https://example\.org/digests/\S+\.html)\s", text)
        assert match, text[-800:]
        assert re.search(f'<a href="{re.escape(match.group(1))}"[^>]*>And 2981 more stories</a>', page)
        assert "/u/" in text.rsplit("And 2981", 1)[1]  # the unsubscribe link survives, after it
    # The edition covers every story: the next one does not mail the rest again as new.
    code, output = _send()
    assert code == 0 and len(faulty_smtp.handler.accepted) == 2


def test_long_summaries_are_cut_at_a_word(project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, "summary_chars = 60\n", recipients=("alice@example.com",))
    _only(project, "001_long.txt", "A lead\n\n" + "Longwinded " * 200 + "end.\n")
    assert _send()[0] == 0
    ((_, _, data),) = faulty_smtp.handler.accepted
    text, _page = _parts(data)
    summary = next(line for line in text.splitlines() if line.startswith("Longwinded"))
    assert summary.endswith("Longwinded…") and len(summary) <= 60


def test_a_tight_size_bound_shows_fewer_stories_and_counts_the_rest(
        project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, "max_bytes = 30000\nsummary_chars = 2000\n",
               recipients=("alice@example.com",))
    _only(project, "001_wide.txt", _briefs(40, words=300))
    assert _send()[0] == 0
    ((_, _, data),) = faulty_smtp.handler.accepted
    assert len(data) <= 30000
    text, _page = _parts(data)
    shown = len(re.findall(r"Brief number \d+ about the budget", text))
    assert 1 <= shown < 19
    assert f"And {40 + 1 - 1 - shown} more stories: " in text


def test_fewer_new_stories_than_min_stories_wait_for_a_later_slot(
        project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, "min_stories = 3\n", recipients=("alice@example.com",))
    _only(project, "001_two.txt", "First lead\n\nText.\n\nA brief\nIts summary.\n")
    assert _send() == (0, "")
    assert faulty_smtp.handler.accepted == []
    project.seed("002_third.txt", "Third story\n\nMore text.\n")
    assert _send()[0] == 0
    ((_, _, data),) = faulty_smtp.handler.accepted
    text, _page = _parts(data)
    assert all(title in text for title in ("First lead", "A brief", "Third story"))


def test_a_552_for_size_fails_the_edition_and_keeps_its_stories(
        project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp)
    faulty_smtp.faults.data_reply = "552 5.3.4 Message size exceeds fixed limit"
    code, output = _send()
    assert code == 1
    assert "the relay refused edition 1 as too large (552 5.3.4 Message size exceeds fixed limit)" in output
    assert "its 7 stories go into the next edition" in output
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        (edition,) = ledger.editions(store)
        assert edition.status == ledger.REJECTED
        assert ledger.counts(store, edition.id)[ledger.FAILED] == 0  # no reader is blamed
        assert ledger.open_editions(store) == []
    finally:
        store.close()
    # Fixed (a relay with a larger limit, a smaller digest): the same stories go out, once each.
    faulty_smtp.faults.data_reply = ""
    code, output = _send()
    assert code == 0, output
    assert faulty_smtp.handler.per_recipient() == {"alice@example.com": 1, "bob@example.net": 1}
    text, _page = _parts(faulty_smtp.handler.accepted[0][2])
    assert "Grozev" in text


def test_a_full_mailbox_552_is_not_a_size_refusal(project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, recipients=("alice@example.com",))
    faulty_smtp.faults.data_reply = "552 5.2.2 Mailbox full"
    code, output = _send()
    assert "too large" not in output
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        (edition,) = ledger.editions(store)
        assert edition.status != ledger.REJECTED
    finally:
        store.close()
    assert code in (0, 1)
