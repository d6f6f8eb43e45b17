"""The Jinja2 environment: a project's ``templates/`` overrides the defaults shipped in the package."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2

from syndicator.errors import InputError
from syndicator.text import clean, plural


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
    env.filters["plural"] = plural
    return env


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def _longdate(value: datetime) -> str:
    """"Monday 7 December 2026": the names strftime gives in the C locale (syndicator never
    sets another), without strftime (18 us a call; a page of every story calls it)."""
    return f"{_DAYS[value.weekday()]} {value.day} {_MONTHS[value.month - 1]} {value.year}"


def template_error(exc: jinja2.TemplateError) -> InputError:
    """A template problem as one line naming the template file and line."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return InputError(f"template error: {exc.message}", path=exc.filename or exc.name, line=exc.lineno)
    if isinstance(exc, jinja2.TemplateNotFound):
        return InputError(f"template not found: {exc.name}")
    # A render-time error (say an undefined name): Jinja2 puts the template's own
    # file and line into the traceback.
    path, line = None, None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith((".html", ".txt", ".xml")):
            path, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next
    return InputError(f"template error: {exc.message or exc}", path=path, line=line)
