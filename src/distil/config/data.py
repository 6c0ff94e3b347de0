"""The ``data:`` section: which dataset, its validation split, its tokenizer (text), and batched augmentation."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from distil.config.base import Section
from distil.data import BatchAugment, Dataset, load_dataset
from distil.data.text.tokenizer import DEFAULT_MAX_LENGTH, MIN_MAX_LENGTH


class AugmentConfig(Section):
    """Batched augmentation of training inputs (off by default: then teacher outputs are cached)."""

    crop_padding: int = Field(0, ge=0, description="random crop after zero padding by this many pixels")
    hflip: bool = Field(False, description="random horizontal flip")

    def build(self) -> BatchAugment:
        """The augmentation the trainer applies to whole batches (a no-op when both are off)."""
        return BatchAugment(crop_padding=self.crop_padding, hflip=self.hflip)


class DataConfig(Section):
    name: str = Field(description="a registered dataset (see `distil datasets`) or your loader as 'package.module:loader'")
    path: str | None = Field(None, description="where the data is; relative paths are relative to the config file")
    val_size: int | float = Field(0.1, description="validation samples carved from train: a count (int) or a fraction (float)")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options, e.g. num_samples for mnist1d")
    tokenizer: str | None = Field(None, description="text data only: 'minilm' (the default), 'hf:PATH' or a folder with a tokenizer.json")
    max_length: int = Field(DEFAULT_MAX_LENGTH, ge=MIN_MAX_LENGTH, description="text data: tokens kept per sentence, special tokens included (longer ones are cut and counted)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    def load(self, seed: int) -> Dataset:
        """The dataset with its validation split carved by ``seed``, normalized (text: tokenized), on the CPU."""
        return load_dataset(self.name, path=self.path, val_size=self.val_size, seed=seed, tokenizer=self.tokenizer, max_length=self.max_length, **self.options)
