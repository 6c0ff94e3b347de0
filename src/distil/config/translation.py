"""The config of a translation experiment (``kind: translation``): parallel data, a sequence-to-sequence
teacher and student, the distillation methods (Kim & Rush 2016) and how translations are scored.

A YAML file with ``kind: translation`` at the top is read by :func:`load_translation_config`; ``distil run``
checks the kind first (:func:`is_translation_config`) and runs :func:`distil.translation.run_translation`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from torch import nn

from distil.config.base import Section, registered
from distil.config.files import format_validation_error, read_raw
from distil.config.strategy import check_member_weights
from distil.config.training import TrainConfig
from distil.data.text.parallel import ParallelData, bible_pairs, build_parallel, read_pairs_file
from distil.errors import ConfigError
from distil.models.seq2seq import SEQ2SEQ
from distil.models.seq2seq_ensemble import Seq2SeqEnsemble

#: method -> (targets the student learns: the reference or the teacher's beam output, word-level KD on or off).
TRANSLATION_METHODS: dict[str, tuple[Literal["data", "teacher"], bool]] = {
    "data": ("data", False),  # the baseline: references, cross-entropy
    "word_kd": ("data", True),  # Kim & Rush §3.1: references, α·KD + (1−α)·CE per target token
    "seq_kd": ("teacher", False),  # §3.2: the teacher's beam outputs as targets, cross-entropy
    "seq_word_kd": ("teacher", True),  # §3.3 (Seq-KD + Word-KD): the teacher's beam outputs, α·KD + (1−α)·CE
}


class ParallelDataConfig(Section):
    """Sentence pairs: the Bible (King James → Reina-Valera 1909) or the user's pairs file."""

    source: Literal["bible", "pairs_file"] = "bible"
    from_module: str = Field("kjv", description="bible: the source side's SWORD module (a name, module id or folder)")
    to_module: str = Field("rv1909", description="bible: the target side's SWORD module")
    path: str | None = Field(None, description="pairs_file: a .tsv (source TAB target), .jsonl ({source, target}) or the source side's text file")
    target_path: str | None = Field(None, description="pairs_file: the target side's text file, line-aligned with path")
    max_words: int | None = Field(20, ge=1, description="keep pairs whose sides both have at most this many words")
    limit: int | None = Field(None, ge=10, description="keep a seeded random subset of this many pairs (small runs, tests)")
    val_size: float = Field(500, gt=0, description="pairs held out for validation (a count with repeats, or a fraction below 1); each distinct sentence is scored once")
    test_size: float = Field(500, gt=0, description="pairs held out for the test (a count with repeats, or a fraction below 1); each distinct sentence is scored once")
    vocab_size: int = Field(2000, ge=32, description="subword vocabulary per side, learnt on the training split only")
    subwords: Literal["bpe", "unigram"] = "bpe"
    max_length: int = Field(64, ge=8, description="tokens per sentence at most (the target's [BOS]/[EOS] included); longer ones are cut, and counted")

    def load(self, seed: int) -> ParallelData:
        """The pairs, split with ``seed``, vocabularies learnt on the training split, tokenized."""
        if self.source == "bible":
            pairs = bible_pairs(self.from_module, self.to_module, self.max_words)
        else:
            pairs = read_pairs_file(self.path, self.target_path, self.max_words)  # type: ignore[arg-type]
        return build_parallel(pairs, val=self.val_size, test=self.test_size, seed=seed, vocab_size=self.vocab_size, subwords=self.subwords, max_length=self.max_length, limit=self.limit)

    @model_validator(mode="after")
    def _file_needs_path(self) -> ParallelDataConfig:
        if self.source == "pairs_file" and not self.path:
            raise ValueError("data.path is required when data.source is pairs_file")
        return self


class Seq2SeqConfig(TrainConfig):
    """A sequence-to-sequence model and how it trains (the training fields are :class:`TrainConfig`'s).

    ``hidden`` and ``layers`` size either model (the LSTM's width and depth; the Transformer's ``d_model``
    and encoder layers); the other fields belong to one arch (:data:`ARCHS`), and one set (to a value
    other than its default) for the other arch is an error rather than silently ignored.
    """

    arch: str = Field("lstm_attention", description=f"one of {', '.join(SEQ2SEQ)}")
    embed: int = Field(128, ge=1, description="lstm_attention: embedding width")
    hidden: int = Field(256, ge=2, description="lstm_attention: LSTM width; transformer: d_model")
    layers: int = Field(1, ge=1, description="lstm_attention: LSTM layers; transformer: encoder layers")
    bidirectional: bool = Field(False, description="lstm_attention: a bidirectional encoder (the teacher of Kim & Rush 2016); false: one direction")
    heads: int = Field(4, ge=1, description="transformer: attention heads (hidden must be a multiple of heads, and even)")
    ffn: int | None = Field(None, ge=1, description="transformer: feed-forward width (default 4 × hidden)")
    decoder_layers: int | None = Field(None, ge=1, description="transformer: decoder layers (default: layers)")
    tie_embeddings: bool = Field(False, description="transformer: the output layer is the target embedding (Press & Wolf 2017)")
    dropout: float = Field(0.2, ge=0, lt=1)
    weights: str | None = Field(None, description="teacher: load these weights (.safetensors) instead of training")
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    clip_norm: float | None = Field(1.0, gt=0)
    batch_size: int = Field(64, ge=1)

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, arch: str) -> str:
        return registered("sequence-to-sequence model", arch, list(SEQ2SEQ))

    @model_validator(mode="after")
    def _fields_of_the_arch(self) -> Seq2SeqConfig:
        for arch, spec in ARCHS.items():
            wrong = sorted(f for f in spec.fields if arch != self.arch and getattr(self, f) != type(self).model_fields[f].default)
            if wrong:
                raise ValueError(f"{', '.join(wrong)}: for arch {arch} only, and this model's arch is {self.arch}")
        if self.arch == "transformer" and (self.hidden % self.heads or self.hidden % 2):
            raise ValueError(f"transformer: hidden (d_model) {self.hidden} must be even (sin/cos positions) and a multiple of heads ({self.heads})")
        return self

    def build(self, src_vocab: int, tgt_vocab: int, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return SEQ2SEQ[self.arch](src_vocab, tgt_vocab, **ARCHS[self.arch].options(self))

    def describe(self) -> str:
        return ARCHS[self.arch].describe(self)


@dataclass(frozen=True)
class Seq2SeqArch:
    """How the config serves one :data:`SEQ2SEQ` arch: the fields only it reads, its factory's keyword
    arguments from the config, and its one-line description (the table's ``arch`` column)."""

    fields: frozenset[str]
    options: Callable[[Seq2SeqConfig], dict[str, Any]]
    describe: Callable[[Seq2SeqConfig], str]


#: arch -> how the config builds and describes it.
ARCHS: dict[str, Seq2SeqArch] = {
    "lstm_attention": Seq2SeqArch(
        frozenset({"embed", "bidirectional"}),
        lambda c: {"embed": c.embed, "hidden": c.hidden, "layers": c.layers, "bidirectional": c.bidirectional, "dropout": c.dropout},
        lambda c: f"{'bi' if c.bidirectional else ''}lstm {c.layers}x{c.hidden}",
    ),
    "transformer": Seq2SeqArch(
        frozenset({"heads", "ffn", "decoder_layers", "tie_embeddings"}),
        lambda c: {"d_model": c.hidden, "heads": c.heads, "layers": c.layers, "decoder_layers": c.decoder_layers, "ffn": c.ffn, "dropout": c.dropout, "tie_embeddings": c.tie_embeddings},
        lambda c: f"transformer {c.layers}+{c.decoder_layers or c.layers}x{c.hidden} h{c.heads} ffn {c.ffn or 4 * c.hidden}",
    ),
}


class TranslationDistillConfig(Section):
    """Which students are trained, and the word-level KD term (Kim & Rush 2016)."""

    methods: list[str] = Field(["data", "word_kd", "seq_kd", "seq_word_kd"], description=f"students to train: {', '.join(TRANSLATION_METHODS)}")
    alpha: float = Field(0.5, ge=0, le=1, description="word-level KD: weight of KD(T) per target token; 1 − alpha on cross-entropy")
    T: float = Field(1.0, gt=0, description="word-level KD temperature")
    beam: int = Field(5, ge=1, description="sequence-level KD: the teacher's beam width on the training sources")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        for m in methods:
            registered("translation method", m, list(TRANSLATION_METHODS))
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods listed twice: {methods}")
        return methods


class Seq2SeqMemberConfig(Seq2SeqConfig):
    """One more teacher of an ensemble: a full model config (the defaults are :class:`Seq2SeqConfig`'s, not
    ``teacher``'s), trained on the references or loaded (``weights``), with its own seed."""

    seed: int | None = Field(None, description="seed of its initial weights and batch order (default: run seed + its position)")


class NoTranslationStrategy(Section):
    """One teacher: ``teacher`` → students."""

    name: Literal["none"] = "none"


class TranslationEnsembleOptions(Section):
    """Hinton et al. 2015 §3 for translation: ``teacher`` (member 0) and ``teachers`` averaged per target token
    (:mod:`distil.models.seq2seq_ensemble`); as ``strategy: {name: ensemble}`` of the image configs."""

    name: Literal["ensemble"]
    teachers: list[Seq2SeqMemberConfig] = Field(min_length=1, description="members besides `teacher`, which is member 0 (archs or seeds; the run's tokenizers)")
    weights: list[float] | None = Field(None, description="one weight per member (teacher first); normalised to sum 1; default equal")
    combine: Literal["probs", "logits"] = Field("probs", description="probs: mean of the members' softmax(z/T) per token; logits: mean of their logits")
    baseline: bool = Field(False, description="also distil each student method from `teacher` alone (the ordinary student_<method> rows)")

    @model_validator(mode="after")
    def _weights_fit_members(self) -> TranslationEnsembleOptions:
        check_member_weights(self.weights, len(self.teachers))
        return self


class TranslationEvalConfig(Section):
    beam: int = Field(5, ge=1, description="the beam width of the beam-search columns")
    length_penalty: float = Field(0.6, ge=0, description="alpha of GNMT's length penalty ((5 + |y|) / 6)^alpha in beam search")
    latency_sentences: int = Field(30, ge=1, description="test sentences each timed alone (batch 1), greedy and beam; the median is reported")
    examples: int = Field(5, ge=0, description="test sentences shown with every model's translation in the report")
    export: bool = Field(True, description="export the served student (sequence-level KD if trained, else the last) as ONNX encoder + decoder step under DIR/onnx/, checked on test sentences")
    parity_sentences: int = Field(50, ge=1, description="test sentences the ONNX export must translate as PyTorch does")


class TranslationConfig(Section):
    kind: Literal["translation"]
    name: str = "translation"
    seed: int = 0
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', ...")
    data: ParallelDataConfig = Field(default_factory=ParallelDataConfig)
    teacher: Seq2SeqConfig = Field(default_factory=lambda: Seq2SeqConfig(bidirectional=True))
    student: Seq2SeqConfig = Field(default_factory=lambda: Seq2SeqConfig(embed=64, hidden=128))
    distill: TranslationDistillConfig = Field(default_factory=TranslationDistillConfig)
    strategy: Annotated[NoTranslationStrategy | TranslationEnsembleOptions, Field(discriminator="name")] = Field(default_factory=NoTranslationStrategy)
    evaluate: TranslationEvalConfig = Field(default_factory=TranslationEvalConfig)

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_named(cls, value: Any) -> Any:
        if isinstance(value, dict) and "name" not in value:
            raise ValueError("strategy needs a name: 'ensemble' (with teachers: [...]) or 'none'")
        return value

    def teacher_members(self) -> list[tuple[str, Seq2SeqConfig, int]]:
        """Every teacher as ``(name, config, seed)``: ``teacher`` (the run's seed), then an ensemble's ``teacher_1`` … (their
        own seed, or the run's seed + their position)."""
        members: list[tuple[str, Seq2SeqConfig, int]] = [("teacher", self.teacher, self.seed)]
        if isinstance(self.strategy, TranslationEnsembleOptions):
            members += [(f"teacher_{i}", t, t.seed if t.seed is not None else self.seed + i) for i, t in enumerate(self.strategy.teachers, start=1)]
        return members

    def build_model(self, row: Mapping[str, Any], src_vocab: int, tgt_vocab: int) -> nn.Module:
        """The untrained model of one row of this run's table (``summary.json``'s ``models``), for its weights:
        a teacher's or the student's arch, or the ensemble of every teacher."""
        members = {name: (cfg, seed) for name, cfg, seed in self.teacher_members()}
        if row["role"] == "ensemble" and isinstance(self.strategy, TranslationEnsembleOptions):
            return Seq2SeqEnsemble([cfg.build(src_vocab, tgt_vocab, seed) for cfg, seed in members.values()], self.strategy.weights, self.strategy.combine)
        if row["role"] == "teacher" and row["name"] in members:
            cfg, seed = members[row["name"]]
            return cfg.build(src_vocab, tgt_vocab, seed)
        if row["role"] != "student":
            raise ConfigError(f"row {row['name']!r} (role {row['role']!r}) is not a model of this run's config (teachers: {', '.join(members)})")
        return self.student.build(src_vocab, tgt_vocab, self.seed)


def served_student(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The student a run exports and serves: the sequence-level-distilled one (the ensemble's when there is
    an ensemble), else the last student; None without students. Export and serve both ask here."""
    students = [r for r in rows if r["role"] == "student"]
    seq = [r for r in students if r["method"].split("→")[-1] == "seq_kd"]
    return next((r for r in seq if "→" in r["method"]), seq[0] if seq else students[-1] if students else None)


def is_translation_config(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` says ``kind: translation`` (anything unreadable: no, and the ordinary loader reports it)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(raw, dict) and raw.get("kind") == "translation"


def validate_translation_config(raw: dict[str, Any], source: str = "config") -> TranslationConfig:
    try:
        return TranslationConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, raw, root=TranslationConfig)) from None


def load_translation_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TranslationConfig:
    """Read, override and validate a translation YAML; relative data/weights paths resolve next to the file."""
    path = Path(path)
    config = validate_translation_config(read_raw(path, overrides), source=str(path))
    base = path.parent

    def resolve(p: str | None) -> str | None:
        return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

    data = config.data.model_copy(update={"path": resolve(config.data.path), "target_path": resolve(config.data.target_path)})
    teacher = config.teacher.model_copy(update={"weights": resolve(config.teacher.weights)})
    strategy = config.strategy
    if isinstance(strategy, TranslationEnsembleOptions):
        strategy = strategy.model_copy(update={"teachers": [t.model_copy(update={"weights": resolve(t.weights)}) for t in strategy.teachers]})
    return config.model_copy(update={"data": data, "teacher": teacher, "strategy": strategy})
