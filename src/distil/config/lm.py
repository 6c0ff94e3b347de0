"""The config of a language-model experiment (``kind: lm``): corpus, teacher, student, methods, generation.

A file with ``kind: lm`` at its top is an LM experiment; ``distil run`` reads it with
:func:`load_lm_config` (same YAML, ``KEY=VALUE`` overrides and error format as every config) and runs
:func:`distil.lm_experiment.run_lm_experiment`. Methods are presets of
:data:`~distil.engine.lm_trainer.LM_METHODS` by name, each field overridable::

    methods: [data, fkl, rkl, {name: gkd, on_policy: 0.5, params: {beta: 0.9}}, seqkd]
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from distil.config.base import Section, registered
from distil.config.files import format_validation_error, read_raw
from distil.engine.lm_trainer import LM_METHODS, LMMethod, LMTrainSettings
from distil.errors import ConfigError
from distil.losses import LOSSES

KIND = "lm"


class LMDataConfig(Section):
    source: str = Field("kjv", description="a SWORD module (kjv, rv1909, a module id or folder): see distil.data.text.sword")
    context_length: int = Field(64, ge=2, description="tokens a model reads; blocks are context_length + 1 tokens")
    vocab_size: int = Field(2048, ge=260, description="size of the BPE learnt on the training books (when tokenizer is null)")
    tokenizer: str | None = Field(None, description="null: learn a byte-level BPE on the training books; or a teacher folder (hf:PATH) with tokenizer.json")
    test_books: list[str] | int = Field(["Ruth", "Eccl", "Mark", "Jas"], description="held-out books (OSIS ids), or how many to draw with seed")
    val_books: list[str] | int = Field(["Esth", "Phil"], description="validation books (OSIS ids), or how many to draw with seed")
    books: list[str] | None = Field(None, description="keep only these books (default: all)")
    max_verses: int | None = Field(None, ge=1, description="keep only the first verses of each book (small tests)")


class LMTrainConfig(Section):
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    warmup: int = Field(50, ge=0)
    clip: float = Field(1.0, ge=0, description="gradient norm clip (0: off)")
    eval_every: int = Field(0, ge=0, description="log validation perplexity every this many steps (0: at the end only)")
    keep_best: bool = Field(True, description="end with the weights of the evaluation (every eval_every steps) with the lowest validation perplexity")
    blocks: int | None = Field(None, ge=1, description="train on a seeded subset of this many training blocks (default: all); students share it, and the teacher cache covers only it")

    def settings(self, prompt_tokens: int, sample_temperature: float) -> LMTrainSettings:
        return LMTrainSettings(**self.model_dump(exclude={"blocks"}), prompt_tokens=prompt_tokens, sample_temperature=sample_temperature)


class LMModelConfig(Section):
    model: str = Field("gpt", description="a zoo model (gpt), 'package.module:factory', or a causal LM folder hf:PATH")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="the model's arguments (gpt: width, depth, heads, mlp_ratio, dropout)")
    weights: str | None = Field(None, description="trained weights (.safetensors); the teacher is trained first when null and not hf:")
    train: LMTrainConfig = Field(default_factory=LMTrainConfig)


class LMMethodConfig(Section):
    name: str
    loss: str | None = None
    params: dict[str, Any] | None = None
    kd_weight: float | None = Field(None, ge=0)
    ce_weight: float | None = Field(None, ge=0)
    on_policy: float | None = Field(None, ge=0, le=1, description="fraction λ of steps on the student's own samples, scored by the teacher")
    sequence_level: bool | None = Field(None, description="train on the teacher's samples instead of the data")

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, value: str | None) -> str | None:
        return None if value is None else registered("loss", value, sorted(LOSSES))

    def method(self) -> LMMethod:
        base = LM_METHODS.get(self.name, LMMethod(self.name))
        changes = {k: v for k, v in self.model_dump(exclude={"name"}).items() if v is not None}
        return replace(base, **changes)


class SequenceLevelConfig(Section):
    samples: int = Field(4096, ge=1, description="teacher-written blocks (each continues a training block's prompt)")
    temperature: float = Field(1.0, ge=0, description="0: greedy; else sampling temperature")


class GenerationConfig(Section):
    prompts: list[str] = Field(
        ["In the beginning", "And Jesus said unto them,", "The LORD is my shepherd;", "Blessed are"],
        description="fixed prompts whose continuations the report shows side by side",
    )
    max_new_tokens: int = Field(40, ge=1)
    temperature: float = Field(0.0, ge=0, description="0: greedy (the report's samples)")
    prompt_tokens: int = Field(8, ge=1, description="prompt length of on-policy samples and of the speed test")
    sample_temperature: float = Field(1.0, gt=0, description="temperature of the student's on-policy samples")
    speed_batches: list[int] = Field([1, 32], description="batch sizes of the generation-speed test")
    speed_new_tokens: int = Field(48, ge=1, description="tokens generated per row in the speed test")
    speed_repeats: int = Field(3, ge=1)


class LMCacheConfig(Section):
    top_k: int = Field(256, ge=1, description="teacher logits kept per token (fp16 + ids, 4 bytes each); the rest share one logit. The run states and warns what the truncation loses (KL to the exact teacher)")
    dir: str | None = Field(None, description="teacher cache directory (default $DISTIL_CACHE or ~/.cache/distil/teacher)")


class LMExperimentConfig(Section):
    kind: Literal["lm"] = KIND
    name: str = "lm"
    seed: int = 0
    device: str = "auto"
    data: LMDataConfig = Field(default_factory=LMDataConfig)
    teacher: LMModelConfig
    student: LMModelConfig
    methods: list[LMMethodConfig] = Field(default_factory=lambda: [LMMethodConfig(name=n) for n in ("data", "fkl", "rkl", "gkd", "seqkd")])
    sequence_level: SequenceLevelConfig = Field(default_factory=SequenceLevelConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    cache: LMCacheConfig = Field(default_factory=LMCacheConfig)
    onnx: bool = Field(False, description="also export every gpt model to DIR/onnx/NAME.onnx with its KV cache and time greedy b=1 generation under ONNX Runtime")

    @field_validator("methods", mode="before")
    @classmethod
    def _names_or_mappings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("methods")
    @classmethod
    def _unique(cls, value: list[LMMethodConfig]) -> list[LMMethodConfig]:
        names = [m.name for m in value]
        if len(set(names)) != len(names):
            raise ValueError(f"method names must be unique, got {names}")
        for m in value:
            if m.name not in LM_METHODS and m.loss is None and not m.sequence_level:
                registered("method", m.name, list(LM_METHODS))
        return value


def is_lm_config(path: str | Path) -> bool:
    """Whether the YAML at ``path`` says ``kind: lm`` (False for anything unreadable: the usual loader reports it)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and raw.get("kind") == KIND


def load_lm_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LMExperimentConfig:
    """Read, override and validate an LM config; relative weight paths resolve next to the file."""
    path = Path(path)
    return validate_lm_config(read_raw(path, overrides), str(path), path.parent)


def validate_lm_config(raw: dict[str, Any], source: str = "config", base: Path | None = None) -> LMExperimentConfig:
    try:
        config = LMExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, raw, root=LMExperimentConfig)) from None
    if base is None:
        return config
    updates = {}
    for role in ("teacher", "student"):
        section = getattr(config, role)
        if section.weights and not Path(section.weights).expanduser().is_absolute():
            updates[role] = section.model_copy(update={"weights": str((base / section.weights).resolve())})
    return config.model_copy(update=updates)
