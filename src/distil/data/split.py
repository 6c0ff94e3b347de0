"""The in-memory form of a dataset: :class:`Split` (inputs and labels) and :class:`Dataset`.

Both are frozen: a split is made once by :func:`distil.data.load_dataset` and then only moved
(:meth:`Split.to`) or indexed (:meth:`Split.subset`), which return new objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from distil.data.text.info import TextInfo
from distil.errors import DataError


# eq=False: dataclass equality would compare tensors with ``==`` and fail on truthiness; identity is
# the meaningful equality for a split.
@dataclass(frozen=True, eq=False)
class Split:
    """Inputs ``x`` (float32, normalized, shape ``(N, *input_shape)``) and labels ``y`` (int64 ``(N,)``).

    ``y`` is ``None`` for unlabeled data. Tagging data have a label per token: ``y`` int64 ``(N, L)``
    like the token ids ``x``, :data:`~distil.data.tokens.IGNORE` where a token carries no tag.

    Paired data (cross-modal distillation) carry a second input per sample: ``x_teacher``, what the
    teacher sees of the same sample (another modality or resolution: any shape, the same number of
    rows), while ``x`` is what the student sees. Row ``i`` of both is one sample; every operation
    below keeps them aligned.
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    x_teacher: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dim() < 1:
            raise DataError(f"Split.x must have a sample dimension, got a tensor of shape {tuple(self.x.shape)}")
        if self.x_teacher is not None and (self.x_teacher.dim() < 1 or len(self.x_teacher) != len(self.x)):
            raise DataError(
                f"Split.x_teacher has {len(self.x_teacher) if self.x_teacher.dim() else 0} samples but x has {len(self.x)}; "
                "paired inputs need one teacher input per sample (row i of x_teacher and of x are the same sample)"
            )
        if self.y is None:
            return
        per_token = self.y.dim() == 2 and self.x.dim() == 2 and self.y.shape == self.x.shape  # tagging: a label per token
        if not per_token and (self.y.dim() != 1 or len(self.y) != len(self.x)):
            raise DataError(f"Split.y must have shape ({len(self.x)},) like x {tuple(self.x.shape)} (or x's shape, a tag per token), got {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def teacher_x(self) -> torch.Tensor:
        """What the teacher sees: ``x_teacher`` for paired data, else the student's own ``x``."""
        return self.x if self.x_teacher is None else self.x_teacher

    def to(self, device: torch.device | str) -> Split:
        """The same split on ``device`` (no copy where it is already there)."""
        return Split(self.x.to(device), None if self.y is None else self.y.to(device), None if self.x_teacher is None else self.x_teacher.to(device))

    def subset(self, index: torch.Tensor) -> Split:
        """The samples at ``index`` (integer indices or a boolean mask), in that order (both inputs of a pair)."""
        index = index.to(self.x.device)
        x_teacher = None if self.x_teacher is None else self.x_teacher[index.to(self.x_teacher.device)]
        return Split(self.x[index], None if self.y is None else self.y[index], x_teacher)

    def without_labels(self) -> Split:
        """The inputs alone (``y`` None), paired inputs kept."""
        return Split(self.x, None, self.x_teacher)

    def for_teacher(self) -> Split:
        """The split as the teacher sees it: ``x_teacher`` as the inputs (the split itself when not paired)."""
        return self if self.x_teacher is None else Split(self.x_teacher, self.y)

    def for_student(self) -> Split:
        """The split as the students see it: ``x`` alone, ``x_teacher`` dropped (the split itself when not paired)."""
        return self if self.x_teacher is None else Split(self.x, self.y)


@dataclass(frozen=True)
class Dataset:
    """A loaded, split and normalized dataset.

    ``val`` is a seeded part of the source's training split and ``train`` the rest; ``test`` is the
    source's test split (or a fixed part carved from its data when it has none) and is meant only for
    final evaluation. Every split was normalized with the per-channel ``mean``/``std`` of ``train``:
    ``x = (raw - mean) / std``, where raw pixels are in [0, 1].

    Text data have ``text`` (:class:`~distil.data.text.TextInfo`: the tokenizer and its statistics);
    their splits hold int64 token ids ``(N, L)`` right-padded with 0, not normalized
    (``mean``/``std`` are ``(0.0,)``/``(1.0,)``), and ``input_shape`` is ``(max_length,)``.

    With few labels (``data.labels_per_class`` / ``data.labelled_fraction``; :mod:`distil.data.labels`)
    ``train`` holds only the samples that kept their labels and ``unlabeled`` the other training
    inputs, ``y`` None (their labels are not kept anywhere); ``label_subset`` says how they were chosen.
    The normalization statistics are those of all training inputs, labelled or not.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    text: TextInfo | None = None
    unlabeled: Split | None = None
    label_subset: dict[str, Any] | None = None
    #: paired data: how the teacher's inputs (``Split.x_teacher``) look and what each model sees (see :class:`Pairing`)
    pairing: Pairing | None = None

    @property
    def paired(self) -> bool:
        return self.pairing is not None

    def for_teacher(self) -> Dataset:
        """The dataset as the teacher sees it: every split's ``x_teacher`` as its inputs, the teacher's
        input shape and normalization (the dataset itself when not paired). Train or evaluate the teacher on it."""
        if self.pairing is None:
            return self
        p = self.pairing
        return replace(self._each_split(Split.for_teacher), input_shape=p.input_shape, mean=p.mean, std=p.std)

    def for_student(self) -> Dataset:
        """The dataset as the students see it, unpaired: every split's ``x`` alone (the dataset itself when
        not paired). For strategies whose teachers are students too (born-again generations)."""
        return self if self.pairing is None else self._each_split(Split.for_student)

    def _each_split(self, side: Callable[[Split], Split]) -> Dataset:
        """Every split (and the unlabeled pool) through ``side``; the pairing dropped."""
        unlabeled = None if self.unlabeled is None else side(self.unlabeled)
        return replace(self, train=side(self.train), val=side(self.val), test=side(self.test), unlabeled=unlabeled, pairing=None)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: name, source, split sizes, input shape, classes and normalization (and the tokenizer)."""
        summary = {
            "name": self.name,
            "source": self.source,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "mean": [round(m, 6) for m in self.mean],
            "std": [round(s, 6) for s in self.std],
        }
        if self.unlabeled is not None:
            summary["sizes"]["unlabeled"] = len(self.unlabeled)  # type: ignore[index]
            summary["label_subset"] = dict(self.label_subset or {})
        if self.text is not None:
            summary["text"] = self.text.describe()
        if self.pairing is not None:
            summary["paired"] = self.pairing.describe(self.input_shape)
        return summary


@dataclass(frozen=True)
class Pairing:
    """The teacher's side of paired data: its input shape and normalization, and what each side is.

    ``teacher``/``student`` name the two modalities for the table and report (e.g. ``"camera image"``
    and ``"low-resolution sensor"``); ``derived`` says how the student's inputs were made from the
    teacher's when a transform made them (:mod:`distil.data.pairs`), else ``None``.
    """

    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    teacher: str = "x_teacher"
    student: str = "x"
    derived: str | None = None

    def describe(self, student_shape: tuple[int, ...]) -> dict[str, Any]:
        return {
            "teacher": {"input": self.teacher, "input_shape": list(self.input_shape)},
            "student": {"input": self.student, "input_shape": list(student_shape), **({"derived": self.derived} if self.derived else {})},
        }
