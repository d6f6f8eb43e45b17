"""One error hierarchy; the CLI maps each class to one line and an exit code."""

from __future__ import annotations

from pathlib import Path


class SyndicatorError(Exception):
    """Base of every error syndicator raises on purpose."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        if self.key:
            where += f"{self.key}: "
        return where + self.message


class InputError(SyndicatorError):
    """Bad input from the user: config, seeds, arguments (exit 2)."""

    exit_code = 2


class ConfigError(InputError):
    """The configuration file is missing, malformed or invalid."""


class SeedError(InputError):
    """A seed article file is malformed."""


class InputErrors(InputError):
    """Several input problems, reported together (``check``, ``build``)."""

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = errors
        first = str(errors[0]) if errors else "no errors"
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        super().__init__(first + more)

    def __str__(self) -> str:
        return self.message


class StoreError(SyndicatorError):
    """The state store is unreachable, corrupt, locked or from a newer version."""


class OutputError(SyndicatorError):
    """Output files could not be written."""


class DeliveryError(SyndicatorError):
    """Mail could not be delivered (exit 1)."""


class EditionTooLarge(DeliveryError):
    """The relay refused the edition's message for its size: no reader can get it as it is."""


class InboundError(SyndicatorError):
    """The inbound mailbox cannot be read (exit 1)."""


class SecretMissingError(InputError):
    """A secret the command needs is not in the environment."""


class ConfigErrors(InputErrors, ConfigError):
    """Several problems in one configuration file, reported together."""


class BadToken(InputError):
    """A token that is malformed, forged, for another purpose, or expired."""


class SmtpSetupError(DeliveryError):
    """The relay cannot be used at all: unreachable, TLS refused, AUTH refused.

    ``transient``: the relay answered 4xx or timed out (busy, too many connections), so a
    run that already has a working connection may wait and try again.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class SenderRefused(SmtpSetupError):
    """The relay refused our envelope sender: nothing can be sent until the config changes."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, transient=400 <= code < 500)
        self.code = code


class ServeError(SyndicatorError):
    """The server cannot start (for example the port is taken)."""


class StrictWarnings(SyndicatorError):
    """``send --dry-run --strict``: the deliverability report has warnings (exit 1)."""
