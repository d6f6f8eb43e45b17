"""Inbound messages as real MTAs, providers and mail clients write them (RFC 3464, RFC 5965,
RFC 3834, and the formats flufl.bounce knows), addressed to a VERP address."""

from __future__ import annotations

import mailbox
from pathlib import Path


def dsn(
    to: str,
    recipient: str,
    message_id: str,
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <dead@readers.example.net>: Recipient address rejected",
) -> bytes:
    """A delivery status notification in Postfix's layout."""
    return f"""\
Return-Path: <>
Delivered-To: {to}
From: MAILER-DAEMON@mx.readers.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: {to}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"
Message-Id: <dsn-{status}-{message_id.strip("<>")}@mx.readers.example.net>

--B1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.readers.example.net. Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.readers.example.net
Arrival-Date: Wed, 25 Nov 2026 07:00:01 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}

--B1
Content-Type: text/rfc822-headers

Return-Path: <{to}>
From: Test Digest <digest@example.org>
To: {recipient}
Message-ID: {message_id}
Subject: The digest

--B1--
""".replace("\n", "\r\n").encode()


def complaint(to: str, recipient: str, message_id: str, *, return_path: str = "") -> bytes:
    """An RFC 5965 abuse report, as a mailbox provider's feedback loop sends it."""
    return f"""\
From: <staff@hotmail.example>
Date: Thu, 26 Nov 2026 01:00:00 +0000
Subject: FW: The digest
To: {to}
MIME-Version: 1.0
Message-ID: <arf-{message_id.strip("<>")}@hotmail.example>
Content-Type: multipart/report; report-type=feedback-report; boundary="part1"

--part1
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.1.

--part1
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: {recipient}

--part1
Content-Type: message/rfc822
Content-Disposition: inline

Return-Path: <{return_path}>
From: Test Digest <digest@example.org>
To: {recipient}
Message-ID: {message_id}
Subject: The digest

The body.

--part1--
""".replace("\n", "\r\n").encode()


def out_of_office(to: str, sender: str) -> bytes:
    return f"""\
From: {sender}
To: {to}
Subject: Out of office: The digest
Auto-Submitted: auto-replied
Message-ID: <ooo-{sender}>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

I am on holiday until Monday.
""".replace("\n", "\r\n").encode()


def unsubscribe_mail(to: str, sender: str) -> bytes:
    return f"""\
From: {sender}
To: {to}
Subject: unsubscribe
Message-ID: <unsub-{sender}>

""".replace("\n", "\r\n").encode()


def qmail_bounce(to: str, recipient: str) -> bytes:
    """A qmail-style bounce: no DSN, only text that flufl.bounce's detectors read."""
    return f"""\
From: MAILER-DAEMON@mx.old.test
To: {to}
Subject: failure notice
Message-ID: <qmail-{recipient}>

Hi. This is the qmail-send program at mx.old.test.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Subject: The digest
""".replace("\n", "\r\n").encode()


def plain_letter(to: str) -> bytes:
    return f"""\
From: reader@readers.example.net
To: {to}
Subject: Loved the story on the budget
Message-ID: <letter@readers.example.net>

Thanks!
""".replace("\n", "\r\n").encode()


def maildir(path: Path, *messages: bytes) -> Path:
    box = mailbox.Maildir(path, create=True)
    for message in messages:
        box.add(message)
    box.close()
    return path
