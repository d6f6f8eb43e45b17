"""STARTTLS, implicit TLS and AUTH against a real aiosmtpd with trustme certificates."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner

from syndicator.cli import cli
from tests.conftest import LoopbackController, Project, RecordingHandler

USER, PASSWORD = "newsroom", "s3cret-pass"


def _auth(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd itself answers 535


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the client trusts only this test CA
    return authority


def _server(ca: trustme.CA, *, starttls: bool) -> Iterator[tuple[int, RecordingHandler]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    handler = RecordingHandler()
    kwargs: dict[str, Any] = {"authenticator": _auth, "auth_require_tls": True}
    if starttls:
        kwargs.update(tls_context=context, require_starttls=True)
    else:
        kwargs.update(ssl_context=context)
    controller = LoopbackController(handler, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    try:
        yield controller.port, handler
    finally:
        controller.stop()


@pytest.fixture
def starttls_server(ca: trustme.CA) -> Iterator[tuple[int, RecordingHandler]]:
    yield from _server(ca, starttls=True)


def _configure(project: Project, port: int, security: str, username: str = USER) -> None:
    project.port = port
    text = project.write_config().read_text()
    project.config.write_text(text.replace('security = "none"',
                                           f'security = "{security}"\nusername = "{username}"'))


def test_starttls_with_auth_delivers(project: Project, starttls_server: tuple[int, RecordingHandler],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    port, handler = starttls_server
    _configure(project, port, "starttls")
    monkeypatch.setenv("SYNDICATOR_SMTP_PASSWORD", PASSWORD)
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(r.rcpt_tos[0] for r in handler.received) == ["alice@example.com", "bob@example.net"]
    assert PASSWORD not in result.output


def test_refused_auth_exits_1_with_a_clear_line(project: Project,
                                                starttls_server: tuple[int, RecordingHandler],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    port, handler = starttls_server
    _configure(project, port, "starttls")
    monkeypatch.setenv("SYNDICATOR_SMTP_PASSWORD", "wrong")
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: SMTP authentication refused by 127.0.0.1:{port}: 535")
    assert len(result.output.splitlines()) == 1
    assert "wrong" not in result.output
    assert handler.received == []


def test_starttls_required_never_falls_back_to_plaintext(project: Project, faulty_smtp: object,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import FaultyServer

    assert isinstance(faulty_smtp, FaultyServer)  # offers no STARTTLS
    project.port = faulty_smtp.port
    text = project.write_config().read_text()
    project.config.write_text(text.replace('security = "none"', 'security = "starttls"'))
    result = CliRunner().invoke(cli, ["send", "--quiet"])
    assert result.exit_code == 1
    assert f"127.0.0.1:{faulty_smtp.port}" in result.output
    assert "STARTTLS" in result.output.upper()
    assert faulty_smtp.handler.accepted == []


def test_implicit_tls_with_an_untrusted_certificate_is_refused(project: Project, ca: trustme.CA,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    other = trustme.CA()
    bundle = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(bundle))
    for port, handler in _server(ca, starttls=False):
        monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the server's CA is not trusted
        monkeypatch.setenv("SYNDICATOR_SMTP_PASSWORD", PASSWORD)
        _configure(project, port, "tls")
        result = CliRunner().invoke(cli, ["send", "--quiet"])
        assert result.exit_code == 1
        assert "certificate" in result.output.lower()
        assert handler.received == []
