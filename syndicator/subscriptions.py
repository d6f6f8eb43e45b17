"""Subscribe (double opt-in), confirm, unsubscribe and list the audience, over the store.

A confirmation link is signed and expiring (``tokens.confirm_token``) and single-use: the
store keeps only the SHA-256 of the newest token issued for an address, and confirming
clears it. An unsubscribe puts the address on the suppression list, which every later
send (and the rest of an edition in progress) honours.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy import Connection, delete, select, update

from syndicator import schema
from syndicator.config import Config, check_address, read_recipients_file
from syndicator.errors import DeliveryError, InputError
from syndicator.mailer import Connection as SmtpConnection
from syndicator.mailer import Kind
from syndicator.message import list_id
from syndicator.store import Store
from syndicator.textutil import one_line
from syndicator.tokens import BadToken, confirm_token, read_confirm_token, read_unsubscribe_token

CONFIRM_MAX_AGE = 3 * 24 * 3600  # a confirmation link works for three days
RESEND_AFTER = 600  # at most one confirmation mail per address every ten minutes (web form)

subs, sup = schema.subscribers, schema.suppressions


@dataclass(frozen=True)
class Signer:
    """The secret and list a site's tokens are bound to."""

    secret: bytes
    list_id: str

    @classmethod
    def for_config(cls, config: Config) -> Signer:
        """Raises SecretMissingError (a clear one-line error) when the secret env var is unset."""
        return cls(config.secret(), list_id(config))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- subscribe / confirm -------------------------------------------------------------


def request(store: Store, signer: Signer, address: str, now: int, *, force: bool = False) -> str | None:
    """Record a pending subscription and return its confirmation token.

    None when a confirmation went to this address less than RESEND_AFTER ago (unless
    ``force``): callers answer exactly as if a mail went out, so nothing is revealed.
    """
    address = address.lower()
    token = confirm_token(signer.secret, signer.list_id, address, now)
    with store.begin() as conn:
        row = conn.execute(select(subs.c.requested_at).where(subs.c.address == address)).first()
        if row is None:
            new = store.insert_ignore(subs).values(address=address, confirmed=False, created_at=now,
                                                  requested_at=now, confirm_digest=_digest(token))
            # No row back: a concurrent request for the same address won the insert.
            return token if conn.execute(new.returning(subs.c.address)).first() else None
        if not force and row.requested_at is not None and now - row.requested_at < RESEND_AFTER:
            return None
        conn.execute(update(subs).where(subs.c.address == address)
                     .values(requested_at=now, confirm_digest=_digest(token)))
    return token


def check_confirm(store: Store, signer: Signer, token: str, now: int) -> str:
    """The address a genuine, unexpired, unused confirmation token names; BadToken otherwise."""
    address = read_confirm_token(signer.secret, signer.list_id, token, CONFIRM_MAX_AGE, now)
    with store.begin() as conn:
        stored = conn.execute(select(subs.c.confirm_digest).where(subs.c.address == address)).scalar()
    if stored is None or not hmac.compare_digest(stored, _digest(token)):
        raise BadToken("unknown or used token")
    return address


def confirm(store: Store, signer: Signer, token: str, now: int) -> str:
    """Confirm a subscription once: the address joins the list and leaves the suppression list."""
    address = read_confirm_token(signer.secret, signer.list_id, token, CONFIRM_MAX_AGE, now)
    with store.begin() as conn:
        # The conditional UPDATE makes the token single-use even under concurrent clicks.
        done = conn.execute(
            update(subs).where(subs.c.address == address, subs.c.confirm_digest == _digest(token))
            .values(confirmed=True, confirmed_at=now, confirm_digest=None)
        ).rowcount
        if done != 1:
            raise BadToken("unknown or used token")
        conn.execute(delete(sup).where(sup.c.address == address))
    return address


# -- unsubscribe ---------------------------------------------------------------------


def check_unsubscribe(signer: Signer, token: str) -> str:
    """The address a genuine unsubscribe token names; BadToken otherwise."""
    return read_unsubscribe_token(signer.secret, signer.list_id, token)


def unsubscribe(store: Store, address: str, reason: str, now: int) -> bool:
    """Put an address on the suppression list; False when it already was. Idempotent."""
    stmt = store.insert_ignore(sup).values(address=address.lower(), reason=reason[:500], created_at=now)
    with store.begin() as conn:
        return conn.execute(stmt.returning(sup.c.address)).first() is not None


def unsubscribe_token_owner(store: Store, signer: Signer, token: str, now: int) -> str:
    address = check_unsubscribe(signer, token)
    unsubscribe(store, address, "unsubscribed (web)", now)
    return address


# -- the list ------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    configured: tuple[str, ...]
    from_file: tuple[str, ...]
    confirmed: tuple[str, ...]
    pending: tuple[str, ...]
    suppressed: tuple[tuple[str, str], ...]  # (address, reason)

    @property
    def recipients(self) -> list[tuple[str, str]]:
        """(address, source) of everyone who receives the next digest, each once."""
        blocked = {a for a, _ in self.suppressed}
        seen: set[str] = set()
        found: list[tuple[str, str]] = []
        for source, addresses in (("config", self.configured), ("file", self.from_file),
                                  ("subscriber", self.confirmed)):
            for address in addresses:
                if address not in seen and address not in blocked:
                    seen.add(address)
                    found.append((address, source))
        return found


def listing(config: Config, store: Store) -> Listing:
    path = config.recipients_path
    from_file = tuple(read_recipients_file(path)) if path is not None else ()
    with store.begin() as conn:
        confirmed, pending = _subscribers(conn)
        suppressed = tuple((r.address, r.reason) for r in
                           conn.execute(select(sup.c.address, sup.c.reason).order_by(sup.c.address)))
    return Listing(tuple(a.lower() for a in config.digest.recipients), from_file, confirmed, pending,
                   suppressed)


def _subscribers(conn: Connection) -> tuple[tuple[str, ...], tuple[str, ...]]:
    rows = conn.execute(select(subs.c.address, subs.c.confirmed).order_by(subs.c.address)).all()
    return tuple(r.address for r in rows if r.confirmed), tuple(r.address for r in rows if not r.confirmed)


# -- the confirmation mail -----------------------------------------------------------


def confirm_url(config: Config, token: str) -> str:
    return config.site.url + "confirm/" + token


def confirmation_message(config: Config, address: str, link: str, now: int) -> EmailMessage:
    """A short plain-text mail with the confirmation link."""
    title = one_line(config.site.title)
    msg = EmailMessage()
    msg["From"] = Address(display_name=config.digest.from_name, addr_spec=config.digest.from_address)
    msg["To"] = address
    msg["Subject"] = f"Confirm your subscription to {title}"
    msg["Date"] = formatdate(now, usegmt=True)
    msg["Message-ID"] = make_msgid(domain=config.digest.from_address.rsplit("@", 1)[1])
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"Someone, hopefully you, asked to receive the {title} email digest at this address.\n\n"
        f"To confirm, open this link and press the button:\n\n{link}\n\n"
        f"The link works for {CONFIRM_MAX_AGE // 86400} days. If you did not ask for this, "
        "ignore this message: you will not hear from us again.\n"
    )
    return msg


async def send_confirmation(config: Config, password: str | None, address: str, token: str,
                            now: int) -> None:
    """Mail the confirmation link; DeliveryError (exit 1) when the relay does not take it."""
    data = confirmation_message(config, address, confirm_url(config, token), now)
    conn = SmtpConnection(config, password)
    try:
        outcome = await conn.send(config.digest.from_address, address, _bytes(data))
    finally:
        await conn.close()
    if outcome.kind is not Kind.SENT:
        raise DeliveryError(f"the confirmation mail to {address} was not accepted: {outcome.reply}")


def _bytes(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=policy.SMTP)


# -- the command line ----------------------------------------------------------------


def invite(config: Config, store: Store, address: str, now: int) -> str:
    """``syndicator subscribe``: mail a confirmation link; returns the line to print.

    The address, the secret and the SMTP password are checked before anything is stored.
    """
    address = valid_address(address)
    signer = Signer.for_config(config)
    password = config.smtp_password()
    source = dict(listing(config, store).recipients).get(address)
    if source is not None:
        return f"{address} is already on the list ({source}); no confirmation sent"
    token = request(store, signer, address, now, force=True)
    assert token is not None  # force=True always issues one
    asyncio.run(send_confirmation(config, password, address, token, now))
    return f"sent a confirmation link to {address}; it joins the list once confirmed"


def remove(store: Store, address: str, now: int) -> str:
    """``syndicator unsubscribe``: suppress the address; returns the line to print."""
    address = valid_address(address)
    if unsubscribe(store, address, "unsubscribed (command line)", now):
        return f"unsubscribed {address}: no further digest goes to it"
    return f"{address} was already unsubscribed"


def report(found: Listing) -> list[str]:
    """``syndicator subscribers``: counts, then one line per address."""
    recipients = found.recipients
    lines = [
        f"recipients: {len(recipients)}",
        f"configured: {len(found.configured)}",
        f"file: {len(found.from_file)}",
        f"confirmed subscribers: {len(found.confirmed)}",
        f"pending: {len(found.pending)}",
        f"suppressed: {len(found.suppressed)}",
    ]
    lines += [f"recipient   {address}  ({source})" for address, source in recipients]
    lines += [f"pending     {address}" for address in found.pending]
    lines += [f"suppressed  {address}  ({reason})" for address, reason in found.suppressed]
    return lines


def valid_address(address: str) -> str:
    try:
        return check_address(address.strip())
    except ValueError as exc:
        raise InputError(str(exc), key="ADDRESS") from None
