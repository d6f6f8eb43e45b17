"""A hostile seed or config text never forges mail: the headers on the wire are ours, exactly."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage

from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.mail.subscriptions import confirmation_message
from tests.conftest import FaultyServer, Project
from tests.test_addresses import _configure

INJECTION = "=?us-ascii?q?=0D=0AReply-To:_attacker@evil.example=0D=0AContent-Type:_text/html=0D=0A=0D=0Ahi?="
TITLE = f"Markets rally {INJECTION} today"
FROM_NAME = "Evil =?us-ascii?q?=0D=0ABcc:_victim@evil.example?= News"
OUR_HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
               "List-Unsubscribe-Post", "Auto-Submitted", "Precedence", "MIME-Version", "Content-Type"]


def _header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]


def test_an_encoded_word_in_a_title_or_the_sender_name_stays_text(
        project: Project, faulty_smtp: FaultyServer) -> None:
    _configure(project, faulty_smtp, f"{FROM_NAME} <digest@example.org>", ["alice@example.com"])
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed("001_hostile.txt", f"{TITLE}\n\nThe lead's text.\n")
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    ((rcpt, _, data),) = faulty_smtp.handler.accepted
    assert rcpt == "alice@example.com"
    assert sorted(_header_names(data)) == sorted(OUR_HEADERS)  # no Reply-To, no Bcc, no second anything
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert TITLE in str(msg["Subject"])  # the reader's client shows the title as written
    # Decoded as RFC 2047 says (adjacent encoded words join without the space between them).
    raw_from = re.search(rb"(?m)^From: (.*(?:\r\n .*)*)\r$", data)
    assert raw_from is not None
    assert str(make_header(decode_header(raw_from.group(1).decode("ascii").replace("\r\n", "")))) == (
        f"{FROM_NAME} <digest@example.org>")
    assert msg["From"].addresses[0].addr_spec == "digest@example.org"
    assert [p.get_content_type() for p in msg.walk()] == ["multipart/alternative", "text/plain", "text/html"]
    assert msg["List-Unsubscribe"].count("<") == 1  # the https link; no mailto without [inbound]


def test_an_idn_recipient_is_mailed_at_exactly_its_own_domain(
        project: Project, faulty_smtp: FaultyServer) -> None:
    # IDNA 2008 keeps ß (xn--fa-hia.de); IDNA 2003 would mail fass.de, someone else's domain.
    _configure(project, faulty_smtp, "Test Digest <digest@example.org>", ["user@faß.de", "b@xn--nxasmm1c.gr"])
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    accepted = {rcpt: data for rcpt, _, data in faulty_smtp.handler.accepted}
    assert set(accepted) == {"user@xn--fa-hia.de", "b@xn--nxasmm1c.gr"}
    for rcpt, data in accepted.items():
        assert re.search(rb"(?m)^To: " + re.escape(rcpt.encode()) + rb"\r$", data)


def test_the_confirmation_mail_to_an_idn_address_is_well_formed(project: Project) -> None:
    config = load_config(project.config)
    data = confirmation_message(config, "target@exämple.net", "https://example.org/confirm/x", 0)
    assert b"\r\nTo: target@xn--exmple-cua.net\r\n" in data
    assert sorted(_header_names(data)) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version", "Content-Type",
         "Content-Transfer-Encoding"])


def _bodies(data: bytes) -> tuple[str, str]:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    text, page = (part.get_content() for part in msg.iter_parts())
    return text, page


def test_article_text_that_quotes_the_marker_cannot_steal_unsubscribe_links(
        project: Project, faulty_smtp: FaultyServer) -> None:
    # The fixed marker of earlier versions is public (it is in this code); a seed that quotes it
    # would have had every reader's personal link spliced into the seed's own text and link.
    bait = "SYNDICATOR_UNSUBSCRIBE_URL_7F3A9C2E"
    _configure(project, faulty_smtp, "Test Digest <digest@example.org>",
               ["alice@example.com", "bob@example.net"])
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed("001_bait.txt", f"---\nurl: https://evil.example/collect?t={bait}\n---\n"
                                 f"Win a prize {bait}\n\nClaim it: {bait} now.\n")
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(faulty_smtp.handler.accepted) == 2
    for _rcpt, _, data in faulty_smtp.handler.accepted:
        text, page = _bodies(data)
        assert f"Claim it: {bait} now." in text  # the article reaches the reader as written
        assert f"Claim it: {bait} now." in page
        tokens = set(re.findall(r"https://example\.org/u/([A-Za-z0-9_-]+)", text + page))
        assert len(tokens) == 1  # the reader's own link, only where the template puts it
        (token,) = tokens
        # Twice in each part: the unsubscribe link and the preferences link, nowhere else.
        assert text.count(token) == 2 and page.count(token) == 2
        assert text.count(f"https://example.org/preferences/{token}") == 1
        assert not re.search(r"evil\.example[^\s\"]*" + re.escape(token), text + page)


def test_the_dry_run_preview_holds_an_inert_unsubscribe_link(project: Project) -> None:
    result = CliRunner().invoke(cli, ["send", "--dry-run"])
    assert result.exit_code == 0, result.output
    preview = project.root / "preview"
    text, page = _bodies((preview / "digest.eml").read_bytes())
    shown = {"digest.html": (preview / "digest.html").read_text(),
             "digest.txt": (preview / "digest.txt").read_text(), "eml text": text, "eml html": page}
    for name, body in shown.items():
        links = set(re.findall(r"https://example\.org/u/([A-Za-z0-9_-]+)", body))
        assert links == {"preview-token-not-valid"}, name
