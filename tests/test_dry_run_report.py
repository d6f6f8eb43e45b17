"""`syndicator send --dry-run`'s deliverability report, as a user reads it: one finding a line."""

from __future__ import annotations

import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.mail.audit import audit

from .conftest import REPO, Project

SPAMASSASSIN = shutil.which("spamassassin")
needs_spamassassin = pytest.mark.skipif(
    SPAMASSASSIN is None,
    reason="spamassassin is not installed (Debian package 'spamassassin'; .ci/run installs it)",
)
SHIPPED_TEMPLATE = REPO / "syndicator" / "templates" / "digest.html"
DRY_RUN_LINES = 5  # dry run, subject, stories, recipients, preview: the report follows them


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch, clock: datetime) -> None:
    """`build` and `send` read the CLI's clock: pin it, so the edition's page has a known date."""
    monkeypatch.setattr("syndicator.cli.build.clock", lambda: clock)
    monkeypatch.setattr("syndicator.cli.send.clock", lambda: clock)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def build() -> None:
    result = run("build")
    assert result.exit_code == 0, result.output


def report(result: Result) -> list[str]:
    """The report's lines: after the dry run's own, up to and including the summary."""
    lines = result.stdout.splitlines()
    assert lines[0] == "dry run: nothing was sent and nothing was changed", result.output
    assert lines[-1].startswith("deliverability: "), result.output
    found = lines[DRY_RUN_LINES:]
    assert all(re.match(r"(ok|warning): ", line) for line in found[:-1]), found
    warnings = [line for line in found if line.startswith("warning: ")]
    assert found[-1] == f"deliverability: {len(warnings)} warning{'' if len(warnings) == 1 else 's'}"
    return found


def warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("warning: ")]


def set_digest(project: Project, **keys: object) -> None:
    """Put keys into the [digest] section of the project's config."""
    text = project.config.read_text()
    settings = "".join(f"{key} = {value}\n" for key, value in keys.items())
    project.config.write_text(text.replace("[digest]\n", "[digest]\n" + settings, 1))


def story_pages(project: Project) -> list[Path]:
    return sorted((project.output / "stories").glob("*.html"))


def test_the_shipped_example_passes_with_no_warnings(project: Project) -> None:
    shutil.copy(REPO / "config" / "syndicator.toml", project.config)
    shutil.copy(REPO / "config" / "recipients.txt", project.config.parent / "recipients.txt")
    build()
    result = run("send", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = report(result)
    assert lines[-1] == "deliverability: 0 warnings"
    size = (project.root / "preview" / "digest.eml").stat().st_size
    assert lines[0] == f"ok: size: {size:,} bytes ({size / 1024:.1f} KB), under Gmail's 102 KB clip"
    assert lines[1].startswith("ok: spamassassin: ")
    if SPAMASSASSIN is not None:  # the score, the threshold and every rule that fired, with points
        assert re.fullmatch(r"ok: spamassassin: -?\d+\.\d points \(spam at 5\.0\); rules: .*"
                            r"MAILING_LIST_MULTI -1\.0.*", lines[1]), lines[1]
    assert lines[2:8] == [
        "ok: header From: Dispatch Digest <digest@example.org>",
        "ok: header Date: Wed, 25 Nov 2026 07:00:00 +0000",
        lines[4],
        "ok: header List-Id: \"The Syndicator Dispatch\" <digest.example.org>",
        "ok: header List-Unsubscribe: <https://example.org/u/preview-token-not-valid>",
        "ok: header List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ]
    assert re.fullmatch(r"ok: header Message-ID: <0\.[0-9a-f]{32}@example\.org>", lines[4])
    # The site root and the 7 story pages are built files; the edition's page and the
    # unsubscribe route are recognised, not called broken.
    assert lines[8] == ("ok: links: 8 links under https://example.org/, "
                        "each a file of the built site in public/")
    assert re.fullmatch(r"ok: link https://example\.org/digests/2026-11-25-[0-9a-f]{8}\.html: "
                        r"the edition's page, written when the edition opens", lines[9]), lines[9]
    assert lines[10] == ("ok: link https://example.org/preferences/preview-token-not-valid: the preferences "
                         "route, served by `syndicator serve` (the preview's inert token)")
    assert lines[11] == ("ok: link https://example.org/u/preview-token-not-valid: the unsubscribe route, "
                         "served by `syndicator serve` (the preview's inert token)")
    assert lines[12:] == ["ok: images: none", "deliverability: 0 warnings"]


def test_a_digest_past_gmails_clip_warns_and_still_exits_0(project: Project) -> None:
    set_digest(project, max_bytes=5000000, max_stories=1000, summary_chars=100000)
    paragraph = " ".join(f"The council met on day {n} and heard residents on the budget." for n in range(40))
    briefs = "".join(f"\nBudget hearing number {n}\n{paragraph}\n" for n in range(60))
    project.seed("001_long.txt", "A long day at the council\n\nThe lead.\n" + briefs)
    build()
    result = run("send", "--dry-run")
    assert result.exit_code == 0, result.output
    size = (project.root / "preview" / "digest.eml").stat().st_size
    assert size > 102 * 1024
    lines = report(result)
    assert lines[0] == (f"warning: size: {size:,} bytes ({size / 1024:.1f} KB), over Gmail's 102 KB clip: "
                        "Gmail hides the rest behind \"View entire message\" (fewer stories or shorter "
                        "summaries: digest.max_stories, digest.summary_chars, digest.max_bytes)")
    assert result.stdout.splitlines()[2] == "stories: 68"  # every story is in this one message


def test_a_broken_link_under_the_site_is_named(project: Project) -> None:
    build()
    gone = story_pages(project)[0]
    gone.unlink()
    result = run("send", "--dry-run")
    assert result.exit_code == 0, result.output  # a warning never fails a run without --strict
    lines = report(result)
    assert warnings(lines) == [f"warning: link https://example.org/stories/{gone.name}: broken, "
                               f"no file stories/{gone.name} in public/"]
    assert "ok: links: 7 links under https://example.org/, each a file of the built site in public/" in lines
    assert lines[-1] == "deliverability: 1 warning"


def test_an_unbuilt_site_is_one_warning_not_a_list_of_every_link(project: Project) -> None:
    result = run("send", "--dry-run")
    assert result.exit_code == 0, result.output
    assert warnings(report(result)) == [
        "warning: links: public/ does not exist, so 8 links under https://example.org/ went unchecked "
        "(run `syndicator build` first)"]


def test_a_custom_templates_image_without_alt_is_reported(project: Project) -> None:
    template = SHIPPED_TEMPLATE.read_text(encoding="utf-8").replace(
        '<a class="brand" href="{{ site.url }}">',
        '<img src="https://cdn.example.net/masthead.png" width="120" height="40">\n'
        '<img src="{{ site.url }}logo.png" alt="The Test Dispatch" width="40" height="40">\n'
        '<a class="brand" href="{{ site.url }}">', 1)
    assert "masthead.png" in template
    (project.root / "templates").mkdir()
    (project.root / "templates" / "digest.html").write_text(template, encoding="utf-8")
    build()
    (project.output / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = run("send", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = report(result)
    assert "warning: image without alt: https://cdn.example.net/masthead.png" in lines
    assert not [line for line in lines if "alt" in line and "logo.png" in line]  # it has its alt
    # Images are links too: the site's logo is a built file, the CDN's is listed, unchecked.
    assert "ok: links: 9 links under https://example.org/, each a file of the built site in public/" in lines
    assert "ok: link https://cdn.example.net/masthead.png: outside https://example.org/, not checked" in lines


def test_strict_exits_1_on_a_warning_and_0_without(project: Project) -> None:
    build()
    clean = run("send", "--dry-run", "--strict")
    assert clean.exit_code == 0, clean.output
    assert clean.stdout.splitlines()[-1] == "deliverability: 0 warnings"
    assert clean.stderr == ""
    story_pages(project)[0].unlink()
    failed = run("send", "--dry-run", "--strict")
    assert failed.exit_code == 1, failed.output
    assert failed.stdout.splitlines()[-1] == "deliverability: 1 warning"  # the whole report first
    assert failed.stderr == "error: 1 deliverability warning (--strict)\n"


def test_strict_without_dry_run_is_a_usage_error(project: Project) -> None:
    result = run("send", "--strict")
    assert result.exit_code == 2
    assert "Error: --strict goes with --dry-run" in result.stderr


def test_without_spamassassin_the_score_is_skipped(project: Project, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", f"{empty}:{Path(sys.executable).parent}")
    assert shutil.which("spamassassin") is None
    build()
    result = run("send", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = report(result)
    assert lines[1] == "ok: spamassassin: skipped (not installed)"
    assert lines[-1] == "deliverability: 0 warnings"


def test_the_report_sees_a_bad_message(project: Project) -> None:
    """The checks can fail: a bare HTML-only message, no list headers, links that cannot work."""
    config = load_config(project.config)
    (project.root / "built").mkdir()
    bad = (b"From: digest at example.org\r\nTo: y@example.org\r\nSubject: hi\r\n"
           b"Date: yesterday\r\nMIME-Version: 1.0\r\nList-Unsubscribe: http://example.org/u/x\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n"
           b'<html><body><p><a href="stories/a.html">A</a> <a href="https://example.org/gone/">B</a>'
           b' <img src="https://example.org/u/x"></p></body></html>\r\n')
    lines = [str(f) for f in audit(config, bad, project.root / "built").findings]
    assert lines[2:] == [
        "warning: header From: not one address: digest at example.org",
        "warning: header Date: not an RFC 5322 date: yesterday",
        "warning: header Message-ID: missing",
        "warning: header List-Id: missing",
        "warning: header List-Unsubscribe: not a list of <URI>: http://example.org/u/x",
        "warning: header List-Unsubscribe-Post: missing",
        "ok: links: 0 links under https://example.org/, each a file of the built site in built/",
        "warning: link stories/a.html: relative, and a message has no base URL to resolve it against",
        "warning: link https://example.org/gone/: broken, no file gone/index.html in built/",
        "ok: link https://example.org/u/x: the unsubscribe route, served by `syndicator serve`",
        "warning: image without alt: https://example.org/u/x",
    ]


@needs_spamassassin
def test_spamassassin_scores_a_bad_message_and_names_its_rules(project: Project, tmp_path: Path) -> None:
    config = load_config(project.config)
    bad = (b"From: x@example.org\r\nTo: y@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Hi</p></body></html>\r\n")
    spam = str(audit(config, bad, tmp_path).findings[1])
    assert spam.startswith("warning: spamassassin: "), spam
    assert {"MISSING_DATE", "MISSING_MID", "MIME_HTML_ONLY"} <= set(re.findall(r"([A-Z_]+) -?\d+\.\d", spam))
