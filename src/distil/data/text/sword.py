"""Bible texts from installed SWORD modules (zText): the King James Bible and the Reina-Valera 1909.

Debian ships both, public domain: ``apt-get install sword-text-kjv sword-text-sparv`` puts them under
``/usr/share/sword/modules/texts/ztext/{engKJV2006eb,spaRV1909eb}/``. They are the offline real text of
the translation (English → Spanish verse pairs) and language-model paths.

The zText format, per testament (``ot``, ``nt``):

* ``.bzs`` — one record per compressed block: ``offset, size, uncompressed size`` (3 × uint32 LE);
* ``.bzz`` — the zlib-compressed blocks, one per book (``BlockType=BOOK``);
* ``.bzv`` — one record per entry of the versification: ``block, start, size`` (uint32, uint32,
  uint16 LE), the entry's bytes inside the decompressed block.

Entries follow the versification: the module and testament headings, then for every book a book heading
and for every chapter a chapter heading followed by its verses. Two modules with the same
versification (both are KJV-versified) therefore have the same entries: entry *i* of one is entry *i*
of the other, which is what makes them parallel. Book and chapter are read from the OSIS markup of the
headings (``<div type="book" osisID=...>``, ``<chapter osisID="Matt.1">``: the chapter's start
milestone sits in its heading entry, with any heading text such as Psalm 119's "ALEPH"); the text of a verse is its
markup with the tags removed and ``<note>`` bodies dropped.
"""

from __future__ import annotations

import html
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from distil.errors import DataError

#: Where Debian's sword-text-* packages install their modules.
SWORD_ROOT = Path("/usr/share/sword/modules/texts/ztext")
#: The two modules distil knows by name, and the Debian package of each.
MODULES = {"kjv": ("engKJV2006eb", "sword-text-kjv"), "rv1909": ("spaRV1909eb", "sword-text-sparv")}

_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_BOOK = re.compile(r'<div\b(?![^>]*\beID=)[^>]*type="book"[^>]*>')  # a book's start (sID), not its end (eID)
_CHAPTER = re.compile(r'<chapter\b[^>]*\bosisID="([^".]+)\.(\d+)"')
_OSIS_ID = re.compile(r'\bosisID="([^"]+)"')


@dataclass(frozen=True)
class Verse:
    """One verse: ``book`` is its OSIS book id (``Gen``, ``Matt``), ``index`` its entry in the versification."""

    book: str
    chapter: int
    verse: int
    text: str
    index: int


def module_folder(module: str | Path) -> Path:
    """A module's folder: a known name (``kjv``, ``rv1909``), a module id under SWORD_ROOT, or a folder path."""
    if isinstance(module, str) and module in MODULES:
        name, package = MODULES[module]
        folder = SWORD_ROOT / name
        if not folder.is_dir():
            raise DataError(f"the SWORD module {name} ({module}) is not installed at {folder}: run `apt-get install -y {package}` (Debian/Ubuntu), or pass the module's folder")
        return folder
    folder = Path(module)
    if not folder.is_absolute() and not folder.exists():
        folder = SWORD_ROOT / folder
    if not folder.is_dir():
        raise DataError(f"SWORD module {module!r}: no folder {folder}; expected a known name ({', '.join(MODULES)}), a module id under {SWORD_ROOT}, or a zText folder")
    return folder


def _entries(folder: Path, testament: str) -> list[str]:
    """Every entry of one testament as decoded markup ('' for empty entries)."""
    try:
        index = (folder / f"{testament}.bzs").read_bytes()
        blob = (folder / f"{testament}.bzz").read_bytes()
        verses = (folder / f"{testament}.bzv").read_bytes()
    except OSError as e:
        raise DataError(f"SWORD module {folder}: cannot read its {testament}.bzs/.bzz/.bzv files ({e}); is it a zText module?") from e
    if len(index) % 12 or len(verses) % 10:
        raise DataError(f"SWORD module {folder}: {testament}.bzs/.bzv have sizes {len(index)}/{len(verses)}, not multiples of 12/10: not a zText module")
    blocks = [struct.unpack_from("<III", index, i) for i in range(0, len(index), 12)]
    decoded: dict[int, bytes] = {}
    out = []
    for i in range(0, len(verses), 10):
        block, start, size = struct.unpack_from("<IIH", verses, i)
        if size == 0:
            out.append("")
            continue
        if block not in decoded:
            if block >= len(blocks):
                raise DataError(f"SWORD module {folder}: entry {i // 10} of {testament} points at block {block} of {len(blocks)}")
            offset, length, _ = blocks[block]
            try:
                decoded[block] = zlib.decompress(blob[offset : offset + length])
            except zlib.error as e:
                raise DataError(f"SWORD module {folder}: block {block} of {testament}.bzz does not decompress ({e})") from e
        out.append(decoded[block][start : start + size].decode("utf-8", errors="replace"))
    return out


def plain_text(markup: str) -> str:
    """A verse's OSIS markup as plain text: notes dropped, tags, paragraph marks (¶) and stray ``\\nd`` markers removed, entities decoded."""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", _NOTE.sub(" ", markup))).replace("¶", " ").replace("\\nd ", "")).strip().replace(" ,", ",").replace(" .", ".").replace(" ;", ";").replace(" :", ":")


def _references(entries: list[str]) -> list[tuple[str, int, int] | None]:
    """(book, chapter, verse) of each entry, None for headings: read from the chapter/book markup."""
    refs: list[tuple[str, int, int] | None] = []
    book, chapter, verse = "", 0, 0
    for markup in entries:
        found = _CHAPTER.search(markup)
        div = _BOOK.search(markup)
        if div and not found:
            ident = _OSIS_ID.search(div.group(0))
            book, chapter, verse = (ident.group(1) if ident else book), 0, 0
            refs.append(None)
        elif found:
            book, chapter, verse = found.group(1), int(found.group(2)), 0
            refs.append(None)
        elif chapter:
            verse += 1
            refs.append((book, chapter, verse))
        else:
            refs.append(None)
    return refs


def read_module(module: str | Path) -> list[Verse]:
    """Every verse of a KJV-versified zText module, in order (Old then New Testament); empty verses kept as ''."""
    folder = module_folder(module)
    out: list[Verse] = []
    offset = 0
    for testament in ("ot", "nt"):
        if not (folder / f"{testament}.bzv").is_file():
            continue
        entries = _entries(folder, testament)
        for i, (markup, ref) in enumerate(zip(entries, _references(entries), strict=True)):
            if ref is not None:
                out.append(Verse(ref[0], ref[1], ref[2], plain_text(markup), offset + i))
        offset += len(entries)
    if not out:
        raise DataError(f"SWORD module {folder}: no verses found (no ot/nt .bzv files, or no chapter markup)")
    return out


def parallel_verses(source: str | Path, target: str | Path) -> list[tuple[Verse, Verse]]:
    """Verse pairs of two modules with the same versification, both sides non-empty, in order.

    Pairs are matched by entry index; the book/chapter/verse of each side must agree, else the modules
    do not share a versification and the error says so.
    """
    a, b = read_module(source), read_module(target)
    by_index = {v.index: v for v in b}
    pairs = []
    for v in a:
        w = by_index.get(v.index)
        if w is None:
            continue
        if (v.chapter, v.verse) != (w.chapter, w.verse):
            raise DataError(f"SWORD modules {source} and {target} do not share a versification: entry {v.index} is {v.book} {v.chapter}:{v.verse} in one and {w.book} {w.chapter}:{w.verse} in the other")
        if v.text and w.text:
            pairs.append((v, w))
    return pairs
