"""distil.data: datasets as in-memory tensors, a registry of loaders, batched augmentation.

>>> data = load_dataset("fashion_mnist", val_size=5000, seed=0)
>>> data.train.x.shape, data.input_shape
(torch.Size([55000, 1, 28, 28]), (1, 28, 28))

A dataset is a registered loader (``(path, **options) -> RawData``) plus the common work done by
:func:`load_dataset`: carving the validation (and, when missing, test) split and normalizing with
statistics of the training part. Add your own with :func:`register_dataset`. Text sources return
:class:`RawText` (sentences) instead; their splits are tokenized (:mod:`distil.data.text`). Tagging
sources return :class:`RawTagged` (words and a tag per word): a tag per token (:mod:`distil.data.text.tagging`).

Augmentation: :class:`BatchAugment` (crop and flip of images and signals), :class:`TextAugment`
(masking, replacement and n-gram sampling of token ids); both follow :class:`Augment`.
"""

from distil.data.augment import Augment, AugmentParams, AugmentViews, BatchAugment
from distil.data.load import load_dataset
from distil.data.raw import RawData, RawTagged, RawText
from distil.data.registry import list_datasets, register_dataset
from distil.data.split import Dataset, Split
from distil.data.text import TextInfo
from distil.data.text_augment import TextAugment, TextParams

# Registers the built-in datasets (after the registry exists).
import distil.data.sources  # noqa: F401  isort: skip

__all__ = [
    "Augment",
    "AugmentParams",
    "AugmentViews",
    "BatchAugment",
    "Dataset",
    "RawData",
    "RawTagged",
    "RawText",
    "Split",
    "TextAugment",
    "TextInfo",
    "TextParams",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]
