"""`syndicator build` and `syndicator check` as a user runs them: output, exit codes, error lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from syndicator.cli import cli

Project = Any  # tests/conftest.py's Project
SYNDICATOR = Path(sys.executable).parent / "syndicator"
KNOWN = "(known: id, date, author, url, tags, correction)"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if line.startswith(needle))


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_error(result: Result, line: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: {line}\n"
    assert "Traceback" not in result.output


def set_config(project: Project, old: str, new: str) -> None:
    text = project.config.read_text()
    assert old in text
    project.config.write_text(text.replace(old, new, 1))


# -- happy paths -----------------------------------------------------------------------------


def test_check_ok(project: Project) -> None:
    result = run("check")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: config/syndicator.toml: 1 seed file, 7 stories\n"
    assert result.stderr == ""
    assert not (project.root / "public").exists() and not (project.root / "state").exists()


def test_check_counts_one_story_in_two_files_once(project: Project) -> None:
    rutte = "Rutte: NATO Must Normalize Relations with Russia After War"
    project.seed("001_more.txt", f"{rutte}\n\nLonger text.\n")
    assert run("check").stdout == "ok: config/syndicator.toml: 2 seed files, 7 stories\n"


def test_build_ok_then_unchanged(project: Project) -> None:
    out = project.root.resolve() / "public"
    result = run("build")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"built 7 stories into {out}: 14 files written, 0 unchanged\n"
    names = {"rss.xml", "atom.xml", "feed.json", "index.html"}
    assert names <= {p.name for p in out.iterdir()}
    assert len(list((out / "stories").glob("*.html"))) == 7
    before = snapshot(out)
    again = run("build")
    assert again.exit_code == 0
    assert again.stdout == f"built 7 stories into {out}: 0 files written, 14 unchanged\n"
    assert snapshot(out) == before


def test_installed_command_builds_and_exits_cleanly(project: Project) -> None:
    """The console script ends a finished build at once: output and store are complete first."""
    proc = subprocess.run([str(SYNDICATOR), "build"], cwd=project.root, capture_output=True, text=True,
                          timeout=60)
    out = project.root.resolve() / "public"
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"built 7 stories into {out}: 14 files written, 0 unchanged\n"
    again = subprocess.run([str(SYNDICATOR), "build"], cwd=project.root, capture_output=True, text=True,
                           timeout=60)
    assert again.stdout == f"built 7 stories into {out}: 0 files written, 14 unchanged\n"
    assert run("status").exit_code == 0  # the store was closed cleanly


def test_build_out_option(project: Project, tmp_path: Path) -> None:
    result = run("build", "--out", str(tmp_path / "elsewhere" / "site"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "site" / "rss.xml").is_file()
    assert not (project.root / "public").exists()


def test_config_option_from_another_folder(project: Project, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("--config", str(project.config), "build")
    assert result.exit_code == 0, result.output
    assert (project.root / "public" / "atom.xml").is_file()  # relative to the project root, not the cwd
    assert not (tmp_path / "public").exists()


def test_config_from_the_environment(project: Project, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNDICATOR_CONFIG", str(project.config))
    result = run("check")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ok: {project.config}: 1 seed file, 7 stories\n"


# -- every bad input: exit 2, one line naming file, line and key --------------------------------


@pytest.mark.parametrize("command", ["build", "check"])
def test_config_not_found(project: Project, command: str) -> None:
    project.config.unlink()
    assert_one_error(run(command),
                     "config/syndicator.toml: config file not found (use --config or $SYNDICATOR_CONFIG)")


@pytest.mark.parametrize("command", ["build", "check"])
def test_toml_syntax_error(project: Project, command: str) -> None:
    set_config(project, "limit = 50", "limit 50")
    line = line_of(project.config, "limit 50")
    assert_one_error(run(command), f"config/syndicator.toml:{line}: TOML syntax error: "
                                   "Expected '=' after a key in a key/value pair")


@pytest.mark.parametrize("command", ["build", "check"])
def test_unknown_config_key(project: Project, command: str) -> None:
    set_config(project, 'language = "en"', 'langauge = "en"')
    line = line_of(project.config, "langauge")
    assert_one_error(run(command), f"config/syndicator.toml:{line}: site.langauge: unknown key")


def test_relative_site_url(project: Project) -> None:
    set_config(project, 'url = "https://example.org/"', 'url = "example.org"')
    line = line_of(project.config, 'url = "example.org"')
    assert_one_error(run("check"), f"config/syndicator.toml:{line}: site.url: "
                                   "must be an absolute http(s) URL, got 'example.org'")


def test_check_reports_every_config_problem(project: Project) -> None:
    set_config(project, 'url = "https://example.org/"', 'url = "/news"')
    set_config(project, 'schedule = "0 7 * * *"', 'schedule = "every day"')
    result = run("check")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: config/syndicator.toml:{line_of(project.config, 'url =')}: site.url: "
        "must be an absolute http(s) URL, got '/news'",
        f"error: config/syndicator.toml:{line_of(project.config, 'schedule =')}: digest.schedule: "
        "expected a 5-field cron expression, got 'every day'",
    ]


@pytest.mark.parametrize("command", ["build", "check"])
def test_bad_seed(project: Project, command: str) -> None:
    bad = project.seed("001_bad.txt", "---\nid: a\nsubtitle: x\n---\nTitle\n")
    assert_one_error(run(command), f"{bad}:3: subtitle: unknown front matter key {KNOWN}")
    assert not (project.root / "public").exists()
    assert not (project.root / "state").exists()


@pytest.mark.parametrize("command", ["build", "check"])
def test_missing_seeds_folder(project: Project, command: str) -> None:
    for path in project.seeds.iterdir():
        path.unlink()
    project.seeds.rmdir()
    line = line_of(project.config, "seeds =")
    assert_one_error(run(command), f"config/syndicator.toml:{line}: paths.seeds: "
                                   f"seeds folder not found: {project.root.resolve() / 'seeds'}")


def test_check_reports_all_problems(project: Project) -> None:
    empty = project.seed("001_empty.txt", b"")
    binary = project.seed("002_binary.txt", b"Title\n\x00\x01")
    latin = project.seed("003_latin.txt", "Caf\u00e9\n".encode("latin-1"))
    dated = project.seed("004_date.txt", "---\ndate: soon\n---\nT\n")
    result = run("check")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {empty}:1: empty file: a seed needs at least a title line",
        f"error: {binary}:2: binary file (NUL byte): seeds must be UTF-8 text",
        f"error: {latin}:1: not valid UTF-8 (byte 0xe9 at offset 3)",
        f"error: {dated}:2: date: not an ISO 8601 date: 'soon'",
    ]


def test_check_two_bad_seeds_two_lines(project: Project) -> None:
    a = project.seed("001_a.txt", "\n\n\n")
    b = project.seed("002_b.txt", "---\nurl: not-a-url\n---\nT\n")
    result = run("check")
    assert result.exit_code == 2
    assert result.stderr == (f"error: {a}:1: only blank lines: a seed needs at least a title line\n"
                             f"error: {b}:2: url: not an absolute http(s) URL: 'not-a-url'\n")


def test_build_reports_all_problems_and_writes_nothing(project: Project) -> None:
    project.seed("001_a.txt", "\n")
    project.seed("002_b.txt", "---\n")
    result = run("build")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 2
    assert sorted(p.name for p in project.root.iterdir()) == ["config", "seeds"]


def test_build_on_bad_input_keeps_earlier_output_and_store_intact(project: Project) -> None:
    assert run("build").exit_code == 0
    public = snapshot(project.root / "public")
    state = snapshot(project.root / "state")
    bad = project.seed("001_new.txt", "A fine new story\n\nBody.\n")
    project.seed("002_bad.txt", b"\xff\xfe\x00")
    result = run("build")
    assert result.exit_code == 2
    assert bad.name not in result.stderr
    assert snapshot(project.root / "public") == public
    assert snapshot(project.root / "state") == state


def test_unwritable_output_folder_is_a_file(project: Project) -> None:
    (project.root / "public").write_text("not a folder")
    out = project.root.resolve() / "public"
    assert_one_error(run("build"), f"{out}: output folder is a file, not a folder", code=1)
    assert not (project.root / "state").exists()  # failed before touching the store
    assert (project.root / "public").read_text() == "not a folder"


def test_unwritable_output_folder_under_a_file(project: Project, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = run("build", "--out", str(blocker / "public"))
    assert_one_error(result, f"{blocker / 'public'}: cannot create the output folder: Not a directory",
                     code=1)


def test_unknown_command_and_bad_option_are_usage_errors(project: Project) -> None:
    result = CliRunner().invoke(cli, ["bild"])
    assert result.exit_code == 2 and "No such command 'bild'" in result.stderr
    result = CliRunner().invoke(cli, ["build", "--outt", "x"])
    assert result.exit_code == 2 and "No such option" in result.stderr


# -- a real process: no traceback unless --verbose ----------------------------------------------


def subprocess_run(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SYNDICATOR_CONFIG"}
    return subprocess.run([str(SYNDICATOR), *args], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_process_error_is_one_line_and_verbose_adds_the_traceback(project: Project) -> None:
    project.seed("001_bad.txt", b"")
    bad = (project.root / "seeds" / "001_bad.txt").resolve()
    quiet = subprocess_run(project, "build")
    assert (quiet.returncode, quiet.stdout) == (2, "")
    assert quiet.stderr == f"error: {bad}:1: empty file: a seed needs at least a title line\n"
    loud = subprocess_run(project, "--verbose", "build")
    assert loud.returncode == 2
    assert "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.endswith(f"error: {bad}:1: empty file: a seed needs at least a title line\n")


def test_process_happy_path(project: Project) -> None:
    done = subprocess_run(project, "build")
    assert done.returncode == 0, done.stderr
    out = project.root.resolve() / "public"
    assert done.stdout == f"built 7 stories into {out}: 14 files written, 0 unchanged\n"
    assert done.stderr == ""


def test_broken_project_template_is_one_line_naming_file_and_line(project: Project) -> None:
    templates = project.root / "templates"
    templates.mkdir()
    index = templates / "index.html"
    index.write_text('{% extends "base.html" %}\n{% block body %}\n{{ stories|nope }}\n{% endblock %}\n')
    for command in ("check", "build"):
        assert_one_error(run(command), f"{index.resolve()}:3: template error: No filter named 'nope'.")
    assert not (project.root / "public").exists()
    index.write_text('{% extends "base.html" %}\n{% block body %}\n\n{{ missing_name }}\n{% endblock %}\n')
    assert run("check").exit_code == 0  # only a render finds an undefined name
    assert_one_error(run("build"), f"{index.resolve()}:4: template error: 'missing_name' is undefined")
    assert not (project.root / "public" / "index.html").exists()


def test_project_template_overrides_the_shipped_one(project: Project) -> None:
    templates = project.root / "templates"
    templates.mkdir()
    (templates / "index.html").write_text(
        '{% extends "base.html" %}\n{% block body %}<p>Our own: {{ stories|length }}</p>{% endblock %}\n')
    assert run("build").exit_code == 0
    index = (project.root / "public" / "index.html").read_text()
    assert "<p>Our own: 7</p>" in index and 'type="application/atom+xml"' in index
