"""The per-recipient message: spliced bytes equal a naive EmailMessage, wire format, headers, injection."""

from __future__ import annotations

import random
import smtplib
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest

from syndicator.config import Config, load_config
from syndicator.mail.digest import LEGACY_MARKER, Digest, render_digest, why_text
from syndicator.mail.message import MessageFactory, list_id, message_id
from syndicator.mail.tokens import unsubscribe_token

from .conftest import BASE_CONFIG, Project, SmtpServer
from .test_digest import seed_stories

RECIPIENTS = ("alice@example.com", "bob.o'neil+news@example.net", "x@sub.example.co.uk", "UPPER@Example.ORG")
SECRET = b"test-secret"


def url_for(config: Config) -> dict[str, str]:
    """Real signed unsubscribe URLs, as the sender makes them, remembered per address."""
    return {a: f"https://example.org/u/{unsubscribe_token(SECRET, list_id(config), a)}" for a in RECIPIENTS}


def configure(project: Project, *replacements: tuple[str, str]) -> Config:
    text = BASE_CONFIG.format(store=project.store, port=project.port, recipients='["a@example.com"]')
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    project.write_config(text)
    return load_config(project.config)


@pytest.fixture
def seeded(project: Project, clock: datetime) -> tuple[Config, Digest]:
    config, stories = seed_stories(project, clock)
    return config, render_digest(config, stories, clock)


def naive(config: Config, digest: Digest, address: str, mid: str, url: str, date: datetime) -> EmailMessage:
    """What the slow, obvious way builds: one EmailMessage per recipient."""
    msg = EmailMessage()
    msg["From"] = config.digest.from_
    msg["To"] = address
    msg["Subject"] = digest.subject
    msg["Date"] = date
    msg["Message-ID"] = mid
    msg["List-Id"] = f'"{config.site.title}" {list_id(config)}'
    msg["List-Unsubscribe"] = f"<{url}>"  # no mailto without [inbound]
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    msg["Precedence"] = "bulk"
    msg.set_content(digest.personal(url, why_text(config, False))[1])
    msg.add_alternative(digest.personal(url, why_text(config, False))[0], subtype="html")
    return msg


def parsed(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> list[EmailMessage]:
    return [p for p in msg.iter_parts() if isinstance(p, EmailMessage)]


def assert_equivalent(built: bytes, expected: EmailMessage) -> None:
    """Same headers (values as decoded), same structure, same decoded text and HTML."""
    ours, theirs = parsed(built), parsed(expected.as_bytes(policy=policy.SMTP))
    assert sorted(ours.keys()) == sorted(theirs.keys())
    for name in theirs:
        if name != "Content-Type":
            assert str(ours[name]) == str(theirs[name]), name
    assert ours.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parts(ours)] == ["text/plain", "text/html"]
    for mine, other in zip(parts(ours), parts(theirs), strict=True):
        assert mine.get_content_charset() == "utf-8"
        assert mine["Content-Transfer-Encoding"] == "quoted-printable"
        assert mine.get_content() == other.get_content()


def assert_wire_format(data: bytes) -> None:
    """7-bit, CRLF everywhere, header lines under 998 bytes, body lines QP-sized."""
    assert data.isascii()
    assert data.endswith(b"\r\n")
    lines = data.split(b"\r\n")[:-1]
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    assert max(map(len, lines)) <= 998
    blank = lines.index(b"")
    assert all(len(line) <= 76 for line in lines[blank:])
    assert all(not line.endswith((b" ", b"\t")) for line in lines)


# -- equivalence with the naive message ------------------------------------------------


def test_spliced_message_equals_a_naive_email_message(seeded: tuple[Config, Digest], clock: datetime) -> None:
    config, digest = seeded
    urls = url_for(config)
    factory = MessageFactory(config, digest, unsubscribe_url=urls.__getitem__, date=clock)
    for address in RECIPIENTS:
        mid = message_id(42, address, config)
        built = factory.build(address, mid)
        assert_wire_format(built)
        assert_equivalent(built, naive(config, digest, address, mid, urls[address], clock))
        text, page = (p.get_content() for p in parts(parsed(built)))
        assert text.replace("\r\n", "\n") == digest.personal(urls[address], why_text(config, False))[1]
        assert page.replace("\r\n", "\n") == digest.personal(urls[address], why_text(config, False))[0]
        others = [urls[a] for a in RECIPIENTS if a != address]
        assert not any(other.encode() in built for other in others)


def test_very_long_url_with_query_characters(seeded: tuple[Config, Digest], clock: datetime) -> None:
    config, digest = seeded
    url = "https://example.org/unsubscribe?list=digest&token=" + "Ab9-_=" * 120 + "&x='q'"
    factory = MessageFactory(config, digest, unsubscribe_url=lambda _: url, date=clock)
    built = factory.build("alice@example.com", "<1.abc@example.org>")
    assert_wire_format(built)
    assert_equivalent(built, naive(config, digest, "alice@example.com", "<1.abc@example.org>", url, clock))
    assert "&amp;token=" in parts(parsed(built))[1].get_content()


def test_random_bodies_decode_exactly(project: Project, clock: datetime) -> None:
    """Placeholders anywhere: next to whitespace, '=', multibyte text, line ends, long lines."""
    config, _ = seed_stories(project, clock)
    rng = random.Random(5)
    alphabet = ["a", "Z", " ", "\t", "=", ".", "é", "’", "日", "🎉", "\n", "=20", "x" * 80, " \n", "<&>"]
    for case in range(300):
        def body() -> str:
            pieces = rng.choices([*alphabet, LEGACY_MARKER], k=rng.randrange(0, 40))
            return "".join(pieces) + "\n"
        digest = Digest(subject=f"case {case}", html=body(), text=body(), story_ids=(), marker=LEGACY_MARKER)
        url = "https://example.org/u/" + "t=" * rng.randrange(0, 60)
        built = MessageFactory(config, digest, unsubscribe_url={"a@example.com": url}.__getitem__,
                               date=clock).build("a@example.com", "<1.a@example.org>")
        assert_wire_format(built)
        text, page = (p.get_content() for p in parts(parsed(built)))
        assert text.replace("\r\n", "\n") == digest.personal(url, why_text(config, False))[1], case
        assert page.replace("\r\n", "\n") == digest.personal(url, why_text(config, False))[0]


def test_the_wire_form_is_the_message_dot_stuffed(project: Project, clock: datetime) -> None:
    """build_wire stuffs the pieces once and the spliced parts per message: the same bytes as
    stuffing the whole message, with lines (and URL lines) starting with dots anywhere."""
    from syndicator.mail.smtp import _dot_stuff

    config, _ = seed_stories(project, clock)
    rng = random.Random(11)
    alphabet = ["a", " ", ".", "..", "\n", "\n.", ".\n", "=", "x" * 80, "é", "\n.\n"]
    addresses = ("a@example.com", ".dot@example.com")
    for case in range(300):
        def body() -> str:
            pieces = rng.choices([*alphabet, LEGACY_MARKER], k=rng.randrange(0, 40))
            return "".join(pieces) + rng.choice(["\n", "", ".", "\n."])
        digest = Digest(subject=f"case {case}", html=body(), text=body(), story_ids=(), marker=LEGACY_MARKER)
        url = "https://example.org/u/" + "".join(rng.choices([".", "a", "=", "&"], k=rng.randrange(0, 300)))
        factory = MessageFactory(config, digest, unsubscribe_url={a: url for a in addresses}.__getitem__,
                                 date=clock)
        for address in addresses:
            built = factory.build(address, "<1.a@example.org>")
            assert factory.build_wire(address, "<1.a@example.org>") == _dot_stuff(built), case


# -- headers -------------------------------------------------------------------------------


def test_headers_parse_back(seeded: tuple[Config, Digest], clock: datetime) -> None:
    config, digest = seeded
    url = "https://example.org/u/TOKEN"
    when = clock.astimezone(timezone(timedelta(hours=-5)))
    msg = parsed(MessageFactory(config, digest, unsubscribe_url=lambda _: url, date=when)
                 .build("alice@example.com", "<7.ab@example.org>"))
    assert msg["From"].addresses[0].addr_spec == "digest@example.org"
    assert msg["From"].addresses[0].display_name == "Test Digest"
    assert [a.addr_spec for a in msg["To"].addresses] == ["alice@example.com"]
    assert msg["Subject"] == digest.subject
    assert parsedate_to_datetime(msg["Date"]) == clock
    assert msg["Date"].endswith("-0500")
    assert msg["Message-ID"] == "<7.ab@example.org>"
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == '"The Test Dispatch" <digest.example.org>'
    assert msg["List-Unsubscribe"] == f"<{url}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Precedence"] == "bulk"
    assert "Bcc" not in msg and "Cc" not in msg
    text, page = parts(msg)
    assert f"Unsubscribe with one click: {url}" in text.get_content()
    assert f'<a href="{url}"' in page.get_content()


def test_message_id_is_deterministic_and_hides_the_address(project: Project, clock: datetime) -> None:
    config, _ = seed_stories(project, clock)
    first = message_id(3, "Alice@Example.com", config)
    assert first == message_id(3, "alice@example.com", config)
    assert first != message_id(4, "alice@example.com", config)
    assert first != message_id(3, "bob@example.com", config)
    assert first.startswith("<3.") and first.endswith("@example.org>")
    assert "alice" not in first.lower()


def test_list_id_comes_from_the_site_url(project: Project) -> None:
    assert list_id(configure(project)) == "<digest.example.org>"
    assert list_id(configure(project)) == list_id(configure(project))
    other = configure(project, ('url = "https://example.org/"', 'url = "https://Bücher.example:8443/News/"'))
    assert list_id(other) == "<news.digest.xn--bcher-kva.example>"


def test_non_ascii_subject_and_sender_round_trip(project: Project, clock: datetime) -> None:
    config = configure(project, ('from = "Test Digest', 'from = "Dépêche “Digest”'))
    subject = "“Curly” quotes — 🎉 emoji and 日本語の見出しがとても長い場合でも正しく折り返されること " * 2
    digest = Digest(subject=subject.strip(), html="<p>x</p>\n", text="x\n", story_ids=(),
                    marker=LEGACY_MARKER)
    built = MessageFactory(config, digest, unsubscribe_url=lambda _: "https://example.org/u/t",
                           date=clock).build("a@example.com", "<1.a@example.org>")
    assert_wire_format(built)
    head = built.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head and max(map(len, head.split(b"\r\n"))) <= 120
    msg = parsed(built)
    assert msg["Subject"] == subject.strip()
    assert msg["From"].addresses[0].display_name == "Dépêche “Digest”"


# -- injection ------------------------------------------------------------------------------


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    return [line.split(":", 1)[0] for line in head.split("\r\n") if not line.startswith((" ", "\t"))]


def test_subject_cannot_inject_headers(project: Project, clock: datetime) -> None:
    config, _ = seed_stories(project, clock)
    evil = "Hi\r\nBcc: victim@example.com\nX-Evil: 1\x00\x0b\r\n\r\n<html>"
    digest = Digest(subject=evil, html="<p>x</p>\n", text="x\n", story_ids=(), marker=LEGACY_MARKER)
    built = MessageFactory(config, digest, unsubscribe_url=lambda _: "https://example.org/u/t",
                           date=clock).build("a@example.com", "<1.a@example.org>")
    assert header_names(built) == [
        "From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
        "List-Unsubscribe-Post", "Auto-Submitted", "Precedence", "MIME-Version", "Content-Type",
    ]
    assert parsed(built)["Subject"] == "Hi Bcc: victim@example.com X-Evil: 1 <html>"


@pytest.mark.parametrize("address", [
    "a@example.com\r\nBcc: victim@example.com", "a@example.com\n", "Evil <a@example.com>",
    "a@example.com, b@example.com", "", "no-at-sign", "é@example.com",
])
def test_bad_recipient_is_refused(seeded: tuple[Config, Digest], clock: datetime, address: str) -> None:
    config, digest = seeded
    factory = MessageFactory(config, digest, unsubscribe_url=lambda _: "https://example.org/u/t", date=clock)
    with pytest.raises(ValueError, match="cannot address"):
        factory.build(address, "<1.a@example.org>")


@pytest.mark.parametrize("url", [
    "https://example.org/u/t\r\nBcc: victim@example.com", "https://example.org/u/t>, <mailto:evil@x.org",
    "javascript:alert(1)", "https://example.org/u/a b", "https://example.org/" + "x" * 1000,
    'https://example.org/"onmouseover="x', "https://exämple.org/u/t",
])
def test_unsafe_unsubscribe_url_is_refused(seeded: tuple[Config, Digest], clock: datetime, url: str) -> None:
    config, digest = seeded
    factory = MessageFactory(config, digest, unsubscribe_url=lambda _: url, date=clock)
    with pytest.raises(ValueError, match="unsafe unsubscribe URL"):
        factory.build("a@example.com", "<1.a@example.org>")


@pytest.mark.parametrize("mid", ["<1.a@example.org>\r\nBcc: v@example.com", "1.a@example.org", "<a b@c>"])
def test_bad_message_id_is_refused(seeded: tuple[Config, Digest], clock: datetime, mid: str) -> None:
    config, digest = seeded
    factory = MessageFactory(config, digest, unsubscribe_url=lambda _: "https://example.org/u/t", date=clock)
    with pytest.raises(ValueError, match="Message-ID"):
        factory.build("a@example.com", mid)


def test_internationalised_domain_is_written_in_ascii(seeded: tuple[Config, Digest], clock: datetime) -> None:
    config, digest = seeded
    factory = MessageFactory(config, digest, unsubscribe_url=lambda _: "https://example.org/u/t", date=clock)
    built = factory.build("reader@bücher.example", "<1.a@example.org>")
    assert_wire_format(built)
    assert parsed(built)["To"] == "reader@xn--bcher-kva.example"


def test_naive_date_is_refused(seeded: tuple[Config, Digest], clock: datetime) -> None:
    config, digest = seeded
    with pytest.raises(ValueError, match="timezone-aware"):
        MessageFactory(config, digest, unsubscribe_url=str, date=clock.replace(tzinfo=None))


# -- through a real SMTP server ---------------------------------------------------------------


def test_message_survives_smtp_transport(seeded: tuple[Config, Digest], clock: datetime,
                                         smtp_server: SmtpServer) -> None:
    config, digest = seeded
    urls = url_for(config)
    factory = MessageFactory(config, digest, unsubscribe_url=urls.__getitem__, date=clock)
    built = factory.build("alice@example.com", message_id(1, "alice@example.com", config))
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as client:
        client.sendmail("digest@example.org", ["alice@example.com"], built)
    (received,) = smtp_server.received
    assert received.data.rstrip(b"\r\n") == built.rstrip(b"\r\n")
    assert received.message["To"] == "alice@example.com"


def test_messages_are_stable_across_factories(seeded: tuple[Config, Digest], clock: datetime) -> None:
    config, digest = seeded
    def url(address: str) -> str:
        return "https://example.org/u/" + address[0]
    one = MessageFactory(config, digest, unsubscribe_url=url, date=clock)
    two = MessageFactory(config, digest, unsubscribe_url=url, date=clock)
    first = one.build("a@example.com", "<1.a@example.org>")
    assert first == two.build("a@example.com", "<1.a@example.org>")
    assert first != one.build("b@example.com", "<1.b@example.org>")
