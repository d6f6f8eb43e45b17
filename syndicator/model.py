"""The article model: what a seed file says, and the stories the product publishes."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

# A fixed namespace so that a story's id is the same on every machine.
ID_NAMESPACE = uuid.UUID("6f1c3a52-9c1e-4d1a-9a57-2d0f0c5e7b11")
_NAMESPACE_BYTES = ID_NAMESPACE.bytes

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                         "\u2013": "-", "\u2014": "-"})
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class Entry:
    """One story as written in one seed file: the lead (position 0) or a brief."""

    title: str
    paragraphs: tuple[str, ...]
    position: int
    line: int
    path: Path
    id: str | None = None
    date: datetime | None = None
    author: str | None = None
    url: str | None = None
    tags: tuple[str, ...] = ()
    correction: str | None = None  # front matter: a sentence saying what was corrected

    @property
    def is_lead(self) -> bool:
        return self.position == 0

    @cached_property
    def title_key(self) -> str:
        return "title:" + normalise_title(self.title)

    @cached_property
    def slug_stem(self) -> str:
        """The readable part of the story page's name (see ``story_slug``)."""
        return slugify(self.title)

    @cached_property
    def keys(self) -> tuple[str, ...]:
        """Every key this entry is known by: its front matter id first, then its title."""
        return (("id:" + self.id,) if self.id else ()) + (self.title_key,)

    @property
    def richness(self) -> tuple[int, int, int]:
        """Higher is richer: a lead beats a brief, then more text, then more metadata."""
        metadata = sum(x is not None for x in (self.id, self.date, self.author, self.url))
        return (int(self.is_lead), sum(map(len, self.paragraphs)), metadata + len(self.tags))


@dataclass(frozen=True)
class SeedFile:
    path: Path
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Story:
    """A published story: one per identity, however many files mention it."""

    id: str
    slug: str
    title: str
    paragraphs: tuple[str, ...]
    is_lead: bool
    published: datetime
    first_seen: datetime
    seq: int
    author: str | None
    url: str | None
    tags: tuple[str, ...]
    path: Path
    line: int
    revised: datetime | None = None  # when its text last changed after it was first seen
    correction: str | None = None

    @property
    def updated(self) -> datetime:
        """The time its text last changed: ``published`` until it is corrected."""
        return self.revised if self.revised is not None and self.revised > self.published else self.published

    @property
    def summary(self) -> str:
        """A brief's summary, or a lead's first paragraph."""
        return self.paragraphs[0] if self.paragraphs else ""

    @property
    def page(self) -> str:
        """The story page's path relative to the output folder."""
        return f"stories/{self.slug}.html"


def normalise_title(title: str) -> str:
    """The form two spellings of one headline share."""
    text = unicodedata.normalize("NFKC", title).translate(_QUOTES).casefold()
    # A headline of only symbols (emoji, punctuation) keeps them: it must not share
    # the empty key with every other such headline.
    return " ".join(_NON_WORD.sub(" ", text).split()) or " ".join(text.split())


def content_digest(title: str, paragraphs: tuple[str, ...], correction: str | None) -> str:
    """What a reader sees of a story, hashed: when it changes, the story was corrected."""
    text = "\x00".join((title, *paragraphs, "\x01", correction or ""))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def story_id(key: str) -> str:
    """The public id minted for a new story from its first key: ``uuid.uuid5(ID_NAMESPACE, key)``.

    Spelled out (SHA-1, then the version and variant bits) at a third of uuid5's cost.
    """
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + key.encode("utf-8")).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = raw.hex()
    return f"urn:uuid:{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def slugify(text: str, limit: int = 60) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = "-".join(_NON_WORD.sub(" ", ascii_text.lower()).split())
    return slug[:limit].rstrip("-") or "story"


def story_slug(title: str, public_id: str, stem: str | None = None) -> str:
    """A readable, collision-free file name stem for a story page (``stem``: slugify(title))."""
    return f"{stem if stem is not None else slugify(title)}-{public_id.rsplit('-', 1)[-1][:8]}"


def edition_page(slot: str, created: datetime) -> str:
    """An edition's web page, relative to the output folder: its date, then its slot's hash.

    The mail links it before the page is built, so both sides derive it from what the edition
    row holds: the slot is unique per edition, ``created`` is its local opening time.
    """
    digest = hashlib.sha256(slot.encode()).hexdigest()[:8]
    return f"digests/{created:%Y-%m-%d}-{digest}.html"


def tag_slug(tag: str) -> str:
    """A tag's folder name under tags/: its slug, or (no letters in it) a hash of it. Tags that
    differ only in case, accents kept, or punctuation share one folder and one feed."""
    ascii_text = unicodedata.normalize("NFKD", tag).encode("ascii", "ignore").decode()
    slug = "-".join(_NON_WORD.sub(" ", ascii_text.lower()).split())[:80].rstrip("-")
    if slug and slug.isascii() and len(ascii_text.strip()) * 2 >= len(tag.strip()):
        return slug
    # Mostly not Latin (日本, Ελλάδα): a readable ASCII name would be empty or misleading.
    folded = unicodedata.normalize("NFC", tag.strip().casefold())
    return "tag-" + hashlib.sha256(folded.encode()).hexdigest()[:10]


def tag_page(tag: str) -> str:
    return f"tags/{tag_slug(tag)}/index.html"
