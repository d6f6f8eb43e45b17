"""Abuse limits for ``serve``: who the client is, a per-client rate limit and a request body limit."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syndicator.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_BODY = 16 * 1024  # every form this app accepts fits in far less


class RateLimiter:
    """A token bucket per client: ``burst`` requests at once, then one every ``every`` seconds."""

    def __init__(self, burst: int = 5, every: float = 20.0, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.every, self.max_clients, self.clock = burst, every, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) / self.every)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return allowed


class _TooLarge(Exception):
    pass


class BodyLimit:
    """413 for any request body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await _too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(scope, receive, send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("Request body too large.\n", 413, headers={"Connection": "close"})(
        scope, receive, send)


# -- who the client is ------------------------------------------------------------------


class ForwardedFor:
    """Take the client from X-Forwarded-For, but only from a peer in ``trusted`` proxies.

    Any other peer could claim a new address with each request and so never run out of
    its rate limit: for them the header is ignored. Through trusted proxies the client is
    the right-most address that is not a trusted proxy itself (those to its left are
    whatever the client chose to send). The access log then shows that client too.
    """

    def __init__(self, app: ASGIApp, trusted: Sequence[IPNetwork] = ()) -> None:
        self.app, self.trusted = app, tuple(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.trusted and scope.get("client"):
            client = forwarded_client(scope["client"][0], _forwarded_hops(scope["headers"]), self.trusted)
            if client is not None:
                scope["client"] = (str(client), 0)
        await self.app(scope, receive, send)


def forwarded_client(peer: str, hops: list[str], trusted: Sequence[IPNetwork]) -> IPAddress | None:
    """The client that ``hops`` (X-Forwarded-For, left to right) names, when ``peer`` is trusted.

    None keeps the peer: it is no trusted proxy, or it forwarded nothing.
    """
    nearest = _address(peer)
    if nearest is None or not _trusted(nearest, trusted) or not hops:
        return None
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return nearest  # a garbled hop: trust nothing beyond the last proxy that is sure
        if not _trusted(address, trusted):
            return address
        nearest = address
    return nearest  # every hop a trusted proxy: the left-most one made the request


def _forwarded_hops(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """Every X-Forwarded-For entry, left to right (a repeated header continues the list)."""
    values = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
    return [hop.strip() for hop in ",".join(values).split(",") if hop.strip()]


def _address(value: str) -> IPAddress | None:
    """An address as peers and proxies write it: bare, ``[v6]``, ``[v6]:port`` or ``v4:port``."""
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address  # ::ffff:192.0.2.1 is that IPv4 client (dual-stack sockets)


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


def client_key(request: Request) -> str:
    """The rate limit's bucket: an IPv4 address, or an IPv6 client's /64.

    One IPv6 subscriber line gets a whole /64 and may pick any address in it (privacy
    addresses rotate by themselves), so keying on the full address would be no limit.
    """
    address = _address(request.client.host) if request.client else None
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
