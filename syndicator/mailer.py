"""SMTP over aiosmtplib: explicit security, one kept-open connection per worker, outcomes classified."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import Enum

import aiosmtplib

from syndicator.config import Config
from syndicator.errors import DeliveryError


class Kind(Enum):
    SENT = "sent"
    TRANSIENT = "transient"  # 4xx, disconnects, timeouts: try again later
    PERMANENT = "permanent"  # 5xx for this recipient: final
    MAILBOX = "mailbox"  # 5.1.x / 5.2.x: final, and the address is suppressed


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    code: int | None
    reply: str

    @property
    def connection_broken(self) -> bool:
        """Whether the connection must be dropped and reopened before the next message."""
        return self.kind is Kind.TRANSIENT and self.code in (None, 421)


class SmtpSetupError(DeliveryError):
    """The relay cannot be used at all: unreachable, TLS refused, AUTH refused."""


class Connection:
    """One SMTP session, opened lazily and reused for many messages."""

    def __init__(self, config: Config, password: str | None, tls_context: ssl.SSLContext | None = None):
        self.config = config
        self.password = password
        self.tls_context = tls_context
        self.client: aiosmtplib.SMTP | None = None

    async def open(self) -> aiosmtplib.SMTP:
        if self.client is not None and self.client.is_connected:
            return self.client
        smtp = self.config.smtp
        # Explicit modes only: start_tls=None would fall back to plaintext silently.
        client = aiosmtplib.SMTP(
            hostname=smtp.host, port=smtp.port, timeout=smtp.timeout,
            use_tls=smtp.security == "tls", start_tls=smtp.security == "starttls",
            validate_certs=True, tls_context=self.tls_context,
        )
        try:
            await client.connect()
            if smtp.username:
                await client.login(smtp.username, self.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            await _quietly_close(client)
            raise SmtpSetupError(f"SMTP authentication refused by {smtp.host}:{smtp.port}: "
                                 f"{exc.code} {exc.message}") from None
        except aiosmtplib.SMTPNotSupported as exc:
            await _quietly_close(client)
            raise SmtpSetupError(f"{smtp.host}:{smtp.port} does not support what smtp.security="
                                 f"{smtp.security!r} needs: {exc}") from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            await _quietly_close(client)
            raise SmtpSetupError(f"cannot connect to SMTP relay {smtp.host}:{smtp.port}: "
                                 f"{_describe(exc)}") from None
        self.client = client
        return client

    async def send(self, mail_from: str, rcpt: str, data: bytes) -> Outcome:
        """Send one message to one recipient; never raises for a per-message failure."""
        client = await self.open()
        try:
            _errors, reply = await client.sendmail(mail_from, [rcpt], data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return classify(refused.code, refused.message)
        except aiosmtplib.SMTPResponseException as exc:
            outcome = classify(exc.code, exc.message)
            if exc.code == 421:
                await self.close()
            return outcome
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            return Outcome(Kind.TRANSIENT, None, _describe(exc))
        return Outcome(Kind.SENT, 250, reply.strip())

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await _quietly_close(client, polite=True)


def classify(code: int, message: str) -> Outcome:
    """What an SMTP reply means for this delivery (RFC 5321 / RFC 3463)."""
    reply = f"{code} {message}".strip()
    if 200 <= code < 300:
        return Outcome(Kind.SENT, code, reply)
    if 400 <= code < 500:
        return Outcome(Kind.TRANSIENT, code, reply)
    enhanced = message.strip().split(" ", 1)[0]
    if enhanced.startswith(("5.1.", "5.2.")) or (code == 550 and not enhanced[:1].isdigit()):
        return Outcome(Kind.MAILBOX, code, reply)
    return Outcome(Kind.PERMANENT, code, reply)


async def _quietly_close(client: aiosmtplib.SMTP, polite: bool = False) -> None:
    try:
        if polite and client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
