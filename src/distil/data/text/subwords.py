"""Subword vocabularies learnt with ``tokenizers`` on the training side of a parallel corpus, and the
token tensors of sentence pairs.

:func:`learn_vocab` trains a BPE (Sennrich et al. 2016) or unigram (Kudo 2018) model on the training
sentences only — the val/test sentences never shape the vocabulary — with a Metaspace pre-tokenizer
(``▁`` marks a word start), so decoding joins pieces back into the original spacing (detokenized text,
what BLEU is computed on). The special tokens are fixed: ``[PAD]`` = 0 (distil's padding id),
``[UNK]`` = 1, ``[BOS]`` = 2, ``[EOS]`` = 3. A character the training side never saw becomes
``[UNK]`` and is counted (:attr:`Tokens.unknown`).

:class:`Vocab` is one side's ``tokenizer.json`` (saved in the run directory; identified by its
sha256). :meth:`Vocab.encode` gives ids ``(N, L)`` right-padded with 0; a target adds ``[BOS]`` and
``[EOS]``; a sentence past ``max_length`` tokens is cut (and counted in :attr:`Tokens.truncated`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from distil.data.tokens import PAD_ID
from distil.errors import DataError

SPECIALS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
UNK_ID, BOS_ID, EOS_ID = 1, 2, 3
MODELS = ("bpe", "unigram")


@dataclass(frozen=True, eq=False)
class Tokens:
    """Token ids ``(N, L)`` (int64, right-padded with 0), their ``lengths`` ``(N,)``, how many rows were cut at
    ``max_length`` and how many tokens are ``[UNK]``."""

    ids: torch.Tensor
    lengths: torch.Tensor
    truncated: int
    unknown: int


class Vocab:
    """One side's subword tokenizer (a ``tokenizers.Tokenizer`` with the fixed specials)."""

    def __init__(self, tokenizer) -> None:  # tokenizer: tokenizers.Tokenizer
        for i, token in enumerate(SPECIALS):
            if tokenizer.token_to_id(token) != i:
                raise DataError(f"a translation vocabulary needs {token} at id {i}; this tokenizer has it at {tokenizer.token_to_id(token)}")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self.json = tokenizer.to_str()
        self.sha256 = hashlib.sha256(self.json.encode()).hexdigest()
        self.size = tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_file(cls, path: str | Path) -> Vocab:
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_file(str(path)))
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001  tokenizers raises plain Exception
            raise DataError(f"{path}: not a tokenizer.json ({e})") from None

    def save(self, path: str | Path) -> Path:
        from distil.weights import atomic_write

        path = Path(path)
        atomic_write(path, lambda tmp: tmp.write_text(self.json))
        return path

    def pieces(self, text: str) -> list[str]:
        return self._tokenizer.encode(text).tokens

    def encode(self, texts: Sequence[str], max_length: int, *, target: bool = False) -> Tokens:
        """``texts`` as ids; targets as ``[BOS] pieces [EOS]``; at most ``max_length`` ids a row."""
        rows = [e.ids for e in self._tokenizer.encode_batch(list(texts))] if texts else []
        room = max_length - (2 if target else 0)
        cut = sum(len(r) > room for r in rows)
        rows = [([BOS_ID] + r[:room] + [EOS_ID]) if target else r[:room] for r in rows]
        width = max([1, *map(len, rows)])
        ids = torch.full((len(rows), width), PAD_ID, dtype=torch.int64)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
        lengths = (ids != PAD_ID).sum(1)
        return Tokens(ids, lengths, int(cut), int((ids == UNK_ID).sum()))

    def decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Id rows back to text: everything after the first ``[EOS]`` dropped, specials removed, pieces joined."""
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else [list(r) for r in ids]
        clean = []
        for row in rows:
            if EOS_ID in row:
                row = row[: row.index(EOS_ID)]
            clean.append([t for t in row if t > EOS_ID])
        return self._tokenizer.decode_batch(clean, skip_special_tokens=True)


def learn_vocab(texts: Sequence[str], size: int, model: str = "bpe") -> Vocab:
    """A ``size``-token subword vocabulary learnt on ``texts`` (the training side only)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if model not in MODELS:
        raise DataError(f"data.subwords: unknown subword model {model!r}; known: {', '.join(MODELS)}")
    if size < 32:
        raise DataError(f"data.vocab_size must be at least 32, got {size}")
    if model == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=list(SPECIALS), show_progress=False)
    else:
        tokenizer = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=size, special_tokens=list(SPECIALS), unk_token="[UNK]", show_progress=False)
    tokenizer.normalizer = normalizers.NFC()
    # Punctuation split off words ("tierra." → "▁tierra", "."): one piece per mark, not per word+mark.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    return Vocab(tokenizer)
