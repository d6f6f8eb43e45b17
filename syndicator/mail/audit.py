"""The deliverability report of ``send --dry-run``: checks over one built message, offline.

``audit`` reads the message exactly as ``send`` would mail it (the preview's bytes) and reports:
its size against Gmail's clip, its SpamAssassin score (local rules only, when ``spamassassin``
is installed), the list headers mailbox providers look for, every link (those under
``site.url`` must be files of the built site or routes ``serve`` answers) and images without
``alt``. Nothing here touches the network or the store; SpamAssassin runs with ``-L``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from syndicator.config import Config
from syndicator.mail.edition import PREVIEW_TOKEN
from syndicator.text import plural
from syndicator.web.files import Files

Level = Literal["ok", "warning"]
OK: Level = "ok"
WARNING: Level = "warning"

GMAIL_CLIP = 102 * 1024  # bytes; Gmail shows a longer message cut, behind "View entire message"
# The shipped digest scores under 1 point with SpamAssassin's local rules (tests hold it there);
# a message at or past this has picked up something a template or a seed should not carry.
SPAM_WARN = 1.0
SPAMASSASSIN_TIMEOUT = 60.0  # seconds; a local run takes about one

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_ADDRESS = re.compile(rf"{_DOT_ATOM}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MESSAGE_ID = re.compile(rf"<{_DOT_ATOM}@{_DOT_ATOM}>")
_LIST_ID = re.compile(rf"(?:.*\s)?<({_ATOM}(?:\.{_ATOM})+)>", re.DOTALL)  # RFC 2919: label.namespace
_ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+")
_URL_TAIL = ".,;:!?)]}'\""
# Paths under site.url that ``syndicator serve`` answers itself: no file stands behind them.
_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"u/[^/]+"), "the unsubscribe route"),
    (re.compile(r"confirm/[^/]+"), "the confirmation route"),
    (re.compile(r"preferences(?:/.*)?"), "the preferences route"),
    (re.compile(r"subscribe"), "the subscribe form"),
)


@dataclass(frozen=True)
class Finding:
    level: Level
    text: str  # one line

    def __str__(self) -> str:
        return f"{self.level}: {self.text}"


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == WARNING)

    @property
    def summary(self) -> str:
        return f"deliverability: {plural(len(self.warnings), 'warning')}"


def audit(config: Config, message: bytes, output: Path, *, pending: Collection[str] = (),
          which: Callable[[str], str | None] = shutil.which) -> Report:
    """Check ``message`` (as mailed: CRLF bytes) against the built site in ``output``.

    ``pending`` are URLs of pages that opening the edition writes (its own ``digests/…`` page):
    missing now, they are not broken. ``which`` finds the ``spamassassin`` program (on ``PATH``);
    without it that check is skipped.
    """
    program = which("spamassassin")
    parsed = message_from_bytes(message, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    html, text = _bodies(parsed)
    page = _Page()
    page.feed(html)
    page.close()
    findings = [
        size_finding(len(message)),
        spam_finding(message, program),
        *header_findings(message),
        *link_findings(config, output, _links(parsed, page, text), pending),
        *image_findings(page),
    ]
    return Report(tuple(findings))


# -- size ------------------------------------------------------------------------------------


def size_finding(size: int) -> Finding:
    kb = f"{size / 1024:.1f} KB"
    if size > GMAIL_CLIP:
        return Finding(WARNING, f"size: {size:,} bytes ({kb}), over Gmail's 102 KB clip: Gmail hides "
                                "the rest behind \"View entire message\" (fewer stories or shorter "
                                "summaries: digest.max_stories, digest.summary_chars, digest.max_bytes)")
    return Finding(OK, f"size: {size:,} bytes ({kb}), under Gmail's 102 KB clip")


# -- SpamAssassin ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpamScore:
    score: float
    required: float
    rules: tuple[tuple[str, float | None], ...]  # the rules that fired, with their points


def spam_finding(message: bytes, program: str | None) -> Finding:
    if program is None:
        return Finding(OK, "spamassassin: skipped (not installed)")
    try:
        result = spam_score(message, program)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return Finding(WARNING, f"spamassassin: could not score the message: {_first_line(exc)}")
    fired = ", ".join(name if points is None else f"{name} {points:.1f}" for name, points in result.rules)
    line = (f"spamassassin: {result.score:.1f} points (spam at {result.required:.1f}); "
            f"rules: {fired or 'none'}")
    if result.score >= result.required:
        return Finding(WARNING, line + " — marked as spam")
    if result.score >= SPAM_WARN:
        return Finding(WARNING, line + f" — {SPAM_WARN:.1f} or more, where the shipped digest scores less")
    return Finding(OK, line)


def spam_score(message: bytes, program: str, *, timeout: float = SPAMASSASSIN_TIMEOUT) -> SpamScore:
    """``spamassassin -t -L`` on ``message``: local tests only, no network, no Bayes, a throwaway home
    (the user's ~/.spamassassin is neither read nor written)."""
    with tempfile.TemporaryDirectory(prefix="syndicator-sa-") as home:
        prefs = Path(home) / "user_prefs"
        prefs.write_text("", encoding="utf-8")
        done = subprocess.run(
            [program, "-t", "-L", "-p", str(prefs), "--cf", "use_bayes 0", "--cf", "bayes_auto_learn 0"],
            input=message, capture_output=True, timeout=timeout, check=False,
            env={"HOME": home, "PATH": f"{Path(program).parent}:/usr/bin:/bin"},
        )
    out = done.stdout.decode("utf-8", "replace")
    parsed = parse_spam_report(out)
    if parsed is None:
        detail = _first_line(done.stderr.decode("utf-8", "replace")) or "no X-Spam-Status in its output"
        raise ValueError(f"{Path(program).name} exited {done.returncode}: {detail}")
    return parsed


def parse_spam_report(output: str) -> SpamScore | None:
    """The score, threshold and fired rules from ``spamassassin -t`` output (its X-Spam-Status
    header, with each rule's points from the report's "Content analysis details" table)."""
    head = output.replace("\r\n", "\n").split("\n\n", 1)[0]
    unfolded = re.sub(r"\n[ \t]+", " ", head)
    status = re.search(r"(?mi)^X-Spam-Status: (?:Yes|No), score=(-?[\d.]+) required=(-?[\d.]+)"
                       r"(?: tests=(.*?))?(?= autolearn=| version=|$)", unfolded)
    if status is None:
        return None
    names = [n.strip() for n in (status[3] or "").split(",") if n.strip() not in ("", "none")]
    points: dict[str, float] = {}
    details = re.search(r"Content analysis details:.*?\n-{3,}[ -]*\n(.*)", output, re.DOTALL)
    if details:
        for row in re.finditer(r"(?m)^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\b", details[1]):
            points.setdefault(row[2], float(row[1]))
    names += [n for n in points if n not in names]
    return SpamScore(float(status[1]), float(status[2]), tuple((n, points.get(n)) for n in names))


# -- headers -----------------------------------------------------------------------------------


def header_findings(message: bytes) -> list[Finding]:
    """From, Date, Message-ID, List-Id, List-Unsubscribe and List-Unsubscribe-Post: each once and
    well-formed (RFC 5322, 2919, 2369, 8058)."""
    headers = message_from_bytes(message.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", policy=policy.compat32)
    return [_header(headers, name, check) for name, check in _HEADER_CHECKS]


def _header(headers: Message, name: str, check: Callable[[str], str | None]) -> Finding:
    values = [re.sub(r"\r?\n[ \t]+", " ", str(v)).strip() for v in headers.get_all(name) or []]
    if not values:
        return Finding(WARNING, f"header {name}: missing")
    if len(values) > 1:
        return Finding(WARNING, f"header {name}: {len(values)} of them, where there must be one")
    value = values[0]
    problem = check(value)
    shown = _decoded(value)
    if problem:
        return Finding(WARNING, f"header {name}: {problem}: {shown}")
    return Finding(OK, f"header {name}: {shown}")


def _from(value: str) -> str | None:
    found = getaddresses([value])
    if len(found) != 1 or not _ADDRESS.fullmatch(found[0][1]):
        return "not one address"
    return None


def _date(value: str) -> str | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return "not an RFC 5322 date"
    return "no time zone" if when.tzinfo is None else None


def _message_id(value: str) -> str | None:
    return None if _MESSAGE_ID.fullmatch(value) else "not <id@domain>"


def _list_id(value: str) -> str | None:
    found = _LIST_ID.fullmatch(value)
    if found is None:
        return "not [name] <label.domain>"
    return "the id is over 255 characters" if len(found[1]) > 255 else None


def _list_unsubscribe(value: str) -> str | None:
    uris = re.findall(r"<([^<>]*)>", value)
    if not uris or re.sub(r"<[^<>]*>", "", value).strip(" \t,"):
        return "not a list of <URI>"
    for uri in uris:
        parts = urlsplit(uri)
        if not ((parts.scheme in ("http", "https") and parts.netloc) or
                (parts.scheme == "mailto" and _ADDRESS.fullmatch(unquote(parts.path)))):
            return f"not an http(s) or mailto URI: {uri}"
    if not any(uri.startswith("https://") for uri in uris):
        return "no https URL (one-click unsubscribe, RFC 8058, needs one)"
    return None


def _one_click(value: str) -> str | None:
    return None if value == _ONE_CLICK else f"not {_ONE_CLICK}"


_HEADER_CHECKS: tuple[tuple[str, Callable[[str], str | None]], ...] = (
    ("From", _from), ("Date", _date), ("Message-ID", _message_id), ("List-Id", _list_id),
    ("List-Unsubscribe", _list_unsubscribe), ("List-Unsubscribe-Post", _one_click),
)


# -- links and images --------------------------------------------------------------------------


class _Page(HTMLParser):
    """Links (a, area: href; img: src) and images of the HTML part, in document order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[tuple[str, bool]] = []  # (src, has alt)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in ("a", "area") and "href" in attr:
            self.links.append((attr["href"] or "").strip())
        if tag == "img":
            src = (attr.get("src") or "").strip()
            self.images.append((src, "alt" in attr))
            if src:
                self.links.append(src)

    handle_startendtag = handle_starttag


def _bodies(message: EmailMessage) -> tuple[str, str]:
    """The HTML and plain-text parts, decoded (empty when a part is absent)."""
    found = {"html": "", "plain": ""}
    for part in message.walk():
        if not isinstance(part, EmailMessage):
            continue
        subtype = part.get_content_subtype()
        if part.get_content_maintype() == "text" and subtype in found and not found[subtype]:
            content = part.get_content()
            found[subtype] = content if isinstance(content, str) else ""
    return found["html"], found["plain"]


def _links(message: EmailMessage, page: _Page, text: str) -> list[str]:
    """Every link a reader can follow: the HTML part's, the text part's, List-Unsubscribe's."""
    header = str(message.get("List-Unsubscribe") or "")
    in_text = [m.rstrip(_URL_TAIL) for m in _TEXT_URL.findall(text)]
    in_header = [u for u in re.findall(r"<([^<>]*)>", header) if u.startswith(("http://", "https://"))]
    return list(dict.fromkeys(u for u in [*page.links, *in_text, *in_header] if u))


def link_findings(config: Config, output: Path, links: Iterable[str],
                  pending: Collection[str] = ()) -> list[Finding]:
    """Links under ``site.url`` are files in ``output`` (or ``serve``'s routes, or pages opening
    the edition writes); broken ones are named. The others are listed, unchecked."""
    site = urlsplit(config.site.url)
    files = Files(output) if output.is_dir() else None
    shown = _shown(config, output)
    found: list[Finding] = []
    good = 0
    unchecked = 0
    for url in links:
        parts = urlsplit(url)
        if url.startswith("#"):
            continue  # a place in the message itself
        if not parts.scheme:
            found.append(Finding(WARNING, f"link {url}: relative, and a message has no base URL "
                                          "to resolve it against"))
            continue
        path = parts.path or "/"
        under = (parts.scheme.lower() == site.scheme.lower() and parts.netloc.lower() == site.netloc.lower()
                 and path.startswith(site.path))
        if not under:
            found.append(Finding(OK, f"link {url}: outside {config.site.url}, not checked"))
            continue
        relative = unquote(path[len(site.path):])
        route = next((what for pattern, what in _ROUTES if pattern.fullmatch(relative)), None)
        if route is not None:
            inert = " (the preview's inert token)" if relative.endswith(f"/{PREVIEW_TOKEN}") else ""
            found.append(Finding(OK, f"link {url}: {route}, served by `syndicator serve`{inert}"))
            continue
        exists = files is not None and files.locate(relative) is not None
        if not exists and url.split("#", 1)[0].split("?", 1)[0] in pending:
            found.append(Finding(OK, f"link {url}: the edition's page, written when the edition opens"))
        elif files is None:
            unchecked += 1
        elif exists:
            good += 1
        else:
            target = relative if relative and not relative.endswith("/") else relative + "index.html"
            found.append(Finding(WARNING, f"link {url}: broken, no file {target} in {shown}"))
    if files is None:
        found.insert(0, Finding(WARNING, f"links: {shown} does not exist, so {plural(unchecked, 'link')} "
                                         f"under {config.site.url} went unchecked (run `syndicator build` "
                                         "first)"))
    else:
        found.insert(0, Finding(OK, f"links: {plural(good, 'link')} under {config.site.url}, "
                                    f"each a file of the built site in {shown}"))
    return found


def image_findings(page: _Page) -> list[Finding]:
    missing = [src or "(no src)" for src, has_alt in page.images if not has_alt]
    if not page.images:
        return [Finding(OK, "images: none")]
    if not missing:
        return [Finding(OK, f"images: {plural(len(page.images), 'image')}, each with alt")]
    return [Finding(WARNING, f"image without alt: {src}") for src in missing]


# -- helpers -------------------------------------------------------------------------------------


def _shown(config: Config, folder: Path) -> str:
    """A folder as the user names it: relative to the project root when it is inside it."""
    try:
        return str(folder.resolve().relative_to(config.root.resolve())) + "/"
    except ValueError:
        return str(folder) + "/"


def _decoded(value: str) -> str:
    """A header value with RFC 2047 encoded words decoded, on one line."""
    try:
        text = str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        text = value
    return " ".join(text.split())


def _first_line(value: object) -> str:
    return (str(value).strip().splitlines() or [""])[0]
