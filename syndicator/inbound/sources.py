"""Where inbound mail is read: a Maildir, an mbox, an IMAP folder, or one message on stdin.

Each source yields the messages not handled yet and marks a handled one so a second run finds
nothing new: Maildir moves it to ``cur/`` with the ``S`` flag, IMAP sets ``\\Seen`` (and moves
it to ``inbound.done_folder`` when set). Nothing is ever deleted. An mbox and stdin cannot be
marked: the store's record of handled messages keeps them from counting twice.
"""

from __future__ import annotations

import contextlib
import mailbox
import os
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from syndicator.config import Config
from syndicator.errors import InboundError


@dataclass(frozen=True)
class Item:
    key: str
    raw: bytes


class Source(Protocol):
    def unread(self) -> Iterator[Item]: ...

    def done(self, key: str) -> None:
        """Mark a handled message; unrecognised ones are left as they were."""

    def close(self) -> None: ...


def open_source(config: Config, where: str) -> Source:
    """``where``: a URL (maildir://, mbox://, imap://, imaps://), a Maildir path, or ``-``."""
    if where == "-":
        return Stdin()
    parts = urlsplit(where)
    if parts.scheme in ("imap", "imaps"):
        return Imap.connect(config, where)
    if parts.scheme == "mbox":
        return Mbox(Path(unquote(parts.path)))
    path = Path(unquote(parts.path)) if parts.scheme == "maildir" else Path(where)
    if parts.scheme not in ("maildir", ""):
        raise InboundError(f"cannot read inbound mail from {where!r}: expected maildir://, mbox://, "
                           "imap://, imaps:// or -")
    return Maildir(path)


class Stdin:
    """One message, as a Postfix pipe transport or a .forward hands it over."""

    def unread(self) -> Iterator[Item]:
        yield Item("-", sys.stdin.buffer.read())

    def done(self, key: str) -> None:
        pass

    def close(self) -> None:
        pass


class Maildir:
    def __init__(self, path: Path) -> None:
        if not all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            raise InboundError(f"{path}: not a Maildir (no cur/, new/ and tmp/)")
        self.path = path

    def unread(self) -> Iterator[Item]:
        for sub in ("new", "cur"):
            folder = self.path / sub
            try:
                names = sorted(os.listdir(folder))
            except OSError as exc:
                raise InboundError(f"cannot read {folder}: {exc.strerror}") from None
            for name in names:
                if name.startswith(".") or (sub == "cur" and "S" in _flags(name)):
                    continue
                try:
                    raw = (folder / name).read_bytes()
                except FileNotFoundError:  # another reader took it meanwhile
                    continue
                except OSError as exc:
                    raise InboundError(f"cannot read {folder / name}: {exc.strerror}") from None
                yield Item(f"{sub}/{name}", raw)

    def done(self, key: str) -> None:
        sub, name = key.split("/", 1)
        base = name.split(":2,", 1)[0]
        flags = "".join(sorted(set(_flags(name)) | {"S"}))
        with contextlib.suppress(FileNotFoundError):  # moved by another reader: handled either way
            os.rename(self.path / sub / name, self.path / "cur" / f"{base}:2,{flags}")

    def close(self) -> None:
        pass


def _flags(name: str) -> str:
    return name.split(":2,", 1)[1] if ":2," in name else ""


class Mbox:
    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise InboundError(f"{path}: no such mbox file")
        self.box = mailbox.mbox(path, create=False)

    def unread(self) -> Iterator[Item]:
        try:
            for key in self.box.iterkeys():
                yield Item(str(key), self.box.get_bytes(key))
        except OSError as exc:
            raise InboundError(f"cannot read the mbox: {exc.strerror}") from None

    def done(self, key: str) -> None:
        pass

    def close(self) -> None:
        self.box.close()


class Imap:
    """An IMAP folder over TLS: ``imaps://`` from the start, ``imap://`` with STARTTLS (required:
    the password never crosses the network in clear)."""

    def __init__(self, client: Any, done_folder: str) -> None:
        self.client = client
        self.done_folder = done_folder

    @classmethod
    def connect(cls, config: Config, url: str) -> Imap:
        from imapclient import IMAPClient

        parts = urlsplit(url)
        host = parts.hostname or ""
        user = unquote(parts.username or "")
        folder = unquote(parts.path.lstrip("/")) or "INBOX"
        password = config.inbound.password()
        if not user or password is None:
            raise InboundError(f"{url}: needs a user in the URL and the password in the environment "
                               f"variable {config.inbound.password_env} (inbound.password_env)")
        context = ssl.create_default_context()
        port = parts.port or (993 if parts.scheme == "imaps" else 143)
        try:
            client = IMAPClient(host, port=port, ssl=parts.scheme == "imaps", ssl_context=context, timeout=30)
            if parts.scheme == "imap":
                if b"STARTTLS" not in client.capabilities():
                    raise InboundError(f"{host}:{port} offers no STARTTLS: the password would go in clear")
                client.starttls(context)
            client.login(user, password)
            done = config.inbound.done_folder
            if done and not client.folder_exists(done):
                client.create_folder(done)
            client.select_folder(folder)
        except InboundError:
            raise
        except Exception as exc:  # imaplib's and ssl's errors, socket errors: one line
            raise InboundError(f"cannot read {parts.scheme}://{host}:{port}/{folder}: {exc}") from None
        return cls(client, config.inbound.done_folder)

    def unread(self) -> Iterator[Item]:
        try:
            uids = self.client.search(["UNSEEN"])
            for uid in uids:
                fetched = self.client.fetch([uid], ["BODY.PEEK[]"])
                raw = fetched.get(uid, {}).get(b"BODY[]")
                if isinstance(raw, bytes):
                    yield Item(str(uid), raw)
        except Exception as exc:
            raise InboundError(f"cannot read the IMAP folder: {exc}") from None

    def done(self, key: str) -> None:
        uid = int(key)
        try:
            self.client.add_flags([uid], [b"\\Seen"])
            if self.done_folder:
                self.client.move([uid], self.done_folder)
        except Exception as exc:
            raise InboundError(f"cannot mark message {uid} handled: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone: nothing to release
            self.client.logout()
