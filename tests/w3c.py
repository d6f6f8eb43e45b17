"""The real W3C Feed Validation Service, run in-process on the bytes a build wrote.

Its code lies outside the project (``../shared/feedvalidator/src``, or the folder
``SYNDICATOR_FEEDVALIDATOR`` names). Missing, the tests that need it skip, unless
``SYNDICATOR_REQUIRE_VALIDATOR=1`` (set by ``.ci/run``) makes them fail: CI must not pass
without having validated every feed.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE = Path(os.environ.get("SYNDICATOR_FEEDVALIDATOR", REPO.parent / "shared" / "feedvalidator" / "src"))
REQUIRED = os.environ.get("SYNDICATOR_REQUIRE_VALIDATOR") == "1"


def _load() -> Any:
    if not (SOURCE / "feedvalidator" / "__init__.py").exists():
        message = f"the W3C feed validator is not at {SOURCE} (set SYNDICATOR_FEEDVALIDATOR)"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    if str(SOURCE) not in sys.path:
        sys.path.insert(0, str(SOURCE))
    import feedvalidator

    return feedvalidator


def problems(data: bytes, url: str) -> list[str]:
    """Every error and warning the validator logs for a document served from ``url``."""
    validator = _load()
    from feedvalidator.logging import Error, Warning

    result = validator.validateStream(io.BytesIO(data), firstOccurrenceOnly=1, base=url)
    found = []
    for event in result["loggedEvents"]:
        if isinstance(event, (Error, Warning)):
            kind = "error" if isinstance(event, Error) else "warning"
            params = event.params
            found.append(f"{kind} {type(event).__name__} at line {params.get('line')} "
                         f"({params.get('element')}) in {url}")
    return found


def assert_valid(output: Path, site_url: str, *names: str) -> None:
    """Validate each named file of a built site, served at ``site_url`` + its name."""
    assert names, "nothing to validate"
    found = []
    for name in names:
        found += problems((output / name).read_bytes(), site_url + name)
    assert found == []
