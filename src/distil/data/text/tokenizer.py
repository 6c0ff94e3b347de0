"""The tokenizer of a text dataset: a Hugging Face ``tokenizer.json`` run by the ``tokenizers`` library.

:func:`load_tokenizer` finds the folder (``"minilm"``, ``"hf:PATH"`` or a folder, through
:func:`distil.pretrained.pretrained_folder`), switches off the padding the file may carry and
truncates at ``max_length`` tokens (special tokens included). :meth:`TextTokenizer.encode` turns a
list of sentences into one int64 ``(N, L)`` tensor right-padded with :data:`~distil.data.tokens.PAD_ID`,
``L`` the longest sentence kept, and says which sentences were cut.

A tokenizer is identified by the sha256 of its ``tokenizer.json`` bytes: that and ``max_length``
decide the ids, so they key the token cache (:mod:`distil.data.text.cache`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distil.data.tokens import PAD_ID
from distil.errors import DataError
from distil.pretrained import PretrainedError, pretrained_folder

#: The tokenizer of text data when none is named.
DEFAULT_TOKENIZER = "minilm"
#: The default and the smallest accepted ``max_length`` (tokens per sentence, special tokens included).
DEFAULT_MAX_LENGTH = 128
MIN_MAX_LENGTH = 8
#: Sentences handed to the Rust tokenizer at once: large enough to use its threads, small enough that
#: the per-sentence Encoding objects of one chunk stay a few MB.
ENCODE_CHUNK = 4096

#: role -> the token strings that play it in BERT-style and RoBERTa/SentencePiece-style vocabularies,
#: used when the folder has no special_tokens_map.json naming them.
SPECIAL_TOKENS: dict[str, tuple[str, ...]] = {
    "pad": ("[PAD]", "<pad>"),
    "unk": ("[UNK]", "<unk>"),
    "cls": ("[CLS]", "<s>"),
    "sep": ("[SEP]", "</s>"),
    "mask": ("[MASK]", "<mask>"),
}


@dataclass(frozen=True, eq=False)
class Encoded:
    """Token ids ``(N, L)`` int64, right-padded with 0, and which rows were cut at ``max_length`` (bool ``(N,)``)."""

    ids: torch.Tensor
    truncated: torch.Tensor


@dataclass(frozen=True, eq=False)
class EncodedWords:
    """Pre-tokenized sentences as ids ``(N, L)``, the word each token belongs to (``word_of``, -1 for
    special tokens and padding) and which rows were cut at ``max_length``."""

    ids: torch.Tensor
    word_of: torch.Tensor
    truncated: torch.Tensor

    def first_pieces(self) -> torch.Tensor:
        """bool ``(N, L)``: the first token of each word — where a tagger's output tags the word."""
        previous = torch.nn.functional.pad(self.word_of[:, :-1], (1, 0), value=-1)
        return (self.word_of >= 0) & (previous != self.word_of)


class TextTokenizer:
    """A ``tokenizer.json`` with padding off and truncation at ``max_length``; see the module doc.

    Attributes: ``spec`` (as the user named it), ``folder``, ``sha256`` (of tokenizer.json),
    ``max_length``, ``vocab_size`` (added tokens included) and ``special_ids`` (role -> id or None).
    """

    def __init__(self, spec: str, folder: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        file = folder / "tokenizer.json"
        data = file.read_bytes()
        try:
            tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as error:  # noqa: BLE001  tokenizers raises plain Exception for a malformed file
            raise DataError(
                f"{file}: cannot be read as a Hugging Face tokenizer.json ({error}); expected the file a `tokenizers` tokenizer saves"
            ) from None
        self.special_ids = _special_ids(tokenizer, folder)  # before padding is switched off: it may name the pad id
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length)
        self.spec = spec
        self.folder = folder
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.max_length = max_length
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self._tokenizer = tokenizer
        pad = self.special_ids["pad"]
        if pad is not None and pad != PAD_ID:
            raise DataError(
                f"tokenizer {spec!r} ({file}) pads with id {pad}, but distil's token tensors are padded with id {PAD_ID} "
                "(models find their mask as x != 0); use a tokenizer whose padding token has id 0 (BERT/WordPiece ones do)"
            )

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Token id rows (padding and special tokens dropped) back to text, as the tokenizer joins pieces."""
        rows = [[int(t) for t in row if int(t) != PAD_ID] for row in ids.tolist()]
        return self._tokenizer.decode_batch(rows, skip_special_tokens=True)

    def encode(self, texts: Sequence[str]) -> Encoded:
        """``texts`` as ids ``(N, L)`` right-padded with 0, cut at ``max_length``; which rows were cut."""
        rows: list[list[int]] = []
        cut = np.zeros(len(texts), dtype=bool)
        for start in range(0, len(texts), ENCODE_CHUNK):
            for i, encoding in enumerate(self._tokenizer.encode_batch(list(texts[start : start + ENCODE_CHUNK])), start=start):
                rows.append(encoding.ids)
                cut[i] = bool(encoding.overflowing)
        sizes = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        ids = np.zeros((len(rows), max(1, int(sizes.max(initial=0)))), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
        kept = np.arange(ids.shape[1]) < sizes[:, None]
        if (ids[kept] == PAD_ID).any():
            row = int(np.nonzero((ids == PAD_ID) & kept)[0][0])
            raise DataError(
                f"tokenizer {self.spec!r} ({self.folder}) gives id {PAD_ID} to a real token (in {texts[row][:80]!r}); "
                f"distil reserves id {PAD_ID} for padding: use a tokenizer whose padding token has id 0"
            )
        return Encoded(torch.from_numpy(ids), torch.from_numpy(cut))

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> EncodedWords:
        """Sentences given as words (pre-tokenized) as ids ``(N, L)``, like :meth:`encode`, and for each
        token the index of its word in the sentence (``word_of``, int64 ``(N, L)``; -1 for special
        tokens and padding). A word may become several pieces; words past ``max_length`` are cut."""
        rows: list[list[int]] = []
        words: list[list[int]] = []
        cut = np.zeros(len(sentences), dtype=bool)
        batch = [list(s) for s in sentences]
        for start in range(0, len(batch), ENCODE_CHUNK):
            chunk = batch[start : start + ENCODE_CHUNK]
            for i, encoding in enumerate(self._tokenizer.encode_batch(chunk, is_pretokenized=True), start=start):
                rows.append(encoding.ids)
                words.append([-1 if w is None else w for w in encoding.word_ids])
                cut[i] = bool(encoding.overflowing)
        width = max(1, max((len(r) for r in rows), default=0))
        ids = np.zeros((len(rows), width), dtype=np.int64)
        word_of = np.full((len(rows), width), -1, dtype=np.int64)
        for i, (row, word) in enumerate(zip(rows, words)):
            ids[i, : len(row)] = row
            word_of[i, : len(word)] = word
        return EncodedWords(torch.from_numpy(ids), torch.from_numpy(word_of), torch.from_numpy(cut))

    def __repr__(self) -> str:
        return f"TextTokenizer({self.spec!r}, max_length={self.max_length}, vocab_size={self.vocab_size})"


def load_tokenizer(spec: str | None, max_length: int = DEFAULT_MAX_LENGTH) -> TextTokenizer:
    """The tokenizer ``spec`` names (``None``: ``"minilm"``), truncating at ``max_length`` tokens.

    ``spec`` is a short name of a packaged model folder (``"minilm"``), ``"hf:PATH"`` or a path to a
    folder with a ``tokenizer.json``. A folder that cannot be found or read is a DataError.
    """
    check_max_length(max_length)
    spec = DEFAULT_TOKENIZER if spec is None else spec
    try:
        folder = pretrained_folder(spec, needs="tokenizer.json", what="a tokenizer folder (with tokenizer.json)")
    except PretrainedError as error:
        raise DataError(f"data.tokenizer: {error}") from None
    return TextTokenizer(spec, folder.resolve(), max_length)


def check_max_length(max_length: object) -> None:
    """DataError unless ``max_length`` is an int of at least :data:`MIN_MAX_LENGTH`."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < MIN_MAX_LENGTH:
        raise DataError(
            f"max_length must be an integer of at least {MIN_MAX_LENGTH} (tokens per sentence, special tokens included), got {max_length!r}"
        )


def _special_ids(tokenizer, folder: Path) -> dict[str, int | None]:  # tokenizer: tokenizers.Tokenizer
    """role -> id of the special tokens: those special_tokens_map.json names, else the usual strings."""
    named: dict[str, str] = {}
    mapping = folder / "special_tokens_map.json"
    if mapping.is_file():
        try:
            entries = json.loads(mapping.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}  # the ids are looked up by their usual strings instead
        for role in SPECIAL_TOKENS:
            entry = entries.get(f"{role}_token") if isinstance(entries, dict) else None
            content = entry.get("content") if isinstance(entry, dict) else entry
            if isinstance(content, str):
                named[role] = content
    ids: dict[str, int | None] = {}
    for role, candidates in SPECIAL_TOKENS.items():
        found = [tokenizer.token_to_id(t) for t in ((named[role],) if role in named else candidates)]
        ids[role] = next((i for i in found if i is not None), None)
    padding = tokenizer.padding
    if ids["pad"] is None and padding:
        ids["pad"] = padding["pad_id"]
    return ids
