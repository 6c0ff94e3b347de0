"""What a dataset loader returns: :class:`RawData`, the arrays as the source has them, or
:class:`RawText`, the sentences as the source has them.

A loader only reads; the common work (carving splits, normalizing) is done once by
:func:`distil.data.load_dataset`, so a user's loader is as short as the built-in ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class RawData:
    """The arrays of one source, before splitting and normalization.

    ``train_x``/``test_x`` are numeric numpy arrays of shape ``(N, *input_shape)`` (channels first:
    C×H×W for images, C×L for signals). Their scale is a convention of the dtype:

    * ``uint8`` means 8-bit pixels and is divided by 255, so raw values are in [0, 1];
    * any other numeric dtype is taken as is (cast to float32): floats in [0, 1] for images, or
      whatever scale the source uses (MNIST-1D signals come already standardised).

    Either way :func:`~distil.data.load_dataset` then normalizes every split with the per-channel
    mean/std of the training part, so the scale only matters for what ``Dataset.mean``/``std`` say.

    ``train_y``/``test_y`` are integer labels in ``0 .. len(class_names) - 1``. ``test_x`` and
    ``test_y`` are ``None`` when the source has no test split; one is then carved from the training
    data. ``source`` says where the data came from (a path, ``"generated: ..."``); empty means "the
    path the loader was given".

    Paired data (a teacher that sees another modality of the same samples): ``train_x_teacher`` (and
    ``test_x_teacher`` when there is a test split) hold the teacher's input of every sample, row for
    row with ``train_x``/``test_x``, in any shape (the same for all rows) and the same dtype conventions;
    they are split and normalized (with their own statistics) like the student's.

    ``held_out_test``: the test split differs from the training split by construction (spoken words: voices
    no training clip uses), so a transfer set made from this source takes its training inputs only.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    source: str = ""
    train_x_teacher: np.ndarray | None = None
    test_x_teacher: np.ndarray | None = None
    #: the test split is held out by construction (other speakers, say): a transfer set never takes it
    held_out_test: bool = False


@dataclass(frozen=True, eq=False)
class RawText:
    """The sentences of one text source, before splitting and tokenization.

    ``train_texts``/``test_texts`` are the examples as strings, one per sample (non-empty after
    stripping). ``train_y``/``test_y`` are integer labels in ``0 .. len(class_names) - 1``, as for
    :class:`RawData`; ``test_texts`` and ``test_y`` are ``None`` when the source has no test split
    (one is then carved, as for arrays).

    :func:`~distil.data.load_dataset` carves the splits exactly as it does for :class:`RawData`, then
    tokenizes every split with the dataset's tokenizer instead of normalizing. An unlabeled corpus
    (a transfer set only) has ``train_y=None`` and no class names.
    """

    train_texts: Sequence[str]
    train_y: np.ndarray | None
    test_texts: Sequence[str] | None
    test_y: np.ndarray | None
    class_names: tuple[str, ...]
    source: str = ""

    @property
    def labelled(self) -> bool:
        """Whether the source has labels (it can then be a dataset, not only a transfer set)."""
        return self.train_y is not None


@dataclass(frozen=True, eq=False)
class RawTagged:
    """The sentences of one sequence-labelling source: words and a tag per word, before tokenization.

    ``train_words``/``test_words``: each sentence as its words (strings); ``train_tags``/``test_tags``:
    for each sentence an int array of tag indices into ``class_names``, one per word. ``test_words``
    and ``test_tags`` are ``None`` when the source has no test split (one is then carved).
    :func:`~distil.data.load_dataset` tokenizes the words (each may become several pieces) and puts
    each word's tag on its first piece (:mod:`distil.data.text.tagging`).
    """

    train_words: Sequence[Sequence[str]]
    train_tags: Sequence[np.ndarray]
    test_words: Sequence[Sequence[str]] | None
    test_tags: Sequence[np.ndarray] | None
    class_names: tuple[str, ...]
    source: str = ""
