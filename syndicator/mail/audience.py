"""Who receives a digest: config recipients, the recipients file, confirmed subscribers; never suppressed.

``recipients`` is the one place that decides: ``send`` mails what it yields, ``subscribers``
lists it, and ``subscribe`` asks it whether an address is already on the list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from syndicator.config import Config, read_recipients_file
from syndicator.state import lists
from syndicator.state.store import Store

CONFIG, FILE, SUBSCRIBER = "config", "file", "subscriber"


def recipients(config: Config, store: Store) -> Iterator[tuple[str, str]]:
    """(address, source) of everyone the next digest goes to: each address once
    (case-insensitively, from its first source), in a stable order, never a suppressed one."""
    blocked = lists.suppressed_addresses(store)
    seen: set[str] = set()
    for address, source in _sources(config, store):
        key = address.lower()
        if key not in seen and key not in blocked:
            seen.add(key)
            yield key, source


def skipped(config: Config, store: Store) -> Iterator[str]:
    """The listed addresses that ``recipients`` leaves out because they are suppressed (each once):
    an edition records them, so its counts say how many readers it skipped."""
    blocked = lists.suppressed_addresses(store)
    if not blocked:
        return  # nobody is suppressed: no need to read the list again
    seen: set[str] = set()
    for address, _source in _sources(config, store):
        key = address.lower()
        if key in blocked and key not in seen:
            seen.add(key)
            yield key


def audience(config: Config, store: Store) -> Iterator[str]:
    """The addresses of ``recipients``."""
    for address, _source in recipients(config, store):
        yield address


def listed_by_publisher(config: Config) -> Callable[[str], bool]:
    """Whether an address is on the list because the publisher put it there (the config or
    the recipients file) rather than because its owner subscribed: the footer says which."""
    listed = {a.lower() for a in config.digest.recipients}
    if config.recipients_path is not None:
        listed.update(read_recipients_file(config.recipients_path,
                                           allow_local=config.digest.allow_local_addresses))
    return lambda address: address.lower() in listed


def _sources(config: Config, store: Store) -> Iterator[tuple[str, str]]:
    for address in config.digest.recipients:
        yield address, CONFIG
    if config.recipients_path is not None:
        for address in read_recipients_file(config.recipients_path,
                                            allow_local=config.digest.allow_local_addresses):
            yield address, FILE
    for address in lists.confirmed_subscribers(store):
        yield address, SUBSCRIBER
