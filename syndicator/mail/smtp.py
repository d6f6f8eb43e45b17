"""SMTP over aiosmtplib: explicit security, one kept-open connection per worker, outcomes classified."""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from typing import cast

import aiosmtplib

from syndicator.config import Config, ascii_address
from syndicator.errors import SenderRefused, SmtpSetupError
from syndicator.mail.policy import Kind, Outcome, classify


class Connection:
    """One SMTP session, opened lazily and reused for many messages."""

    def __init__(self, config: Config, password: str | None, tls_context: ssl.SSLContext | None = None):
        self.config = config
        self.password = password
        self.tls_context = tls_context
        self.client: aiosmtplib.SMTP | None = None
        self.wire: _Wire | None = None
        self._sender = "", b""  # the last envelope sender and its MAIL command (one per list without VERP)

    async def open(self) -> aiosmtplib.SMTP:
        if self.client is not None and self.client.is_connected:
            return self.client
        smtp = self.config.smtp
        # Explicit modes only: start_tls=None would fall back to plaintext silently.
        client = aiosmtplib.SMTP(
            hostname=smtp.host, port=smtp.port, timeout=smtp.timeout,
            use_tls=smtp.security == "tls", start_tls=smtp.security == "starttls",
            validate_certs=True, tls_context=self.tls_context,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if smtp.username:
                await client.login(smtp.username, self.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            await _quietly_close(client)
            raise SmtpSetupError(f"SMTP authentication refused by {smtp.host}:{smtp.port}: "
                                 f"{exc.code} {exc.message}") from None
        except aiosmtplib.SMTPNotSupported as exc:
            await _quietly_close(client)
            raise SmtpSetupError(f"{smtp.host}:{smtp.port} does not support what smtp.security="
                                 f"{smtp.security!r} needs: {exc}") from None
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            await _quietly_close(client)
            code = getattr(exc, "code", None)
            busy = isinstance(exc, aiosmtplib.SMTPTimeoutError) or (
                isinstance(code, int) and 400 <= code < 500)
            raise SmtpSetupError(f"cannot connect to SMTP relay {smtp.host}:{smtp.port}: "
                                 f"{_describe(exc)}", transient=busy) from None
        self.client = client
        return client

    @property
    def pipelining(self) -> bool:
        """Whether the open session pipelines (RFC 2920), so ``send(..., then=...)`` saves a write."""
        return self.wire is not None and not self.wire.closed and self.wire.pipelining

    async def send(self, mail_from: str, rcpt: str, data: bytes, *, canonical: bool = False,
                   stuffed: bool = False, then: tuple[str, str] | None = None) -> Outcome:
        """Send one message to one recipient; never raises for a per-message failure.

        ``canonical``: the caller guarantees CRLF line ends throughout (MessageFactory's output),
        which spares two scans of every message. ``stuffed``: ``data`` is already the DATA
        payload, dot-stuffed and ending with the final "." line (``MessageFactory.build_wire``).

        ``then``: the envelope (sender, recipient) of the message the caller sends next on this
        connection. With PIPELINING its MAIL, RCPT and DATA go in the same write as this body
        (RFC 2920: message content may start a group), so each message costs one write and one
        round trip. Nothing of that next message is delivered before its own ``send``; the
        caller sends it next, or closes the connection (which then drops, never QUITs, the
        session: after DATA a QUIT would be message text).
        """
        wire = self.wire
        if wire is not None and wire.announced is not None and wire.announced != (mail_from, rcpt):
            await self.close()  # out of step with what was announced: start a clean session
            wire = None
        if wire is None or wire.closed:
            self.wire = None
            client = await self.open()
            self.client = None
            try:
                wire = self.wire = _Wire.take_over(client, self.config.smtp.timeout)
            except _Broken as exc:
                client.close()
                return Outcome(Kind.TRANSIENT, None, exc.reply)
        try:
            # Announced with the last body: its commands are on the wire already.
            commands = b"" if wire.announced == (mail_from, rcpt) else self._commands(mail_from, rcpt)
        except ValueError as exc:
            return Outcome(Kind.PERMANENT, None, str(exc))
        following: tuple[str, str, bytes] | None = None
        if then is not None and wire.pipelining:
            try:
                following = then[0], then[1], self._commands(*then)
            except ValueError:
                following = None  # its own send() reports the bad address
        if not stuffed:
            data = _dot_stuff(data if canonical else _canonical(data))
        try:
            return await wire.transaction((mail_from, rcpt), commands, data, following)
        except SenderRefused:
            await self.close()
            raise
        except _Broken as exc:
            await self.close()
            if exc.code is not None:
                return classify(exc.code, exc.reply)
            return Outcome(Kind.TRANSIENT, None, exc.reply)

    def _commands(self, mail_from: str, rcpt: str) -> bytes:
        """MAIL, RCPT and DATA for one message; ValueError for an address unfit for an envelope."""
        if mail_from != self._sender[0]:
            self._sender = mail_from, b"MAIL FROM:<" + _envelope(mail_from) + b">\r\n"
        return self._sender[1] + b"RCPT TO:<" + _envelope(rcpt) + b">\r\nDATA\r\n"

    async def close(self) -> None:
        wire, self.wire = self.wire, None
        client, self.client = self.client, None
        if wire is not None:
            await wire.quit()
        elif client is not None:
            await _quietly_close(client, polite=True)


class _Broken(Exception):
    """The session is unusable: disconnected, timed out, out of step, or a 421."""

    def __init__(self, reply: str, code: int | None = None) -> None:
        super().__init__(reply)
        self.reply = reply
        self.code = code


class _Wire(asyncio.Protocol):
    """The message transactions of a session aiosmtplib opened (EHLO, TLS, AUTH done).

    aiosmtplib spends several awaits, locks and regex passes per command; at thousands of
    messages a second that, not the network, is the limit. This protocol takes over the
    open transport and runs each transaction with as few writes as the server allows:
    with PIPELINING (RFC 2920) ``MAIL``, ``RCPT`` and ``DATA`` go in one write and the
    message in a second, so a message costs two round trips instead of four; and when the
    caller names the message that follows, its ``MAIL``, ``RCPT`` and ``DATA`` ride with
    this one's body: one write and one round trip a message.

    One timer per session, not one per reply: ``deadline`` moves with every wait, and the
    timer, when it fires early, is set again for the deadline then.
    """

    def __init__(self, timeout: float, pipelining: bool) -> None:
        self.timeout = timeout
        self.pipelining = pipelining
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.replies: deque[tuple[int, str]] = deque()
        self.want = 0
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        # The envelope whose MAIL, RCPT and DATA were written with the last body, unanswered yet.
        self.announced: tuple[str, str] | None = None
        self.continued: list[str] = []  # the text of a multi-line reply's lines so far

    @classmethod
    def take_over(cls, client: aiosmtplib.SMTP, timeout: float) -> _Wire:
        transport = client.transport
        if transport is None or transport.is_closing():
            raise _Broken("connection lost")
        wire = cls(timeout, client.supports_extension("pipelining"))
        wire.transport = cast(asyncio.Transport, transport)
        transport.set_protocol(wire)
        # aiosmtplib must not touch this transport again (its close() would close it).
        client.protocol = None
        client.transport = None
        return wire

    # -- asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        """Replies in: every complete line of ``data`` at once (a pipelined group's replies
        usually come in one read); a partial last line waits in ``buffer`` for the rest."""
        if self.buffer:
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self.buffer += data[end:]
            if len(self.buffer) > 65536:
                self._fail(_Broken("reply too long"))
                return
            data = data[:end]
        if not data:
            return
        continued = self.continued
        for line in data.decode("utf-8", "replace").split("\n")[:-1]:
            if line[3:4] == "-":  # a continuation line: its text joins the reply's last line
                continued.append(line[4:].strip())
                if len(continued) > 1000:
                    self._fail(_Broken("reply too long"))
                    return
                continue
            try:
                code = int(line[:3])
            except ValueError:
                self._fail(_Broken(f"malformed SMTP reply {line.rstrip()[:200]!r}"))
                return
            if continued:
                continued.append(line[4:].strip())
                self.replies.append((code, " ".join(continued)))
                continued.clear()
            else:
                self.replies.append((code, line[4:].strip()))
        waiter = self.waiter
        if waiter is not None and len(self.replies) >= self.want and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(_Broken(f"connection lost: {exc}" if exc else "connection closed by the server"))

    def eof_received(self) -> bool:
        self.closed = True
        self._fail(_Broken("connection closed by the server"))
        return False

    def _fail(self, exc: _Broken) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    # -- transactions
    async def _read(self, count: int) -> list[tuple[int, str]]:
        """The next ``count`` replies; _Broken on disconnect or timeout."""
        if len(self.replies) < count:
            if self.closed:
                raise _Broken("connection lost")
            self.want = count
            waiter = self.waiter = self.loop.create_future()
            self.deadline = self.loop.time() + self.timeout
            if self.timer is not None and self.timer.when() > self.deadline:
                self.timer.cancel()  # set for a longer timeout than this wait's (quit's)
                self.timer = None
            if self.timer is None:
                self.timer = self.loop.call_at(self.deadline, self._check_time)
            try:
                await waiter
            finally:
                self.waiter = None
        return [self.replies.popleft() for _ in range(count)]

    def _check_time(self) -> None:
        self.timer = None
        waiter = self.waiter
        if waiter is None or waiter.done() or self.closed:
            return  # nothing is waiting: the next wait sets the timer again
        if self.loop.time() >= self.deadline:
            self._fail(_Broken(f"timed out after {self.timeout:g}s waiting for the server"))
        else:
            self.timer = self.loop.call_at(self.deadline, self._check_time)

    def _write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _Broken("connection lost")
        self.transport.write(data)

    async def transaction(self, envelope: tuple[str, str], commands: bytes, payload: bytes,
                          following: tuple[str, str, bytes] | None = None) -> Outcome:
        """One message: ``commands`` (MAIL, RCPT, DATA, unless they were announced with the last
        body), then ``payload`` (dot-stuffed, with its final "."), and with it the commands of
        ``following`` (sender, recipient, commands) when the server pipelines."""
        if self.announced is not None:
            if self.announced != envelope:
                raise _Broken("out of step: another message's envelope was announced")
            self.announced = None
            replies = await self._read(3)
        elif self.pipelining:
            self._write(commands)
            replies = await self._read(3)
        else:
            replies = []
            for command in commands.splitlines(keepends=True):
                self._write(command)
                replies += await self._read(1)
                if replies[-1][0] >= 400:
                    break
        # MAIL and RCPT succeed with any 2xx (251/252 too, RFC 5321 3.4); DATA with 354.
        for stage, (code, text) in zip(("MAIL", "RCPT", "DATA"), replies, strict=False):
            if code == 421:
                raise _Broken(text, code)
            if (code != 354) if stage == "DATA" else (code // 100 != 2):
                return await self._abandon(replies, stage, code, text)
        if following is not None and self.pipelining:
            self._write(payload + following[2])
            self.announced = following[0], following[1]
        else:
            self._write(payload)
        ((code, text),) = await self._read(1)
        if code == 421:
            raise _Broken(text, code)
        return classify(code, text)

    async def _abandon(self, replies: list[tuple[int, str]], stage: str, code: int, text: str) -> Outcome:
        """A refused MAIL, RCPT or DATA: end the transaction cleanly (RSET) and report the refusal.

        Never a success: if the server opened DATA after a refusal, the empty message it may
        queue is not the recipient's digest.
        """
        if len(replies) == 3 and replies[2][0] == 354:
            self._write(b".\r\n")
            await self._read(1)
        self._write(b"RSET\r\n")
        await self._read(1)
        if stage == "MAIL":
            raise SenderRefused(f"the relay refused the sender: {code} {text}".strip(), code)
        if 200 <= code < 300:  # a 2xx to DATA: the server is out of step with us
            raise _Broken(f"unexpected reply to DATA: {code} {text}")
        return classify(code, text, rcpt=stage == "RCPT")

    async def quit(self) -> None:
        if self.announced is not None:
            # A DATA may be open on the server: anything sent now would be message text, and
            # only a dropped connection ends it without delivering. Drop it.
            self.announced = None
            self._fail(_Broken("closed with a transaction announced"))
        if not self.closed:
            try:
                self._write(b"QUIT\r\n")
                self.timeout = min(self.timeout, 5.0)
                await self._read(1)
            except _Broken:
                pass
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _canonical(data: bytes) -> bytes:
    """CRLF line ends throughout, and a final CRLF."""
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        return aiosmtplib.protocol.normalize_message_line_endings(data)
    return data


def _dot_stuff(data: bytes) -> bytes:
    """The DATA payload of canonical (CRLF) data: leading dots doubled (RFC 5321 4.5.2), the final "."."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


_UNSAFE_IN_ENVELOPE = re.compile(r"[<>\r\n\0 ]")


def _envelope(address: str) -> bytes:
    """An envelope address: ASCII (an IDN domain in its A-label form), no controls or brackets."""
    if not address.isascii():
        try:
            address = ascii_address(address)
        except ValueError:
            raise ValueError(f"cannot put {address!r} in an SMTP envelope") from None
    if _UNSAFE_IN_ENVELOPE.search(address) or not address.isascii():
        raise ValueError(f"cannot put {address!r} in an SMTP envelope")
    return address.encode("ascii")


async def _quietly_close(client: aiosmtplib.SMTP, polite: bool = False) -> None:
    try:
        if polite and client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        pass
    finally:
        client.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
