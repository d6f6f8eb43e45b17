"""The shipped digest, as one recipient gets it, scored by SpamAssassin's local rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from syndicator.config import load_config
from syndicator.mail.digest import render_digest
from syndicator.mail.message import MessageFactory, list_id, message_id
from syndicator.mail.tokens import unsubscribe_token

from .conftest import REPO, Project
from .test_digest import seed_stories

SPAMASSASSIN = shutil.which("spamassassin")
pytestmark = pytest.mark.skipif(
    SPAMASSASSIN is None,
    reason="spamassassin is not installed (Debian package 'spamassassin'; .ci/run installs it)",
)
LIMIT = 1.0
# Rules that mean the message itself is malformed or looks like a bad list, whatever the score.
FORBIDDEN = re.compile(r"MISSING_|MPART_ALT_DIFF|LIST_PARTIAL_|HTML_ONLY|HTML_MIME_NO_HTML_TAG")
# The one rule that rewards looking like a real mailing list; the rest must pass without it.
BONUS = "MAILING_LIST_MULTI"


@dataclass
class Report:
    score: float
    rules: dict[str, float]


def score(message: bytes, home: Path) -> Report:
    """Run ``spamassassin -L -t`` (local tests only, no network, no Bayes learning)."""
    home.mkdir(exist_ok=True)
    prefs = home / "user_prefs"
    prefs.write_text("", encoding="utf-8")
    assert SPAMASSASSIN is not None
    done = subprocess.run(
        [SPAMASSASSIN, "-L", "-t", "-p", str(prefs), "--cf", "use_bayes 0", "--cf", "bayes_auto_learn 0"],
        input=message, capture_output=True, timeout=120, check=False,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},  # keeps ~/.spamassassin out of the real home
    )
    out = done.stdout.decode("utf-8", "replace")
    total = re.search(r"Content analysis details:\s+\((-?[\d.]+) points", out)
    assert total, f"no SpamAssassin report (exit {done.returncode}): {done.stderr.decode()[-2000:]}"
    report = out[total.end():]
    rules = {m[2]: float(m[1]) for m in re.finditer(r"(?m)^\s*(-?\d+\.\d+)\s+([A-Z0-9_]+)\s", report)}
    return Report(float(total[1]), rules)


def shipped_message(project: Project, clock: datetime) -> bytes:
    """The repository's own config and seed, rendered and personalised as the sender does it."""
    shutil.copy(REPO / "config" / "syndicator.toml", project.config)
    config = load_config(project.config)
    _, stories = seed_stories(project, clock)
    digest = render_digest(config, stories, clock)
    address = "reader@example.org"
    token = unsubscribe_token(b"deliverability-test-secret", list_id(config), address)
    factory = MessageFactory(config, digest, date=clock,
                             unsubscribe_url=lambda a: f"{config.site.url}u/{token}")
    return factory.build(address, message_id(1, address, config))


def test_shipped_digest_scores_well(project: Project, clock: datetime, tmp_path: Path) -> None:
    report = score(shipped_message(project, clock), tmp_path / "home")
    fired = ", ".join(f"{name}={points}" for name, points in report.rules.items())
    print(f"SpamAssassin: {report.score} points: {fired}")
    assert report.score < LIMIT, fired
    assert not [name for name in report.rules if FORBIDDEN.search(name)], fired
    assert sum(p for name, p in report.rules.items() if name != BONUS) < LIMIT, fired


def test_the_scorer_sees_a_bad_message(project: Project, clock: datetime, tmp_path: Path) -> None:
    """The check can fail: an HTML-only message without Date or Message-ID is caught."""
    bad = (b"From: x@example.org\r\nTo: y@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hi</p></body></html>\r\n")
    report = score(bad, tmp_path / "home")
    assert {"MISSING_DATE", "MISSING_MID", "MIME_HTML_ONLY"} <= set(report.rules)
