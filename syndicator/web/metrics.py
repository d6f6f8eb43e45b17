"""``/metrics``: the store's counts in Prometheus text format, read at scrape time.

Nothing is counted in this process: a collector asks the store at each scrape, so every
sender process (and machine) that shares the store adds up, and a restart loses nothing.

Who may scrape: with the environment variable that ``serve.metrics_token_env`` names set,
anyone sending ``Authorization: Bearer <that token>``; without it, loopback peers only, and
only for a request no proxy forwarded (through a proxy on this machine every request comes
from loopback). Anyone else gets the same 404 as a missing file.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from syndicator.state import reports
from syndicator.state.store import Store

_FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class StoreCollector:
    """A prometheus-client collector whose every ``collect`` counts the store afresh."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        return iter(families(reports.totals(self.store)))

    def describe(self) -> list[Metric]:
        return []  # never collect at registration: that would be a store query at start-up


def families(totals: reports.Totals) -> list[Metric]:
    """The metric families of one count of the store."""
    editions = GaugeMetricFamily("syndicator_editions", "Digest editions by status.", labels=["status"])
    for status, n in totals.editions.items():
        editions.add_metric([status], n)
    deliveries = GaugeMetricFamily("syndicator_deliveries",
                                   "Deliveries (one per edition and recipient) by state, all editions.",
                                   labels=["state"])
    for state, n in totals.deliveries.items():
        deliveries.add_metric([state], n)
    inbound = CounterMetricFamily("syndicator_inbound_events",
                                  "What came back by mail (bounce, delay, complaint, unsubscribe).",
                                  labels=["kind"])
    for kind, n in totals.inbound.items():
        inbound.add_metric([kind], n)
    people = GaugeMetricFamily("syndicator_subscribers",
                               "Subscribers by state: suppressed (on the suppression list), else "
                               "confirmed or pending.", labels=["state"])
    for state, n in totals.subscribers.items():
        people.add_metric([state], n)
    suppressed = GaugeMetricFamily("syndicator_suppressed_addresses",
                                   "Addresses on the suppression list.", value=totals.suppressions)
    took = GaugeMetricFamily("syndicator_last_run_duration_seconds",
                             "How long the latest build or send took.", labels=["kind"])
    ended = GaugeMetricFamily("syndicator_last_run_finished_timestamp_seconds",
                              "When the latest build or send finished (Unix time).", labels=["kind"])
    for kind, run in totals.runs.items():
        took.add_metric([kind], run.seconds)
        ended.add_metric([kind], run.finished_at)
    return [editions, deliveries, inbound, people, suppressed, took, ended]


class Metrics:
    """The /metrics route: a private registry (no process or platform metrics of this process,
    which would not add up across senders) holding the store collector."""

    def __init__(self, store: Store, token: str | None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(store))
        self.token = token.encode() if token else None

    def allowed(self, request: Request) -> bool:
        if self.token is not None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            # The header's own bytes (Starlette decodes headers as Latin-1), compared in constant time.
            given = value.strip().encode("latin-1", "replace")
            return scheme.lower() == "bearer" and hmac.compare_digest(given, self.token)
        return _loopback(request) and not any(h in request.headers for h in _FORWARDING_HEADERS)

    async def endpoint(self, request: Request) -> Response:
        if not self.allowed(request):
            if self.token is not None:
                return PlainTextResponse("Unauthorized.\n", 401, headers={
                    **_NO_STORE, "WWW-Authenticate": 'Bearer realm="syndicator metrics"'})
            return PlainTextResponse("Not found.\n", 404)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = await run_in_threadpool(encoder, self.registry)
        return Response(body, headers=_NO_STORE, media_type=content_type)


def _loopback(request: Request) -> bool:
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
