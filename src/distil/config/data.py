"""The ``data:`` section: which dataset, its validation split, its tokenizer (text), batched augmentation,
(semi-supervised) how many of the training labels to keep, and (cross-modal) the student's view of paired data."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import Field, model_validator

from distil.config.base import Section
from distil.data import Augment, BatchAugment, Dataset, TextAugment, load_dataset
from distil.data.audio.spec_augment import SpecAugment
from distil.data.labels import with_few_labels
from distil.data.mix import Mix, Mixed
from distil.data.pairs import StudentView, with_student_view
from distil.data.text.tokenizer import DEFAULT_MAX_LENGTH, MIN_MAX_LENGTH
from distil.data.views import StrongViews
from distil.errors import ConfigError, DataError

#: The fields of each kind of data, with their defaults (any other value on the other kind is an error).
IMAGE_FIELDS = {"crop_padding": 0, "hflip": False, "mixup": 0.0, "cutmix": 0.0, "mix_prob": 1.0, "cutmix_share": 0.5}
TEXT_FIELDS = {"mask": 0.0, "replace": 0.0, "ngram": 0.0, "max_ngram": 5}
#: SpecAugment's fields (spectrograms: (C, frequency, time) inputs such as spoken_words' log-mel).
SPEC_FIELDS = {"freq_masks": 0, "freq_width": 0, "time_masks": 0, "time_width": 0}


class AugmentConfig(Section):
    """Batched augmentation of training inputs (off by default: then teacher outputs are cached).

    Images and signals: ``crop_padding``, ``hflip``; ``mixup`` / ``cutmix`` pairs for function
    matching (Beyer et al. 2022; :mod:`distil.data.mix`: mixed first, then cropped and flipped; in the
    view cache the pairs are pre-drawn with the views, so the teacher and the student see the same
    mixed image; label terms read the mixed labels). Text (Tang et al. 2019 §3.3): ``mask``,
    ``replace``, ``ngram``, ``max_ngram``. Spectrograms (SpecAugment, Park et al. 2019): ``freq_masks``
    masks of up to ``freq_width`` mel channels and ``time_masks`` of up to ``time_width`` frames. With it on, the view cache's ``cache.views`` pre-drawn views
    per sample are the paper's synthetic copies of each sentence.
    """

    crop_padding: int = Field(0, ge=0, description="random crop after zero padding by this many pixels")
    hflip: bool = Field(False, description="random horizontal flip")
    mixup: float = Field(0.0, ge=0, description="mixup: each input blended with a random training input, x = λ·x_i + (1−λ)·x_j, λ ~ Beta(mixup, mixup); 0: off (function matching: 1)")
    cutmix: float = Field(0.0, ge=0, description="cutmix: a box of a random training input pasted in, its area (1−λ), λ ~ Beta(cutmix, cutmix); 0: off")
    mix_prob: float = Field(1.0, ge=0, le=1, description="the share of inputs that are mixed (mixup or cutmix); the others are shown as they are")
    cutmix_share: float = Field(0.5, ge=0, le=1, description="with both mixup and cutmix on: the share of mixed inputs that are cutmix pairs")
    mask: float = Field(0.0, ge=0, le=1, description="text: probability that a token becomes [MASK]")
    replace: float = Field(0.0, ge=0, le=1, description="text: probability that a token becomes a random word of the training data")
    ngram: float = Field(0.0, ge=0, le=1, description="text: probability that only a random n-gram of the sentence is kept")
    max_ngram: int = Field(5, ge=1, description="text: n-gram sampling keeps n tokens, n uniform in 1..max_ngram")
    freq_masks: int = Field(0, ge=0, description="spectrograms (SpecAugment): frequency masks per sample")
    freq_width: int = Field(0, ge=0, description="spectrograms: a frequency mask covers 0..freq_width channels (uniform)")
    time_masks: int = Field(0, ge=0, description="spectrograms (SpecAugment): time masks per sample")
    time_width: int = Field(0, ge=0, description="spectrograms: a time mask covers 0..time_width frames (uniform)")

    @model_validator(mode="after")
    def _one_draw_per_token(self) -> AugmentConfig:
        changed = [name for name in ("mix_prob", "cutmix_share") if getattr(self, name) != IMAGE_FIELDS[name]]
        if self.mixup == 0 and self.cutmix == 0 and changed:
            raise ValueError(f"{' and '.join(changed)} choose how inputs are mixed, but mixup and cutmix are both 0 (off); set mixup and/or cutmix (function matching: 1.0)")
        if self.mask + self.replace > 1:
            raise ValueError(f"mask + replace must be at most 1 (one draw per token decides which), got {self.mask} + {self.replace}")
        return self

    def build(self, data: Dataset | None = None) -> Augment:
        """The augmentation the trainer applies to whole batches of ``data`` (a no-op when all are off).

        Text data (``data.text`` is set) get a :class:`~distil.data.TextAugment`, any other data a
        :class:`~distil.data.BatchAugment`; a field of the other kind is a ConfigError.
        """
        text = getattr(data, "text", None)
        for name, default in ({**IMAGE_FIELDS, **SPEC_FIELDS} if text is not None else TEXT_FIELDS).items():
            value = getattr(self, name)
            if value == default:
                continue
            if data is None:
                raise ConfigError(f"data.augment.{name} is for text data: build the augmentation with the data (build(data))")
            kind = "text" if text is not None else "image (non-text)"
            raise ConfigError(f"data.augment.{name} does not apply to {kind} data {data.name!r} ({name}: {value!r}); remove it")
        if text is not None and text.task == "tag" and self.ngram > 0:
            raise ConfigError(
                f"data.augment.ngram: {self.ngram} keeps a random span of each sentence, which moves its tokens away from "
                f"their tags in {data.name!r} (a tag per token); use mask and replace, which keep every token in place"
            )
        if text is not None:
            return TextAugment.for_text(text, mask=self.mask, replace=self.replace, ngram=self.ngram, max_ngram=self.max_ngram)
        if any(getattr(self, name) != default for name, default in SPEC_FIELDS.items()):
            if self.mixup or self.cutmix:
                raise ConfigError("data.augment: mixup/cutmix do not combine with SpecAugment masks (freq_masks, time_masks) yet; use one or the other")
            return self._spec_augment(data)
        base = BatchAugment(crop_padding=self.crop_padding, hflip=self.hflip)
        if self.mixup == 0 and self.cutmix == 0:
            return base
        return Mixed(base, Mix(mixup=self.mixup, cutmix=self.cutmix, prob=self.mix_prob, cutmix_share=self.cutmix_share))

    def _spec_augment(self, data: Dataset | None) -> SpecAugment:
        """SpecAugment for spectrogram data: (C, frequency, time) inputs, without crop or flip."""
        if data is None:
            raise ConfigError("data.augment.freq_masks/time_masks are for spectrograms: build the augmentation with the data (build(data))")
        if self.crop_padding or self.hflip:
            raise ConfigError(
                "data.augment: SpecAugment masks (freq_masks, time_masks) do not combine with crop_padding or hflip; "
                "spoken_words already shifts each word in time, so remove crop_padding and hflip"
            )
        if len(data.input_shape) != 3:
            raise ConfigError(f"data.augment.freq_masks/time_masks mask spectrograms of shape (C, frequency, time), but {data.name!r} has inputs of shape {data.input_shape}")
        _, n_freq, n_time = data.input_shape
        try:
            return SpecAugment(n_freq, n_time, self.freq_masks, self.freq_width, self.time_masks, self.time_width)
        except DataError as err:
            raise ConfigError(f"data.augment: {err}") from None


class ViewsConfig(Section):
    """Strong views of images and signals for the two-view strategies (self-supervised, FixMatch's
    strong branch): random resized crop, flip, brightness/contrast jitter, random erasing, noise
    (:class:`~distil.data.views.StrongViews`). Applied after ``data.augment``'s crop and flip."""

    scale: float = Field(1.0, gt=0, le=1, description="random resized crop: the smallest crop's share of the area (1: no crop)")
    hflip: bool = Field(False, description="flip the width (the time axis of signals) with probability 1/2")
    jitter: float = Field(0.0, ge=0, lt=1, description="brightness and contrast: x <- a*x + b, a in [1-j, 1+j], b in [-j, j] (normalized units)")
    erase: float = Field(0.0, ge=0, le=1, description="probability of erasing a random rectangle (side 20-50 % of the input's) to the mean")
    noise: float = Field(0.0, ge=0, description="std of Gaussian noise added last (normalized units)")

    def build(self) -> StrongViews:
        return StrongViews(scale=self.scale, hflip=self.hflip, jitter=self.jitter, erase=self.erase, noise=self.noise)


class StudentViewConfig(Section):
    """Paired data by transform (cross-modal distillation): the teacher sees the dataset's inputs, the
    student a cheap sensor's view derived from them — ``downsample``×``downsample`` average pooling,
    then Gaussian noise fixed per sample (:mod:`distil.data.pairs`)."""

    downsample: int = Field(1, ge=1, description="pooling factor: each student pixel averages downsample×downsample of the teacher's (signals: downsample steps)")
    noise: float = Field(0.0, ge=0, description="std of the sensor noise added once per sample (normalized units)")
    seed: int = Field(0, description="seed of the noise (per split; the same for every run seed)")

    def build(self) -> StudentView:
        return StudentView(downsample=self.downsample, noise=self.noise, seed=self.seed)


class InputNames(Section):
    """What the two inputs of paired data are, for the table and report (e.g. camera image / low-resolution sensor)."""

    teacher: str = Field("x_teacher", min_length=1, description="the teacher's input, e.g. 'camera image'")
    student: str = Field("x", min_length=1, description="the student's input, e.g. 'low-resolution sensor'")


class DataConfig(Section):
    name: str = Field(description="a registered dataset (see `distil datasets`) or your loader as 'package.module:loader'")
    path: str | None = Field(None, description="where the data is; relative paths are relative to the config file")
    val_size: int | float = Field(0.1, description="validation samples carved from train: a count (int) or a fraction (float)")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options, e.g. num_samples for mnist1d")
    tokenizer: str | None = Field(None, description="text data only: 'minilm' (the default), 'hf:PATH' or a folder with a tokenizer.json")
    max_length: int = Field(DEFAULT_MAX_LENGTH, ge=MIN_MAX_LENGTH, description="text data: tokens kept per sentence, special tokens included (longer ones are cut and counted)")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    labels_per_class: int | None = Field(
        None, ge=1, description="keep the labels of only this many training samples per class (seeded, stratified); the rest become unlabeled inputs"
    )
    labelled_fraction: float | None = Field(
        None, gt=0, le=1, description="keep the labels of this fraction of each class's training samples (rounded, at least 1); the rest become unlabeled inputs"
    )

    student_view: StudentViewConfig | None = Field(
        None, description="paired data by transform: the teacher sees the inputs, the student this low-resolution noisy view of them"
    )
    inputs: InputNames | None = Field(None, description="paired data: names of the teacher's and the student's inputs (for the table and report)")

    @model_validator(mode="after")
    def _one_label_rule(self) -> DataConfig:
        if self.labels_per_class is not None and self.labelled_fraction is not None:
            raise ValueError(
                f"labels_per_class ({self.labels_per_class}) and labelled_fraction ({self.labelled_fraction}) are two ways of choosing "
                "the labelled training samples; set one of them"
            )
        return self

    def load(self, seed: int) -> Dataset:
        """The dataset with its validation split carved by ``seed``, normalized (text: tokenized), on the CPU;
        with ``labels_per_class`` / ``labelled_fraction``, only the labels of a subset chosen by ``seed``
        are kept (the rest of the training inputs are ``Dataset.unlabeled``; :mod:`distil.data.labels`)."""
        data = load_dataset(self.name, path=self.path, val_size=self.val_size, seed=seed, tokenizer=self.tokenizer, max_length=self.max_length, **self.options)
        data = self._paired(data)
        if self.labels_per_class is None and self.labelled_fraction is None:
            return data
        try:
            return with_few_labels(data, per_class=self.labels_per_class, fraction=self.labelled_fraction, seed=seed)
        except DataError as err:
            raise ConfigError(f"data.{err}") from None

    def _paired(self, data: Dataset) -> Dataset:
        """Paired data: the student's view derived (``student_view``), the two inputs named (``inputs``)."""
        if self.student_view is not None:
            names = self.inputs or InputNames(teacher="original input", student="derived view")
            try:
                return with_student_view(data, self.student_view.build(), teacher=names.teacher, student=names.student)
            except DataError as err:
                raise ConfigError(f"data.{err}") from None
        if data.pairing is None:
            if self.inputs is not None:
                raise ConfigError(f"data.inputs names the two inputs of paired data, but {data.name!r} has one input per sample (no x_teacher, no student_view); remove it")
            return data
        if self.inputs is None:
            return data
        return replace(data, pairing=replace(data.pairing, teacher=self.inputs.teacher, student=self.inputs.student))
