"""Bad stores and bad lists: a clear error, and the ledger and outputs left as they were."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from syndicator.cli import cli
from tests.conftest import FaultyServer, Project


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _point_at(project: Project, server: FaultyServer) -> Path:
    project.port = server.port
    project.write_config()
    return project.root / "state" / "syndicator.db"


def test_a_corrupt_store_is_one_clear_error_and_is_not_touched(project: Project,
                                                               faulty_smtp: FaultyServer) -> None:
    db = _point_at(project, faulty_smtp)
    db.parent.mkdir()
    db.write_bytes(b"this is not an SQLite database\n" * 200)
    before = _digest(db)
    for command in (["send"], ["build"], ["status"]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 1, command
        assert result.output == f"error: sqlite:///{db}: cannot open the store: file is not a database\n"
    assert _digest(db) == before
    assert faulty_smtp.handler.accepted == []
    assert not (project.output / "rss.xml").exists()


def test_a_store_from_a_newer_version_is_refused_and_kept(project: Project,
                                                          faulty_smtp: FaultyServer) -> None:
    db = _point_at(project, faulty_smtp)
    assert CliRunner().invoke(cli, ["send", "--quiet"]).exit_code == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    before = _digest(db)
    result = CliRunner().invoke(cli, ["send"])
    assert result.exit_code == 1
    assert result.output.startswith("error: the store is at schema version 9999, newer than this syndicator")
    assert _digest(db) == before
    assert len(faulty_smtp.handler.accepted) == 2  # only the first, successful send


def test_a_bad_line_in_the_recipients_file_stops_send_before_any_mail(project: Project,
                                                                      faulty_smtp: FaultyServer) -> None:
    db = _point_at(project, faulty_smtp)
    recipients = project.root / "config" / "recipients.txt"
    recipients.write_text("# the list\nok@example.org\nnot-an-address\n")
    text = project.config.read_text()
    project.config.write_text(text.replace('secret_env = ', 'recipients_file = "config/recipients.txt"\n'
                                                           'secret_env = '))
    result = CliRunner().invoke(cli, ["send"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {recipients}:3: invalid email address 'not-an-address'")
    assert faulty_smtp.handler.accepted == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM editions").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
    recipients.write_text("# the list\nok@example.org\n")
    assert CliRunner().invoke(cli, ["send", "--quiet"]).exit_code == 0
    assert sorted(r for r, _, _ in faulty_smtp.handler.accepted) == [
        "alice@example.com", "bob@example.net", "ok@example.org"]


def test_dry_run_never_upgrades_a_store(project: Project, faulty_smtp: FaultyServer) -> None:
    db = _point_at(project, faulty_smtp)
    assert CliRunner().invoke(cli, ["build"]).exit_code == 0
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")  # as an older syndicator left it
    before = _digest(db)
    result = CliRunner().invoke(cli, ["send", "--dry-run"])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: sqlite:///{db}: the store is at schema version 0001, not ")
    assert _digest(db) == before
    assert faulty_smtp.handler.accepted == []


def test_schema_head_constant_is_the_newest_migration() -> None:
    """Store.open tells an up-to-date store without alembic by this constant: it must not lag."""
    from alembic.script import ScriptDirectory

    from syndicator.state.store import MIGRATIONS, SCHEMA_HEAD

    assert ScriptDirectory(str(MIGRATIONS)).get_current_head() == SCHEMA_HEAD


def test_the_migrations_make_the_schema_the_code_declares(store_url: str) -> None:
    """Every table and index ``schema`` declares (and the queries count on) is what the
    migrations create, on SQLite and PostgreSQL: an index declared but never migrated would
    leave every build scanning a table of millions."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from syndicator.state import schema
    from syndicator.state.store import Store

    store = Store.open(store_url)
    try:
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []
    finally:
        store.close()
