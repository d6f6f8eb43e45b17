"""Portable lists: the list, consent records included, goes out as CSV and comes back the same."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import load_config
from syndicator.state import lists
from syndicator.state.lists import Preferences
from syndicator.state.store import Store
from tests.conftest import Project

T0 = 1_790_000_000  # 2026-09-21


def _use(project: Project, store_url: str) -> None:
    project.store = store_url
    project.write_config()


def _seed_list(project: Project) -> None:
    """A list as a month of real use leaves it: confirmed, pending, unsubscribed, preferences."""
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        for n, address in enumerate(["carol@example.com", "dave@example.org", "erin@example.net"]):
            lists.request_confirmation(store, address, f"d{n}", T0 + n, canonical=address, cooldown=None)
        assert lists.confirm(store, "carol@example.com", "d0", T0 + 100)
        assert lists.confirm(store, "erin@example.net", "d2", T0 + 200)
        lists.suppress(store, "erin@example.net", "unsubscribed (web)", T0 + 300)
        lists.suppress(store, "bob@example.net", "bounce 5.1.1", T0 + 400)  # a config-listed reader
        lists.set_preferences(
            store, "carol@example.com", Preferences(("politics", "sport"), "Asia/Tokyo"), T0
        )
    finally:
        store.close()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_export_holds_status_source_consent_preferences_and_suppression(
    project: Project, store_url: str
) -> None:
    _use(project, store_url)
    _seed_list(project)
    out = project.root / "list.csv"
    assert _run("subscribers", "export", str(out)) == (0, f"exported 5 addresses to {out}\n")
    rows = {r["address"]: r for r in _rows(out)}
    assert list(rows) == sorted(rows)
    assert rows["carol@example.com"] == {
        "address": "carol@example.com",
        "status": "subscribed",
        "source": "subscriber",
        "opted_in_at": "2026-09-21T14:13:20Z",
        "opt_in_method": "double opt-in",
        "confirmed_at": "2026-09-21T14:15:00Z",
        "tags": "politics sport",
        "timezone": "Asia/Tokyo",
        "suppressed_reason": "",
        "suppressed_at": "",
    }
    assert (rows["dave@example.org"]["status"], rows["dave@example.org"]["confirmed_at"]) == ("pending", "")
    assert rows["erin@example.net"]["status"] == "suppressed"
    assert rows["erin@example.net"]["suppressed_reason"] == "unsubscribed (web)"
    assert rows["alice@example.com"]["source"] == "config"
    assert rows["alice@example.com"]["opt_in_method"] == "listed by the publisher"
    assert (rows["bob@example.net"]["status"], rows["bob@example.net"]["source"]) == ("suppressed", "config")


def test_export_import_into_a_fresh_store_export_gives_the_same_rows(
    project: Project, store_url: str, tmp_path: Path
) -> None:
    _use(project, store_url)
    _seed_list(project)
    first = tmp_path / "first.csv"
    assert _run("subscribers", "export", str(first))[0] == 0
    project.store = f"sqlite:///{tmp_path / 'fresh.db'}"
    project.write_config()
    code, output = _run("subscribers", "import", str(first))
    assert code == 0, output
    assert output == "imported 4 addresses; 1 already listed by the config\n"
    second = tmp_path / "second.csv"
    assert _run("subscribers", "export", str(second))[0] == 0
    assert _rows(second) == _rows(first)
    # And the imported list is the list: the same people get the next digest.
    listed = _run("subscribers")[1]
    assert "recipient   carol@example.com  (subscriber)" in listed
    assert "erin@example.net" not in listed.split("suppressed  ")[0]


def test_a_bad_row_imports_nothing_and_names_its_line(
    project: Project, store_url: str, tmp_path: Path
) -> None:
    _use(project, store_url)
    path = tmp_path / "bad.csv"
    header = (
        "address,status,source,opted_in_at,opt_in_method,confirmed_at,tags,timezone,"
        "suppressed_reason,suppressed_at\n"
    )
    path.write_text(
        header + "new@example.com,subscribed,subscriber,,,,,,,\n"
        "worse,subscribed,subscriber,,,,,,,\n"
        "z@example.com,maybe,subscriber,,,,,,,\n"
        "y@example.com,subscribed,subscriber,,,,,Mars/Olympus,,\n"
    )
    code, output = _run("subscribers", "import", str(path))
    assert code == 2
    lines = output.splitlines()
    assert lines[0].startswith(f"error: {path}:3: invalid email address 'worse'")
    assert lines[1] == f"error: {path}:4: status: expected subscribed, pending or suppressed, got 'maybe'"
    assert lines[2] == f"error: {path}:5: timezone: unknown time zone 'Mars/Olympus'"
    store = Store.open(load_config(project.config).store_url)
    try:
        assert lists.subscribers(store) == []  # not even the good first row
    finally:
        store.close()


def test_import_never_turns_a_suppressed_address_back_into_a_subscriber(
    project: Project, store_url: str, tmp_path: Path
) -> None:
    _use(project, store_url)
    _seed_list(project)
    path = tmp_path / "plain.txt"
    path.write_text("# a list from the old system\nerin@example.net\nnew@example.com\n")
    code, output = _run("subscribers", "import", str(path))
    assert (code, output) == (0, "imported 1 address; 1 kept suppressed\n")
    store = Store.open(load_config(project.config).store_url)
    try:
        assert "erin@example.net" in lists.suppressed_addresses(store)
        subs = {s.address: s for s in lists.subscribers(store)}
        assert subs["new@example.com"].confirmed
    finally:
        store.close()
    rows = {r["address"]: r for r in _rows_of_export(project, tmp_path)}
    assert rows["new@example.com"]["opt_in_method"] == "imported"


def _rows_of_export(project: Project, tmp_path: Path) -> list[dict[str, str]]:
    out = tmp_path / "after.csv"
    assert _run("subscribers", "export", str(out))[0] == 0
    return _rows(out)


def test_subscribers_alone_keeps_listing(project: Project) -> None:
    code, output = _run("subscribers")
    assert code == 0 and output.startswith("recipients: 2\n")
