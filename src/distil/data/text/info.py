""":class:`TextInfo`: what a text dataset carries besides its token tensors (``Dataset.text``).

The tokenizer that made the ids (spec, folder, sha256 of tokenizer.json), so a model, a transfer set
and the server tokenize the same way; the vocabulary and how often each token occurs in the
labelled training pool; how many sentences were cut; a few raw test sentences.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from distil.data.text.tokenizer import TextTokenizer
from distil.errors import DataError

#: Abbreviations that keep their period (Penn Treebank style); any other period stands alone.
ABBREVIATIONS = (
    "Mr Mrs Ms Dr Prof Sr Jr St Mt Gen Gov Sen Rep Rev Capt Col Lt Sgt Co Corp Inc Ltd Bros vs etc "
    "Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Ave Blvd Rd No Fig"
).split()
#: Words and punctuation marks, Penn Treebank-style enough for a tagger trained on PTB tags: "don't" ->
#: "do", "n't"; "it's" -> "it", "'s"; "U.S.", "Mr.", "3.5" and "co-op" stay whole; "--" and "..." are
#: one token; other punctuation, a sentence's final period included, stands alone.
WORD = re.compile(
    r"(?:[A-Za-z]\.){2,}|(?:" + "|".join(ABBREVIATIONS) + r")\.(?=\s)|\d+(?:[.,:/]\d+)*|\w+(?=n't\b)|n't\b|\w+(?:-\w+)*|'\w+|-{2,}|\.{2,}|[^\w\s]"
)


def split_words(text: str) -> list[str]:
    """``text`` as the words a tagger tags (see :data:`WORD`)."""
    return WORD.findall(text)


@dataclass(frozen=True, eq=False)
class WordEncoding:
    """A sentence for a tagger: ``ids`` int64 ``(1, L)``, its ``words`` and, for each, the token index
    (``positions``) whose logits tag it: ``tags[i] = class_names[logits[0, positions[i]].argmax()]``."""

    ids: torch.Tensor
    words: list[str]
    positions: list[int]


#: ``TextInfo.task``: a label per text, or a tag per word.
TASKS = ("classify", "tag")


@dataclass(frozen=True, eq=False)
class TextInfo:
    """The tokenization of a text dataset.

    ``tokenizer``: the spec as given (``"minilm"``, ``"hf:PATH"``, a folder); ``tokenizer_dir``: the
    folder it resolved to; ``tokenizer_sha256``: sha256 of its tokenizer.json. ``special_ids``: role
    (pad, unk, cls, sep, mask) -> id, or None where the vocabulary has none. ``token_counts``: int64
    ``(vocab_size,)``, occurrences of each id in the labelled training pool (train + val, padding not
    counted) — the same for every validation seed. ``truncated``: split -> sentences cut at
    ``max_length``. ``examples``: the first test sentences as text; ``median_test_length``: the median
    test sentence's length in tokens; ``typical_sentence``: that sentence, as text (what the table's
    latencies are timed on, with and without tokenization; see ``distil.data.tokens.typical_row``). ``tokens_file``: the cache
    file of the ids; ``tokens_cached``: whether this load read it rather than tokenizing. ``task``:
    ``"classify"`` (a label per sentence) or ``"tag"`` (a tag per word, :mod:`distil.data.text.tagging`);
    ``untagged_words``: for tagging, split -> words lost to ``max_length`` (not tagged, not scored).
    """

    tokenizer: str
    tokenizer_dir: str
    tokenizer_sha256: str
    vocab_size: int
    max_length: int
    special_ids: dict[str, int | None]
    token_counts: torch.Tensor
    truncated: dict[str, int]
    examples: tuple[str, ...] = ()
    median_test_length: int = 0
    typical_sentence: str = ""
    tokens_file: str = ""
    tokens_cached: bool = False
    task: str = "classify"
    untagged_words: dict[str, int] | None = None

    @cached_property
    def loaded_tokenizer(self) -> TextTokenizer:
        """The tokenizer itself (loaded on first use, then kept), checked to be the one that made the ids.

        DataError when ``tokenizer_dir`` is gone or its tokenizer.json changed since the data were tokenized.
        """
        folder = Path(self.tokenizer_dir)
        if not (folder / "tokenizer.json").is_file():
            raise DataError(f"the tokenizer of this dataset ({self.tokenizer!r}) is gone: {folder} has no tokenizer.json")
        tokenizer = TextTokenizer(self.tokenizer, folder, self.max_length)
        if tokenizer.sha256 != self.tokenizer_sha256:
            raise DataError(
                f"{folder / 'tokenizer.json'} changed since the data were tokenized (sha256 {tokenizer.sha256[:12]}…, "
                f"expected {self.tokenizer_sha256[:12]}…); load the data again"
            )
        return tokenizer

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``texts`` as int64 ids ``(N, L)`` right-padded with 0, cut at ``max_length``, like the dataset's."""
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        return self.loaded_tokenizer.encode(list(texts)).ids

    def encode_words(self, text: str) -> WordEncoding:
        """One raw sentence for a tagger: split into words (:func:`split_words`), tokenized as those
        words, and the token position whose output tags each word (its first piece). Words cut by
        ``max_length`` are left out of ``words`` and ``positions``."""
        words = split_words(text)
        if not words:
            raise DataError("the text holds no word to tag")
        encoded = self.loaded_tokenizer.encode_words([words])
        positions = encoded.first_pieces()[0].nonzero().flatten().tolist()
        kept = [words[int(encoded.word_of[0, p])] for p in positions]
        return WordEncoding(encoded.ids, kept, positions)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Rows of token ids back to text (special tokens and padding dropped): for reports and logs."""
        return self.loaded_tokenizer.decode(ids)

    def model_args(self) -> dict[str, Any]:
        """What a text model's factory may take from the data: vocabulary size, token counts, tokenizer folder, task."""
        return {"vocab_size": self.vocab_size, "token_counts": self.token_counts, "tokenizer_dir": self.tokenizer_dir, "task": self.task}

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (part of ``Dataset.describe()``)."""
        summary: dict[str, Any] = {
            "tokenizer": self.tokenizer,
            "tokenizer_dir": self.tokenizer_dir,
            "tokenizer_sha256": self.tokenizer_sha256,
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "special_ids": dict(self.special_ids),
            "truncated": dict(self.truncated),
            "median_test_length": self.median_test_length,
            "task": self.task,
        }
        if self.tokens_file:
            summary["tokens"] = f"{'read from the cache' if self.tokens_cached else 'tokenized and cached in'} {self.tokens_file}"
        if self.untagged_words is not None:
            summary["untagged_words"] = dict(self.untagged_words)
        cut = sum(self.truncated.values())
        if cut:
            per_split = ", ".join(f"{n} in {split}" for split, n in self.truncated.items() if n)
            summary["truncation"] = (
                f"{cut} sentences longer than {self.max_length} tokens were cut to {self.max_length} ({per_split}); raise data.max_length to keep more"
            )
        return summary
