"""``syndicator serve``: the output folder over HTTP, plus subscribe/confirm/unsubscribe routes.

Files get strong ETags (a content hash; the gzip body has its own), Last-Modified and
304s, Cache-Control, and on feeds the WebSub ``Link`` headers. Nothing outside the
output folder is reachable. Token pages never reveal why a token failed, the subscribe
form never reveals whether an address is known, and tokens never reach the access log.
The POST routes refuse requests a browser made from another site (see ``Site.cross_origin``).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import urlsplit

import jinja2
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from syndicator.config import Config, check_address
from syndicator.errors import BadToken, SecretMissingError, ServeError, StoreError, SyndicatorError
from syndicator.mail import subscriptions
from syndicator.mail.message import list_id
from syndicator.mail.subscriptions import Signer
from syndicator.site.tags import TAG_LIST
from syndicator.state.lists import Preferences
from syndicator.state.store import Store
from syndicator.templating import environment
from syndicator.web.admin import Admin
from syndicator.web.files import CACHE_BYTES, FEED_TYPES, Asset, Files, accepts_gzip, not_modified
from syndicator.web.limits import MAX_BODY, BodyLimit, ForwardedFor, RateLimiter, client_key
from syndicator.web.metrics import Metrics

log = logging.getLogger("syndicator.web.app")

_CACHE_CONTROL = {"feed": "public, max-age=300", "html": "public, max-age=60",
                  "other": "public, max-age=3600"}
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # a token in the URL must not leak to other sites
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}


# -- the app -----------------------------------------------------------------------------


Handler = Callable[[Request], Awaitable[Response]]


class Site:
    """The routes' shared state: config, store, signer, files, templates, limits."""

    def __init__(self, config: Config, store: Store, signer: Signer | None, password: str | None,
                 limiter: RateLimiter, now: Callable[[], int], cache_bytes: int = CACHE_BYTES) -> None:
        self.config, self.store, self.signer, self.password = config, store, signer, password
        self.limiter, self.now = limiter, now
        self.files = Files(config.output_dir, max_bytes=cache_bytes)
        self.origin = _origin(config.site.url)
        self.env = environment(config.templates_dir)
        self.links = _feed_links(config)

    # pages ----------------------------------------------------------------------------
    def page(self, name: str, status: int = 200, background: BackgroundTask | None = None,
             headers: Mapping[str, str] | None = None, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(site=self.config.site, **context)
        return HTMLResponse(html, status, headers={**_PAGE_HEADERS, **(headers or {})}, background=background)

    @property
    def keys(self) -> Signer:
        """The signer, in a route that ``needs_secret`` guards."""
        assert self.signer is not None
        return self.signer

    def needs_secret(self, handler: Handler) -> Handler:
        """A subscription route: without the signing secret it cannot check or sign a token,
        so it answers 503 (the feeds and pages are served all the same)."""
        async def guarded(request: Request) -> Response:
            if self.signer is None:
                return self.page("web_unavailable.html", 503, headers={"Retry-After": "300"})
            return await handler(request)

        return guarded

    def bad_token(self) -> HTMLResponse:
        return self.page("web_bad_token.html", 400)

    async def form(self, request: Request) -> FormData:
        return await request.form(max_files=0, max_fields=20, max_part_size=MAX_BODY)

    def cross_origin(self, request: Request) -> bool:
        """Whether a browser sent this POST from another site's page.

        Such a page could make each visitor's browser subscribe someone, from as many
        addresses as it has visitors. A request with neither header (curl, or a mail
        provider's server doing RFC 8058's one-click POST) is no browser's and passes.
        """
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            return True
        origin = request.headers.get("origin")
        if origin is None or _origin(origin) == self.origin:
            return False
        # The server's own Host too: a page served by this very server (localhost, a test run).
        netloc = urlsplit(origin.strip().lower()).netloc
        return not netloc or netloc != request.headers.get("host", "").lower()

    def forbidden(self) -> Response:
        return PlainTextResponse("Cross-site request refused.\n", 403, headers={"Cache-Control": "no-store"})

    # routes ---------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        ok = self.files.root.is_dir() and await run_in_threadpool(self.store.ping)
        return PlainTextResponse("ok\n" if ok else "unavailable\n", 200 if ok else 503,
                                 headers={"Cache-Control": "no-store"})

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "POST" and self.cross_origin(request):
            return self.forbidden()
        try:
            if request.method == "POST":
                # RFC 8058: the one-click POST (or the page's button) unsubscribes at once,
                # whatever encoding the body uses.
                await request.body()
                address = await run_in_threadpool(
                    subscriptions.unsubscribe_token_owner, self.store, self.keys, token, self.now())
                log.info("unsubscribed one address through the web")
                return self.page("web_unsubscribed.html", address=address)
            address = subscriptions.check_unsubscribe(self.keys, token)
        except BadToken:
            return self.bad_token()
        return self.page("web_unsubscribe.html", address=address)

    async def preferences(self, request: Request) -> Response:
        """GET: the reader's choices (tags, time zone) and the unsubscribe button; POST saves."""
        token = request.path_params["token"]
        if request.method == "POST" and self.cross_origin(request):
            return self.forbidden()
        try:
            address = subscriptions.check_unsubscribe(self.keys, token)
        except BadToken:
            return self.bad_token()
        tags = _site_tags(self.config)
        saved = False
        if request.method == "POST":
            form = await self.form(request)
            known = {t["slug"] for t in tags}
            chosen = tuple(sorted({v for v in form.getlist("tags") if isinstance(v, str) and v in known}))
            zone = form.get("timezone", "")
            zone = zone if isinstance(zone, str) and zone in _ZONES else ""
            await run_in_threadpool(subscriptions.save_preferences, self.store, address,
                                    Preferences(chosen, zone), self.now())
            saved = True
        current = await run_in_threadpool(subscriptions.preferences_of, self.store, address)
        return self.page("web_preferences.html", address=address, tags=tags, chosen=set(current.tags),
                         timezone=current.timezone, zones=_ZONE_LIST, saved=saved,
                         unsubscribe=f"{self.config.site.url}u/{token}",
                         digest_zone=self.config.digest.timezone)

    async def subscribe_form(self, request: Request) -> Response:
        return self.page("web_subscribe.html", error="", email="")

    async def subscribe(self, request: Request) -> Response:
        if self.cross_origin(request):
            return self.forbidden()
        if not self.limiter.allow(client_key(request)):
            return self.page("web_subscribe.html", 429, headers={"Retry-After": str(int(self.limiter.every))},
                             error="Too many attempts from your network; please try again in a minute.",
                             email="")
        raw = (await self.form(request)).get("email", "")
        try:
            address = check_address(raw.strip() if isinstance(raw, str) else "",
                                    allow_local=self.config.digest.allow_local_addresses)
        except ValueError:
            return self.page("web_subscribe.html", 400, error="Please enter a valid email address.",
                             email=raw if isinstance(raw, str) else "")
        token = await run_in_threadpool(subscriptions.request, self.store, self.keys, address, self.now(),
                                        self.config.serve.confirmations_per_hour)
        # The mail goes out after the response, so known, new, cooling-down and over-the-cap
        # addresses all get the same page, status and timing.
        task = BackgroundTask(self.mail_confirmation, address, token) if token else None
        return self.page("web_check_inbox.html", background=task)

    async def mail_confirmation(self, address: str, token: str) -> None:
        try:
            await subscriptions.send_confirmation(self.config, self.password, address, token, self.now())
        except SyndicatorError as exc:
            log.warning("confirmation mail not sent: %s", exc)

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        if request.method == "POST" and self.cross_origin(request):
            return self.forbidden()
        try:
            if request.method == "POST":
                await request.body()
                address = await run_in_threadpool(subscriptions.confirm, self.store, self.keys, token,
                                                  self.now())
                log.info("confirmed one subscription through the web")
                return self.page("web_confirmed.html", address=address)
            address = await run_in_threadpool(subscriptions.check_confirm, self.store, self.keys, token,
                                              self.now())
        except BadToken:
            return self.bad_token()
        return self.page("web_confirm.html", address=address)

    async def file(self, request: Request) -> Response:
        found = await run_in_threadpool(self.files.locate, request.path_params["path"])
        if isinstance(found, str):
            return RedirectResponse(found, 308)
        asset = await run_in_threadpool(self.files.load, found) if found is not None else None
        if asset is None:
            return PlainTextResponse("Not found.\n", 404)
        return self.asset_response(request, asset, found is not None and found.parent == self.files.root)

    def asset_response(self, request: Request, asset: Asset, top_level: bool) -> Response:
        squeeze = asset.gzipped is not None and accepts_gzip(request.headers.get("accept-encoding", ""))
        headers = {
            "ETag": f'"{asset.digest}-gz"' if squeeze else f'"{asset.digest}"',
            "Last-Modified": formatdate(asset.mtime, usegmt=True),
            "Cache-Control": _CACHE_CONTROL[asset.kind],
            "X-Content-Type-Options": "nosniff",
        }
        if asset.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
        if asset.kind == "feed" and top_level and self.links:
            headers["Link"] = self.links[asset.name]
        if not_modified(request.headers, asset):
            return Response(status_code=304, headers=headers)
        if squeeze and asset.gzipped is not None:
            headers["Content-Encoding"] = "gzip"
            return Response(asset.gzipped, headers=headers, media_type=asset.content_type)
        return Response(asset.body, headers=headers, media_type=asset.content_type)


def _origin(url: str) -> str:
    """``scheme://host[:port]`` as browsers write Origin: lower case, no default port."""
    parts = urlsplit(url.strip().lower())
    try:
        port = parts.port
    except ValueError:
        return ""
    default = {"http": 80, "https": 443}.get(parts.scheme)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if port is not None and port != default:
        netloc += f":{port}"
    return f"{parts.scheme}://{netloc}" if parts.scheme and parts.hostname else ""


def _feed_links(config: Config) -> dict[str, str]:
    """The WebSub discovery Link header of each feed, when a hub is configured."""
    hub = config.feeds.websub_hub
    if not hub:
        return {}
    return {name: f'<{hub}>; rel="hub", <{config.site.url}{name}>; rel="self"' for name in FEED_TYPES}


async def _store_down(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable: %s", exc)
    return PlainTextResponse("Service temporarily unavailable.\n", 503, headers={"Retry-After": "30"})


def create_app(config: Config, store: Store, *, secret: bytes | None = None,
               limiter: RateLimiter | None = None, now: Callable[[], int] | None = None,
               cache_bytes: int = CACHE_BYTES) -> Starlette:
    """The ASGI app. Reads the SMTP password, metrics token and admin password now, so a
    missing (or too weak) one fails at start; without the signing secret the site is served
    and the subscription routes answer 503."""
    site = Site(config, store, _signer(config, secret), config.smtp_password(), limiter or RateLimiter(),
                now or (lambda: int(time.time())), cache_bytes)
    guard = site.needs_secret
    routes = [
        Route("/healthz", site.health, methods=["GET"]),
        Route("/metrics", Metrics(store, config.serve.metrics_token()).endpoint, methods=["GET"]),
        Route("/u/{token}", guard(site.unsubscribe), methods=["GET", "POST"]),
        Route("/subscribe", guard(site.subscribe_form), methods=["GET"]),
        Route("/subscribe", guard(site.subscribe), methods=["POST"]),
        Route("/confirm/{token}", guard(site.confirm), methods=["GET", "POST"]),
        Route("/preferences/{token}", guard(site.preferences), methods=["GET", "POST"]),
    ]
    admin_password = config.admin.password()
    if admin_password is not None:  # without it, /admin is a missing file like any other
        admin = Admin(store, admin_password, site.page, now=site.now)
        routes.append(Route("/admin", admin.page, methods=["GET"]))
    routes.append(Route("/{path:path}", site.file, methods=["GET"]))
    # Files are gzipped above, each encoding with its own strong ETag. Starlette's GZipMiddleware
    # is not used: it keeps the identity ETag on the gzip body and ignores "gzip;q=0".
    middleware = [Middleware(ForwardedFor, trusted=config.serve.proxy_networks), Middleware(BodyLimit)]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={StoreError: _store_down, jinja2.TemplateError: _template_error})
    app.state.site = site
    return app


_ZONE_LIST = sorted(z for z in zoneinfo.available_timezones()
                    if "/" in z and not z.startswith(("Etc/", "SystemV/")))
_ZONES = frozenset(_ZONE_LIST) | {"UTC"}


def _site_tags(config: Config) -> list[dict[str, str]]:
    """The tags of the built site (``tags/tags.json``); none before the first build."""
    try:
        loaded = json.loads((config.output_dir / TAG_LIST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [t for t in loaded if isinstance(t, dict) and isinstance(t.get("slug"), str)
            and isinstance(t.get("name"), str)]


def _signer(config: Config, secret: bytes | None) -> Signer | None:
    if secret is not None:
        return Signer(secret, list_id(config))
    try:
        return Signer.for_config(config)
    except SecretMissingError as exc:
        log.warning("serving the site without subscriptions (they answer 503): %s", exc)
        return None


async def _template_error(request: Request, exc: Exception) -> Response:
    log.error("page template failed: %s", exc)
    return PlainTextResponse("Internal server error.\n", 500)


# -- serving -----------------------------------------------------------------------------


class RedactTokens(logging.Filter):
    """Replace the token in /u/... and /confirm/... paths before a log record is written."""

    _PATH = re.compile(r"(/(?:u|confirm)/)[^\s/?#\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self.redact(record.msg)
        return True

    @classmethod
    def redact(cls, value: str) -> str:
        return cls._PATH.sub(r"\1[token]", value)


def listen(host: str, port: int) -> socket.socket:
    """A bound socket, or ServeError naming the address; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that name it (else +40 ms
    # per keep-alive response from Nagle and delayed ACKs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # listening at once: connections made before uvicorn starts just wait
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def make_server(app: ASGIApp) -> uvicorn.Server:
    """A uvicorn server for ``app`` that logs through our logging, tokens redacted."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    # proxy_headers off: uvicorn would believe X-Forwarded-For from any local peer. ForwardedFor
    # reads it, from serve.trusted_proxies only.
    config = uvicorn.Config(app, log_config=None, lifespan="off", server_header=False,
                            proxy_headers=False, timeout_graceful_shutdown=5)
    return uvicorn.Server(config)


async def serve_app(config: Config, host: str = "127.0.0.1", port: int = 8080, *,
                    store: Store | None = None, sock: socket.socket | None = None) -> None:
    """Serve until cancelled or signalled; ``syndicator run`` awaits this next to its scheduler."""
    owned = store is None
    store = store or Store.open(config.store_url)
    try:
        app = create_app(config, store)
        await run_server(app, sock or listen(host, port))
    finally:
        if owned:
            store.close()


async def run_server(app: ASGIApp, sock: socket.socket) -> None:
    """Serve ``app`` on a bound socket until cancelled or signalled (SIGINT/SIGTERM)."""
    await make_server(app).serve(sockets=[sock])
