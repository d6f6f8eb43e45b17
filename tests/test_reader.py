"""The seed loader: the shipped example, every accepted variation and every malformed case."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syndicator.errors import InputError, SeedError
from syndicator.model import SeedFile
from syndicator.seeds.parse import parse_seed, read_seed, read_seeds

EXAMPLE_SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_3c621fef12599da2.txt"
ZONE = ZoneInfo("Europe/London")
P = Path("seeds/001_test.txt")


def parse(text: str | bytes):  # type: ignore[no-untyped-def]
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    return parse_seed(raw, P, ZONE)


def error(text: str | bytes) -> SeedError:
    with pytest.raises(SeedError) as info:
        parse(text)
    return info.value


# -- the shipped example ---------------------------------------------------------


def test_example_seed_holds_a_lead_with_six_paragraphs_and_six_briefs() -> None:
    seed = read_seed(EXAMPLE_SEED, ZONE)
    assert len(seed.entries) == 7
    lead, *briefs = seed.entries
    assert lead.is_lead and lead.position == 0 and lead.line == 1
    assert lead.title == "Grozev: Putin Could Accept NATO Expansion in Exchange for U.S. Base Withdrawals"
    assert len(lead.paragraphs) == 6
    assert [p.split()[0] for p in lead.paragraphs] == [
        "Investigative", "According", "Grozev", "Sources", "Grozev", "Grozev"]
    assert lead.paragraphs[-1].endswith("Ukraine’s NATO aspirations.")
    assert [b.title for b in briefs] == [
        "Gazprom Faces $13.1 Billion Loss Amid EU Energy Exports Decline",
        "Rutte: NATO Must Normalize Relations with Russia After War",
        "Russia's Kursk Counteroffensive Gains Momentum as Another Village Is Reclaimed",
        "Lavrov Accuses Ukraine of Lying Over Previous Ceasefires",
        "Ukrainian Drones Strike Key Russian Oil Refinery, Fire Erupts",
        "Putin Aide Claims NATO Provoking Instability in Baltic Region",
    ]
    assert [b.position for b in briefs] == [1, 2, 3, 4, 5, 6]
    assert all(not b.is_lead and len(b.paragraphs) == 1 for b in briefs)
    assert [b.paragraphs[0].split()[0] for b in briefs] == [
        "Russian", "NATO", "Russia", "Russian", "On", "Russian"]
    # The example has no final newline: the last summary is complete anyway.
    assert not EXAMPLE_SEED.read_bytes().endswith(b"\n")
    assert briefs[-1].paragraphs[0].endswith("a threat to Russia’s security.")
    assert lead.id is None and lead.date is None and lead.tags == ()


# -- accepted variations -----------------------------------------------------------

SIMPLE = "Lead title\n\nPara one.\nPara two.\n\nBrief one\nSummary one.\n\nBrief two\nSummary two.\n"


def shape(text: str | bytes) -> list[tuple[str, tuple[str, ...]]]:
    return [(e.title, e.paragraphs) for e in parse(text).entries]


EXPECTED = [
    ("Lead title", ("Para one.", "Para two.")),
    ("Brief one", ("Summary one.",)),
    ("Brief two", ("Summary two.",)),
]


def test_plain_lf_file() -> None:
    assert shape(SIMPLE) == EXPECTED


def test_crlf_line_ends() -> None:
    assert shape(SIMPLE.replace("\n", "\r\n")) == EXPECTED


def test_bom_is_tolerated() -> None:
    entries = parse(b"\xef\xbb\xbf" + SIMPLE.encode()).entries
    assert entries[0].title == "Lead title"  # no U+FEFF glued to the title


def test_bom_before_front_matter() -> None:
    seed = parse(b"\xef\xbb\xbf---\nid: x1\n---\n" + SIMPLE.encode())
    assert seed.entries[0].id == "x1"


def test_no_final_newline() -> None:
    assert shape(SIMPLE.rstrip("\n")) == EXPECTED


def test_body_right_after_the_title_is_accepted() -> None:
    text = "Lead title\nPara one.\nPara two.\n\nBrief one\nSummary one.\n\nBrief two\nSummary two."
    assert shape(text) == EXPECTED


def test_single_line_brief_has_no_summary() -> None:
    entries = parse("Lead\n\nBody.\n\nLonely brief\n\nBrief two\nSummary.\n").entries
    assert [(e.title, e.paragraphs, e.position) for e in entries] == [
        ("Lead", ("Body.",), 0), ("Lonely brief", (), 1), ("Brief two", ("Summary.",), 2)]


def test_title_only_file_is_a_lead_without_body() -> None:
    (lead,) = parse("Just a headline").entries
    assert lead.title == "Just a headline" and lead.paragraphs == () and lead.is_lead


def test_blank_lines_before_the_title_and_extra_blank_lines_between_blocks() -> None:
    text = ("\n\n  \nLead title\n\n\n\nPara one.\nPara two.\n\n\n \t\n"
            "Brief one\nSummary one.\n\nBrief two\nSummary two.")
    assert shape(text) == EXPECTED
    assert parse(text).entries[0].line == 4


def test_line_numbers_point_at_titles() -> None:
    entries = parse("---\nid: a\n---\nLead\n\nBody.\n\nBrief\nSummary.\n").entries
    assert [e.line for e in entries] == [4, 8]


def test_unicode_survives() -> None:
    text = "“Curly” quotes — café, naïve 😀 日本語のニュース\n\nBody with ‘single’ quotes, ß and 中文.\n"
    (lead,) = parse(text).entries
    assert lead.title == "“Curly” quotes — café, naïve 😀 日本語のニュース"
    assert lead.paragraphs == ("Body with ‘single’ quotes, ß and 中文.",)


# -- front matter --------------------------------------------------------------------


def test_front_matter_with_every_known_key() -> None:
    text = (
        "---\n"
        "id: grozev-2025\n"
        "date: 2025-03-14T09:30:00+02:00\n"
        "author: Zoë Ångström\n"
        "url: https://news.example.com/a/1?x=1&y=2\n"
        "tags: politics, économie ,, NATO \n"
        "---\n" + SIMPLE
    )
    seed = parse(text)
    lead = seed.entries[0]
    assert lead.id == "grozev-2025"
    assert lead.date == datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    assert lead.author == "Zoë Ångström"
    assert lead.url == "https://news.example.com/a/1?x=1&y=2"
    assert lead.tags == ("politics", "économie", "NATO")
    assert [(e.title, e.paragraphs) for e in seed.entries] == EXPECTED
    # Front matter belongs to the lead only.
    assert all(b.id is None and b.date is None and b.tags == () for b in seed.entries[1:])


def test_date_with_utc_zone() -> None:
    lead = parse("---\ndate: 2025-03-14T09:30:00Z\n---\nT\n").entries[0]
    assert lead.date == datetime(2025, 3, 14, 9, 30, tzinfo=UTC)


def test_date_without_zone_is_taken_in_the_configured_zone() -> None:
    lead = parse("---\ndate: 2025-07-01T09:30:00\n---\nT\n").entries[0]
    assert lead.date is not None and lead.date.utcoffset() == timedelta(hours=1)  # BST
    assert lead.date.astimezone(UTC) == datetime(2025, 7, 1, 8, 30, tzinfo=UTC)


def test_date_only() -> None:
    lead = parse("---\ndate: 2025-01-02\n---\nT\n").entries[0]
    assert lead.date == datetime(2025, 1, 2, tzinfo=ZONE)


def test_empty_tags_and_blank_lines_inside_front_matter() -> None:
    lead = parse("---\ntags:\n\nauthor: A\n---\nT\n").entries[0]
    assert lead.tags == () and lead.author == "A"


def test_front_matter_with_crlf() -> None:
    lead = parse("---\r\nid: abc\r\ndate: 2025-01-02T03:04:05Z\r\n---\r\nTitle\r\n\r\nBody.\r\n").entries[0]
    assert (lead.id, lead.title, lead.paragraphs) == ("abc", "Title", ("Body.",))


# -- malformed files: each its own message, naming file and line (and key) -----------


def test_empty_file() -> None:
    exc = error(b"")
    assert str(exc) == f"{P}:1: empty file: a seed needs at least a title line"


def test_bom_only_file_is_empty() -> None:
    assert "empty file" in str(error(b"\xef\xbb\xbf"))


def test_only_blank_lines() -> None:
    exc = error("\n   \n\t\n\n")
    assert str(exc) == f"{P}:1: only blank lines: a seed needs at least a title line"


def test_front_matter_but_no_story() -> None:
    exc = error("---\nid: a\n---\n\n")
    assert str(exc).startswith(f"{P}:4: no story after the front matter")


def test_binary_file() -> None:
    exc = error(b"Title\n\nBody\x00\x01\x02 more\n")
    assert str(exc) == f"{P}:3: binary file (NUL byte): seeds must be UTF-8 text"


def test_not_utf8() -> None:
    exc = error("Title\n\nCaf\u00e9\n".encode("latin-1"))
    assert str(exc) == f"{P}:3: not valid UTF-8 (byte 0xe9 at offset 10)"


def test_utf16_file_is_not_utf8() -> None:
    exc = error("Title\n".encode("utf-16"))
    assert str(exc).startswith(f"{P}:1: ")
    assert "UTF-8" in exc.message


def test_unknown_front_matter_key() -> None:
    exc = error("---\nid: a\nsubtitle: nope\n---\nT\n")
    assert (exc.line, exc.key) == (3, "subtitle")
    assert str(exc) == (f"{P}:3: subtitle: unknown front matter key "
                        "(known: id, date, author, url, tags, correction)")


def test_duplicate_front_matter_key() -> None:
    exc = error("---\ntags: a\nauthor: x\ntags: b\n---\nT\n")
    assert str(exc) == f"{P}:4: tags: front matter key given twice"


@pytest.mark.parametrize("value", ["yesterday", "2025-13-01", "14/03/2025", "2025-03-14T25:00"])
def test_bad_date(value: str) -> None:
    exc = error(f"---\nid: a\ndate: {value}\n---\nT\n")
    assert str(exc) == f"{P}:3: date: not an ISO 8601 date: {value!r}"


@pytest.mark.parametrize("value", [
    "example.org/story", "/relative/path", "ftp://example.org/x", "javascript:alert(1)",
    "https://example.org/a b", "https://example.org/\x01x", "https://",
])
def test_bad_url(value: str) -> None:
    exc = error(f"---\nurl: {value}\n---\nT\n")
    assert (exc.line, exc.key) == (2, "url")
    assert str(exc).startswith(f"{P}:2: url: not an absolute http(s) URL")


def test_empty_value() -> None:
    assert str(error("---\nauthor:\n---\nT\n")) == f"{P}:2: author: empty value"


def test_front_matter_line_without_colon() -> None:
    exc = error("---\nid: a\njust words\n---\nT\n")
    assert str(exc) == f"{P}:3: front matter line is not 'key: value': 'just words'"


def test_unclosed_front_matter() -> None:
    exc = error("---\nid: a\nTitle\n\nBody\n")
    assert str(exc) == f"{P}:1: front matter opened with '---' is never closed"


# -- folders -------------------------------------------------------------------------


def test_missing_seeds_folder(tmp_path: Path) -> None:
    with pytest.raises(SeedError) as info:
        read_seeds(tmp_path / "nope", ZONE)
    assert info.value.key == "paths.seeds"
    assert str(info.value) == f"{tmp_path / 'nope'}: paths.seeds: seeds folder not found"


def test_seeds_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "seeds").write_text("x")
    with pytest.raises(SeedError, match="seeds folder is not a folder"):
        read_seeds(tmp_path / "seeds", ZONE)


def test_empty_seeds_folder(tmp_path: Path) -> None:
    files, errors = read_seeds(tmp_path, ZONE)
    assert files == []
    assert [str(e) for e in errors] == [f"{tmp_path}: no seed files (*.txt) in the seeds folder"]


def test_read_seeds_reports_every_bad_file_and_keeps_the_good_ones(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Good\n\nBody.\n")
    (tmp_path / "b.txt").write_bytes(b"")
    (tmp_path / "c.txt").write_text("---\nwho: x\n---\nT\n")
    (tmp_path / "d.md").write_text("")  # not a seed: ignored
    (tmp_path / "e.txt").write_text("Also good\n")
    files, errors = read_seeds(tmp_path, ZONE)
    assert [f.path.name for f in files] == ["a.txt", "e.txt"]
    assert [str(e) for e in errors] == [
        f"{tmp_path / 'b.txt'}:1: empty file: a seed needs at least a title line",
        f"{tmp_path / 'c.txt'}:2: who: unknown front matter key "
        "(known: id, date, author, url, tags, correction)",
    ]


def test_files_are_read_in_name_order(tmp_path: Path) -> None:
    for name in ("010_b.txt", "002_c.txt", "100_a.txt"):
        (tmp_path / name).write_text(f"Story {name}\n")
    files, errors = read_seeds(tmp_path, ZONE)
    assert not errors
    assert [f.path.name for f in files] == ["002_c.txt", "010_b.txt", "100_a.txt"]


# -- the parsed-seed cache ------------------------------------------------------------------------


def _cached(seeds: Path, zone: ZoneInfo, cache: Path) -> tuple[list[SeedFile], list[InputError]]:
    """A read through the cache that then saves it, as a successful build does."""
    files, errors = read_seeds(seeds, zone, cache)
    files.save_cache()
    return list(files), errors


def _old(path: Path, seconds: int = 60) -> None:
    """Back-date a file's mtime: files touched within the last moments are never cached."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 1_000_000_000))


def test_seed_cache_gives_what_parsing_gives_and_sees_edits(tmp_path: Path) -> None:
    seeds, cache = tmp_path / "seeds", tmp_path / "state" / "seeds"
    seeds.mkdir()
    dated = seeds / "a.txt"
    dated.write_text("---\nid: x1\ndate: 2024-03-01T10:00\nauthor: A\ntags: t1, t2\n---\n"
                     "Lead title\n\nBody one.\nBody two.\n\nBrief\nIts summary.\n")
    zoned = seeds / "b.txt"
    zoned.write_text("---\ndate: 2024-03-01T10:00:00+05:00\nurl: https://example.org/x\n---\nOther lead\n")
    for path in (dated, zoned):
        _old(path)
    plain, errors = read_seeds(seeds, ZONE)
    first, _ = _cached(seeds, ZONE, cache)
    assert len(list(cache.glob("*.bin"))) == 2 and not errors  # a shard per file here
    cached, errors = _cached(seeds, ZONE, cache)
    assert not errors
    assert plain == first == cached
    assert [e.keys for f in cached for e in f.entries] == [e.keys for f in plain for e in f.entries]
    assert cached[0].entries[0].date == datetime(2024, 3, 1, 10, 0, tzinfo=ZONE)
    assert cached[0].entries[0].date.tzinfo is ZONE

    # An edit of the same size, with an mtime of its own, is read again.
    st = dated.stat()
    dated.write_text(dated.read_text().replace("Body one.", "Body 1ne."))
    os.utime(dated, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    again, _ = _cached(seeds, ZONE, cache)
    assert again[0].entries[0].paragraphs == ("Body 1ne.", "Body two.")
    # A seed that no longer parses is reported, never served from the cache.
    dated.write_text("---\nbogus: 1\n---\nTitle\n")
    files, errors = _cached(seeds, ZONE, cache)
    assert [f.path.name for f in files] == ["b.txt"] and len(errors) == 1


def test_corrupt_or_foreign_seed_cache_is_ignored(tmp_path: Path) -> None:
    seeds, cache = tmp_path / "seeds", tmp_path / "cache"
    seeds.mkdir()
    seed = seeds / "a.txt"
    seed.write_text("Lead title\n\nBody.\n")
    _old(seed)
    expected, _ = read_seeds(seeds, ZONE)
    _cached(seeds, ZONE, cache)
    (shard,) = cache.glob("*.bin")
    good = shard.read_bytes()
    # A flipped byte in the payload (here inside the cached title): the digest no longer matches.
    at = good.index(b"Lead title")
    shard.write_bytes(good[:at] + b"X" + good[at + 1:])
    assert _cached(seeds, ZONE, cache)[0] == expected
    for junk in (b"", b"not a cache", good[:len(good) // 2]):
        shard.write_bytes(junk)
        assert _cached(seeds, ZONE, cache)[0] == expected
    # Another zone: the cache is not used (a date without a zone would mean another instant).
    shard.write_bytes(good)
    other = ZoneInfo("America/New_York")
    assert _cached(seeds, other, cache)[0] == read_seeds(seeds, other)[0]


def test_one_changed_seed_rewrites_one_shard_and_a_removed_seed_leaves_it(tmp_path: Path) -> None:
    seeds, cache = tmp_path / "seeds", tmp_path / "cache"
    seeds.mkdir()
    for n in range(200):
        (seeds / f"{n:03d}.txt").write_text(f"Lead {n}\n\nBody {n}.\n")
        _old(seeds / f"{n:03d}.txt")
    _cached(seeds, ZONE, cache)
    for shard in cache.glob("*.bin"):  # an old mtime: a rewritten shard shows, however fast the test
        os.utime(shard, ns=(0, 0))
    before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.bin")}
    assert len(before) > 32  # 200 names spread over the shards
    edited = seeds / "007.txt"
    edited.write_text("Lead seven, edited\n\nBody.\n")
    _old(edited)
    files, _ = _cached(seeds, ZONE, cache)
    after = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.bin")}
    assert sorted(name for name in after if after[name] != before[name]) == [_shard_name("007.txt")]
    assert files[7].entries[0].title == "Lead seven, edited"
    # Served from the cache now, edit included; then a removed seed is forgotten.
    assert _cached(seeds, ZONE, cache)[0] == read_seeds(seeds, ZONE)[0]
    edited.unlink()
    files, _ = _cached(seeds, ZONE, cache)
    assert len(files) == 199 and "007.txt" not in {f.path.name for f in files}
    assert _cached(seeds, ZONE, cache)[0] == read_seeds(seeds, ZONE)[0]


def _shard_name(seed: str) -> str:
    import zlib

    return f"{zlib.crc32(seed.encode()) % 64:02x}.bin"


def test_seed_cache_skips_files_modified_just_now(tmp_path: Path) -> None:
    seeds, cache = tmp_path / "seeds", tmp_path / "cache"
    seeds.mkdir()
    seed = seeds / "a.txt"
    seed.write_text("Lead title\n")
    _cached(seeds, ZONE, cache)
    # Rewritten in the same mtime tick with the same size: still read again, never stale.
    st = seed.stat()
    seed.write_text("Lead TITLE\n")
    os.utime(seed, ns=(st.st_atime_ns, st.st_mtime_ns))
    files, _ = _cached(seeds, ZONE, cache)
    assert files[0].entries[0].title == "Lead TITLE"


def test_seed_cache_after_a_forked_parse_is_the_one_a_single_process_saves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeds parsed by a forked child are cached in the form the child sent them (not frozen
    again here): the same cache files, byte for byte, and the same seeds read back."""
    from syndicator import forked
    from syndicator.seeds import cache as cache_mod

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for n in range(9):
        head = (f"---\nid: s{n}\ndate: 2024-03-0{n % 9 + 1}T10:00\nauthor: A{n}\ntags: t{n}, u\n---\n"
                if n % 2 else "")
        (seeds / f"{n:02d}.txt").write_text(f"{head}Lead {n}\n\nBody {n}.\n\nBrief {n}\nIts summary {n}.\n")
        _old(seeds / f"{n:02d}.txt")
    single, _ = _cached(seeds, ZONE, tmp_path / "single")
    monkeypatch.setattr(forked, "workers", lambda: 2)
    monkeypatch.setattr(cache_mod, "_FORK_FROM", 1)
    sent: list[int] = []
    real = cache_mod._thaw

    def thaw(path: Path, frozen: object, zone: ZoneInfo) -> SeedFile:
        sent.append(1)
        return real(path, frozen, zone)

    frozen_here: list[int] = []
    real_freeze = cache_mod._freeze

    def freeze(seed: SeedFile) -> tuple[object, ...]:
        frozen_here.append(os.getpid())
        return real_freeze(seed)

    monkeypatch.setattr(cache_mod, "_thaw", thaw)
    monkeypatch.setattr(cache_mod, "_freeze", freeze)
    shared, _ = _cached(seeds, ZONE, tmp_path / "forked")
    assert len(sent) == 4  # the child's share (every second seed) came back frozen
    assert frozen_here.count(os.getpid()) == 5  # only this process's own share frozen here
    files = sorted(p.name for p in (tmp_path / "single").glob("*.bin"))
    assert files and files == sorted(p.name for p in (tmp_path / "forked").glob("*.bin"))
    for name in files:
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "forked" / name).read_bytes()
    again, _ = _cached(seeds, ZONE, tmp_path / "forked")  # every seed from the cache now
    assert again == shared == single
