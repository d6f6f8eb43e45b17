"""Load and validate ``syndicator.toml`` into frozen pydantic models."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import idna
import jinja2
from apscheduler.triggers.cron import CronTrigger
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from syndicator.errors import ConfigError, ConfigErrors, InputError, SecretMissingError

DEFAULT_CONFIG = Path("config") / "syndicator.toml"
CONFIG_ENV = "SYNDICATOR_CONFIG"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
# "Name <address>" or a bare address; the address itself is checked by email-validator.
_FROM = re.compile(r"\s*(?:([^<>]*?)\s*<([^<>\s]+)>|([^<>\s]+))\s*")
_TOML_AT = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


MIN_SECRET_BYTES = 32
MIN_SECRET_SYMBOLS = 12  # distinct bytes: "aaaa…" or "0000…" is long but no secret


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_LOCAL_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")
LOCAL_HINT = "set digest.allow_local_addresses = true to mail localhost and special-use domains"


def check_address(value: str, *, allow_local: bool = False) -> str:
    """Return the normalised address, or raise ValueError naming it.

    ``allow_local`` (``digest.allow_local_addresses``): also localhost and special-use domains
    (.test, .local, .invalid...), for trying syndicator against a mail server of one's own.
    """
    try:
        info = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        reason = str(exc)
        local_only = "special-use or reserved" in reason or "should have a period" in reason
        if local_only and allow_local:
            return _local_address(value)
        hint = f" ({LOCAL_HINT})" if local_only else ""
        raise ValueError(f"invalid email address {value!r}: {reason}{hint}") from None
    return info.normalized.lower()


def _local_address(value: str) -> str:
    """An address at a local or special-use domain: email-validator checks the local part
    (against a stand-in domain), the domain must be plain labels."""
    local, _, domain = value.strip().rpartition("@")
    try:
        checked = validate_email(f"{local}@example.com", check_deliverability=False, allow_smtputf8=False)
        domain = ascii_domain(domain)
    except (EmailNotValidError, ValueError) as exc:
        raise ValueError(f"invalid email address {value!r}: {exc}") from None
    if not _LOCAL_DOMAIN.fullmatch(domain) or len(domain) > 253:
        raise ValueError(f"invalid email address {value!r}: not a valid domain {domain!r}")
    return f"{checked.local_part}@{domain}".lower()


def ascii_domain(domain: str) -> str:
    """A domain as it goes on the wire: IDNA 2008 (UTS 46, non-transitional) A-labels, as
    email-validator reads them, so ``faß.de`` is ``xn--fa-hia.de``, never ``fass.de``.

    The one IDNA implementation of syndicator: ``str.encode("idna")`` is IDNA 2003 and maps
    ``ß`` to ``ss``, which mails another domain. ValueError when the domain cannot be encoded.
    """
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"cannot encode the domain {domain!r}: {exc}") from None


def ascii_address(address: str) -> str:
    """``local@domain`` with the domain in its A-label form (see ``ascii_domain``)."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{ascii_domain(domain)}"


def duration(value: str) -> timedelta | None:
    """``12h``, ``5m``, ``7d`` as a timedelta; None for anything else (``all``)."""
    match = _DURATION.match(value)
    return None if match is None else timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def check_cron(value: str) -> str:
    """A 5-field cron expression APScheduler accepts, or ValueError naming it."""
    if len(value.split()) != 5:
        raise ValueError(f"expected a 5-field cron expression, got {value!r}")
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
    return value


class SiteConfig(_Section):
    title: str = Field(min_length=1)
    url: str
    description: str = ""
    language: str = "en"
    author_name: str = ""
    author_email: str = ""

    @field_validator("url")
    @classmethod
    def _absolute(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
        return value if value.endswith("/") else value + "/"

    @field_validator("author_email")
    @classmethod
    def _email(cls, value: str) -> str:
        return check_address(value) if value else value

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if not _LANGUAGE.fullmatch(value):
            raise ValueError(f"expected a language tag like 'en' or 'en-GB', got {value!r}")
        return value


class PathsConfig(_Section):
    seeds: str = "seeds"
    output: str = "public"
    templates: str = "templates"
    store: str = "sqlite:///state/syndicator.db"


class FeedsConfig(_Section):
    limit: int = Field(default=50, ge=1, le=10_000)
    archive_size: int = Field(default=100, ge=1, le=10_000)  # stories per RFC 5005 archive page
    websub_hub: str = ""
    schedule: str = ""  # a 5-field cron: `run` also rebuilds the feeds on it (digest.timezone)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value) if value else value

    @field_validator("websub_hub")
    @classmethod
    def _hub(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
        return value


class DigestConfig(_Section):
    # Declared first: the address checks below read it (pydantic validates in this order).
    allow_local_addresses: bool = False  # localhost and special-use domains (.test, .local)
    from_: str = Field(alias="from")
    subject: str = "{{ lead.title }} and more: {{ site.title }} for {{ date }}"
    schedule: str = "0 7 * * *"
    timezone: str = "UTC"
    lookback: str = "1d"
    send_when_empty: bool = False
    report_to: tuple[str, ...] = Field(default=(), strict=False)  # who gets each edition's run report
    recipients: tuple[str, ...] = Field(default=(), strict=False)
    recipients_file: str = ""
    secret_env: str = "SYNDICATOR_SECRET"
    # A digest that stays readable, and under Gmail's 102 KB clip (past it, Gmail hides the
    # rest of the message, the unsubscribe link included).
    max_stories: int = Field(default=20, ge=1, le=1000)  # the rest: "and N more stories"
    summary_chars: int = Field(default=300, ge=40, le=100_000)  # cut at a word, with "…"
    min_stories: int = Field(default=1, ge=1, le=1000)  # fewer new ones: wait for the next slot
    max_bytes: int = Field(default=100_000, ge=20_000, le=50_000_000)  # one message, all parts

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    @field_validator("from_")
    @classmethod
    def _from(cls, value: str, info: ValidationInfo) -> str:
        match = _FROM.fullmatch(value)
        if match is None or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"expected 'Name <address>' or 'address', got {value!r}")
        check_address(match.group(2) or match.group(3), allow_local=_local(info))
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        try:
            jinja2.Environment().parse(value)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"invalid Jinja2 template: {exc.message}") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: str) -> str:
        if value != "all" and not _DURATION.match(value):
            raise ValueError(f"expected a duration like '1d', '12h' or 'all', got {value!r}")
        return value

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @field_validator("report_to")
    @classmethod
    def _report_to(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return tuple(check_address(a, allow_local=_local(info)) for a in value)

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return tuple(check_address(a, allow_local=_local(info)) for a in value)

    @property
    def lookback_delta(self) -> timedelta | None:
        """The first edition's window; None means every story."""
        return duration(self.lookback)

    @property
    def from_address(self) -> str:
        """The sender's address as it goes on the wire: an IDN domain in its ASCII form."""
        match = _FROM.fullmatch(self.from_)
        assert match is not None  # validated on load
        return ascii_address(match.group(2) or match.group(3))

    @property
    def from_name(self) -> str:
        match = _FROM.fullmatch(self.from_)
        return (match.group(1) or "").strip() if match else ""


def _local(info: ValidationInfo) -> bool:
    return bool(info.data.get("allow_local_addresses", False))


class SmtpConfig(_Section):
    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str = "SYNDICATOR_SMTP_PASSWORD"
    timeout: float = Field(default=30.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=64)
    rate: float = Field(default=0.0, ge=0)
    retry_for: float = Field(default=120.0, ge=0)
    max_attempts: int = Field(default=8, ge=1)
    lease: int = Field(default=60, ge=1, le=3600)
    processes: int = Field(default=0, ge=0, le=16)  # worker processes; 0 = one per core on big editions

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> SmtpConfig:
        # AUTH PLAIN/LOGIN over a plaintext connection hands the password to anyone on the path;
        # only a relay on this machine (no network in between) may take it that way.
        if self.username and self.security == "none" and not _loopback(self.host):
            raise ValueError(
                f"smtp.username with security = \"none\" would send the password in clear text to "
                f"{self.host}: use \"starttls\" or \"tls\" (plaintext AUTH is allowed only on loopback)")
        return self


def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class InboundConfig(_Section):
    """Where bounces, complaints and mailed unsubscribes come back, and how they are read."""

    address: str = ""  # the mailbox everything comes back to; VERP adds +<token>
    source: str = ""  # maildir:///path, mbox:///path, imaps://user@host:993/INBOX, imap://...
    password_env: str = "SYNDICATOR_INBOUND_PASSWORD"
    soft_bounce_limit: int = Field(default=3, ge=1, le=100)  # delays within 30 days that suppress
    poll: str = "5m"  # how often `run` reads the source
    done_folder: str = ""  # IMAP: move handled messages here (they are marked \\Seen either way)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not value:
            return value
        address = check_address(value)
        local = address.rpartition("@")[0]
        if "+" in local or len(local) > 64 - 1 - 34:
            # The VERP token (34 characters with its "+u-") must fit in RFC 5321's 64.
            raise ValueError(f"expected an address with a local part of at most 29 characters "
                             f"and no '+', got {value!r}")
        return ascii_address(address)

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("maildir", "mbox", "imap", "imaps"):
            raise ValueError(f"expected maildir://, mbox://, imap:// or imaps://, got {value!r}")
        return value

    @field_validator("poll")
    @classmethod
    def _poll(cls, value: str) -> str:
        if not _DURATION.match(value):
            raise ValueError(f"expected a duration like '5m' or '1h', got {value!r}")
        return value

    @property
    def poll_seconds(self) -> float:
        every = duration(self.poll)
        assert every is not None  # validated on load
        return every.total_seconds()

    def password(self) -> str | None:
        """The IMAP password, only from the environment variable ``password_env`` names."""
        return os.environ.get(self.password_env) or None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ServeConfig(_Section):
    """The web side's abuse limits."""

    # Only these peers may name the client in X-Forwarded-For; anyone else could claim any address.
    trusted_proxies: tuple[str, ...] = Field(default=(), strict=False)
    confirmations_per_hour: int = Field(default=100, ge=1, le=1_000_000)  # all addresses together
    # With this variable set, /metrics wants "Authorization: Bearer <its value>" from anyone;
    # unset, /metrics answers loopback peers only.
    metrics_token_env: str = "SYNDICATOR_METRICS_TOKEN"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(str(_network(v)) for v in value)

    @property
    def proxy_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(v) for v in self.trusted_proxies)

    def metrics_token(self) -> str | None:
        """The /metrics bearer token, only from the environment variable ``metrics_token_env`` names."""
        return os.environ.get(self.metrics_token_env) or None


MIN_ADMIN_PASSWORD = 12


class AdminConfig(_Section):
    """The read-only admin page of ``serve``."""

    password_env: str = "SYNDICATOR_ADMIN_PASSWORD"  # unset: /admin is 404

    def password(self) -> str | None:
        """The password of user ``admin``, from the environment variable ``password_env`` names;
        None when unset. A short one is refused: the page shows readers' addresses."""
        value = os.environ.get(self.password_env)
        if not value:
            return None
        if len(value) < MIN_ADMIN_PASSWORD:
            raise SecretMissingError(
                f"the admin password in {self.password_env} (admin.password_env) is too short: use at "
                f"least {MIN_ADMIN_PASSWORD} characters, for example the output of "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(16))'")
        return value


def _network(value: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"expected an IP address or network like '10.0.0.0/8', got {value!r}") from None


class Config(_Section):
    """The whole validated configuration plus where it came from."""

    site: SiteConfig
    paths: PathsConfig = PathsConfig()
    feeds: FeedsConfig = FeedsConfig()
    digest: DigestConfig
    smtp: SmtpConfig = SmtpConfig()
    inbound: InboundConfig = InboundConfig()
    serve: ServeConfig = ServeConfig()
    admin: AdminConfig = AdminConfig()
    source: Path = Path("config/syndicator.toml")
    root: Path = Path(".")

    def path(self, relative: str) -> Path:
        """Resolve a configured path against the project root."""
        return (self.root / relative).resolve()

    @property
    def seeds_dir(self) -> Path:
        return self.path(self.paths.seeds)

    @property
    def output_dir(self) -> Path:
        return self.path(self.paths.output)

    @property
    def templates_dir(self) -> Path:
        return self.path(self.paths.templates)

    @property
    def store_url(self) -> str:
        """The store URL with a relative SQLite path made absolute."""
        url = self.paths.store
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix:
            rest = url[len(prefix) :]
            if rest != ":memory:":
                return prefix + str(self.path(rest))
        return url

    @property
    def state_dir(self) -> Path:
        """The project's state/ folder: the build's caches (and the default SQLite store)."""
        return self.root / "state"

    def line_of(self, dotted_key: str) -> int | None:
        """The line of ``section.key`` in the config file (or of its section), if found."""
        try:
            text = self.source.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return None
        return _locate(text, tuple(dotted_key.split(".")))

    @property
    def recipients_path(self) -> Path | None:
        return self.path(self.digest.recipients_file) if self.digest.recipients_file else None

    def smtp_password(self) -> str | None:
        """The SMTP password from the environment; required when a username is set."""
        if not self.smtp.username:
            return None
        value = os.environ.get(self.smtp.password_env)
        if not value:
            raise SecretMissingError(
                f"smtp.username is set but the environment variable "
                f"{self.smtp.password_env} (smtp.password_env) is empty or unset"
            )
        return value

    def secret(self) -> bytes:
        """The token-signing secret from the environment variable ``digest.secret_env``."""
        value = os.environ.get(self.digest.secret_env)
        if not value:
            raise SecretMissingError(
                f"the environment variable {self.digest.secret_env} (digest.secret_env) "
                "must hold the secret that signs unsubscribe links"
            )
        secret = value.encode()
        # Anyone who guesses it can unsubscribe, confirm or read any reader's link: it must be
        # random material, not a word. Length and variety are what can be checked here.
        if len(secret) < MIN_SECRET_BYTES or len(set(secret)) < MIN_SECRET_SYMBOLS:
            raise SecretMissingError(
                f"the secret in {self.digest.secret_env} (digest.secret_env) is too weak: use at "
                f"least {MIN_SECRET_BYTES} random characters, for example the output of "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return secret


def find_config(explicit: str | None) -> Path:
    """``--config``, else ``$SYNDICATOR_CONFIG``, else ``config/syndicator.toml``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def project_root(config_path: Path) -> Path:
    """The folder that holds ``config/``; else the config file's own folder."""
    folder = config_path.resolve().parent
    return folder.parent if folder.name == "config" else folder


def load_config(path: Path) -> Config:
    """Read, parse and validate the configuration; raise ConfigError naming file, line and key."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            "config file not found (use --config or $SYNDICATOR_CONFIG)", path=path
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", path=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python < 3.14 has no exc.lineno: the line is only in the message.
        found = _TOML_AT.search(str(exc))
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        message = _TOML_AT.sub("", str(exc))
        raise ConfigError(f"TOML syntax error: {message}", path=path, line=line) from None
    for reserved in ("source", "root"):
        if reserved in data:
            raise ConfigError("unknown key", path=path, key=reserved, line=_locate(text, (reserved,)))
    data["source"] = path
    data["root"] = project_root(path)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, path, text) from None


def _config_error(exc: ValidationError, path: Path, text: str) -> ConfigError:
    """One ConfigError per problem pydantic found (several are reported together)."""
    errors = [_one_config_error(err, path, text) for err in exc.errors()]
    return errors[0] if len(errors) == 1 else ConfigErrors(list[InputError](errors))


def _one_config_error(err: Any, path: Path, text: str) -> ConfigError:
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(p.rstrip("_") for p in loc if not p.isdigit())
    if err["type"] == "extra_forbidden":
        message = "unknown key"
        secret = {"smtp.password": "password", "admin.password": "password",
                  "serve.metrics_token": "token"}.get(key)
        if secret:
            message += (f": the {secret} never lives in the file; put it in the environment "
                        f"variable that {key}_env names")
    elif err["type"] == "missing":
        message = "required key is missing"
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
    return ConfigError(message, path=path, line=_locate(text, loc), key=key)


def _locate(text: str, loc: tuple[str, ...]) -> int | None:
    """Best-effort line number of ``[section] key`` in TOML text."""
    names = [p.rstrip("_") if p == "from_" else p for p in loc if not p.isdigit()]
    if not names:
        return None
    section, key = (names[0], names[1]) if len(names) > 1 else (None, names[0])
    current: str | None = None
    section_line: int | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1)
            if current == section:
                section_line = number
            if section is None and current == key:
                return number  # a whole table, e.g. an unknown [section]
            continue
        if current == section and re.match(rf"^\"?{re.escape(key)}\"?\s*=", line):
            return number
    return section_line


# A plain address whose normal form is itself lower-cased: a dot-atom local part, a domain of
# LDH labels under an alphabetic TLD. email-validator accepts every such address unchanged
# (bar special-use domains, checked apart), so it is only asked about the rest; at 100,000
# recipients it would otherwise cost seconds.
_PLAIN = re.compile(
    r"(?=.{1,64}@)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
    re.ASCII,
)
_SPECIAL = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_DOT_SPECIAL = tuple("." + name for name in SPECIAL_USE_DOMAIN_NAMES)  # one endswith() for all


def read_recipients_file(path: Path, *, allow_local: bool = False) -> Iterator[str]:
    """The addresses of a recipients file (one a line, # comments), normalised, read line by
    line (never all in memory); a bad line is a ConfigError naming the file and line."""
    try:
        handle = open(path, encoding="utf-8-sig")  # noqa: SIM115 - closed below, a generator
    except FileNotFoundError:
        raise ConfigError("recipients file not found", path=path, key="digest.recipients_file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read recipients file: {exc}", path=path) from None
    with handle:
        try:
            for number, raw in enumerate(handle, start=1):
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                yield _normalise(line, path, number, allow_local)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read recipients file: {exc}", path=path) from None


def recipients_file_problems(path: Path, *, allow_local: bool = False) -> list[ConfigError]:
    """Every bad line of a recipients file (``check`` reports them all, not only the first)."""
    problems: list[ConfigError] = []
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.split("#", 1)[0].strip()
                if line:
                    try:
                        _normalise(line, path, number, allow_local)
                    except ConfigError as exc:
                        problems.append(exc)
    except FileNotFoundError:
        problems.append(ConfigError("recipients file not found", path=path, key="digest.recipients_file"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(ConfigError(f"cannot read recipients file: {exc}", path=path))
    return problems


def _within_limits(address: str) -> bool:
    """RFC 5321's lengths, as email-validator checks them: the fast path must agree with it."""
    local, _, domain = address.rpartition("@")
    return len(address) <= 254 and len(local) <= 64 and max(map(len, domain.split("."))) <= 63


def _normalise(line: str, path: Path, number: int, allow_local: bool = False) -> str:
    low = line.lower()
    if _PLAIN.fullmatch(low) and _within_limits(low):
        domain = low.rsplit("@", 1)[1]
        # A-labels (xn--) come back from email-validator as Unicode: leave those to it.
        if "xn--" not in domain and domain not in _SPECIAL and not domain.endswith(_DOT_SPECIAL):
            return low
    try:
        return check_address(line, allow_local=allow_local)
    except ValueError as exc:
        raise ConfigError(str(exc), path=path, line=number) from None
