"""Text clean-up shared by every output: XML-illegal characters, header-safe text."""

from __future__ import annotations

import re

# Characters XML 1.0 forbids, the C1 controls that break readers, and the bidi embedding,
# override and isolate controls: U+202E in a title reverses what follows it in the subject
# line and the feed reader ("Trojan Source"); right-to-left text needs none of them.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069"
                      "\ufffe\uffff\ud800-\udfff]")
_SPACES = re.compile(r"\s+")


def clean(text: str) -> str:
    """Text with every XML-illegal character removed."""
    if text.isascii() and text.isprintable():  # " " to "~": nothing to remove (most text)
        return text
    return _ILLEGAL.sub("", text)


def one_line(text: str) -> str:
    """Clean text folded to one line: CR, LF and tabs become single spaces (header-safe)."""
    if text.isascii() and text.isprintable() and "  " not in text:
        return text.strip()  # its only white space is single spaces: the regexes change nothing
    return _SPACES.sub(" ", clean(text)).strip()


def excerpt(text: str, limit: int) -> str:
    """``text`` on one line, cut at a word boundary to at most ``limit`` characters, with "…"."""
    flat = one_line(text)
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if " " in cut and not flat[limit - 1].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-–—") + "…"


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``{{ stories|length|plural("story") }}``: "1 story", "3 stories" (English rules, or ``many``)."""
    if count == 1:
        return f"1 {singular}"
    if many is None:
        consonant_y = singular.endswith("y") and singular[-2:-1] not in "aeiou"
        many = singular[:-1] + "ies" if consonant_y else singular + "s"
    return f"{count} {many}"
