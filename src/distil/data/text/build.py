"""The text half of :func:`~distil.data.load_dataset`: checked sentences, carved indices → tokenized splits.

``load_dataset`` carves the validation and test indices exactly as it does for arrays; here every
sentence is tokenized once (cached on disk, :mod:`distil.data.text.cache`) and the splits are cut
from the ids, each to its own longest sentence. Nothing is normalized: ``Dataset.mean``/``std`` are
``(0.0,)``/``(1.0,)`` and ``input_shape`` is ``(max_length,)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from distil.data.raw import RawText
from distil.data.split import Dataset, Split
from distil.data.text.cache import cached_encode
from distil.data.text.info import TextInfo
from distil.data.text.tokenizer import TextTokenizer, load_tokenizer
from distil.data.tokens import PAD_ID, lengths, trim, typical_row
from distil.errors import DataError

#: Raw test sentences kept on ``TextInfo.examples``.
EXAMPLES = 8


def text_dataset(
    name: str,
    raw: RawText,
    train_index: np.ndarray,
    val_index: np.ndarray,
    test_index: np.ndarray | None,
    *,
    tokenizer: str | None,
    max_length: int,
    source: str,
) -> Dataset:
    """The splits of ``raw`` at the given indices (``test_index`` None: the source's own test texts), tokenized."""
    tok = load_tokenizer(tokenizer, max_length)
    texts = list(raw.train_texts) + list(raw.test_texts or ())
    encoded, file, hit = cached_encode(tok, texts)
    n = len(raw.train_texts)
    _check_not_empty(name, tok, texts, encoded.ids)
    assert raw.train_y is not None  # check_raw_text refused unlabeled corpora
    train_y = torch.from_numpy(np.asarray(raw.train_y, dtype=np.int64))
    if test_index is None:
        assert raw.test_y is not None
        test_rows, test_y = torch.arange(n, len(texts)), torch.from_numpy(np.asarray(raw.test_y, dtype=np.int64))
        pool = torch.arange(n)
    else:
        test_rows, test_y = torch.from_numpy(test_index), train_y[torch.from_numpy(test_index)]
        pool = torch.from_numpy(np.sort(np.concatenate([train_index, val_index])))
    rows = {"train": torch.from_numpy(train_index), "val": torch.from_numpy(val_index), "test": test_rows}
    labels = {"train": train_y[rows["train"]], "val": train_y[rows["val"]], "test": test_y}
    splits = {split: Split(trim(encoded.ids[index]).contiguous(), labels[split]) for split, index in rows.items()}

    test_texts = [texts[int(i)] for i in test_rows[:EXAMPLES]]
    return token_dataset(
        name,
        splits,
        raw.class_names,
        tok=tok,
        pool_ids=encoded.ids[pool],
        source=source,
        truncated={split: int(encoded.truncated[index].sum()) for split, index in rows.items()},
        examples=tuple(test_texts),
        typical_sentence=texts[int(test_rows[typical_row(splits["test"].x)])],
        tokens_file=str(file),
        tokens_cached=hit,
    )


def token_dataset(
    name: str, splits: dict[str, Split], class_names: Sequence[str], *, tok: TextTokenizer, pool_ids: torch.Tensor, source: str, **info: Any
) -> Dataset:
    """Tokenized ``splits`` as a :class:`Dataset` whose :class:`TextInfo` names ``tok``, counts the ids of the
    labelled pool ``pool_ids`` and takes the rest of its fields from ``info`` (the common end of sentence
    and tagging data)."""
    text = TextInfo(
        tokenizer=tok.spec,
        tokenizer_dir=str(tok.folder),
        tokenizer_sha256=tok.sha256,
        vocab_size=tok.vocab_size,
        max_length=tok.max_length,
        special_ids=tok.special_ids,
        token_counts=torch.bincount(pool_ids[pool_ids != PAD_ID], minlength=tok.vocab_size),
        median_test_length=int(lengths(splits["test"].x).median()),
        **info,
    )
    return Dataset(
        name=name,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        num_classes=len(class_names),
        class_names=tuple(class_names),
        input_shape=(tok.max_length,),
        mean=(0.0,),
        std=(1.0,),
        source=source,
        text=text,
    )


def _check_not_empty(name: str, tok: TextTokenizer, texts: list[str], ids: torch.Tensor) -> None:
    """A sentence with no token at all (a tokenizer without [CLS]/[SEP] on symbols it drops) cannot be masked."""
    empty = (lengths(ids) == 0).nonzero().flatten()
    if len(empty):
        i = int(empty[0])
        raise DataError(
            f"dataset {name!r}: {len(empty)} texts give no token at all with tokenizer {tok.spec!r}, e.g. text {i} {texts[i][:80]!r}; "
            "remove them or use a tokenizer that adds [CLS]/[SEP]"
        )


# --- checking what a loader returned ------------------------------------------------------------------


def check_raw_text(name: str, raw: RawText) -> None:
    """A text loader's output must be consistent; a user's loader gets told exactly what is not."""
    who = f"the loader of dataset {name!r}"
    if raw.train_y is None:
        raise DataError(
            f"dataset {name!r} has no labels (an unlabeled text corpus): it can only be a transfer set "
            f"(strategy: {{name: unlabeled, transfer: {{name: {name}}}}}), not the data to train and test on"
        )
    if len(raw.class_names) < 1 or not all(isinstance(c, str) for c in raw.class_names):
        raise DataError(f"{who} returned class_names={raw.class_names!r}; expected a non-empty tuple of strings")
    if (raw.test_texts is None) != (raw.test_y is None):
        raise DataError(f"{who} returned only one of test_texts and test_y; give both or neither")
    _check_texts(who, "train", raw.train_texts, raw.train_y, len(raw.class_names))
    if raw.test_texts is not None:
        _check_texts(who, "test", raw.test_texts, raw.test_y, len(raw.class_names))


def _check_texts(who: str, split: str, texts: Any, y: Any, classes: int) -> None:
    if isinstance(texts, str) or not hasattr(texts, "__len__") or not len(texts):
        raise DataError(f"{who}: {split}_texts must be a non-empty list of strings, got {type(texts).__name__}")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise DataError(f"{who}: {split}_texts[{bad}] is {texts[bad]!r}; expected a non-empty string")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu":
        raise DataError(f"{who}: {split}_y must be a numpy array of integer labels, got {type(y).__name__} {getattr(y, 'dtype', '')}")
    if y.shape != (len(texts),):
        raise DataError(f"{who}: {split}_y has shape {y.shape}; expected ({len(texts)},), one label per text")
    out = np.unique(y[(y < 0) | (y >= classes)])
    if out.size:
        raise DataError(f"{who}: {split}_y has labels {out[:10].tolist()} outside 0..{classes - 1} ({classes} class names)")
