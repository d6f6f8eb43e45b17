"""``/admin``: a read-only page of editions, their delivery over time, what came back, and
the list, behind HTTP basic auth (user ``admin``, the password from ``admin.password_env``).

Without that password in the environment the route does not exist (404, as any missing
file). Every request, right or wrong, draws on a per-client rate limit before the
credentials are even looked at, so guessing is slow and a throttled guess tells nothing.
The chart is SVG drawn here: no script, no request beyond the page itself.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from syndicator.state import reports
from syndicator.state.reports import CURVE_STEP, Curve
from syndicator.state.store import Store
from syndicator.web.limits import RateLimiter, client_key

log = logging.getLogger("syndicator.web.admin")

USER = "admin"
_REALM = 'Basic realm="syndicator admin", charset="UTF-8"'
# Okabe and Ito's colours, told apart with any colour vision (their yellow is too pale on white;
# their black is the text's colour, so that it shows in dark mode too).
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "currentColor")


class Admin:
    def __init__(self, store: Store, password: str, render: Callable[..., HTMLResponse],
                 limiter: RateLimiter | None = None, now: Callable[[], float] | None = None) -> None:
        self.store, self.render = store, render
        self.expected = f"{USER}:{password}".encode()
        self.limiter = limiter or RateLimiter(burst=20, every=3.0)
        self.now = now or (lambda: datetime.now(UTC).timestamp())

    def authorized(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        # User and password in one constant-time comparison: neither is told apart by timing.
        return hmac.compare_digest(given, self.expected)

    async def page(self, request: Request) -> Response:
        if not self.limiter.allow(client_key(request)):
            return PlainTextResponse("Too many requests; try again in a minute.\n", 429,
                                     headers={"Retry-After": str(math.ceil(self.limiter.every)),
                                              "Cache-Control": "no-store"})
        if not self.authorized(request):
            if "authorization" in request.headers:
                log.warning("admin: wrong credentials from %s", client_key(request))
            return PlainTextResponse("Authentication required.\n", 401,
                                     headers={"WWW-Authenticate": _REALM, "Cache-Control": "no-store"})
        view = await run_in_threadpool(reports.overview, self.store)
        subjects = {e.id: e.subject for e in view.editions}
        return self.render("web_admin.html", view=view, chart=delivery_chart(view.curves, subjects),
                           utc=_utc, duration=_duration, now=_utc(self.now()), states=_DELIVERY_COLUMNS)


_DELIVERY_COLUMNS = ("sent", "pending", "sending", "deferred", "failed", "suppressed")


def _utc(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


# -- the chart ---------------------------------------------------------------------------


def delivery_chart(curves: Sequence[Curve], subjects: dict[int, str], width: int = 960,
                   plot_height: int = 260) -> Markup:
    """An inline SVG: one line per edition, how many of its messages were sent (y) by each
    moment after it opened (x, in minutes, or hours or days for long runs). Subjects are
    escaped; everything else is numbers."""
    if not curves:
        return Markup('<p class="meta">No edition has sent anything yet.</p>')
    left, right, top, bottom = 64, 16, 12, 44
    inner_w, inner_h = width - left - right, plot_height - top - bottom
    lines = [(c, _cumulative(c)) for c in curves]
    x_max = max(1, max(points[-1][0] for _, points in lines))
    y_max = max(1, max(points[-1][1] for _, points in lines))
    unit, unit_name = ((1, "minutes") if x_max <= 180 else (60, "hours") if x_max <= 72 * 60
                       else (1440, "days"))
    x_ticks = [t * unit for t in _ticks(x_max / unit)]
    y_ticks = _ticks(y_max)
    x_top, y_top = max(x_max, x_ticks[-1]), max(y_max, y_ticks[-1])

    def x(minute: float) -> str:
        return f"{left + inner_w * minute / x_top:.1f}"

    def y(count: float) -> str:
        return f"{top + inner_h * (1 - count / y_top):.1f}"

    columns = 3
    rows = math.ceil(len(curves) / columns)
    height = plot_height + 8 + rows * 20
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="chart" '
           f'role="img" aria-labelledby="chart-title"><title id="chart-title">Messages sent per edition, '
           f'by minutes since the edition opened</title>',
           '<g class="grid" stroke="#d8d8d8" stroke-width="1">']
    out += [f'<line x1="{left}" x2="{left + inner_w}" y1="{y(t)}" y2="{y(t)}"/>' for t in y_ticks]
    out += [f'<line x1="{x(t)}" x2="{x(t)}" y1="{top}" y2="{top + inner_h}"/>' for t in x_ticks]
    out.append("</g>")
    out.append('<g class="labels" font-size="12" fill="currentColor">')
    out += [f'<text x="{left - 6}" y="{y(t)}" text-anchor="end" dominant-baseline="middle">{t:,}</text>'
            for t in y_ticks]
    out += [f'<text x="{x(t)}" y="{top + inner_h + 16}" text-anchor="middle">{_number(t / unit)}</text>'
            for t in x_ticks]
    out.append(f'<text x="{left + inner_w / 2:.1f}" y="{top + inner_h + 34}" text-anchor="middle">'
               f'{unit_name} since the edition opened</text>')
    out.append(f'<text x="14" y="{top + inner_h / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + inner_h / 2:.1f})">sent</text>')
    out.append("</g>")
    for n, (curve, points) in enumerate(lines):
        colour = PALETTE[n % len(PALETTE)]
        label = escape(f"Edition {curve.edition_id}: {subjects.get(curve.edition_id, '')} "
                       f"({points[-1][1]:,} sent)")
        drawn = " ".join(f"{x(m)},{y(c)}" for m, c in points)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round" '
                   f'points="{drawn}"><title>{label}</title></polyline>')
    out.append('<g class="legend" font-size="12" fill="currentColor">')
    for n, (curve, points) in enumerate(lines):
        column, row = n % columns, n // columns
        lx, ly = left + column * (inner_w // columns), plot_height + 8 + row * 20
        subject = subjects.get(curve.edition_id, "")
        short = subject if len(subject) <= 36 else subject[:35] + "…"
        out.append(f'<rect x="{lx}" y="{ly}" width="14" height="5" fill="{PALETTE[n % len(PALETTE)]}"/>'
                   f'<text x="{lx + 20}" y="{ly + 5}">#{curve.edition_id} {escape(short)} '
                   f'({points[-1][1]:,})</text>')
    out.append("</g></svg>")
    return Markup("".join(out))


def _cumulative(curve: Curve, most: int = 400) -> list[tuple[float, int]]:
    """(minutes after start, sent by then) from the counts per CURVE_STEP seconds: flat where
    nothing was sent, rising across each step that sent some. A long run is drawn in wider
    steps, so that no line has more than about ``most`` points."""
    span = curve.sent[-1][0] + CURVE_STEP if curve.sent else CURVE_STEP
    width = CURVE_STEP * max(1, math.ceil(span / (CURVE_STEP * most / 2)))
    merged: dict[int, int] = {}
    for at, sent in curve.sent:
        merged[at // width * width] = merged.get(at // width * width, 0) + sent
    points: list[tuple[float, int]] = [(0.0, 0)]
    total = 0
    for at, sent in sorted(merged.items()):
        if at / 60 > points[-1][0]:
            points.append((at / 60, total))
        total += sent
        points.append(((at + width) / 60, total))
    return points


def _ticks(top: float, most: int = 6) -> list[int]:
    """Round steps (1, 2 or 5 times a power of ten) from 0 to ``top`` or just past it,
    at most ``most`` steps."""
    magnitude = 1
    while True:
        for base in (1, 2, 5):
            step = base * magnitude
            if math.ceil(top / step) <= most:
                return [i * step for i in range(math.ceil(top / step) + 1)]
        magnitude *= 10


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
