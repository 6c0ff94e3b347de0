"""What serving a text run needs besides its weights: the run's tokenizer, and the vocabulary a model
was built with.

``summary.json``'s ``data.text`` (``TextInfo.describe()``) names the tokenizer (spec, folder, sha256
of its tokenizer.json, ``max_length``). :func:`text_input` loads it — from the folder the run used,
else from the spec (a run copied to another machine) — and refuses one whose tokenizer.json differs
from the run's: the ids would not be the ones the model learnt. The server then tokenizes every
request exactly as the training data were.

A student with ``vocab: data`` was built from the training split's token counts; its weights file
carries the id → row ``index`` buffer, so :func:`vocabulary_args` rebuilds equivalent counts from it
(every id with a row counts), without loading the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from distil.data.text.info import TASKS
from distil.errors import ModelError
from distil.models.text_embedding import UNK_ROW
from distil.serve.inputs import TextInput

#: The first row of the id -> row index buffer that belongs to one id (rows 0 and 1: padding, UNK).
FIRST_KEPT_ROW = UNK_ROW + 1
#: A count high enough that every id with a row is kept whatever the model's ``min_count``.
KEPT = 1 << 30


def text_input(text: dict[str, Any], where: str) -> TextInput:
    """The BYTES input of a text run whose ``summary.json`` ``data.text`` is ``text`` (``where``: for messages).

    The texts are encoded by a :class:`~distil.data.TextInfo` rebuilt from the description — the
    code that tokenized the training data — so a tagger's words are split and placed as in training.
    """
    import torch

    from distil.data.text.info import TextInfo
    from distil.data.text.tokenizer import load_tokenizer
    from distil.errors import DataError

    try:
        spec, folder, sha256, max_length = text["tokenizer"], Path(text["tokenizer_dir"]), text["tokenizer_sha256"], int(text["max_length"])
        task = str(text.get("task", "classify"))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{where}: data.text must name tokenizer, tokenizer_dir, tokenizer_sha256 and max_length ({err})") from None
    if task not in TASKS:
        raise ModelError(f"{where}: data.text.task is {task!r}; expected one of {', '.join(TASKS)}")
    try:
        if not (folder / "tokenizer.json").is_file():  # the run was made elsewhere: find the tokenizer by its spec
            folder = load_tokenizer(spec, max_length).folder
        info = TextInfo(
            tokenizer=spec,
            tokenizer_dir=str(folder),
            tokenizer_sha256=sha256,
            vocab_size=int(text.get("vocab_size", 0)),
            max_length=max_length,
            special_ids=dict(text.get("special_ids", {})),
            token_counts=torch.zeros(0, dtype=torch.int64),  # not needed to encode
            truncated={},
            task=task,
        )
        tokenizer = info.loaded_tokenizer  # loaded now, and checked against the run's sha256
    except DataError as err:
        raise ModelError(
            f"{where}: the run's tokenizer {spec!r} cannot be used ({err}); serve it with the tokenizer it was trained with"
        ) from None

    def encode(texts: list[str]) -> np.ndarray:
        return info.encode(texts).numpy()

    def encode_words(text: str) -> tuple[np.ndarray, list[str], list[int]]:
        encoded = info.encode_words(text)
        return encoded.ids.numpy(), encoded.words, encoded.positions

    description = {
        "tokenizer": spec,
        "tokenizer_sha256": sha256,
        "max_length": max_length,
        "vocab_size": tokenizer.vocab_size,
        "task": task,
    }
    return TextInput(encode, encode_words=encode_words if task == "tag" else None, description=description)


def vocabulary_args(weights: Path, text: dict[str, Any]) -> dict[str, Any]:
    """``vocab_size``, ``token_counts``, ``tokenizer_dir`` and ``task`` to rebuild the model saved in ``weights``.

    ``token_counts`` marks the ids that have a row in the weights' ``*index`` buffer (vocab "data"),
    or is None when the weights have no such buffer (vocab "teacher", pretrained models).
    """
    from safetensors import safe_open

    vocab_size = int(text.get("vocab_size", 0)) or None
    counts = None
    if vocab_size is not None and weights.suffix == ".safetensors":
        with safe_open(str(weights), "np") as tensors:
            for key in tensors.keys():  # noqa: SIM118  safe_open is not a mapping
                if key.split(".")[-1] != "index":
                    continue
                index = tensors.get_tensor(key)
                if index.shape == (vocab_size,) and index.dtype.kind in "iu":
                    kept = np.where(index >= FIRST_KEPT_ROW, KEPT, 0)
                    counts = kept if counts is None else np.maximum(counts, kept)
    import torch

    return {
        "vocab_size": vocab_size,
        "token_counts": None if counts is None else torch.from_numpy(counts.astype(np.int64)),
        "tokenizer_dir": text.get("tokenizer_dir"),
        "task": text.get("task", "classify"),
    }
