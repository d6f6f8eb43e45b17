"""The command line: a thin click layer over the library; errors become one line and an exit code.

The group, the error handling and ``main`` live here; each command lives in the module named
for what it works on (``build``, ``send``, ``lists``, ``run``) and only parses and prints.
Heavy modules are imported inside the commands: a ``build`` never pays for the mail stack.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from syndicator.config import Config, find_config, load_config
from syndicator.errors import InputError, InputErrors, SyndicatorError

if TYPE_CHECKING:
    from syndicator.state.store import Store

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("syndicator")


@dataclass
class State:
    config_path: Path
    verbose: bool
    _config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self) -> Store:
        from syndicator.state.store import Store

        return Store.open(self.config.store_url)


def clock() -> datetime:
    """The wall clock; the one place the CLI reads it."""
    return datetime.now(UTC).replace(microsecond=0)


def handled(func: F) -> F:
    """Turn a SyndicatorError into one clear line and its exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = click.get_current_context().find_object(State)
        try:
            return func(*args, **kwargs)
        except SyndicatorError as exc:
            if state is not None and state.verbose:
                log.exception("failed")
            report_error(exc)
            sys.exit(exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # the reader went away (`| head`): what it read was complete
            sys.exit(0)
        except Exception as exc:  # a bug or an unforeseen failure: still one line, exit 1
            if state is not None and state.verbose:
                log.exception("failed")
            first = (str(exc).strip().splitlines() or [""])[0]
            click.echo(f"error: unexpected {type(exc).__name__}: {first} (--verbose shows the traceback)",
                       err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def report_error(exc: SyndicatorError) -> None:
    """Every problem an error holds, one `error: ...` line each on stderr."""
    errors = exc.errors if isinstance(exc, InputErrors) else [exc]
    for error in errors:
        click.echo(f"error: {error}", err=True)


def address_argument(address: str, key: str = "ADDRESS", *, allow_local: bool = False) -> str:
    """A command-line address, normalised; an invalid one is an input error naming the argument."""
    from syndicator.config import check_address

    try:
        return check_address(address.strip(), allow_local=allow_local)
    except ValueError as exc:
        raise InputError(str(exc), key=key) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH",
              help="Config file [default: $SYNDICATOR_CONFIG, else config/syndicator.toml].")
@click.option("--verbose", "-v", is_flag=True, help="Log more, and show tracebacks on errors.")
@click.version_option(package_name="syndicator")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """Feeds and an email digest from a folder of plain-text articles."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s" if verbose else "%(message)s",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "apscheduler", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    ctx.obj = State(find_config(config_path), verbose)


def main() -> None:
    """The console script: run the command, then end the process at once (see below)."""
    try:
        cli(prog_name="syndicator", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        _exit(1)
    except click.ClickException as exc:
        exc.show()
        _exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        _exit(exc.exit_code)
    except SystemExit as exc:
        _exit(exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1))
    _exit(0)


def _exit(code: int) -> None:
    """End the process of a command that has finished, heap and all.

    A build of 100,000 seeds holds millions of small objects, and Python frees them one by one
    on the way out: 1.2 s after the work was done. By now every command has written its output
    and closed its store, so flush what is printed and exit at once. A reader that went away
    (``syndicator status | head -1``) is no failure: the output it wanted was written.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(code)


# The commands register themselves on ``cli``.
from syndicator.cli import build, inbound, lists, run, send  # noqa: E402

__all__ = ["build", "cli", "inbound", "lists", "main", "run", "send"]
