"""The SWORD zText reader on the installed KJV and Reina-Valera 1909 modules (Debian sword-text-kjv/-sparv)."""

import struct
import zlib

import pytest

from distil.data.text.sword import parallel_verses, plain_text, read_module
from distil.errors import DataError


def test_kjv_has_every_verse_of_its_versification_in_order():
    kjv = read_module("kjv")
    assert len(kjv) == 31102  # the KJV versification: 23,145 OT + 7,957 NT verses
    assert len({v.book for v in kjv}) == 66
    assert (kjv[0].book, kjv[0].chapter, kjv[0].verse) == ("Gen", 1, 1)
    assert kjv[0].text == "In the beginning God created the heaven and the earth."
    last = kjv[-1]
    assert (last.book, last.chapter, last.verse, last.text) == ("Rev", 22, 21, "The grace of our Lord Jesus Christ be with you all. Amen.")
    psalm119 = [v for v in kjv if v.book == "Ps" and v.chapter == 119]
    assert len(psalm119) == 176  # its heading entry holds "ALEPH": still a heading, not a verse
    assert not any("<" in v.text or "¶" in v.text or "\\" in v.text for v in kjv)


def test_parallel_pairs_line_up_by_reference():
    pairs = parallel_verses("kjv", "rv1909")
    assert len(pairs) == 31084  # both sides non-empty
    en, es = pairs[0]
    assert (en.book, en.chapter, en.verse) == (es.book, es.chapter, es.verse) == ("Gen", 1, 1)
    assert es.text == "EN el principio crió Dios los cielos y la tierra."
    john = next((a, b) for a, b in pairs if (a.book, a.chapter, a.verse) == ("John", 11, 35))
    assert john[0].text == "Jesus wept." and john[1].text.startswith("Y lloró Jesús")


def test_plain_text_drops_notes_and_tags():
    markup = '<w lemma="strong:G1">In</w> the <note type="x-study">a note</note>beginning <transChange type="added">was</transChange> &amp; ¶ end .'
    assert plain_text(markup) == "In the beginning was & end."


def test_not_a_module_says_what_was_expected(tmp_path):
    with pytest.raises(DataError, match="no folder"):
        read_module(tmp_path / "missing")
    (tmp_path / "ot.bzs").write_bytes(b"x" * 5)
    (tmp_path / "ot.bzz").write_bytes(b"")
    (tmp_path / "ot.bzv").write_bytes(b"")
    with pytest.raises(DataError, match="not a zText module"):
        read_module(tmp_path)


def test_a_corrupt_block_is_a_data_error(tmp_path):
    (tmp_path / "ot.bzs").write_bytes(struct.pack("<III", 0, 4, 10))
    (tmp_path / "ot.bzz").write_bytes(b"nope")
    (tmp_path / "ot.bzv").write_bytes(struct.pack("<IIH", 0, 0, 3))
    with pytest.raises(DataError, match="does not decompress"):
        read_module(tmp_path)
    good = zlib.compress(b'<chapter osisID="Gen.1" sID="Gen.1"/>In the beginning.')
    (tmp_path / "ot.bzs").write_bytes(struct.pack("<III", 0, len(good), 52))
    (tmp_path / "ot.bzz").write_bytes(good)
    (tmp_path / "ot.bzv").write_bytes(struct.pack("<IIH", 0, 0, 37) + struct.pack("<IIH", 0, 37, 17))
    [verse] = read_module(tmp_path)
    assert (verse.book, verse.chapter, verse.verse, verse.text) == ("Gen", 1, 1, "In the beginning.")
