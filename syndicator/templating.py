"""The Jinja2 environment: a project's ``templates/`` overrides the defaults shipped in the package."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2

from syndicator.textutil import clean


def environment(project_templates: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if project_templates is not None and project_templates.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(project_templates)))
    loaders.append(jinja2.PackageLoader("syndicator", "templates"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["clean"] = clean
    env.filters["isodate"] = lambda d: d.isoformat()
    env.filters["longdate"] = _longdate
    return env


def _longdate(value: datetime) -> str:
    return f"{value:%A} {value.day} {value:%B %Y}"
