"""Real mail servers for the inbound tests, each private to one test: Postfix (local only, on a
free loopback port, accepting every local part at RCPT and bouncing unknown users afterwards,
as a relay does) and Dovecot (IMAP over TLS on a free port). Both are Debian's packages,
started and stopped here; a test without them skips, unless SYNDICATOR_REQUIRE_MTA=1."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRED = os.environ.get("SYNDICATOR_REQUIRE_MTA") == "1"


def need(program: str) -> str:
    found = shutil.which(program) or (
        f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None
    )
    if found is None or os.geteuid() != 0:
        why = f"{program} is not installed" if found is None else f"{program} needs root to start"
        if REQUIRED:
            pytest.fail(why)
        pytest.skip(why)
    return found


@contextmanager
def server_root(name: str) -> Iterator[Path]:
    """A folder the servers' own users (postfix, dovecot) can reach: pytest's tmp_path is
    under a folder only root may enter."""
    root = Path(tempfile.mkdtemp(prefix=f"syndicator-{name}-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """An external process's result has no event to wait on: poll it, with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Postfix:
    root: Path
    port: int

    def maildir(self, domain: str, user: str) -> Path:
        return self.root / "mail" / domain / user

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


_MASTER = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


@contextmanager
def postfix(mailboxes: dict[str, list[str]]) -> Iterator[Postfix]:
    """Postfix delivering ``{domain: [user, ...]}`` to Maildirs; other users bounce (5.1.1)."""
    binary = need("postfix")
    owner = pwd.getpwnam("postfix")
    with server_root("postfix") as root:
        yield from _postfix(binary, owner, root, mailboxes)


def _postfix(
    binary: str, owner: pwd.struct_passwd, root: Path, mailboxes: dict[str, list[str]]
) -> Iterator[Postfix]:
    for sub in ("conf", "queue", "data", "mail"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chown(root / "data", owner.pw_uid, owner.pw_gid)
    os.chown(root / "mail", owner.pw_uid, owner.pw_gid)
    port = free_port()
    domains = ", ".join(mailboxes)
    (root / "conf" / "vmailbox").write_text(
        "".join(f"{u}@{d} {d}/{u}/\n" for d, users in mailboxes.items() for u in users)
    )
    (root / "conf" / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
myhostname = mx.{next(iter(mailboxes))}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_reject_unlisted_recipient = no
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/conf/vmailbox
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
virtual_minimum_uid = 1
recipient_delimiter = +
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = no
biff = no
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
""")
    (root / "conf" / "master.cf").write_text(_MASTER.format(port=port))
    conf = str(root / "conf")
    started = subprocess.run([binary, "-c", conf, "start"], capture_output=True, text=True, timeout=60)
    server = Postfix(root, port)
    try:
        assert started.returncode == 0, started.stderr + server.log()
        wait_for(lambda: _listening(port), "postfix to listen")
        yield server
    finally:
        subprocess.run([binary, "-c", conf, "stop"], capture_output=True, timeout=60)


def _logs_in(server: Dovecot) -> bool:
    import ssl

    from imapclient import IMAPClient
    from imapclient.exceptions import LoginError

    context = ssl.create_default_context(cafile=str(server.ca_file))
    client = IMAPClient("127.0.0.1", port=server.port, ssl=True, ssl_context=context, timeout=10)
    try:
        client.login(server.user, server.password)
    except LoginError:
        return False
    finally:
        with contextlib.suppress(Exception):
            client.logout()
    return True


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Dovecot:
    port: int
    maildir: Path
    ca_file: Path
    user: str
    password: str


@contextmanager
def dovecot(user: str, password: str) -> Iterator[Dovecot]:
    """Dovecot serving one user's Maildir over IMAPS, its certificate from a trustme CA."""
    binary = need("dovecot")
    with server_root("dovecot") as root:
        yield from _dovecot(binary, root, user, password)


def _dovecot(binary: str, root: Path, user: str, password: str) -> Iterator[Dovecot]:
    import trustme

    (root / "run").mkdir(parents=True, exist_ok=True)
    maildir = root / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    owner = pwd.getpwnam("dovecot")
    for path in (maildir, *(maildir / s for s in ("cur", "new", "tmp"))):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    port = free_port()
    (root / "dovecot.conf").write_text(f"""\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/run
log_path = {root}/dovecot.log
ssl = required
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.pem
auth_mechanisms = plain
disable_plaintext_auth = yes
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{maildir}
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/home
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
    process = subprocess.Popen(
        [binary, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: _listening(port) or process.poll() is not None, "dovecot to listen")
        assert process.poll() is None, (process.stdout.read() if process.stdout else b"").decode()
        server = Dovecot(port, maildir, root / "ca.pem", user, password)
        wait_for(lambda: _logs_in(server), "dovecot's auth service")  # it starts after the listener
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
