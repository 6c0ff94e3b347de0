"""What a served model takes, and how a request becomes its batch: tensors or text.

Every :class:`~distil.serve.repository.ServedModel` has one input, which owns everything between
the client's values and the backend's array:

* :class:`TensorInput` — an FP32 tensor of a fixed per-sample shape (images, signals), normalized
  with the training split's mean/std. OIP clients send it normalized; ``/predict`` sends raw scale.
* :class:`TextInput` — a BYTES tensor of raw UTF-8 strings, shape ``[N]``. The tokenizer lives here
  (the run's, checked by the sha256 of its tokenizer.json), so the server tokenizes exactly as the
  training data were; the batch is int64 ids ``(N, L)`` right-padded with 0, ``L`` the longest
  sentence of the request (the batcher pads requests of different lengths to the longest).

Both turn a request into a :class:`Batch`: the backend's array plus what the answer and feedback
capture need (the texts; for taggers the words and the token position that tags each).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from distil.data.tokens import concat
from distil.errors import DataError
from distil.serve.protocol import InferError

#: Text longer than this many UTF-8 bytes is refused with 413 (``ServeSettings.max_text_bytes``).
DEFAULT_MAX_TEXT_BYTES = 10_000


@dataclass(frozen=True)
class Limits:
    """What one request may hold: samples (texts) and UTF-8 bytes per text (413 beyond)."""

    max_batch: int = 256
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES


@dataclass
class Batch:
    """One request's inputs as the backend reads them, and what the answer is made from.

    ``x``: float32 ``(N, *shape)`` or int64 ids ``(N, L)``. ``texts``: the strings (text models).
    ``words`` / ``positions``: for taggers, each text's words and the token index whose logits tag it.
    """

    x: np.ndarray
    texts: list[str] | None = None
    words: list[list[str]] | None = None
    positions: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.x)


class TensorInput:
    """An FP32 input of per-sample ``shape``, normalized with ``mean``/``std`` (per channel) as in training."""

    datatype = "FP32"
    kind = "tensor"

    def __init__(self, name: str, shape: tuple[int, ...], mean: tuple[float, ...] = (), std: tuple[float, ...] = ()) -> None:
        self.name = name
        self.shape = tuple(int(d) for d in shape)
        self.mean = tuple(mean)
        self.std = tuple(std)

    def metadata(self) -> dict[str, Any]:
        """The OIP model-metadata entry of this input."""
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.shape]}

    def probe(self) -> Batch:
        """A batch of one zero sample: run at start-up, so a broken model fails before serving."""
        return Batch(np.zeros((1, *self.shape), dtype=np.float32))

    def from_oip(self, values: np.ndarray | list[bytes], shape: tuple[int, ...], limits: Limits) -> Batch:
        """The batch of an OIP tensor (already normalized, as the protocol's clients send it)."""
        max_batch = limits.max_batch
        if len(shape) != len(self.shape) + 1 or shape[1:] != self.shape or not 1 <= shape[0] <= max_batch:
            raise InferError(
                f"input {self.name!r} has shape {list(shape)}; expected [N, {', '.join(map(str, self.shape))}] with 1 <= N <= {max_batch}"
            )
        assert isinstance(values, np.ndarray)
        return Batch(values.reshape(shape))


class TextInput:
    """A BYTES input of raw UTF-8 strings (shape ``[N]``, or ``[N, 1]``) that the server tokenizes.

    ``encode`` turns texts into int64 ids with the run's tokenizer; ``encode_words`` (taggers) gives,
    per text, the ids ``(1, L)``, its words and the token position of each (``TextInfo.encode_words``).
    """

    datatype = "BYTES"
    kind = "text"

    def __init__(
        self,
        encode: Callable[[list[str]], np.ndarray],
        *,
        name: str = "text",
        encode_words: Callable[[str], tuple[np.ndarray, list[str], list[int]]] | None = None,
        description: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.shape: tuple[int, ...] = ()
        self.mean: tuple[float, ...] = ()
        self.std: tuple[float, ...] = ()
        self._encode = encode
        self._encode_words = encode_words
        self.description = description or {}

    @property
    def tags_words(self) -> bool:
        """Whether the model tags each word (a tagger) rather than classifying the text."""
        return self._encode_words is not None

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1]}

    def probe(self) -> Batch:
        return self.encode(["a probe sentence"], Limits())

    def from_oip(self, values: np.ndarray | list[bytes], shape: tuple[int, ...], limits: Limits) -> Batch:
        """The batch of an OIP BYTES tensor: each element one UTF-8 text."""
        max_batch = limits.max_batch
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or not 1 <= shape[0] <= max_batch:
            raise InferError(f"input {self.name!r} has shape {list(shape)}; expected [N] (or [N, 1]) texts with 1 <= N <= {max_batch}")
        assert isinstance(values, list)
        texts = []
        for i, raw in enumerate(values):
            check_size(len(raw), i, limits)
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise InferError(
                    f"input {self.name!r}: element {i} is not valid UTF-8 ({err.reason} at byte {err.start}); send the text as UTF-8"
                ) from None
        return self.encode(texts, limits)

    def encode(self, texts: Sequence[str], limits: Limits) -> Batch:
        """``texts`` (checked: strings, non-empty, within the limits) as a batch of token ids."""
        texts = list(texts)
        if not 1 <= len(texts) <= limits.max_batch:
            raise InferError(f"the request has {len(texts)} texts; expected 1 to {limits.max_batch}")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InferError(f"text {i} is {type(text).__name__} {text!r}; expected a string")
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:  # a lone surrogate, e.g. "\ud800" in JSON
                raise InferError(f"text {i} is not valid Unicode (it holds a lone surrogate); send UTF-8 text") from None
            check_size(size, i, limits)
            if not text.strip():
                raise InferError(f"text {i} is empty; expected a non-empty string")
        if self._encode_words is None:
            return Batch(self._encode(texts), texts=texts)
        rows, words, positions = [], [], []
        for i, text in enumerate(texts):
            try:
                ids, text_words, text_positions = self._encode_words(text)
            except DataError as err:  # e.g. only symbols the word splitter drops
                raise InferError(f"text {i}: {err}") from None
            rows.append(ids.reshape(-1))
            words.append(list(text_words))
            positions.append(list(text_positions))
        return Batch(pad_rows(rows), texts=texts, words=words, positions=positions)


def check_size(size: int, index: int, limits: Limits) -> None:
    """413 when text ``index`` has more than ``limits.max_text_bytes`` UTF-8 bytes."""
    if size > limits.max_text_bytes:
        raise InferError(f"text {index} has {size} bytes of UTF-8; at most {limits.max_text_bytes} are accepted", 413)


def pad_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """1-D id rows (or 2-D id batches) as one int64 array right-padded with 0 (``PAD_ID``) to the longest.

    The data package's :func:`~distil.data.tokens.concat`, the one way distil joins token batches.
    """
    parts = [torch.tensor(np.asarray(r, dtype=np.int64)) for r in rows]
    return concat([p.view(1, -1) if p.dim() == 1 else p for p in parts]).numpy()
