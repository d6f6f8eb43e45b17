"""Configuration: strict validation, one clear message per problem, paths from the project root."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from syndicator.config import find_config, load_config, project_root, read_recipients_file
from syndicator.errors import ConfigError, ConfigErrors, SecretMissingError

Project = Any  # tests/conftest.py's Project


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if line.startswith(needle))


def bad(project: Project, old: str, new: str) -> tuple[ConfigError, str]:
    """Write the project's config with one replacement; return the error and the new text."""
    text = project.config.read_text()
    assert old in text, old
    text = text.replace(old, new, 1)
    project.write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(project.config)
    return info.value, text


def test_the_fixture_config_loads(project: Project) -> None:
    config = load_config(project.config)
    assert config.site.url == "https://example.org/"
    assert config.digest.recipients == ("alice@example.com", "bob@example.net")
    assert config.digest.from_address == "digest@example.org"
    assert config.feeds.limit == 50


def test_the_shipped_config_loads() -> None:
    shipped = Path(__file__).resolve().parent.parent / "config" / "syndicator.toml"
    config = load_config(shipped)
    assert config.root == shipped.parent.parent
    assert config.seeds_dir == shipped.parent.parent / "seeds"


def test_defaults_fill_missing_optional_sections(tmp_path: Path) -> None:
    path = tmp_path / "syndicator.toml"
    path.write_text('[site]\ntitle = "T"\nurl = "https://x.example"\n\n[digest]\nfrom = "a@example.org"\n')
    config = load_config(path)
    assert config.site.url == "https://x.example/"  # a trailing slash is added
    assert config.paths.store == "sqlite:///state/syndicator.db"
    assert config.smtp.security == "starttls"
    assert config.digest.lookback_delta == timedelta(days=1)


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ('description = "Stories for testing"', 'descripton = "x"', "site.descripton", "unknown key"),
        ("limit = 50", 'limit = "fifty"', "feeds.limit", "Input should be a valid integer"),
        ("limit = 50", "limit = 0", "feeds.limit", "Input should be greater than or equal to 1"),
        ("timeout = 5", 'timeout = "5s"', "smtp.timeout", "Input should be a valid number"),
        ('security = "none"', 'security = "ssl"', "smtp.security",
         "Input should be 'starttls', 'tls' or 'none'"),
        ('url = "https://example.org/"', 'url = "example.org"', "site.url",
         "must be an absolute http(s) URL, got 'example.org'"),
        ('url = "https://example.org/"', 'url = "/news/"', "site.url",
         "must be an absolute http(s) URL, got '/news/'"),
        ('schedule = "0 7 * * *"', 'schedule = "0 7 * *"', "digest.schedule",
         "expected a 5-field cron expression, got '0 7 * *'"),
        ('schedule = "0 7 * * *"', 'schedule = "61 7 * * *"', "digest.schedule",
         "invalid cron expression '61 7 * * *'"),
        ('timezone = "UTC"', 'timezone = "Mars/Olympus"', "digest.timezone",
         "unknown time zone 'Mars/Olympus'"),
        ('from = "Test Digest <digest@example.org>"', 'from = "Test Digest <digest@@example.org>"',
         "digest.from", "invalid email address 'digest@@example.org'"),
        ('from = "Test Digest <digest@example.org>"', 'from = "Test Digest"', "digest.from",
         "expected 'Name <address>'"),
        ('recipients = ["alice@example.com", "bob@example.net"]', 'recipients = ["alice@example.com", "bob"]',
         "digest.recipients", "invalid email address 'bob'"),
        ('lookback = "all"', 'lookback = "yesterday"', "digest.lookback", "expected a duration like '1d'"),
        ('language = "en"', 'language = "English (UK)"', "site.language",
         "expected a language tag like 'en' or 'en-GB', got 'English (UK)'"),
        ('port = ', 'password = "hunter2"\nport = ', "smtp.password",
         "unknown key: the password never lives in the file"),
    ],
)
def test_invalid_value_names_file_line_and_key(
    project: Project, old: str, new: str, key: str, message: str
) -> None:
    exc, text = bad(project, old, new)
    first_new_line = new.splitlines()[0]
    line = line_of(text, first_new_line)
    assert (exc.path, exc.line, exc.key) == (project.config, line, key)
    assert str(exc).startswith(f"{project.config}:{line}: {key}: {message}")
    assert "\n" not in str(exc)


def test_unknown_section(project: Project) -> None:
    exc, text = bad(project, "[feeds]", "[feeds]\n\n[extras]\nfoo = 1\n")
    assert str(exc) == f"{project.config}:{line_of(text, '[extras]')}: extras: unknown key"


def test_missing_required_key(project: Project) -> None:
    exc, text = bad(project, 'title = "The Test Dispatch"\n', "")
    assert str(exc) == f"{project.config}:{line_of(text, '[site]')}: site.title: required key is missing"


def test_reserved_internal_names_are_unknown_keys(project: Project) -> None:
    exc, _ = bad(project, "[site]", 'root = "/etc"\n\n[site]')
    assert str(exc) == f"{project.config}:1: root: unknown key"


def test_several_problems_are_all_reported(project: Project) -> None:
    text = project.config.read_text().replace("limit = 50", "limit = -1").replace(
        'timezone = "UTC"', 'timezone = "Nowhere/Land"')
    project.write_config(text)
    with pytest.raises(ConfigErrors) as info:
        load_config(project.config)
    exc = info.value
    assert isinstance(exc, ConfigError)  # still a ConfigError for callers
    assert [(e.line, e.key) for e in exc.errors] == [
        (line_of(text, "limit = -1"), "feeds.limit"),
        (line_of(text, 'timezone = "Nowhere/Land"'), "digest.timezone"),
    ]
    assert str(exc).endswith("(and 1 more problems)")


def test_toml_syntax_error(project: Project) -> None:
    exc, text = bad(project, "limit = 50", "limit 50")
    assert (exc.line, exc.key) == (line_of(text, "limit 50"), None)
    assert str(exc) == (f"{project.config}:{exc.line}: TOML syntax error: "
                        "Expected '=' after a key in a key/value pair")


def test_toml_duplicate_key(project: Project) -> None:
    exc, text = bad(project, "limit = 50", "limit = 50\nlimit = 60")
    assert exc.line == line_of(text, "limit = 60")
    assert "TOML syntax error" in str(exc)


def test_config_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert str(info.value) == (f"{tmp_path / 'missing.toml'}: config file not found "
                               "(use --config or $SYNDICATOR_CONFIG)")


def test_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "syndicator.toml"
    path.write_bytes(b'[site]\ntitle = "Caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"cannot read config file"):
        load_config(path)


# -- where the config is and what relative paths mean -------------------------------


def test_find_config_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNDICATOR_CONFIG", raising=False)
    assert find_config(None) == Path("config/syndicator.toml")
    monkeypatch.setenv("SYNDICATOR_CONFIG", "/etc/synd.toml")
    assert find_config(None) == Path("/etc/synd.toml")
    assert find_config("other.toml") == Path("other.toml")


def test_relative_paths_resolve_against_the_project_root_not_the_cwd(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(project.root / "config" / "syndicator.toml")
    root = project.root.resolve()
    assert config.root == root
    assert config.seeds_dir == root / "seeds"
    assert config.output_dir == root / "public"
    assert config.templates_dir == root / "templates"
    assert config.store_url == f"sqlite:///{root / 'state' / 'syndicator.db'}"


def test_relative_config_path_from_a_subfolder(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    (project.root / "seeds" / "sub").mkdir()
    monkeypatch.chdir(project.root / "seeds" / "sub")
    config = load_config(Path("../../config/syndicator.toml"))
    assert config.output_dir == project.root.resolve() / "public"


def test_config_outside_a_config_folder_uses_its_own_folder(tmp_path: Path) -> None:
    assert project_root(tmp_path / "site.toml") == tmp_path.resolve()
    assert project_root(tmp_path / "config" / "site.toml") == tmp_path.resolve()


def test_absolute_and_non_sqlite_store_urls_are_kept(project: Project) -> None:
    for url in ("sqlite:////var/lib/s.db", "postgresql+psycopg://u@db/x", "sqlite:///:memory:"):
        text = project.config.read_text().replace("sqlite:///state/syndicator.db", url)
        project.config.write_text(text)
        assert load_config(project.config).store_url == url
        project.write_config()


def test_recipients_file_relative_to_root(project: Project, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    recipients = "# readers\ncarol@example.org  # friend\n\nbad-address\n"
    (project.root / "config" / "recipients.txt").write_text(recipients)
    text = project.config.read_text().replace(
        "secret_env =", 'recipients_file = "config/recipients.txt"\nsecret_env =')
    project.write_config(text)
    monkeypatch.chdir(tmp_path)
    config = load_config(project.config)
    assert config.recipients_path == project.root.resolve() / "config" / "recipients.txt"
    assert config.recipients_path is not None
    with pytest.raises(ConfigError) as info:
        list(read_recipients_file(config.recipients_path))
    assert str(info.value).startswith(f"{config.recipients_path}:4: invalid email address 'bad-address'")


# -- secrets come from the environment only -------------------------------------------


def test_smtp_password_only_from_the_named_env_var(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    text = project.config.read_text().replace(
        'security = "none"', 'security = "none"\nusername = "mailer"\npassword_env = "MY_SMTP_PW"')
    project.write_config(text)
    config = load_config(project.config)
    monkeypatch.delenv("MY_SMTP_PW", raising=False)
    monkeypatch.setenv("SYNDICATOR_SMTP_PASSWORD", "not-this-one")
    with pytest.raises(SecretMissingError) as info:
        config.smtp_password()
    assert "MY_SMTP_PW" in str(info.value) and "smtp.password_env" in str(info.value)
    assert info.value.exit_code == 2
    monkeypatch.setenv("MY_SMTP_PW", "s3cret")
    assert config.smtp_password() == "s3cret"


def test_no_username_needs_no_password(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNDICATOR_SMTP_PASSWORD", raising=False)
    assert load_config(project.config).smtp_password() is None


def test_environment_does_not_override_config(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATOR_SITE_URL", "https://evil.example/")
    monkeypatch.setenv("SMTP_HOST", "evil.example")
    config = load_config(project.config)
    assert config.site.url == "https://example.org/" and config.smtp.host == "127.0.0.1"
