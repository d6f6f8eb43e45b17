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
import logging
from dataclasses import dataclass

from syndicator.config import Config, read_recipients_file
from syndicator.errors import BadToken, DeliveryError
from syndicator.mail.audience import recipients
from syndicator.mail.message import list_id, plain_notice
from syndicator.mail.policy import Kind
from syndicator.mail.smtp import Connection as SmtpConnection
from syndicator.mail.tokens import confirm_token, read_confirm_token, read_unsubscribe_token
from syndicator.state import lists
from syndicator.state.store import Store
from syndicator.text import one_line

log = logging.getLogger("syndicator.mail.subscriptions")

CONFIRM_MAX_AGE = 3 * 24 * 3600  # a confirmation link works for three days
RESEND_AFTER = 600  # at most one confirmation mail per address every ten minutes (web form)
CAP_WINDOW = 3600  # serve.confirmations_per_hour counts the requests of this many seconds


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


def request(store: Store, signer: Signer, address: str, now: int, cap: int | None = None, *,
            force: bool = False) -> str | None:
    """Record a pending subscription and return its confirmation token.

    None (unless ``force``) when a confirmation went to this address, or to another form of
    it (``cooldown_key``), less than RESEND_AFTER ago, or when ``cap`` addresses were sent
    one in the last hour (all callers, all processes): callers answer exactly as if a mail
    went out, so nothing is revealed. The subscription keeps the address as given
    (lower-cased).
    """
    address = address.lower()
    token = confirm_token(signer.secret, signer.list_id, address, now)
    outcome = lists.request_confirmation(store, address, _digest(token), now, canonical=cooldown_key(address),
                                         cooldown=None if force else RESEND_AFTER,
                                         cap=None if force else cap, window=CAP_WINDOW)
    if outcome is lists.Requested.CAPPED:
        # No address here: the log must not become a list of whom someone tried to mail.
        log.warning("confirmation mail not sent: %d addresses were sent one in the last hour "
                    "(serve.confirmations_per_hour)", cap)
    return token if outcome is lists.Requested.STORED else None


def cooldown_key(address: str) -> str:
    """The form the resend cooldown counts by: lower case, no ``+tag`` in the local part.

    ``target+1@x``, ``target+2@x``... reach one mailbox; each must not get its own mail.
    """
    local, _, domain = address.lower().rpartition("@")
    return local.split("+", 1)[0] + "@" + domain


def check_confirm(store: Store, signer: Signer, token: str, now: int) -> str:
    """The address a genuine, unexpired, unused confirmation token names; BadToken otherwise."""
    address = read_confirm_token(signer.secret, signer.list_id, token, CONFIRM_MAX_AGE, now)
    stored = lists.pending_digest(store, address)
    if stored is None or not hmac.compare_digest(stored, _digest(token)):
        raise BadToken("unknown or used token")
    return address


def confirm(store: Store, signer: Signer, token: str, now: int) -> str:
    """Confirm a subscription once: the address joins the list and leaves the suppression list."""
    address = read_confirm_token(signer.secret, signer.list_id, token, CONFIRM_MAX_AGE, now)
    if not lists.confirm(store, address, _digest(token), now):
        raise BadToken("unknown or used token")
    return address


# -- unsubscribe ---------------------------------------------------------------------


def check_unsubscribe(signer: Signer, token: str) -> str:
    """The address a genuine unsubscribe token names; BadToken otherwise."""
    return read_unsubscribe_token(signer.secret, signer.list_id, token)


def unsubscribe(store: Store, address: str, reason: str, now: int) -> bool:
    """Put an address on the suppression list; False when it already was. Idempotent."""
    return lists.suppress(store, address, reason, now)


def preferences_of(store: Store, address: str) -> lists.Preferences:
    return lists.preferences(store, address)


def save_preferences(store: Store, address: str, chosen: lists.Preferences, now: int) -> None:
    """What the reader chose on their preferences page (the token proved who they are)."""
    lists.set_preferences(store, address, chosen, now)


def unsubscribe_token_owner(store: Store, signer: Signer, token: str, now: int) -> str:
    address = check_unsubscribe(signer, token)
    unsubscribe(store, address, "unsubscribed (web)", now)
    return address


# -- the list ------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """The list as ``syndicator subscribers`` shows it."""

    recipients: tuple[tuple[str, str], ...]  # (address, source): who gets the next digest
    configured: tuple[str, ...]
    from_file: tuple[str, ...]
    confirmed: tuple[str, ...]
    pending: tuple[str, ...]
    suppressed: tuple[lists.Suppressed, ...]


def listing(config: Config, store: Store) -> Listing:
    path = config.recipients_path
    everyone = lists.subscribers(store)
    return Listing(
        recipients=tuple(recipients(config, store)),
        configured=tuple(a.lower() for a in config.digest.recipients),
        from_file=tuple(read_recipients_file(path, allow_local=config.digest.allow_local_addresses))
        if path is not None else (),
        confirmed=tuple(s.address for s in everyone if s.confirmed),
        pending=tuple(s.address for s in everyone if not s.confirmed),
        suppressed=tuple(lists.suppressions(store)),
    )


# -- the confirmation mail -----------------------------------------------------------


def confirm_url(config: Config, token: str) -> str:
    return config.site.url + "confirm/" + token


def confirmation_message(config: Config, address: str, link: str, now: int) -> bytes:
    """A short plain-text mail with the confirmation link, ready for the wire.

    From, To and Subject carry config text and the reader's address: they are encoded by
    ``syndicator.mail.message`` (never folded by the email package) and To holds the
    address's ASCII form (an IDN domain as A-labels).
    """
    title = one_line(config.site.title)
    body = (
        f"Someone, hopefully you, asked to receive the email digest of {title} at this address.\n\n"
        f"To confirm, open this link and press the button:\n\n{link}\n\n"
        f"The link works for {CONFIRM_MAX_AGE // 86400} days. If you did not ask for this, "
        "ignore this message: you will not hear from us again.\n"
    )
    return plain_notice(config, address, f"Confirm your subscription to {title}", body, now)


async def send_confirmation(config: Config, password: str | None, address: str, token: str,
                            now: int) -> None:
    """Mail the confirmation link; DeliveryError (exit 1) when the relay does not take it."""
    data = confirmation_message(config, address, confirm_url(config, token), now)
    conn = SmtpConnection(config, password)
    try:
        outcome = await conn.send(config.digest.from_address, address, data)
    finally:
        await conn.close()
    if outcome.kind is not Kind.SENT:
        raise DeliveryError(f"the confirmation mail to {address} was not accepted: {outcome.reply}")




def invite(config: Config, store: Store, address: str, now: int) -> str | None:
    """``syndicator subscribe``: mail a confirmation link to a normalised address.

    Returns the source (config, file, subscriber) when the address is already on the list,
    and then sends nothing. The secret and the SMTP password are checked before anything
    is stored.
    """
    signer = Signer.for_config(config)
    password = config.smtp_password()
    source = dict(recipients(config, store)).get(address)
    if source is not None:
        return source
    token = request(store, signer, address, now, force=True)
    assert token is not None  # force=True always issues one
    asyncio.run(send_confirmation(config, password, address, token, now))
    return None
