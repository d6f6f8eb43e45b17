"""Portable lists: the whole list, consent records included, as CSV, and back.

Columns: address, status (subscribed, pending, suppressed), source (config, file, subscriber),
opted_in_at, opt_in_method, confirmed_at, tags (space-separated tag slugs), timezone,
suppressed_reason, suppressed_at. Times are ISO 8601 UTC. An import validates every row before
it writes any, and never turns a suppressed address back into a subscriber.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syndicator.config import Config, check_address
from syndicator.errors import InputError, InputErrors
from syndicator.mail.audience import CONFIG, FILE, SUBSCRIBER, recipients
from syndicator.site.writer import write_atomic
from syndicator.state import lists
from syndicator.state.lists import DOUBLE_OPT_IN, IMPORTED, Member, Preferences, Suppressed
from syndicator.state.store import Store

COLUMNS = ("address", "status", "source", "opted_in_at", "opt_in_method", "confirmed_at", "tags",
           "timezone", "suppressed_reason", "suppressed_at")
SUBSCRIBED, PENDING, SUPPRESSED = "subscribed", "pending", "suppressed"
LISTED = "listed by the publisher"


def export_rows(config: Config, store: Store) -> list[dict[str, str]]:
    """One row per address the list knows, by address."""
    known = lists.members(store)
    sources = {a: s for a, s in _listed(config, store)}
    rows = []
    for address in sorted(set(known) | set(sources)):
        member = known.get(address, Member(address, None))
        source = SUBSCRIBER if member.confirmed is not None else sources.get(address, "")
        if member.suppressed is not None:
            status = SUPPRESSED
        elif member.confirmed is False:
            status = PENDING
        else:
            status = SUBSCRIBED
        method = member.method or (DOUBLE_OPT_IN if member.confirmed else "")
        if source in (CONFIG, FILE):
            method = LISTED
        rows.append({
            "address": address, "status": status, "source": source or SUBSCRIBER,
            "opted_in_at": _time(member.created_at), "opt_in_method": method,
            "confirmed_at": _time(member.confirmed_at), "tags": " ".join(member.prefs.tags),
            "timezone": member.prefs.timezone,
            "suppressed_reason": member.suppressed.reason if member.suppressed else "",
            "suppressed_at": _time(member.suppressed.created_at) if member.suppressed else "",
        })
    return rows


def _listed(config: Config, store: Store) -> Iterator[tuple[str, str]]:
    for address, source in recipients(config, store):
        if source != SUBSCRIBER:
            yield address, source
    for address in config.digest.recipients:  # a suppressed listed address is still listed
        yield address.lower(), CONFIG


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, out.getvalue().encode("utf-8"))


@dataclass(frozen=True)
class Imported:
    written: int
    kept_suppressed: int
    listed: int  # rows of config-/file-listed addresses this config lists already


def import_file(config: Config, store: Store, path: Path, now: int) -> Imported:
    """Read the export format (or one address a line), check every row, then write them all."""
    members, listed = read_import(config, path)
    written, kept = lists.import_members(store, members, now)
    return Imported(written, kept, listed)


def read_import(config: Config, path: Path) -> tuple[list[Member], int]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=path) from None
    first = text.split("\n", 1)[0].strip()
    if first.replace(" ", "") == ",".join(COLUMNS):
        return _from_csv(config, path, text)
    return _from_lines(config, path, text), 0


def _from_lines(config: Config, path: Path, text: str) -> list[Member]:
    """A bare file of addresses: each is vouched for by the publisher, like a config-listed one."""
    found, errors = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            address = check_address(line, allow_local=config.digest.allow_local_addresses)
        except ValueError as exc:
            errors.append(InputError(str(exc), path=path, line=number))
            continue
        found.append(Member(address, True, None, None, IMPORTED))
    if errors:
        raise InputErrors(errors)
    return found


def _from_csv(config: Config, path: Path, text: str) -> tuple[list[Member], int]:
    listed_here = {a for a, s in _configured(config)}
    found: list[Member] = []
    errors: list[InputError] = []
    listed = 0
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        number = reader.line_num
        try:
            member = _member(config, row)
        except ValueError as exc:
            errors.append(InputError(str(exc), path=path, line=number))
            continue
        plain = member.suppressed is None and member.prefs == Preferences()
        if row.get("source") in (CONFIG, FILE) and member.address in listed_here and plain:
            listed += 1  # this config lists it already: nothing to store
            continue
        found.append(member)
    if errors:
        raise InputErrors(errors)
    return found, listed


def _configured(config: Config) -> Iterator[tuple[str, str]]:
    from syndicator.config import read_recipients_file

    for address in config.digest.recipients:
        yield address.lower(), CONFIG
    if config.recipients_path is not None:
        for address in read_recipients_file(config.recipients_path,
                                            allow_local=config.digest.allow_local_addresses):
            yield address, FILE


def _member(config: Config, row: dict[str, str | None]) -> Member:
    def field(name: str) -> str:
        return (row.get(name) or "").strip()

    address = check_address(field("address"), allow_local=config.digest.allow_local_addresses)
    status, source = field("status"), field("source")
    if status not in (SUBSCRIBED, PENDING, SUPPRESSED):
        raise ValueError(f"status: expected subscribed, pending or suppressed, got {status!r}")
    if source not in (CONFIG, FILE, SUBSCRIBER):
        raise ValueError(f"source: expected config, file or subscriber, got {source!r}")
    zone = field("timezone")
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {zone!r}") from None
    prefs = Preferences(tuple(sorted(field("tags").split())), zone)
    suppressed = None
    if status == SUPPRESSED:
        suppressed = Suppressed(address, field("suppressed_reason") or "imported as suppressed",
                                _parse_time("suppressed_at", field("suppressed_at")) or 0)
    created = _parse_time("opted_in_at", field("opted_in_at"))
    confirmed_at = _parse_time("confirmed_at", field("confirmed_at"))
    method = field("opt_in_method") or None
    if source != SUBSCRIBER:
        confirmed: bool | None = None if status == SUPPRESSED else True
        method = IMPORTED
    elif status == PENDING:
        confirmed = False
    else:
        confirmed = confirmed_at is not None or status == SUBSCRIBED
    if source == SUBSCRIBER and status == SUPPRESSED and confirmed_at is None and created is None:
        confirmed = None  # only a suppression: no subscriber row to restore
    return Member(address, confirmed, created, confirmed_at, method, prefs, suppressed)


def _time(stamp: int | None) -> str:
    return "" if stamp is None else datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(name: str, value: str) -> int | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())
