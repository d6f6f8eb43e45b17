"""WebSub publish pings: tell the hub which feeds changed. Retried with backoff, never fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from syndicator.config import Config
from syndicator.site.feeds import ATOM, JSON_FEED, RSS

if TYPE_CHECKING:
    import httpx  # imported where a ping is sent: 65 ms of every build's start-up otherwise

log = logging.getLogger("syndicator.websub")

FEEDS = (RSS, ATOM, JSON_FEED)
ATTEMPTS = 3
FIRST_DELAY = 1.0  # seconds before the 2nd attempt; doubled each time
TIMEOUT = 10.0


def announce(config: Config, written: Iterable[str]) -> None:
    """After any build: tell the hub which feeds changed (logged on failure, never fatal)."""
    urls = changed_feed_urls(config, written)
    if urls and config.feeds.websub_hub:
        ping_hub(config, urls)


def changed_feed_urls(config: Config, written: Iterable[str]) -> list[str]:
    """The public URLs of the feeds among the files a build wrote."""
    # The names go by once (a build in batches writes millions; no set of them all is made).
    feeds = set(FEEDS)
    found = {name for name in written if name in feeds}
    return [config.site.url + name for name in FEEDS if name in found]


def ping_hub(config: Config, feed_urls: Iterable[str], *, attempts: int = ATTEMPTS,
             first_delay: float | None = None, timeout: float = TIMEOUT,
             sleep: Callable[[float], None] | None = None) -> bool:
    """POST ``hub.mode=publish&hub.url=<feed>`` for each feed; True when the hub took every one.

    Failures are logged (one line each, no traceback) and retried; nothing here raises.
    """
    hub = config.feeds.websub_hub
    pending = list(feed_urls)
    if not hub or not pending:
        return True
    import httpx

    with httpx.Client(timeout=timeout, follow_redirects=False,
                      headers={"User-Agent": "syndicator (WebSub publisher)"}) as client:
        for attempt in range(1, attempts + 1):
            pending, retry = _round(client, hub, pending)
            if not pending:
                return True
            if not retry or attempt == attempts:
                log.warning("WebSub: gave up on %d feed(s) after %d attempt(s); the build is not affected",
                            len(pending), attempt)
                return False
            (sleep or time.sleep)((FIRST_DELAY if first_delay is None else first_delay) * 2 ** (attempt - 1))
    return False


def _round(client: httpx.Client, hub: str, urls: list[str]) -> tuple[list[str], bool]:
    """One try for each feed: (the feeds still to ping, whether another try may help)."""
    failed: list[str] = []
    retry = False
    for url in urls:
        problem, transient = _post(client, hub, url)
        if problem is None:
            log.info("WebSub hub %s notified: %s", _host(hub), url)
            continue
        log.warning("WebSub ping to %s for %s failed: %s", _host(hub), url, problem)
        failed.append(url)
        retry = retry or transient
    return failed, retry


def _post(client: httpx.Client, hub: str, url: str) -> tuple[str | None, bool]:
    """(None, _) on success, else (what went wrong, whether another try may help)."""
    import httpx

    try:
        response = client.post(hub, data={"hub.mode": "publish", "hub.url": url})
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}", True
    if response.is_success:
        return None, False
    retry = response.status_code >= 500 or response.status_code in (408, 425, 429)
    return f"hub answered HTTP {response.status_code}", retry


def _host(url: str) -> str:
    """The hub's host only: a hub URL may carry a key in its path or query."""
    import httpx

    return httpx.URL(url).host or url
