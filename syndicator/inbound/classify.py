"""What one inbound message is, from its bytes alone (no store, no network).

Tried in this order, since a DSN carries ``Auto-Submitted`` too: an RFC 3464 delivery status
notification, an RFC 5965 abuse report, mail to a mailto unsubscribe address, an RFC 3834
auto-reply, another bounce format (flufl.bounce, Mailman's detector set), else unrecognised.
Who it concerns comes from a signed VERP token (``Named``) or a quoted Message-ID of ours;
the caller resolves those against the ledger, so a forged message names nobody.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses
from typing import Literal

from flufl.bounce import all_failures

from syndicator.mail.returns import Named, ReturnPaths

Kind = Literal["bounce", "delay", "complaint", "unsubscribe", "auto-reply", "delivered", "unrecognised"]
_STATUS = re.compile(r"([245])\.\d{1,3}\.\d{1,3}")
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_ADDRESS_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc", "Envelope-To", "X-Envelope-To")
_OUT_OF_OFFICE = re.compile(r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?reply|"
                            r"vacation|abwesenheit|absence|autosvar)", re.I)


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    named: tuple[Named, ...] = ()  # deliveries named by valid VERP tokens
    message_ids: tuple[str, ...] = ()  # Message-IDs it quotes (the original's)
    recipients: tuple[str, ...] = ()  # addresses it reports on (DSN Final-Recipient, ARF, flufl)
    status: str = ""  # the DSN status, 5.1.1 say
    detail: str = ""
    forged: bool = False  # addressed to us with a token that does not verify
    notes: list[str] = field(default_factory=list)


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def classify(raw: bytes, returns: ReturnPaths) -> Verdict:
    msg = parse(raw)
    named, forged = _named(msg, returns)
    report = _report_type(msg)
    if report == "delivery-status":
        return _dsn(msg, named, forged)
    if report == "feedback-report":
        return _complaint(msg, named, returns)
    unsubscribes = tuple(n for n in named if n.unsubscribe)
    if unsubscribes:
        return Verdict("unsubscribe", named=unsubscribes)
    bounces = tuple(n for n in named if not n.unsubscribe)
    if _auto_reply(msg):
        return Verdict("auto-reply", named=bounces)
    return _other_bounce(raw, bounces, forged)


def _named(msg: EmailMessage, returns: ReturnPaths) -> tuple[tuple[Named, ...], bool]:
    """Deliveries named by the addresses this message was sent to; whether one was forged."""
    found: list[Named] = []
    forged = False
    for _, address in getaddresses([str(v) for h in _ADDRESS_HEADERS for v in msg.get_all(h, [])]):
        if "+" not in address.split("@", 1)[0] or not _ours(address, returns):
            continue
        named = returns.read(address)
        if named is None:
            forged = True
        elif named not in found:
            found.append(named)
    return tuple(found), forged and not found


def _ours(address: str, returns: ReturnPaths) -> bool:
    local, _, domain = address.rpartition("@")
    return domain.lower() == returns.domain.lower() and local.lower().startswith(returns.local.lower() + "+")


def _report_type(msg: EmailMessage) -> str:
    if msg.get_content_type() != "multipart/report":
        return ""
    return str(msg.get_param("report-type", "") or "").lower()


def _dsn(msg: EmailMessage, named: tuple[Named, ...], forged: bool) -> Verdict:
    """RFC 3464: per-recipient blocks of Action and Status."""
    worst: tuple[Kind, str, str] | None = None
    recipients: list[str] = []
    for block in _status_blocks(msg):
        action = block.get("action", "").lower()
        status = _STATUS.search(block.get("status", ""))
        code = status.group(0) if status else ""
        recipient = block.get("final-recipient", "").split(";", 1)[-1].strip()
        if recipient:
            recipients.append(recipient)
        diagnostic = block.get("diagnostic-code", "").split(";", 1)[-1].strip()
        if action == "failed" or code.startswith("5"):
            worst = ("bounce", code or "5.0.0", diagnostic)
            break
        if action == "delayed" or code.startswith("4"):
            worst = worst or ("delay", code or "4.0.0", diagnostic)
    named = tuple(n for n in named if not n.unsubscribe)
    ids = _quoted_ids(msg)
    if worst is None:
        return Verdict("delivered", named=named, message_ids=ids, recipients=tuple(recipients))
    kind, code, diagnostic = worst
    return Verdict(kind, named=named, message_ids=ids, recipients=tuple(recipients), status=code,
                   detail=diagnostic, forged=forged)


def _status_blocks(msg: EmailMessage) -> list[dict[str, str]]:
    """The per-recipient fields of the message/delivery-status part (the first block is the
    per-message one: it has no Final-Recipient, and is kept only if it has a Status)."""
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        text = _part_text(part)
        blocks: list[dict[str, str]] = []
        for chunk in re.split(r"\r?\n\s*\r?\n", text.strip()):
            fields: dict[str, str] = {}
            for line in re.sub(r"\r?\n[ \t]+", " ", chunk).splitlines():
                name, sep, value = line.partition(":")
                if sep:
                    fields[name.strip().lower()] = value.strip()
            if "final-recipient" in fields or "status" in fields:
                blocks.append(fields)
        return blocks
    return []


def _part_text(part: Message) -> str:
    """A report part's text: email parses message/delivery-status as a list of header blocks."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(str(p) for p in payload)
    data = part.get_payload(decode=True)
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)


def _quoted_ids(msg: EmailMessage) -> tuple[str, ...]:
    """The Message-ID of the original, from a message/rfc822 or text/rfc822-headers part."""
    ids: list[str] = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            originals = inner if isinstance(inner, list) else [inner]
            for original in originals:
                if isinstance(original, Message) and original.get("Message-ID"):
                    ids += _MESSAGE_ID.findall(str(original["Message-ID"]))
        elif kind == "text/rfc822-headers":
            headers = message_from_bytes(_bytes(part), policy=policy.default)
            ids += _MESSAGE_ID.findall(str(headers.get("Message-ID", "")))
    return tuple(dict.fromkeys(ids))


def _bytes(part: Message) -> bytes:
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    return str(part.get_payload()).encode("utf-8", "replace")


def _complaint(msg: EmailMessage, named: tuple[Named, ...], returns: ReturnPaths) -> Verdict:
    """RFC 5965: the reader is found by the original's Message-ID or its VERP Return-Path."""
    recipients: list[str] = []
    quoted: list[Named] = list(n for n in named if not n.unsubscribe)
    for part in msg.walk():
        kind = part.get_content_type()
        if kind == "message/feedback-report":
            for line in _part_text(part).splitlines():
                name, _, value = line.partition(":")
                if name.strip().lower() in ("original-rcpt-to", "removal-recipient"):
                    recipients.append(value.strip())
        elif kind in ("message/rfc822", "text/rfc822-headers"):
            for path in _return_paths(part):
                found = returns.read(path)
                if found is not None and found not in quoted:
                    quoted.append(found)
    return Verdict("complaint", named=tuple(quoted), message_ids=_quoted_ids(msg),
                   recipients=tuple(recipients))


def _return_paths(part: Message) -> list[str]:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        originals = inner if isinstance(inner, list) else [inner]
        return [str(o["Return-Path"]) for o in originals if isinstance(o, Message) and o["Return-Path"]]
    headers = message_from_bytes(_bytes(part), policy=policy.default)
    return [str(headers["Return-Path"])] if headers["Return-Path"] else []


def _auto_reply(msg: EmailMessage) -> bool:
    """RFC 3834 and the common vacation markers."""
    submitted = str(msg.get("Auto-Submitted", "no")).strip().lower()
    if submitted and not submitted.startswith("no"):
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond") or msg.get("X-Auto-Response-Suppress"):
        return True
    if str(msg.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_OUT_OF_OFFICE.match(str(msg.get("Subject", ""))))


def _other_bounce(raw: bytes, named: tuple[Named, ...], forged: bool) -> Verdict:
    """A bounce in a format of its own (old MTAs, providers): flufl.bounce's detectors."""
    legacy = message_from_bytes(raw)  # flufl.bounce walks a compat32 message
    temporary, permanent = all_failures(legacy)
    if permanent:
        return Verdict("bounce", named=named, recipients=_decoded(permanent), status="5.0.0",
                       detail="bounce (detected by flufl.bounce)", forged=forged)
    if temporary:
        return Verdict("delay", named=named, recipients=_decoded(temporary), status="4.0.0",
                       detail="delay (detected by flufl.bounce)", forged=forged)
    return Verdict("unrecognised", named=named, forged=forged)


def _decoded(addresses: frozenset[bytes]) -> tuple[str, ...]:
    return tuple(sorted(a.decode("utf-8", "replace").lower() for a in addresses))
