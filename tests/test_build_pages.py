"""The build's fast paths give exactly what the plain path gives: pages rendered by forked children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.site import parallel

Project = Any  # tests/conftest.py's Project


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_forked_rendering_writes_the_same_pages(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["build", "--out", "plain"]).exit_code == 0
    monkeypatch.setattr(parallel, "_PARALLEL_FROM", 1)
    monkeypatch.setattr(parallel, "_workers", lambda: 3)  # two children, each with a share
    result = runner.invoke(cli, ["build", "--out", "forked"])
    assert result.exit_code == 0, result.output
    assert "14 files written" in result.output
    plain, forked = files(project.root / "plain"), files(project.root / "forked")
    assert len(plain) == 14 and plain == forked
    # Then nothing changes, and a page removed behind the build's back comes back.
    page = next((project.root / "forked" / "stories").iterdir())
    page.unlink()
    result = runner.invoke(cli, ["build", "--out", "forked"])
    assert "1 files written, 13 unchanged" in result.output
    assert files(project.root / "forked") == plain


def test_template_error_in_the_child_is_one_line_and_writes_no_page(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_PARALLEL_FROM", 1)
    monkeypatch.setattr(parallel, "_workers", lambda: 2)
    templates = project.root / "templates"
    templates.mkdir()
    story = templates / "story.html"
    story.write_text('{% extends "base.html" %}\n{% block body %}\n{{ missing_name }}\n{% endblock %}\n')
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {story.resolve()}:3: template error: 'missing_name' is undefined\n"
    stories = project.root / "public" / "stories"
    assert not stories.exists() or not any(stories.iterdir())  # no page, no temp file left


def test_first_build_leaves_no_staging_folder_and_removes_stale_ones(project: Project) -> None:
    import os
    import time

    stale = project.root / "public" / ".stories.abc.tmp"
    stale.mkdir(parents=True)
    (stale / "x.html").write_text("half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert CliRunner().invoke(cli, ["build"]).exit_code == 0
    public = project.root / "public"
    assert sorted(p.name for p in public.iterdir()) == [
        "atom.xml", "feed.json", "index.html", "news-sitemap.xml", "robots.txt", "rss.xml", "sitemap.xml",
        "stories"]
    assert len(list((public / "stories").iterdir())) == 7


def _built_with_children(project: Project, monkeypatch: pytest.MonkeyPatch,
                         workers: int) -> tuple[CliRunner, Path, dict[str, bytes]]:
    """A first build, then pages rendered by ``workers`` processes however few they are."""
    monkeypatch.setattr(parallel, "_PARALLEL_FROM", 1)
    monkeypatch.setattr(parallel, "_workers", lambda: workers)
    runner = CliRunner()
    assert runner.invoke(cli, ["build"]).exit_code == 0
    public = project.root / "public"
    return runner, public, files(public)


def test_failed_rebuild_with_children_keeps_every_page_and_leaves_no_temp_file(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, public, before = _built_with_children(project, monkeypatch, 2)
    templates = project.root / "templates"
    templates.mkdir()
    # Pages render differently now, and the error comes only after the first page.
    (templates / "story.html").write_text(
        '{% extends "base.html" %}\n{% block body %}{{ story.title }}'
        '{% if story.is_lead %}{{ missing_name.attr }}{% endif %}{% endblock %}\n')
    result = runner.invoke(cli, ["build"])
    assert result.exit_code == 2, result.output
    assert "template error" in result.stderr
    assert files(public) == before  # every page as it was, and no temp file beside them


def test_lost_or_corrupt_build_state_rebuilds_the_same_site(project: Project) -> None:
    """state/ is only a shortcut: without it (or with junk in it) nothing is written twice."""
    runner = CliRunner()
    assert runner.invoke(cli, ["build"]).exit_code == 0
    public = project.root / "public"
    before = {p: p.stat().st_mtime_ns for p in public.rglob("*") if p.is_file()}
    shards = list((project.root / "state").glob("*/*.bin"))
    assert shards  # the manifest's and the parsed-seed cache's shards
    for shard in shards:
        shard.write_bytes(b"junk")
    # --full: the complete build, which reads every shard (a rebuild of the just-written seed
    # alone would read and rewrite only its page's).
    result = runner.invoke(cli, ["build", "--full"])
    assert result.exit_code == 0, result.output
    assert "0 files written, 14 unchanged" in result.output
    assert {p: p.stat().st_mtime_ns for p in public.rglob("*") if p.is_file()} == before
    assert all(shard.read_bytes() != b"junk" for shard in shards)  # remembered again


def _restyle(project: Project) -> None:
    """A template change: every page renders differently on the next build."""
    templates = project.root / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "story.html").write_text(
        '{% extends "base.html" %}\n{% block body %}<h1>{{ story.title }}</h1>{{ body }}{% endblock %}\n')


def test_interrupt_while_waiting_for_children_leaves_every_page_and_no_temp_file(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C just as a child reports (its pages and ours are staged): nothing is replaced."""
    runner, public, before = _built_with_children(project, monkeypatch, 3)
    _restyle(project)
    real_finish = parallel._Child.finish

    def interrupted(self: Any) -> Any:
        real_finish(self)  # the child has staged its share and reported it
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel._Child, "finish", interrupted)
    result = runner.invoke(cli, ["build"])
    assert result.exit_code != 0
    assert files(public) == before
    monkeypatch.setattr(parallel._Child, "finish", real_finish)
    result = runner.invoke(cli, ["build"])
    assert result.exit_code == 0 and "7 files written" in result.output


def test_temp_pages_a_killed_build_left_are_removed_once_stale(project: Project) -> None:
    import os
    import time

    runner = CliRunner()
    assert runner.invoke(cli, ["build"]).exit_code == 0
    stories = project.root / "public" / "stories"
    stale, live = stories / ".old-page.html.123-abcd.tmp", stories / ".new-page.html.456-ef01.tmp"
    stale.write_text("half")
    live.write_text("being written")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    result = runner.invoke(cli, ["build"])
    assert result.exit_code == 0 and "0 files written" in result.output
    assert not stale.exists() and live.exists()  # a young one may be another build's


def test_failed_archive_rendering_with_children_leaves_no_temp_file(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Archive documents live in archive/: when this process fails while a child has staged
    its share there, the child's temp files go too, and the archive and the feeds are as they
    were (the story pages, committed before them, may be new: the build's stated order)."""
    import os

    from syndicator.site import feeds

    project.write_config(project.config.read_text().replace("limit = 50", "limit = 1\narchive_size = 1"))
    monkeypatch.setattr(parallel, "_workers", lambda: 2)
    runner = CliRunner()
    assert runner.invoke(cli, ["build"]).exit_code == 0
    public = project.root / "public"
    before = files(public)
    assert sum(name.startswith("archive/") for name in before) >= 4
    parent, real = os.getpid(), feeds._archive_xml

    def failing(*args: Any, **kwargs: Any) -> bytes:
        if os.getpid() == parent:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(feeds, "_archive_xml", failing)
    _restyle_archive(project)
    result = runner.invoke(cli, ["build"])
    assert result.exit_code != 0
    after = files(public)
    assert {n: d for n, d in after.items() if not n.startswith("stories/")} == \
        {n: d for n, d in before.items() if not n.startswith("stories/")}
    assert [p.name for p in (public / "archive").iterdir() if p.name.endswith(".tmp")] == []


def _restyle_archive(project: Project) -> None:
    """A change every archive document shows: the site's title."""
    project.write_config(project.config.read_text().replace('title = "', 'title = "Restyled ', 1))
