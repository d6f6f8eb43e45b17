"""Addresses under ``inbound.address`` that name one delivery (VERP).

Each message goes out with the envelope sender ``local+<token>@domain`` and advertises the
mailto unsubscribe ``local+u-<token>@domain``; both land in the one inbound mailbox. The
token names the delivery (its edition and the hash in its Message-ID) and is signed, so a
bounce is matched to its ledger row without guessing and a forged one is ignored.

The token is base32 in lower case (32 characters): MTAs may change the case of a local part,
and RFC 5321 caps a local part at 64 characters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass

from syndicator.config import Config
from syndicator.mail.message import list_id

_ID = re.compile(r"<(\d+)\.([0-9a-f]{32})@[^>]+>")
_HASH_BYTES = 8  # of the Message-ID's hash: with the edition, one delivery row
_MAC_BYTES = 8  # 64-bit tags: a forger gets one try per message mailed to us, not a search
UNSUBSCRIBE_TAG = "u-"


@dataclass(frozen=True)
class Named:
    """What a token under the inbound address says: which delivery, and why it was used."""

    edition_id: int
    id_hash: str  # the first hex digits of the Message-ID's hash
    unsubscribe: bool  # mail to the mailto of List-Unsubscribe, not a bounce


@dataclass(frozen=True)
class ReturnPaths:
    local: str
    domain: str
    secret: bytes
    list_id: str

    @classmethod
    def of(cls, config: Config, secret: bytes) -> ReturnPaths | None:
        """The return paths of a config with ``[inbound] address``; None without one."""
        address = config.inbound.address
        if not address:
            return None
        local, _, domain = address.rpartition("@")
        return cls(local, domain, secret, list_id(config))

    def bounce_address(self, message_id: str) -> str:
        return f"{self.local}+{self._token(message_id)}@{self.domain}"

    def unsubscribe_address(self, message_id: str) -> str:
        return f"{self.local}+{UNSUBSCRIBE_TAG}{self._token(message_id)}@{self.domain}"

    def read(self, address: str) -> Named | None:
        """The delivery a genuine address under ours names; None for anything else."""
        local, _, domain = address.strip().strip("<>").rpartition("@")
        base, plus, token = local.partition("+")
        if not plus or base.lower() != self.local.lower() or domain.lower() != self.domain.lower():
            return None
        unsubscribe = token.lower().startswith(UNSUBSCRIBE_TAG)
        if unsubscribe:
            token = token[len(UNSUBSCRIBE_TAG):]
        try:
            raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != 4 + _HASH_BYTES + _MAC_BYTES:
            return None
        payload, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(tag, self._mac(payload)):
            return None
        (edition_id,) = struct.unpack(">I", payload[:4])
        return Named(edition_id, payload[4:].hex(), unsubscribe)

    def _token(self, message_id: str) -> str:
        match = _ID.fullmatch(message_id)
        if match is None:
            raise ValueError(f"not one of our Message-IDs: {message_id!r}")
        payload = struct.pack(">I", int(match.group(1))) + bytes.fromhex(match.group(2))[:_HASH_BYTES]
        raw = payload + self._mac(payload)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def _mac(self, payload: bytes) -> bytes:
        purpose = b"verp\x00" + self.list_id.encode() + b"\x00"
        return hmac.new(self.secret, purpose + payload, hashlib.sha256).digest()[:_MAC_BYTES]
