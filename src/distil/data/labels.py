"""Few labels: keep the labels of a seeded, stratified subset of the training split; the rest become unlabeled.

Semi-supervised learning is measured by withholding labels from a labelled dataset (Oliver et al.
2018, "Realistic Evaluation of Deep Semi-Supervised Learning Algorithms"; FixMatch's "40 labels" on
CIFAR-10 is 4 per class). :func:`keep_labels` does it once, at load time, to the training split
*after* the validation split was carved (validation and test keep their labels): ``per_class``
samples of each class, or ``fraction`` of each class rounded half up (at least 1 per class that has
any), chosen by a generator seeded with the run's seed. The chosen samples stay the training split;
the others become :attr:`Dataset.unlabeled <distil.data.Dataset.unlabeled>`, inputs only — their
labels are dropped here, so no training code can read them. :func:`labelled_mask` is the choice
itself, for a script that wants the withheld labels back (e.g. to score pseudo-labels).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from distil.data.split import Dataset, Split
from distil.data.tokens import IGNORE, concat
from distil.errors import DataError


def labelled_mask(
    y: torch.Tensor, num_classes: int, *, per_class: int | None = None, fraction: float | None = None, seed: int, class_names: tuple[str, ...] | None = None
) -> torch.Tensor:
    """bool ``(N,)``: which samples of labels ``y`` keep their label (see the module docstring).

    Exactly one of ``per_class`` (≥ 1) and ``fraction`` (in (0, 1]). Raises DataError naming the
    option (``labels_per_class`` / ``labelled_fraction``) when a class has fewer samples than asked,
    or when ``y`` holds a tag per token (tagging data).
    """
    if (per_class is None) == (fraction is None):
        raise DataError("give exactly one of labels_per_class and labelled_fraction")
    option = "labels_per_class" if per_class is not None else "labelled_fraction"
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise DataError(f"labels_per_class must be an integer >= 1, got {per_class!r}")
    if fraction is not None and not 0 < fraction <= 1:
        raise DataError(f"labelled_fraction must be in (0, 1], got {fraction!r}")
    if y.dim() != 1:
        raise DataError(
            f"{option}: the training data have a tag per token (tagging data, labels of shape {tuple(y.shape)}); "
            "keeping the labels of a few samples works for a label per sample (images, signals, text classification); remove it"
        )
    names = class_names or tuple(str(c) for c in range(num_classes))
    y = y.cpu()
    generator = torch.Generator().manual_seed(seed)
    keep = torch.zeros(len(y), dtype=torch.bool)
    for c in range(num_classes):
        members = (y == c).nonzero().squeeze(1)
        n = len(members)
        if per_class is not None:
            k = per_class
            if k > n:
                raise DataError(f"labels_per_class: {k:,} is more than class {names[c]!r} has in the training split ({n:,} after the validation split)")
        else:
            assert fraction is not None
            k = min(n, max(1, math.floor(fraction * n + 0.5)))  # half up, at least one (none of an absent class)
        keep[members[torch.randperm(n, generator=generator)[:k]]] = True
    return keep


def keep_labels(
    train: Split, num_classes: int, *, per_class: int | None = None, fraction: float | None = None, seed: int, class_names: tuple[str, ...] | None = None
) -> tuple[Split, Split]:
    """(labelled, unlabeled): the samples of ``train`` that keep their labels, and the others' inputs
    (``y`` None; paired inputs kept), both in their original order. See :func:`labelled_mask` for the choice and its errors."""
    if train.y is None:
        raise DataError("labels_per_class / labelled_fraction: the training split has no labels to keep")
    keep = labelled_mask(train.y, num_classes, per_class=per_class, fraction=fraction, seed=seed, class_names=class_names).to(train.x.device)
    return train.subset(keep), train.subset(~keep).without_labels()


def with_few_labels(data: Dataset, *, per_class: int | None = None, fraction: float | None = None, seed: int) -> Dataset:
    """``data`` whose training split keeps only the chosen labels, the rest in ``data.unlabeled``."""
    labelled, unlabeled = keep_labels(data.train, data.num_classes, per_class=per_class, fraction=fraction, seed=seed, class_names=data.class_names)
    rule = {"labels_per_class": per_class} if per_class is not None else {"labelled_fraction": fraction}
    return replace(data, train=labelled, unlabeled=unlabeled, label_subset={**rule, "seed": seed, "stratified": True})


def labelled_then_unlabeled(labelled: Split, pool: Split, repeats: int = 1) -> Split:
    """One training split: ``labelled`` repeated ``repeats`` times, then the inputs of ``pool`` labelled
    ``IGNORE`` (−100), which CE leaves out — the teacher's terms read every row, the labels only the labelled ones."""
    assert labelled.y is not None and labelled.y.dim() == 1
    x = concat([labelled.x] * repeats + [pool.x])
    y = torch.cat([labelled.y.repeat(repeats), torch.full((len(pool),), IGNORE, dtype=labelled.y.dtype, device=labelled.y.device)])
    return Split(x, y)
