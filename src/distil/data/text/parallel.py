"""Parallel text: sentence pairs (source → target) for translation, and their seeded split.

Sources (:data:`PAIR_SOURCES`, by name):

* ``bible`` — verse pairs of two installed SWORD modules (:func:`distil.data.text.sword.parallel_verses`;
  default King James → Reina-Valera 1909), kept when both sides have at most ``max_words`` words;
* ``pairs_file`` — the user's pairs: a ``.tsv`` (source TAB target per line), a ``.jsonl``
  (``{"source": ..., "target": ...}`` per line), or two line-aligned text files (``path`` and
  ``target_path``).

A sentence pair is the unit of the split: :func:`split_pairs` draws a seeded permutation of the
*distinct source sentences*, so a verse (or any sentence repeated in the corpus, e.g. a refrain) lands
in exactly one of train / val / test and the test side never leaks into training; val and test hold
each distinct sentence once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from distil.errors import DataError


@dataclass(frozen=True)
class TextPairs:
    """Aligned sentences: ``source[i]`` translates to ``target[i]``; ``refs[i]`` says where the pair came
    from (``Gen 1:1``, ``pairs.tsv:3``); ``origin`` names the corpus."""

    source: list[str]
    target: list[str]
    refs: list[str]
    origin: str

    def __post_init__(self) -> None:
        if not len(self.source) == len(self.target) == len(self.refs):
            raise DataError(f"{self.origin}: {len(self.source)} source sentences but {len(self.target)} target sentences; the sides must pair one to one")

    def __len__(self) -> int:
        return len(self.source)

    def subset(self, index: list[int] | torch.Tensor) -> TextPairs:
        rows = [int(i) for i in index]
        return TextPairs([self.source[i] for i in rows], [self.target[i] for i in rows], [self.refs[i] for i in rows], self.origin)


def words(text: str) -> int:
    return len(text.split())


def bible_pairs(source: str = "kjv", target: str = "rv1909", max_words: int | None = 20) -> TextPairs:
    """Verse pairs of two SWORD modules (both sides non-empty), both sides at most ``max_words`` words."""
    from distil.data.text.sword import parallel_verses

    pairs = parallel_verses(source, target)
    kept = [(a, b) for a, b in pairs if max_words is None or (words(a.text) <= max_words and words(b.text) <= max_words)]
    if not kept:
        raise DataError(f"data.max_words={max_words}: no verse pair of {source} → {target} is that short")
    return TextPairs([a.text for a, _ in kept], [b.text for _, b in kept], [f"{a.book} {a.chapter}:{a.verse}" for a, _ in kept], f"bible:{source}-{target}")


def _check_sentence(text: object, where: str, side: str) -> str:
    if not isinstance(text, str):
        raise DataError(f"{where}: the {side} side must be a string, got {type(text).__name__}")
    text = " ".join(text.split())
    if not text:
        raise DataError(f"{where}: empty {side} sentence; every pair needs text on both sides (remove the line)")
    return text


def read_pairs_file(path: str | Path, target_path: str | Path | None = None, max_words: int | None = None) -> TextPairs:
    """The user's pairs: ``.tsv``, ``.jsonl``, or two line-aligned text files (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.path: pairs file {path} not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"data.path: cannot read {path} as UTF-8 text ({e})") from None
    source: list[str] = []
    target: list[str] = []
    refs: list[str] = []
    if target_path is not None:
        other = Path(target_path)
        if not other.is_file():
            raise DataError(f"data.target_path: file {other} not found")
        target_lines = other.read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        while target_lines and not target_lines[-1].strip():
            target_lines.pop()
        if len(lines) != len(target_lines):
            raise DataError(f"data.path / data.target_path: {path} has {len(lines)} lines but {other} has {len(target_lines)}; line i of one must translate line i of the other")
        for i, (a, b) in enumerate(zip(lines, target_lines), start=1):
            source.append(_check_sentence(a, f"{path}:{i}", "source"))
            target.append(_check_sentence(b, f"{other}:{i}", "target"))
            refs.append(f"{path.name}:{i}")
    elif path.suffix == ".jsonl":
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}:{i}: not valid JSON ({e}); expected one {{\"source\": ..., \"target\": ...}} object per line") from None
            if not isinstance(row, dict) or "source" not in row or "target" not in row:
                raise DataError(f"{path}:{i}: expected an object with keys \"source\" and \"target\", got {line[:80]!r}")
            source.append(_check_sentence(row["source"], f"{path}:{i}", "source"))
            target.append(_check_sentence(row["target"], f"{path}:{i}", "target"))
            refs.append(f"{path.name}:{i}")
    elif path.suffix in (".tsv", ".txt"):
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            cells = line.split("\t")
            if len(cells) != 2:
                raise DataError(f"{path}:{i}: expected 2 tab-separated columns (source, target), got {len(cells)}")
            source.append(_check_sentence(cells[0], f"{path}:{i}", "source"))
            target.append(_check_sentence(cells[1], f"{path}:{i}", "target"))
            refs.append(f"{path.name}:{i}")
    else:
        raise DataError(f"data.path: {path} has suffix {path.suffix!r}; expected .tsv, .jsonl, or a text file with data.target_path")
    pairs = TextPairs(source, target, refs, f"pairs:{path.name}")
    if max_words is not None:
        pairs = pairs.subset([i for i in range(len(pairs)) if words(source[i]) <= max_words and words(target[i]) <= max_words])
    if len(pairs) == 0:
        raise DataError(f"data.path: {path} has no sentence pairs" + (f" of at most {max_words} words" if max_words else ""))
    return pairs


#: name -> loader(**options) of a parallel corpus.
PAIR_SOURCES: dict[str, Callable[..., TextPairs]] = {"bible": bible_pairs, "pairs_file": read_pairs_file}


def split_pairs(pairs: TextPairs, val: float, test: float, seed: int) -> dict[str, TextPairs]:
    """train / val / test by a seeded permutation of the distinct source sentences (see the module doc).

    ``val`` and ``test`` are counts of pairs, or fractions of all pairs when below 1, counted with the
    repeats of their sentences; a held-out split then keeps one pair per distinct source sentence
    (so it may hold fewer pairs than asked), training keeps every pair. The training split is the same
    as without that deduplication.
    """
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(pairs.source):
        groups.setdefault(text.lower(), []).append(i)
    keys = list(groups)
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed)).tolist()
    n = len(pairs)
    sizes = [round(v * n) if isinstance(v, float) and v < 1 else int(v) for v in (test, val)]
    if sum(sizes) >= n:
        raise DataError(f"data.val_size + data.test_size = {sum(sizes)} pairs, but the corpus has only {n}; leave pairs for training")
    out: dict[str, list[int]] = {"test": [], "val": [], "train": []}
    counted = {"test": 0, "val": 0}  # pairs assigned, repeats included
    for k in order:
        rows = groups[keys[k]]
        name = "test" if counted["test"] < sizes[0] else "val" if counted["val"] < sizes[1] else "train"
        if name != "train":
            counted[name] += len(rows)
        # A held-out split scores each distinct sentence once: the Bible's "And the LORD spake unto Moses,
        # saying," (71 verses) would otherwise be a quarter of a 300-pair test. Its other copies are
        # dropped, not moved to training (that would leak the test sentence).
        out[name].extend(rows if name == "train" else rows[:1])
    return {name: pairs.subset(sorted(rows)) for name, rows in out.items()}


@dataclass(frozen=True, eq=False)
class ParallelData:
    """A split parallel corpus as token tensors: per split the text pairs and ``(src ids, tgt ids)``
    (targets ``[BOS] … [EOS]``), the two vocabularies (learnt on the training split), and what was
    cut or unknown (``notes``: counts per split and side)."""

    splits: dict[str, TextPairs]
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    source_vocab: object  # distil.data.text.subwords.Vocab
    target_vocab: object
    max_length: int
    notes: dict[str, dict[str, int]]

    def describe(self) -> dict[str, object]:
        train_src, train_tgt = self.tensors["train"]
        return {
            "origin": self.splits["train"].origin,
            "sizes": {k: len(v) for k, v in self.splits.items()},
            "vocab": {"source": self.source_vocab.size, "target": self.target_vocab.size},  # type: ignore[attr-defined]
            "mean_tokens_train": {"source": round(float((train_src != 0).sum(1).float().mean()), 2), "target": round(float((train_tgt != 0).sum(1).float().mean()), 2)},
            "max_length": self.max_length,
            "notes": self.notes,
        }


def build_parallel(
    pairs: TextPairs, *, val: float, test: float, seed: int, vocab_size: int, subwords: str = "bpe", max_length: int = 64, limit: int | None = None
) -> ParallelData:
    """Split ``pairs`` (:func:`split_pairs`), learn each side's vocabulary on the training split, tokenize every split."""
    from distil.data.text.subwords import learn_vocab

    if limit is not None and limit < len(pairs):
        keep = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))[:limit]
        pairs = pairs.subset(sorted(keep.tolist()))
    splits = split_pairs(pairs, val, test, seed)
    source_vocab = learn_vocab(splits["train"].source, vocab_size, subwords)
    target_vocab = learn_vocab(splits["train"].target, vocab_size, subwords)
    tensors, notes = {}, {}
    for name, part in splits.items():
        s = source_vocab.encode(part.source, max_length)
        t = target_vocab.encode(part.target, max_length, target=True)
        tensors[name] = (s.ids, t.ids)
        notes[name] = {"source_truncated": s.truncated, "target_truncated": t.truncated, "source_unknown": s.unknown, "target_unknown": t.unknown}
    return ParallelData(splits, tensors, source_vocab, target_vocab, max_length, notes)
