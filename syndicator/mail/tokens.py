"""Signed, opaque tokens for unsubscribe and subscribe-confirmation links (HMAC-SHA256)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from collections.abc import Callable

from syndicator.errors import BadToken

_MAC_BYTES = 16  # 128-bit tags: unforgeable in practice, short enough for a URL


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise BadToken("malformed token") from None


def _mac(secret: bytes, purpose: str, payload: bytes) -> bytes:
    return hmac.new(secret, purpose.encode() + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _seal(secret: bytes, purpose: str, payload: bytes) -> str:
    return _b64(payload + _mac(secret, purpose, payload))


def _open(secret: bytes, purpose: str, token: str) -> bytes:
    raw = _unb64(token)
    if len(raw) <= _MAC_BYTES:
        raise BadToken("malformed token")
    payload, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(tag, _mac(secret, purpose, payload)):
        raise BadToken("invalid token")
    return payload


def _address_box(secret: bytes, address: str) -> bytes:
    # The address is not in clear: XORed with a keystream from the secret and a nonce.
    nonce = hmac.new(secret, b"nonce\x00" + address.encode(), hashlib.sha256).digest()[:8]
    data = address.encode()
    return nonce + bytes(a ^ b for a, b in zip(data, _keystream(secret, nonce, len(data)), strict=False))


def _keystream(secret: bytes, nonce: bytes, size: int) -> bytes:
    blocks = (size + 31) // 32
    return b"".join(hmac.new(secret, b"stream\x00" + nonce + struct.pack(">I", n), hashlib.sha256).digest()
                    for n in range(blocks))


def _address_unbox(secret: bytes, box: bytes) -> str:
    nonce, data = box[:8], box[8:]
    try:
        return bytes(a ^ b for a, b in zip(data, _keystream(secret, nonce, len(data)), strict=False)).decode()
    except UnicodeDecodeError:
        raise BadToken("invalid token") from None


def unsubscribe_token(secret: bytes, list_id: str, address: str) -> str:
    """A stable token for (list, address): the same every edition, so old links keep working."""
    return _seal(secret, "unsubscribe:" + list_id, _address_box(secret, address.lower()))


def unsubscribe_signer(secret: bytes, list_id: str) -> Callable[[str], str]:
    """``unsubscribe_token`` for one secret and list, the same tokens with the constant parts
    prepared once and one-shot HMACs (a sender signs one a message)."""
    purpose = ("unsubscribe:" + list_id).encode() + b"\x00"
    digest = hmac.digest

    def sign(address: str) -> str:
        data = address.lower().encode()
        size = len(data)
        nonce = digest(secret, b"nonce\x00" + data, "sha256")[:8]
        stream = b"".join(digest(secret, b"stream\x00" + nonce + struct.pack(">I", n), "sha256")
                          for n in range((size + 31) // 32))
        boxed = int.from_bytes(data, "big") ^ int.from_bytes(stream[:size], "big")  # XOR at C speed
        box = nonce + boxed.to_bytes(size, "big")
        return _b64(box + digest(secret, purpose + box, "sha256")[:_MAC_BYTES])

    return sign


def read_unsubscribe_token(secret: bytes, list_id: str, token: str) -> str:
    """The address a genuine unsubscribe token names; BadToken otherwise."""
    return _address_unbox(secret, _open(secret, "unsubscribe:" + list_id, token))


def confirm_token(secret: bytes, list_id: str, address: str, now: float | None = None) -> str:
    """A subscribe-confirmation token that carries its own issue time."""
    issued = int(time.time() if now is None else now)
    payload = struct.pack(">Q", issued) + _address_box(secret, address.lower())
    return _seal(secret, "confirm:" + list_id, payload)


def read_confirm_token(secret: bytes, list_id: str, token: str, max_age: float,
                       now: float | None = None) -> str:
    payload = _open(secret, "confirm:" + list_id, token)
    if len(payload) < 9:
        raise BadToken("malformed token")
    (issued,) = struct.unpack(">Q", payload[:8])
    current = time.time() if now is None else now
    if current - issued > max_age or issued - current > 300:
        raise BadToken("expired token")
    return _address_unbox(secret, payload[8:])
