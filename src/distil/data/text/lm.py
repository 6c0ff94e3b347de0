"""Language-model text: a corpus split by whole books, a BPE tokenizer, and token blocks of one context length.

The corpus is the King James Bible read by :mod:`distil.data.text.sword` (``source: kjv``; any installed
SWORD module works). Evaluation books are held out whole — ``test_books`` and ``val_books`` are a list of
OSIS ids (``[Ruth, Mark]``) or a count drawn with ``seed`` — so held-out perplexity measures text the
models never saw, not verses interleaved with training ones.

Text layout: each verse is one line (``text + "\\n"``); a book's verses follow each other in order, and
books are separated by the end-of-text token when the vocabulary has one. A split's token stream is cut
into non-overlapping blocks of ``context_length + 1`` tokens sharing their boundary token: block ``i``
is ``stream[i·L : i·L + L + 1]``, the model reads ``block[:-1]`` and predicts ``block[1:]``, so every
token of the stream after the first is predicted exactly once. The stream's tail shorter than a block
is dropped.

Tokenizer: ``tokenizer: null`` learns a byte-level BPE (Sennrich et al. 2016; GPT-2's byte-level
alphabet) of ``vocab_size`` tokens with the ``tokenizers`` library on the *training books only*, with
``<pad>`` (id 0) and ``<eos>`` as special tokens; it is saved under the data cache keyed by the
training text's sha256 and the size, so a second run reads it. ``tokenizer: hf:PATH`` (or a folder)
takes a teacher folder's ``tokenizer.json`` instead. Ids are never padded inside blocks.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from distil.data.text.cache import data_cache_dir
from distil.data.text.sword import Verse, read_module
from distil.errors import DataError
from distil.pretrained import PretrainedError, pretrained_folder
from distil.weights import atomic_write

#: Special tokens of a learnt vocabulary (ids 0 and 1).
PAD, EOS = "<pad>", "<eos>"
#: End-of-text tokens a teacher folder's vocabulary may use.
EOS_CANDIDATES = (EOS, "<|endoftext|>", "</s>", "[SEP]")
TOKENIZER_VERSION = "lm-bpe-v1"


class LMTokenizer:
    """A ``tokenizers`` tokenizer for free text: ``encode`` (no truncation, no padding), ``decode``;
    ``sha256`` of its tokenizer.json, ``vocab_size`` (added tokens included), ``eos_id`` (or None)."""

    def __init__(self, spec: str, folder: Path) -> None:
        from tokenizers import Tokenizer

        file = folder / "tokenizer.json"
        data = file.read_bytes()
        try:
            self._tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as error:  # noqa: BLE001  tokenizers raises plain Exception for a malformed file
            raise DataError(f"{file}: cannot be read as a Hugging Face tokenizer.json ({error})") from None
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.spec, self.folder = spec, folder
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        found = [self._tokenizer.token_to_id(t) for t in EOS_CANDIDATES]
        self.eos_id: int | None = next((i for i in found if i is not None), None)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"LMTokenizer({self.spec!r}, vocab_size={self.vocab_size})"


def learn_bpe(texts: Sequence[str], vocab_size: int, directory: Path | None = None) -> LMTokenizer:
    """A byte-level BPE of ``vocab_size`` tokens learnt on ``texts`` (cached by their sha256 and the size)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 260:
        raise DataError(f"data.vocab_size must be an integer ≥ 260 (256 bytes + specials), got {vocab_size!r}")
    digest = hashlib.sha256(f"{TOKENIZER_VERSION}\0{vocab_size}\0".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    folder = (directory or data_cache_dir() / "lm_tokenizers") / digest.hexdigest()[:32]
    if not (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=[PAD, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer)
        folder.mkdir(parents=True, exist_ok=True)
        text = tokenizer.to_str()
        atomic_write(folder / "tokenizer.json", lambda tmp: tmp.write_text(text))
    return LMTokenizer(f"bpe:{vocab_size}", folder)


def folder_tokenizer(spec: str) -> LMTokenizer:
    """The ``tokenizer.json`` of a teacher folder (``hf:PATH``, a short name, or a path)."""
    try:
        folder = pretrained_folder(spec, needs="tokenizer.json", what="a tokenizer folder (with tokenizer.json)")
    except PretrainedError as error:
        raise DataError(f"data.tokenizer: {error}") from None
    return LMTokenizer(spec, folder.resolve())


@dataclass
class LMData:
    """Token blocks ``(N, context_length + 1)`` int64 per split, the tokenizer and which books went where."""

    tokenizer: LMTokenizer
    context_length: int
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    books: dict[str, list[str]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    words: dict[str, int] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def describe(self) -> dict:
        return {
            "source_books": self.books,
            "tokenizer": self.tokenizer.spec,
            "tokenizer_sha256": self.tokenizer.sha256,
            "vocab_size": self.vocab_size,
            "context_length": self.context_length,
            "blocks": {k: int(getattr(self, k).shape[0]) for k in ("train", "val", "test")},
            "tokens": self.tokens,
            "words": self.words,
        }


@functools.lru_cache(maxsize=2)
def _verses(source: str) -> tuple[Verse, ...]:
    """The module's verses, read once per process (decompressing the KJV takes seconds)."""
    return tuple(read_module(source))


def choose_books(order: list[str], chosen: Sequence[str] | int, taken: set[str], seed: int, field_name: str) -> list[str]:
    """``chosen`` (OSIS ids, checked) or that many books drawn with ``seed`` from those not ``taken``."""
    if isinstance(chosen, int) and not isinstance(chosen, bool):
        free = [b for b in order if b not in taken]
        if not 0 <= chosen < len(free):
            raise DataError(f"data.{field_name}: {chosen} books asked, but only {len(free) - 1} can be held out of {len(free)}")
        picked = set(random.Random(f"{seed}:{field_name}").sample(free, chosen))
        return [b for b in order if b in picked]
    unknown = [b for b in chosen if b not in order]
    if unknown:
        raise DataError(f"data.{field_name}: unknown book(s) {', '.join(unknown)}; the corpus has {', '.join(order)}")
    clash = [b for b in chosen if b in taken]
    if clash:
        raise DataError(f"data.{field_name}: book(s) {', '.join(clash)} are already held out by another split")
    return list(chosen)


def blocks(stream: list[int], context_length: int) -> torch.Tensor:
    """Non-overlapping windows of ``context_length + 1`` tokens, consecutive ones sharing one token."""
    ids = torch.tensor(stream, dtype=torch.int64)
    n = max(0, (len(stream) - 1) // context_length)
    return ids[: n * context_length + 1].unfold(0, context_length + 1, context_length) if n else ids.new_zeros((0, context_length + 1))


def load_lm_text(
    source: str = "kjv",
    *,
    context_length: int = 128,
    test_books: Sequence[str] | int = ("Ruth", "Eccl", "Mark", "Jas"),
    val_books: Sequence[str] | int = ("Esth", "Phil"),
    books: Sequence[str] | None = None,
    max_verses: int | None = None,
    tokenizer: str | None = None,
    vocab_size: int = 4096,
    seed: int = 0,
    tokenizer_dir: Path | None = None,
) -> LMData:
    """The corpus ``source`` (a SWORD module) as LM blocks; see the module docstring.

    ``books`` keeps only those books (all by default) and ``max_verses`` the first verses of each
    (small tests); the held-out books are chosen among the kept ones.
    """
    if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 2:
        raise DataError(f"data.context_length must be an integer ≥ 2, got {context_length!r}")
    verses = _verses(source)
    by_book: dict[str, list[Verse]] = {}
    for verse in verses:
        if verse.text:
            by_book.setdefault(verse.book, []).append(verse)
    order = list(by_book)
    if books is not None:
        unknown = [b for b in books if b not in by_book]
        if unknown:
            raise DataError(f"data.books: unknown book(s) {', '.join(unknown)}; {source} has {', '.join(order)}")
        order = [b for b in order if b in set(books)]
    if max_verses is not None:
        by_book = {b: v[:max_verses] for b, v in by_book.items()}
    test = choose_books(order, test_books, set(), seed, "test_books")
    val = choose_books(order, val_books, set(test), seed, "val_books")
    train = [b for b in order if b not in set(test) | set(val)]
    if not train:
        raise DataError("data: every book is held out; keep at least one for training")
    lines = {b: [v.text + "\n" for v in by_book[b]] for b in order}
    tok = learn_bpe([line for b in train for line in lines[b]], vocab_size, tokenizer_dir) if tokenizer is None else folder_tokenizer(tokenizer)
    splits, counts, words = {}, {}, {}
    for name, names in (("train", train), ("val", val), ("test", test)):
        stream: list[int] = []
        for book in names:
            for ids in tok.encode(lines[book]):
                stream.extend(ids)
            if tok.eos_id is not None:
                stream.append(tok.eos_id)
        splits[name] = blocks(stream, context_length)
        if names and splits[name].shape[0] == 0:
            raise DataError(f"data: the {name} books ({', '.join(names)}) give {len(stream)} tokens, fewer than one block of {context_length + 1}")
        counts[name] = len(stream)
        words[name] = sum(len(line.split()) for b in names for line in lines[b])
    return LMData(tok, context_length, splits["train"], splits["val"], splits["test"], {"train": train, "val": val, "test": test}, counts, words)
