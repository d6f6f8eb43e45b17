"""Who receives a digest: config recipients, the recipients file, confirmed subscribers; never suppressed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from sqlalchemy import select

from syndicator import schema
from syndicator.config import Config, check_address
from syndicator.errors import ConfigError
from syndicator.ledger import suppressed
from syndicator.store import Store

# A plain address whose normal form is itself lower-cased: a dot-atom local part, a domain of
# LDH labels under an alphabetic TLD. email-validator accepts every such address unchanged
# (bar special-use domains, checked apart), so it is only asked about the rest; at 100,000
# recipients it would otherwise cost seconds.
_PLAIN = re.compile(
    r"(?=.{1,64}@)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
    re.ASCII,
)
_SPECIAL = tuple(SPECIAL_USE_DOMAIN_NAMES)


def audience(config: Config, store: Store) -> Iterator[str]:
    """Every address once (case-insensitively), in a stable order, never a suppressed one."""
    blocked = suppressed(store)
    seen: set[str] = set()
    for address in _sources(config, store):
        key = address.lower()
        if key not in seen and key not in blocked:
            seen.add(key)
            yield key


def _sources(config: Config, store: Store) -> Iterator[str]:
    yield from config.digest.recipients
    if config.recipients_path is not None:
        yield from recipients_file(config.recipients_path)
    yield from confirmed_subscribers(store)


def recipients_file(path: Path) -> Iterator[str]:
    """The addresses of a recipients file, read line by line (never all in memory), normalised.

    The same rules and errors as ``config.load_recipients_file``: a bad line is a ConfigError
    naming the file and line.
    """
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
                yield _normalise(line, path, number)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read recipients file: {exc}", path=path) from None


def _normalise(line: str, path: Path, number: int) -> str:
    low = line.lower()
    if _PLAIN.fullmatch(low):
        domain = low.rsplit("@", 1)[1]
        # A-labels (xn--) come back from email-validator as Unicode: leave those to it.
        if "xn--" not in domain and not any(domain == s or domain.endswith("." + s) for s in _SPECIAL):
            return low
    try:
        return check_address(line)
    except ValueError as exc:
        raise ConfigError(str(exc), path=path, line=number) from None


def confirmed_subscribers(store: Store) -> Iterator[str]:
    subs = schema.subscribers
    with store.read() as conn:
        rows = conn.execute(select(subs.c.address).where(subs.c.confirmed.is_(True)).order_by(subs.c.address))
        addresses = [row[0] for row in rows]
    yield from addresses


def count(config: Config, store: Store) -> int:
    return sum(1 for _ in audience(config, store))
