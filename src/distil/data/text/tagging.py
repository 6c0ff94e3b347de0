"""Sequence labelling data: sentences of words with a tag per word, tokenized into tag-per-token splits.

A tagging loader returns :class:`~distil.data.raw.RawTagged` (words and tag ids per sentence). Here the
words are tokenized as they are (pre-tokenized: the tokenizer may cut a word into several pieces but
never joins two) and every split becomes ``x`` int64 ``(N, L)`` token ids, right-padded with 0, and
``y`` int64 ``(N, L)``: the word's tag at the **first** piece of each word (Hugging Face's convention)
and :data:`~distil.data.tokens.IGNORE` at every other position ([CLS], [SEP], later pieces, padding).

The first piece, not the last: data tokenized differently from the training data still tag right.
The OANC training file splits abbreviations ("Mr ." — the period a word of its own, tagged "."),
WSJ keeps them whole ("Mr."); at the last piece a tagger trained on OANC tags WSJ's "Mr." at a period
(1.6 % of WSJ words wrong for that alone, in one exploratory run), at the first piece it tags "mr". The price is
paid by a one-direction student, which tags a word before it has read the word's later pieces
("-ing", "-ly"; 11 % of WSJ words are several pieces with the MiniLM tokenizer): its ``delay``
(:mod:`distil.models.text_taggers`) lets it read ahead.

``TextInfo.task`` is ``"tag"``; accuracy is token (word) accuracy: the share of tagged positions whose
top class is the tag. Words a sentence loses to ``max_length`` are not tagged and are counted in
``TextInfo.truncated`` (sentences) and ``TextInfo.untagged_words``.

Files of your own (:func:`read_tagged`): ``word/TAG`` tokens separated by spaces, one sentence per line
(the Brown/Penn "slash" format of the built-in corpora), or CoNLL columns (``word<TAB>TAG`` per line,
sentences separated by blank lines; the tag is the last column).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from distil.data.raw import RawTagged
from distil.data.split import Dataset, Split
from distil.data.text.build import EXAMPLES, token_dataset
from distil.data.text.files import decode, read_bytes
from distil.data.text.tokenizer import load_tokenizer
from distil.data.tokens import IGNORE, trim, typical_row
from distil.errors import DataError

FORMATS = ("slash", "conll")


def read_tagged(file: Path, fmt: str = "auto") -> tuple[list[list[str]], list[list[str]]]:
    """Words and tags of every sentence in ``file`` (``fmt``: ``slash``, ``conll`` or ``auto``).

    ``auto`` takes CoNLL when any non-empty line has a tab, else slash. A token without a tag, or a
    file without a sentence, is a DataError naming the line.
    """
    if fmt not in (*FORMATS, "auto"):
        raise DataError(f"{file}: format must be one of auto, {', '.join(FORMATS)}; got {fmt!r}")
    text = decode(file, read_bytes(file, "a tagged text file (word/TAG tokens, one sentence per line, or CoNLL columns)"))
    lines = text.splitlines()
    if fmt == "auto":
        fmt = "conll" if any("\t" in line for line in lines if line.strip()) else "slash"
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    if fmt == "slash":
        for number, line in enumerate(lines, start=1):
            pairs = [token.rpartition("/") for token in line.split()]
            if not pairs:
                continue
            bad = next((w + s + t for w, s, t in pairs if not s or not w or not t), None)
            if bad is not None:
                raise DataError(f"line {number} of {file}: token {bad!r} is not word/TAG")
            sentences.append([w for w, _, _ in pairs])
            tags.append([t for _, _, t in pairs])
    else:
        words: list[str] = []
        labels: list[str] = []
        for number, line in enumerate([*lines, ""], start=1):
            if not line.strip():
                if words:
                    sentences.append(words)
                    tags.append(labels)
                words, labels = [], []
                continue
            columns = line.split("\t") if "\t" in line else line.split()
            if len(columns) < 2 or not columns[0].strip() or not columns[-1].strip():
                raise DataError(f"line {number} of {file}: expected a word and its tag separated by a tab, got {line[:80]!r}")
            words.append(columns[0].strip())
            labels.append(columns[-1].strip())
    if not sentences:
        raise DataError(f"{file} holds no tagged sentence; expected word/TAG tokens, one sentence per line, or CoNLL columns")
    return sentences, tags


def tag_ids(tags: Sequence[Sequence[str]], names: Sequence[str]) -> list[np.ndarray]:
    """Tag strings as int64 arrays of indices into ``names``."""
    index = {t: i for i, t in enumerate(names)}
    return [np.fromiter((index[t] for t in sentence), dtype=np.int64, count=len(sentence)) for sentence in tags]


def tagged_dataset(
    name: str,
    raw: RawTagged,
    train_index: np.ndarray,
    val_index: np.ndarray,
    test_index: np.ndarray | None,
    *,
    tokenizer: str | None,
    max_length: int,
    source: str,
) -> Dataset:
    """The splits of ``raw`` at the given indices (``test_index`` None: the source's own test sentences), tokenized."""
    tok = load_tokenizer(tokenizer, max_length)
    sentences = list(raw.train_words) + list(raw.test_words or ())
    tags = list(raw.train_tags) + list(raw.test_tags or ())
    encoded = tok.encode_words(sentences)
    tagged_at = encoded.first_pieces()
    y = torch.full_like(encoded.ids, IGNORE)
    rows, cols = tagged_at.nonzero(as_tuple=True)
    words = encoded.word_of[rows, cols]
    flat = torch.from_numpy(np.concatenate(tags)) if tags else torch.zeros(0, dtype=torch.int64)
    starts = torch.tensor([0, *np.cumsum([len(t) for t in tags])[:-1].tolist()], dtype=torch.int64)
    y[rows, cols] = flat[starts[rows] + words]
    n = len(raw.train_words)
    if test_index is None:
        test_rows = torch.arange(n, len(sentences))
        pool = torch.arange(n)
    else:
        test_rows = torch.from_numpy(test_index)
        pool = torch.from_numpy(np.sort(np.concatenate([train_index, val_index])))
    index = {"train": torch.from_numpy(train_index), "val": torch.from_numpy(val_index), "test": test_rows}
    splits = {}
    for split, at in index.items():
        x = trim(encoded.ids[at]).contiguous()
        splits[split] = Split(x, y[at][:, : x.shape[1]].contiguous())
    word_counts = torch.tensor([len(s) for s in sentences])
    tagged = tagged_at.sum(1)
    return token_dataset(
        name,
        splits,
        raw.class_names,
        tok=tok,
        pool_ids=encoded.ids[pool],
        source=source,
        truncated={split: int(encoded.truncated[at].sum()) for split, at in index.items()},
        examples=tuple(" ".join(sentences[int(i)]) for i in test_rows[:EXAMPLES]),
        typical_sentence=" ".join(sentences[int(test_rows[typical_row(splits["test"].x)])]),
        task="tag",
        untagged_words={split: int((word_counts[at] - tagged[at]).sum()) for split, at in index.items()},
    )


def check_raw_tagged(name: str, raw: RawTagged) -> None:
    """A tagging loader's output must be consistent; a user's loader gets told exactly what is not."""
    who = f"the loader of dataset {name!r}"
    if len(raw.class_names) < 1 or not all(isinstance(c, str) for c in raw.class_names):
        raise DataError(f"{who} returned class_names={raw.class_names!r}; expected a non-empty tuple of tag names")
    if (raw.test_words is None) != (raw.test_tags is None):
        raise DataError(f"{who} returned only one of test_words and test_tags; give both or neither")
    for split, words, tags in (("train", raw.train_words, raw.train_tags), ("test", raw.test_words, raw.test_tags)):
        if words is None:
            continue
        if not len(words) or len(words) != len(tags):
            raise DataError(f"{who}: {split}_words has {len(words)} sentences and {split}_tags {len(tags)}; expected as many, at least one")
        for i, (w, t) in enumerate(zip(words, tags)):
            if not len(w) or len(w) != len(t):
                raise DataError(f"{who}: {split} sentence {i} has {len(w)} words and {len(t)} tags; expected one tag per word, at least one word")
            if not all(isinstance(word, str) and word.strip() for word in w):
                raise DataError(f"{who}: {split} sentence {i} has a word that is not a non-empty string: {list(w)[:10]!r}")
            out = [int(v) for v in np.asarray(t) if not 0 <= int(v) < len(raw.class_names)]
            if out:
                raise DataError(f"{who}: {split} sentence {i} has tags {out[:5]} outside 0..{len(raw.class_names) - 1}")
