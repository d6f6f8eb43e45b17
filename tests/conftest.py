"""Shared fixtures: a throwaway project, a fixed clock, a real SMTP server, real stores."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SEED = REPO / "seeds" / "000_3c621fef12599da2.txt"
CLOCK = datetime(2026, 11, 25, 7, 0, 0, tzinfo=UTC)
POSTGRES_ENV = "SYNDICATOR_TEST_POSTGRES"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN_ENV = "SYNDICATOR_UPDATE_GOLDEN"  # =1 rewrites every golden file the run compares


def assert_golden(name: str, actual: bytes) -> None:
    """``actual`` equals tests/golden/<name>, or becomes it when SYNDICATOR_UPDATE_GOLDEN=1."""
    path = GOLDEN / name
    if os.environ.get(UPDATE_GOLDEN_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual)
    assert path.exists(), f"no golden file {path}; {UPDATE_GOLDEN_ENV}=1 writes it"
    assert actual == path.read_bytes(), f"{name} differs from {path}; {UPDATE_GOLDEN_ENV}=1 rewrites it"

BASE_CONFIG = """\
[site]
title = "The Test Dispatch"
url = "https://example.org/"
description = "Stories for testing"
language = "en"
author_name = "Test Newsroom"
author_email = "newsroom@example.org"

[paths]
seeds = "seeds"
output = "public"
templates = "templates"
store = "{store}"

[feeds]
limit = 50

[digest]
from = "Test Digest <digest@example.org>"
schedule = "0 7 * * *"
timezone = "UTC"
lookback = "all"
recipients = {recipients}
secret_env = "SYNDICATOR_TEST_SECRET"

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
timeout = 5
concurrency = 2
"""


@dataclass
class Project:
    """A project folder laid out as a user's: config/, seeds/, public/, state/."""

    root: Path
    store: str
    port: int = 2525
    recipients: list[str] = field(default_factory=lambda: ["alice@example.com", "bob@example.net"])
    extra: str = ""

    @property
    def config(self) -> Path:
        return self.root / "config" / "syndicator.toml"

    @property
    def seeds(self) -> Path:
        return self.root / "seeds"

    @property
    def output(self) -> Path:
        return self.root / "public"

    def write_config(self, text: str | None = None) -> Path:
        if text is None:
            rcpts = "[" + ", ".join(f'"{r}"' for r in self.recipients) + "]"
            text = BASE_CONFIG.format(store=self.store, port=self.port, recipients=rcpts) + self.extra
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(text, encoding="utf-8")
        return self.config

    def seed(self, name: str, text: str | bytes) -> Path:
        path = self.seeds / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return path


@pytest.fixture
def clock() -> datetime:
    return CLOCK


@pytest.fixture
def listing_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry each time a kept seed listing is read back from its file and unpacked (37 MB
    at a million seeds: a watching process should start from the one it holds)."""
    from syndicator.seeds.cache import Scan

    reads: list[int] = []
    real = Scan.unpack

    def counted(*args: Any) -> Scan:
        reads.append(1)
        return real(*args)

    monkeypatch.setattr(Scan, "unpack", staticmethod(counted))
    return reads


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A fresh project with the shipped example seed and an SQLite store; cwd is its root."""
    root = tmp_path / "site"
    (root / "seeds").mkdir(parents=True)
    shutil.copy(EXAMPLE_SEED, root / "seeds" / EXAMPLE_SEED.name)
    proj = Project(root=root, store="sqlite:///state/syndicator.db")
    proj.write_config()
    monkeypatch.chdir(root)
    monkeypatch.delenv("SYNDICATOR_CONFIG", raising=False)
    monkeypatch.setenv("SYNDICATOR_TEST_SECRET", "test-secret-for-signing-tokens-0123456789")
    return proj


# -- a real SMTP server ---------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


class RecordingHandler:
    """Records every accepted message; ``refuse`` maps an address to an SMTP reply."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refuse: dict[str, str] = {}
        self.connections = 0
        self.arrived = threading.Condition()
        self.pipelining = True  # advertise PIPELINING, as real relays do

    def wait_for(self, count: int, timeout: float = 10) -> list[Received]:
        """Block until ``count`` messages arrived (an event, not a poll); fails past ``timeout``."""
        with self.arrived:
            got = self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
        assert got, f"expected {count} messages, got {len(self.received)}"
        return self.received

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        from tests.smtp_faults import with_pipelining

        session.host_name = hostname
        return with_pipelining(responses) if self.pipelining else responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.arrived:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
            self.arrived.notify_all()
        return "250 Message accepted for delivery"


class CountingSMTP(SMTP):
    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._counting_handler = handler

    def connection_made(self, transport: Any) -> None:
        self._counting_handler.connections += 1
        super().connection_made(transport)


class LoopbackController(Controller):
    """A Controller on port 0: learns its real port before aiosmtpd's start-up probe connects."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class RecordingController(LoopbackController):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def received(self) -> list[Received]:
        return self.handler.received


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """aiosmtpd on 127.0.0.1, a free port, recording what it receives."""
    handler = RecordingHandler()
    controller = RecordingController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        handler.connections = 0  # the start-up probe is not a client
        yield SmtpServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()


# -- stores ------------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped after it."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"{POSTGRES_ENV} is not set (a postgresql+psycopg:// URL enables these tests)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = "syndicator_test_" + uuid.uuid4().hex[:12]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and, when configured, on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


# -- a misbehaving SMTP server -------------------------------------------------------


@dataclass
class FaultyServer:
    host: str
    port: int
    handler: Any

    @property
    def faults(self) -> Any:
        return self.handler.faults


@pytest.fixture
def faulty_smtp() -> Iterator[FaultyServer]:
    """aiosmtpd on a free loopback port whose faults a test sets through ``.faults``."""
    from tests.smtp_faults import Faults, FaultyHandler, LimitedSMTP

    class Limited(LoopbackController):
        def factory(self) -> SMTP:
            return LimitedSMTP(self.handler, **self.SMTP_kwargs)

    LimitedSMTP.open_sessions = 0
    handler = FaultyHandler(Faults())
    controller = Limited(handler, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield FaultyServer("127.0.0.1", controller.port, handler)
    finally:
        controller.stop()
