"""Low-severity holes of issue 11, each from a user's side: a weak secret, a password in clear
text, an over-long address, bidi overrides, and a subject template that reaches for globals."""

from __future__ import annotations

from datetime import datetime

import pytest
from click.testing import CliRunner

from syndicator.cli import cli
from syndicator.config import check_address, load_config, read_recipients_file
from syndicator.errors import ConfigError, InputError, SecretMissingError
from syndicator.mail.digest import render_digest
from syndicator.seeds.identity import load_stories
from syndicator.site.build import build
from syndicator.state.store import Store
from syndicator.text import clean
from tests.conftest import Project


@pytest.mark.parametrize("weak", ["a", "password123", "x" * 64, "0123456789abcdef0123456789abcde"])
def test_a_weak_signing_secret_is_refused(project: Project, monkeypatch: pytest.MonkeyPatch,
                                          weak: str) -> None:
    monkeypatch.setenv("SYNDICATOR_TEST_SECRET", weak)
    with pytest.raises(SecretMissingError, match="too weak: use at least 32 random characters"):
        load_config(project.config).secret()


def test_a_generated_secret_is_accepted(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets

    monkeypatch.setenv("SYNDICATOR_TEST_SECRET", secrets.token_urlsafe(32))
    assert len(load_config(project.config).secret()) >= 32


def test_send_without_a_strong_secret_says_so_and_sends_nothing(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNDICATOR_TEST_SECRET", "secret")
    result = CliRunner().invoke(cli, ["send"])
    assert result.exit_code == 2
    assert "is too weak" in result.output


def _smtp(project: Project, host: str, security: str) -> str:
    text = project.write_config().read_text()
    text = text.replace('host = "127.0.0.1"', f'host = "{host}"')
    text = text.replace('security = "none"', f'security = "{security}"\nusername = "newsroom"')
    project.write_config(text)
    return CliRunner().invoke(cli, ["check"]).output


def test_auth_over_plaintext_to_a_remote_relay_is_a_config_error(project: Project) -> None:
    output = _smtp(project, "mail.example.net", "none")
    assert output.startswith("error: config/syndicator.toml:")
    assert 'would send the password in clear text to mail.example.net: use "starttls" or "tls"' in output


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_auth_over_plaintext_on_loopback_is_allowed(project: Project, host: str) -> None:
    assert "clear text" not in _smtp(project, host, "none")


def test_auth_with_starttls_to_a_remote_relay_is_fine(project: Project) -> None:
    assert "clear text" not in _smtp(project, "mail.example.net", "starttls")


def test_an_over_long_address_in_the_recipients_file_is_refused(project: Project) -> None:
    path = project.root / "config" / "long.txt"
    long = "a" * 64 + "@" + ".".join(["b" * 59] * 4) + ".example"  # 312 characters, each part in limits
    assert len(long) == 312
    path.write_text(f"ok@example.com\n{long}\n")
    with pytest.raises(ConfigError) as info:
        list(read_recipients_file(path))
    assert str(info.value).startswith(f"{path}:2: invalid email address")
    # The fast path and email-validator agree on every length: one validation, two speeds.
    for local in ("c" * 64, "c" * 65):
        path.write_text(f"{local}@example.com\n")
        assert list(read_recipients_file(path)) == [check_address(f"{local}@example.com")]


def test_bidi_overrides_never_reach_the_subject_feeds_or_pages(project: Project, clock: datetime) -> None:
    assert clean("abc\u202edcba\u2066x\u2069") == "abcdcbax"
    for path in project.seeds.iterdir():
        path.unlink()
    project.seed("001_bidi.txt", "Invoice \u202egpj.exe\u202c paid\n\nBody \u2067text\u2069.\n")
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        result = build(config, store, clock)
        stories = load_stories(config, store, clock)
        digest = render_digest(config, stories, clock)
    finally:
        store.close()
    for name in result.written:
        data = (result.output / name).read_text(encoding="utf-8")
        assert not any(ch in data for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"), name
    assert "Invoice gpj.exe paid" in digest.subject
    assert "\u202e" not in digest.html + digest.text


def test_the_subject_template_is_sandboxed(project: Project, clock: datetime) -> None:
    text = project.write_config().read_text()
    project.write_config(text.replace(
        'schedule = "0 7 * * *"',
        'schedule = "0 7 * * *"\nsubject = "{{ lead.__class__.__init__.__globals__ }}"'))
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        stories = load_stories(config, store, clock)
        with pytest.raises(InputError, match=r"digest\.subject"):
            render_digest(config, stories, clock)
    finally:
        store.close()


def test_the_sandboxed_subject_keeps_the_plural_filter(project: Project, clock: datetime) -> None:
    text = project.write_config().read_text()
    project.write_config(text.replace(
        'schedule = "0 7 * * *"',
        "schedule = \"0 7 * * *\"\nsubject = \"{{ stories|length|plural('story') }} today\""))
    config = load_config(project.config)
    store = Store.open(config.store_url)
    try:
        assert render_digest(config, load_stories(config, store, clock), clock).subject == "7 stories today"
    finally:
        store.close()
