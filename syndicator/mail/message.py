"""Personalised digest messages at speed: the MIME skeleton is built once, recipients are spliced in.

Building an ``EmailMessage`` per recipient costs far more than sending it, so
``MessageFactory`` serialises one skeleton (``email.policy.SMTP``) in its constructor,
pre-encodes both bodies as quoted-printable around the unsubscribe placeholder, and per
recipient only joins bytes: the ``To``, ``Message-ID`` and ``List-Unsubscribe`` lines and
the recipient's unsubscribe URL, quoted-printable encoded on lines of its own.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import re
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formatdate, make_msgid
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from syndicator.config import Config, ascii_address, ascii_domain
from syndicator.mail.digest import Digest, marks_token, why_text
from syndicator.text import one_line

if TYPE_CHECKING:
    from syndicator.mail.returns import ReturnPaths

CRLF = b"\r\n"
SOFT_BREAK = "=\r\n"
# Encoded characters per line before the soft-break "=": 76 in all, as RFC 2045 allows.
QP_WIDTH = 75
MAX_URL = 900  # a URL in List-Unsubscribe cannot be folded; keep its line under 998 bytes

# Slots in the skeleton replaced per recipient; header names that never occur in real mail.
_SLOTS = ("X-Syndicator-Slot-To", "X-Syndicator-Slot-Message-Id", "X-Syndicator-Slot-Unsubscribe")
_TEXT_MARKER = "SYNDICATOR_TEXT_BODY_5D1E"
_HTML_MARKER = "SYNDICATOR_HTML_BODY_5D1E"

# Dot-atom addresses only: nothing that could end a header line or need quoting.
_ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+")
_MESSAGE_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+>")
# Printable ASCII without space, '"', '<' or '>': safe inside <...> in a header and in QP.
_URL = re.compile(r"https?://[!#-;=?-~]+")
_LABEL = re.compile(r"[^a-z0-9-]+")


def list_id(config: Config) -> str:
    """The list's RFC 2919 id from the site URL, e.g. ``<digest.example.org>``; stable across runs."""
    return _list_id(config.site.url)


# Cached on the strings involved: message_id runs once per recipient and parsing is costly.
@functools.lru_cache(maxsize=16)
def _list_id(site_url: str) -> str:
    parts = urlsplit(site_url)
    host = ascii_domain(parts.hostname or "localhost")
    # A site under a path (https://example.org/news/) gets its own list: news.digest.example.org.
    labels = [_LABEL.sub("-", seg.lower()).strip("-") for seg in parts.path.split("/")]
    return "<" + ".".join([*reversed([x for x in labels if x]), "digest", host]) + ">"


def message_id(edition_id: int, address: str, config: Config) -> str:
    """A deterministic Message-ID, so a resent message is recognisably the same one.

    The address is hashed (with the list and edition), never shown in clear.
    """
    return message_ids(config)(edition_id, address)


def message_ids(config: Config) -> Callable[[int, str], str]:
    """``message_id`` for one config, its list and domain worked out once (an edition makes one
    per recipient)."""
    prefix, domain = _id_context(config.site.url, config.digest.from_address)
    sha256 = hashlib.sha256

    def make(edition_id: int, address: str) -> str:
        seed = f"{prefix}{edition_id}\x00{address.lower()}".encode()
        return f"<{edition_id}.{sha256(seed).hexdigest()[:32]}@{domain}>"

    return make


def copy_message_id(address: str, config: Config, now: datetime) -> str:
    """The Message-ID of a ``send --to`` test copy: it names no edition (and starts with no
    hyphen, which some clients and archives mangle)."""
    prefix, domain = _id_context(config.site.url, config.digest.from_address)
    seed = f"{prefix}test\x00{int(now.timestamp())}\x00{address.lower()}".encode()
    return f"<test.{int(now.timestamp())}.{hashlib.sha256(seed).hexdigest()[:24]}@{domain}>"


@functools.lru_cache(maxsize=16)
def _id_context(site_url: str, from_address: str) -> tuple[str, str]:
    """The hash prefix (the list) and the (ASCII) domain of the sender's address."""
    return _list_id(site_url) + "\x00", from_address.rsplit("@", 1)[1].lower()


class Factory(Protocol):
    """What a sender needs to mail one reader: a MessageFactory, or one per edition variant."""

    def envelope_sender(self, message_id: str) -> str: ...

    def build(self, address: str, message_id: str) -> bytes: ...

    def build_wire(self, address: str, message_id: str) -> bytes: ...


class MessageFactory:
    """Builds the complete message for one recipient from bytes prepared once per edition."""

    def __init__(self, config: Config, digest: Digest, *, unsubscribe_url: Callable[[str], str],
                 date: datetime, returns: ReturnPaths | None = None,
                 listed: Callable[[str], bool] | None = None) -> None:
        if date.tzinfo is None:
            raise ValueError("the message date must be timezone-aware")
        self._unsubscribe_url = unsubscribe_url
        # With [inbound], bounces and the mailto unsubscribe come back to addresses naming the
        # delivery; without it, no mailto: an address nobody reads is worse than none.
        self._returns = returns
        self._sender = config.digest.from_address
        skeleton = with_text_headers(_skeleton(config, digest, date).as_bytes(policy=SMTP), {
            _TEXT_SLOTS[0]: encode_address("From", config.digest.from_name, config.digest.from_address),
            _TEXT_SLOTS[1]: encode_unstructured("Subject", digest.subject),
            _TEXT_SLOTS[2]: _list_id_header(config),
        })
        self._chunks = _split(skeleton, [_slot_line(s) for s in _SLOTS] +
                              [_TEXT_MARKER.encode() + CRLF, _HTML_MARKER.encode() + CRLF])
        # Why each reader gets it (the footer): two versions of the bodies, one for readers
        # the publisher listed, one for subscribers; ``listed`` tells them apart.
        self._listed = listed or (lambda _address: False)
        self._bodies = {kind: _bodies(config, digest, kind) for kind in (False, True)}
        self._token_only = marks_token(digest.marker)
        # The same pieces dot-stuffed for the wire (build_wire). Every piece, and every
        # per-recipient part spliced between them, starts at the start of a line, so stuffing
        # each one alone is stuffing the whole message.
        wire_chunks = [_stuff(c) for c in self._chunks]
        if not wire_chunks[-1].endswith(CRLF):
            wire_chunks[-1] += CRLF
        wire_chunks[-1] += b"." + CRLF
        self._wire_chunks = wire_chunks
        self._wire_bodies = {kind: ([_stuff(t) for t in text], [_stuff(h) for h in page])
                             for kind, (text, page) in self._bodies.items()}

    def envelope_sender(self, message_id: str) -> str:
        """MAIL FROM for this message: its VERP address with [inbound], else the From address."""
        return self._returns.bounce_address(message_id) if self._returns else self._sender

    def build(self, address: str, message_id: str) -> bytes:
        """The RFC 5322 message for ``address``: CRLF line ends, no line over 998 bytes."""
        return self._assemble(address, message_id, wire=False)

    def build_wire(self, address: str, message_id: str) -> bytes:
        """``build``'s message as SMTP DATA carries it: lines starting with "." get another
        (RFC 5321 4.5.2), then the final "." line. The long constant pieces were stuffed once,
        in the constructor; per message only the spliced recipient parts are scanned."""
        return self._assemble(address, message_id, wire=True)

    def _assemble(self, address: str, message_id: str, *, wire: bool) -> bytes:
        # The link names the address as the list knows it (an IDN in Unicode), so it matches
        # the suppression list; only the header takes the ASCII form.
        url = self._unsubscribe_url(address)
        listed = self._listed(address)
        if not _ADDRESS.fullmatch(address):
            address = _ascii_address(address)
        if not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"invalid Message-ID {message_id!r}")
        if len(url) > MAX_URL or not _URL.fullmatch(url):
            raise ValueError(f"unsafe unsubscribe URL {url!r}")
        spliced = url.rsplit("/", 1)[-1] if self._token_only else url  # the token, or the URL
        if self._returns is None:
            unsubscribe = b"List-Unsubscribe: <" + url.encode() + b">\r\n"
        else:
            mailto = f"mailto:{self._returns.unsubscribe_address(message_id)}?subject=unsubscribe"
            unsubscribe = b"List-Unsubscribe: <" + url.encode() + b">,\r\n <" + mailto.encode() + b">\r\n"
        text_url, html_url = _qp_url(spliced), _qp_url(html.escape(spliced))
        if wire:
            c, (text, page) = self._wire_chunks, self._wire_bodies[listed]
            # The header lines start with their names; only the URL's QP lines can start with ".".
            text_url, html_url = _stuff(text_url), _stuff(html_url)
        else:
            c, (text, page) = self._chunks, self._bodies[listed]
        return b"".join((
            c[0], b"To: ", address.encode(), CRLF,
            c[1], b"Message-ID: ", message_id.encode(), CRLF,
            c[2], unsubscribe,
            c[3], text_url.join(text),
            c[4], html_url.join(page),
            c[5],
        ))


def _stuff(piece: bytes) -> bytes:
    """Dot-stuffing (RFC 5321 4.5.2) of bytes that start at the start of a line."""
    if piece.startswith(b"."):
        piece = b"." + piece
    return piece.replace(b"\r\n.", b"\r\n..")


def _ascii_address(address: str) -> str:
    """An internationalised domain in its ASCII (IDNA 2008) form; anything else unsafe is refused."""
    try:
        candidate = ascii_address(address)
    except ValueError:
        candidate = ""
    if not _ADDRESS.fullmatch(candidate):
        raise ValueError(f"cannot address a message to {address!r}")
    return candidate


# Headers whose text comes from seeds or config: the email package never sees that text. Its
# folding decodes RFC 2047 encoded words (CVE-2024-6923, before 3.11.10), so a title holding
# "=?us-ascii?q?=0D=0A...?=" became header lines of the attacker's choosing. They are encoded
# here (``encode_unstructured``, ``encode_address``) and put into the skeleton as bytes.
_TEXT_SLOTS = ("X-Syndicator-Text-From", "X-Syndicator-Text-Subject", "X-Syndicator-Text-List-Id")
# Characters allowed in a header phrase without quoting (RFC 5322 atext and spaces).
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")
_ENCODED_WORD_BYTES = 45  # UTF-8 bytes per =?utf-8?b?...?= word: 60 base64 characters, 72 in all


def encode_unstructured(name: str, text: str) -> bytes:
    """A header line (with its CRLF) of unstructured ``text``, folded to 78 columns.

    Printable ASCII without "=?" goes as it is; anything else as RFC 2047 encoded words, so
    whatever the text holds (line breaks, encoded words of its own) a reader sees it as text.
    """
    value = one_line(text)
    if value.isascii() and "=?" not in value:
        return _fold(name, value.split(" "))
    return _fold(name, _encoded_words(value))


def encode_address(name: str, display: str, address: str) -> bytes:
    """``Name: display <address>`` with the display name quoted or encoded; ``address`` ASCII."""
    if not _ADDRESS.fullmatch(address):
        raise ValueError(f"cannot put {address!r} in a header")
    return _fold(name, [*_phrase(display), f"<{address}>"] if one_line(display) else [address])


def _phrase(display: str, *, quote: bool = False) -> list[str]:
    """A display name as header words: as it is, quoted, or as encoded words."""
    phrase = one_line(display)
    if not phrase:
        return []
    if not phrase.isascii() or "=?" in phrase:
        return _encoded_words(phrase)
    if quote or not _ATEXT.fullmatch(phrase):
        phrase = '"' + phrase.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return phrase.split(" ")


def _encoded_words(text: str) -> list[str]:
    """``text`` as =?utf-8?b?...?= words, each cut between characters, never inside one."""
    words: list[str] = []
    chunk = b""
    for char in text:
        data = char.encode("utf-8")
        if len(chunk) + len(data) > _ENCODED_WORD_BYTES:
            words.append(_b_word(chunk))
            chunk = b""
        chunk += data
    if chunk or not words:
        words.append(_b_word(chunk))
    return words


def _b_word(data: bytes) -> str:
    return "=?utf-8?b?" + base64.b64encode(data).decode("ascii") + "?="


def _fold(name: str, words: list[str]) -> bytes:
    """``name: words`` on lines of at most 78 characters where the words allow (CRLF + space)."""
    lines = [f"{name}:"]
    for word in words:
        if len(lines[-1]) + 1 + len(word) > 78 and lines[-1] != f"{name}:":
            lines.append("")
        lines[-1] += " " + word
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _skeleton(config: Config, digest: Digest, date: datetime) -> EmailMessage:
    """The message with slot headers and body markers where per-recipient bytes go."""
    msg = EmailMessage()
    msg[_TEXT_SLOTS[0]] = "x"
    msg[_SLOTS[0]] = "x"
    msg[_TEXT_SLOTS[1]] = "x"
    msg["Date"] = format_datetime(date)
    msg[_SLOTS[1]] = "x"
    msg[_TEXT_SLOTS[2]] = "x"
    msg[_SLOTS[2]] = "x"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-generated"
    # Precedence: bulk keeps vacation responders quiet, and with List-Id and
    # List-Unsubscribe marks a real list to SpamAssassin (MAILING_LIST_MULTI).
    msg["Precedence"] = "bulk"
    msg.set_content(_TEXT_MARKER, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(_HTML_MARKER, subtype="html", charset="utf-8", cte="quoted-printable")
    msg.set_boundary(_boundary(digest))
    return msg


def with_text_headers(skeleton: bytes, headers: dict[str, bytes]) -> bytes:
    """The skeleton with each text slot's line replaced by its encoded header."""
    for slot, line in headers.items():
        marker = _slot_line(slot)
        if skeleton.count(marker) != 1:
            raise RuntimeError(f"message skeleton has no single {marker!r}")
        skeleton = skeleton.replace(marker, line)
    return skeleton


def _list_id_header(config: Config) -> bytes:
    return _fold("List-Id", [*_phrase(config.site.title, quote=True), list_id(config)])


def _boundary(digest: Digest) -> str:
    # "=_" never occurs in quoted-printable text, so the boundary cannot collide with a body.
    seed = (digest.subject + digest.text + digest.html).encode()
    return "=_syndicator_" + hashlib.sha256(seed).hexdigest()[:24]


def _slot_line(name: str) -> bytes:
    return f"{name}: x".encode() + CRLF


def _split(data: bytes, markers: list[bytes]) -> list[bytes]:
    """``data`` cut at each marker, in order; each must occur exactly once."""
    chunks = []
    for marker in markers:
        if data.count(marker) != 1:
            raise RuntimeError(f"message skeleton has no single {marker!r}")
        head, data = data.split(marker)
        chunks.append(head)
    return [*chunks, data]


def _bodies(config: Config, digest: Digest, listed: bool) -> tuple[list[bytes], list[bytes]]:
    """The text and HTML segments of the version for listed (or subscribed) readers: the
    footer's reason in place, the token marker still where each reader's token goes."""
    if not marks_token(digest.marker):  # an edition from before: one version for all
        return _segments(digest.text, digest.marker), _segments(digest.html, digest.marker)
    # personal() with the marker itself as the "URL" leaves the marker where it is.
    page, text = digest.personal(digest.marker, why_text(config, listed))
    return _segments(text, digest.marker), _segments(page, digest.marker)


def _segments(body: str, marker: str) -> list[bytes]:
    """The body, quoted-printable encoded, cut where the unsubscribe URL goes.

    Each segment ends at a line boundary (a soft line break if the text goes on), so the
    encoded URL can be joined in between and decoding yields exactly the text with the URL.
    """
    return [_qp_encode(part) for part in body.split(marker)]


def _qp_encode(text: str) -> bytes:
    if not text:
        return b""
    lines = [SOFT_BREAK.join(_wrap(_qp_escape(line.encode()))) for line in text.split("\n")]
    encoded = "\r\n".join(lines)
    # Text ending without a newline continues with whatever is joined after it.
    return (encoded if text.endswith("\n") else encoded + SOFT_BREAK).encode("ascii")


def _qp_escape(line: bytes) -> str:
    """One line's bytes in quoted-printable; trailing whitespace is escaped so it survives."""
    out = [chr(b) if (33 <= b <= 126 and b != 61) or b in (9, 32) else f"={b:02X}" for b in line]
    if out and out[-1] in (" ", "\t"):
        out[-1] = f"={ord(out[-1]):02X}"
    return "".join(out)


def _wrap(encoded: str) -> list[str]:
    """Cut an escaped line into pieces of at most QP_WIDTH characters, never inside an =XX."""
    pieces = []
    start = 0
    while len(encoded) - start > QP_WIDTH:
        cut = start + QP_WIDTH
        escape = encoded.rfind("=", cut - 2, cut)
        if escape != -1:
            cut = escape
        pieces.append(encoded[start:cut])
        start = cut
    pieces.append(encoded[start:])
    return pieces


def _qp_url(url: str) -> bytes:
    """A validated URL (printable ASCII, no spaces) as QP lines, ending with a soft break."""
    encoded = url.replace("=", "=3D")
    if len(encoded) <= QP_WIDTH:
        return (encoded + SOFT_BREAK).encode("ascii")
    return (SOFT_BREAK.join(_wrap(encoded)) + SOFT_BREAK).encode("ascii")


def plain_notice(config: Config, to: str, subject: str, body: str, now: int) -> bytes:
    """A short plain-text mail from ``digest.from`` (a confirmation link, a run report), ready
    for the wire: From, To and Subject are encoded here, never folded by the email package,
    and To holds the address's ASCII form (an IDN domain as A-labels)."""
    msg = EmailMessage()
    for slot in ("From", "To", "Subject"):
        msg[f"X-Syndicator-Text-{slot}"] = "x"
    msg["Date"] = formatdate(now, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=config.digest.from_address.rsplit("@", 1)[1])
    msg["Auto-Submitted"] = "auto-generated"  # nobody's auto-responder should answer it
    msg.set_content(body)
    return with_text_headers(msg.as_bytes(policy=SMTP), {
        "X-Syndicator-Text-From": encode_address("From", config.digest.from_name, config.digest.from_address),
        "X-Syndicator-Text-To": encode_address("To", "", ascii_address(to)),
        "X-Syndicator-Text-Subject": encode_unstructured("Subject", subject),
    })
