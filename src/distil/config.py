"""The experiment config: YAML validated by pydantic before any work starts.

Every section forbids unknown keys, so a typo is an error that names the field and lists the keys
the section accepts. Command-line overrides (``student.epochs=5``) are applied to the raw mapping
before validation, so they are checked exactly like the file.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distil.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AugmentConfig(Section):
    """Batched augmentation of training inputs (off by default: then teacher outputs are cached)."""

    crop_padding: int = Field(0, ge=0, description="random crop after zero padding by this many pixels")
    hflip: bool = Field(False, description="random horizontal flip")


class DataConfig(Section):
    name: str = Field(description="a registered dataset (see `distil datasets`)")
    path: str | None = Field(None, description="where the data is; relative paths are relative to the config file")
    val_size: int | float = Field(0.1, description="validation samples carved from train: a count (int) or a fraction (float)")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options, e.g. num_samples for mnist1d")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class TrainConfig(Section):
    """How one model is trained: the same settings serve the teacher, scratch and distilled students."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    milestones: list[float] = Field([0.5, 0.75], description="step schedule: fractions of the epochs where lr *= gamma")
    gamma: float = Field(0.1, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="bf16: forward passes under bf16 autocast (weights, gradients and loss maths stay fp32); auto: bf16 where "
        "the hardware has it natively (CUDA with bf16; a CPU with avx512_bf16 or AMX), else fp32. Default fp32: bf16 measured "
        "1.3-2x faster for CNNs on an avx512_bf16 CPU but slower for a small MLP, and it changes the trained weights "
        "(benchmarks/precision.md)",
    )


class ModelConfig(TrainConfig):
    arch: str = Field(description="a registered model (see `distil models`) or 'package.module:factory'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="arguments of the model factory")

    @field_validator("kwargs")
    @classmethod
    def _data_decides_shapes(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        taken = sorted({"input_shape", "num_classes"} & set(kwargs))
        if taken:
            raise ValueError(f"{', '.join(taken)} come from the dataset; remove them from kwargs")
        return kwargs


class TeacherConfig(ModelConfig):
    weights: str | None = Field(None, description="load these weights instead of training: .safetensors, or a tensor-only PyTorch state_dict (.pt/.pth/.bin, read with weights_only=True)")
    sha256: str | None = Field(None, description="expected sha256 of the weights file")


def _registered(kind: str, name: str, known: list[str]) -> str:
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.3)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown {kind} {name!r}{hint}; known {kind}s: {', '.join(known)}")
    return name


class TermConfig(Section):
    """One term of the objective. In ``distill.terms`` a term whose loss is already in the method
    updates that term (only the fields given); any other is added."""

    loss: str = Field(description="a registered loss (see `distil losses`)")
    weight: float = 1.0
    student: str = Field("logits", description="tap on the student: 'logits', a module path ('layer2', 'fc:input') or a group: stages, middle_stage, last_stage, embedding")
    teacher: str | None = Field(None, description="tap on the teacher (default: the student's tap name)")
    params: dict[str, Any] = Field(default_factory=dict, description="loss arguments, e.g. {T: 4}")
    schedule: dict[str, float] | None = Field(None, description="{warmup: F}, {until: F} or {after: F}, F a fraction of training")

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, loss: str) -> str:
        from distil.losses import LOSSES

        return _registered("loss", loss, sorted(LOSSES))


class DistillConfig(Section):
    """The distillation objective: a method preset (``distil methods``), optionally adjusted term by term."""

    method: str = Field("kd", description="a preset from `distil methods`: kd, dkd, at, fitnet, crd, crd+kd, ...")
    terms: list[TermConfig] = Field(default_factory=list, description="terms updating or extending the method's")

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        from distil.engine.methods import METHODS

        return _registered("method", method, list(METHODS))

    def term_specs(self, method: str | None = None, extend: bool = True) -> list:
        """The method's terms with ``terms`` applied: same loss → update the given fields, else append.

        ``method`` defaults to the config's. With ``extend=False`` (``distil bench methods``, which runs
        presets side by side) terms only update: a term is not forced onto every method.
        """
        from dataclasses import replace

        from distil.engine.methods import METHODS, TermSpec

        method = method or self.method
        specs = list(METHODS[method].terms)
        for term in self.terms:
            given = {k: getattr(term, k) for k in term.model_fields_set}
            match = next((i for i, s in enumerate(specs) if s.loss == term.loss), None)
            if match is None:
                if extend:
                    specs.append(TermSpec(**term.model_dump()))
            else:
                if "params" in given:
                    given["params"] = {**specs[match].params, **given["params"]}
                specs[match] = replace(specs[match], **given)
        return specs


class CacheConfig(Section):
    """Where the teacher's outputs come from: exact cache, pre-drawn augmented views, or online forwards."""

    mode: Literal["auto", "exact", "views", "online"] = Field(
        "auto", description="auto: exact cache without augmentation, pre-drawn views with it (logit terms only), online otherwise"
    )
    views: int = Field(4, ge=1, description="augmented views pre-drawn per sample (FKD); the teacher runs once per view")
    top_k: int = Field(10, ge=1, description="teacher logits kept per view in fp16; the other classes share their residual mass")
    max_bytes: int = Field(4 * 1024**3, ge=0, description="the most a cache may take; larger caches fall back to the online teacher")
    dir: str | None = Field(None, description="where caches are stored (default $DISTIL_CACHE or ~/.cache/distil/teacher)")
    store: bool = Field(True, description="keep caches on disk, keyed by teacher weights, data and settings, to reuse across runs")


class MeasureConfig(Section):
    latency_repeats: int = Field(50, ge=1, description="timed batch-1 forwards after warm-up (median reported)")
    throughput_repeats: int = Field(5, ge=1, description="timed batch-256 forwards")


class PruneConfig(Section):
    """Pruning, then recovery: fine-tune with the KD loss against the run's teacher (plus CE) after each round."""

    method: Literal["channels", "magnitude"] = Field("channels", description="channels: remove whole channels (a smaller dense model); magnitude: zero the smallest weights globally")
    sparsity: float = Field(0.5, ge=0, lt=1, description="fraction of channels (channels) or of conv/linear weights (magnitude) removed, in [0, 1)")
    rounds: int = Field(1, ge=1, description="prune → fine-tune rounds; the sparsity is reached in equal steps")
    epochs: int = Field(2, ge=0, description="recovery epochs after each round (0: no fine-tune)")
    lr: float = Field(0.01, gt=0, description="recovery learning rate (SGD, cosine)")
    batch_size: int = Field(256, ge=1)
    temperature: float = Field(4.0, gt=0, description="KD temperature of the recovery objective")
    alpha: float = Field(0.9, ge=0, le=1, description="recovery objective: alpha × KD + (1 − alpha) × CE")


class Int8Config(Section):
    """PyTorch int8 (torch.ao FX, x86/fbgemm): static post-training, dynamic (Linear only) or quantization-aware training with KD."""

    mode: Literal["static", "dynamic", "qat"] = "static"
    backend: Literal["x86", "fbgemm", "qnnpack"] = "x86"
    calibration: int = Field(1024, ge=1, description="training inputs used to calibrate activation ranges")
    epochs: int = Field(1, ge=1, description="qat: epochs of KD fine-tuning with fake quantization")
    lr: float = Field(0.001, gt=0, description="qat: learning rate")
    min_agreement: float = Field(0.9, ge=0, le=1, description="least argmax agreement with the fp32 model on held-out inputs")


class OnnxConfig(Section):
    exporter: Literal["dynamo", "torchscript"] = Field("dynamo", description="torch.onnx exporter: dynamo (torch.export) or the legacy torchscript")
    opset: int = Field(18, ge=13)
    tolerance: float = Field(1e-3, gt=0, description="largest max |onnxruntime − torch| of the logits accepted")
    samples: int = Field(1000, ge=1, description="held-out inputs (validation split) of the parity check")


class OnnxInt8Config(Section):
    format: Literal["qdq", "qoperator"] = Field("qdq", description="ONNX Runtime quantized graph form")
    per_channel: bool = True
    calibration: int = Field(1024, ge=1, description="training inputs used to calibrate activation ranges")
    min_agreement: float = Field(0.9, ge=0, le=1, description="least argmax agreement with the fp32 model on held-out inputs")


class CompressConfig(Section):
    """``distil compress`` (and ``distil run`` when present): steps applied in order to the distilled student.

    ``prune`` replaces the model the later steps start from; ``int8``, ``onnx`` and ``onnx-int8`` each
    add a deployable model of the current one. Every step adds a row to the run's table.
    """

    student: str | None = Field(None, description="the model of summary.json to compress (default: student_<distill.method>)")
    steps: list[str] = Field(["onnx", "onnx-int8", "prune", "int8", "onnx", "onnx-int8"], description="steps in order: prune, int8, onnx, onnx-int8")
    on_error: Literal["stop", "skip"] = Field("stop", description="a failing step (unsupported layer, parity): stop with exit 2, or skip it and go on")
    compiled: bool = Field(False, description="also time the teacher and student with torch.compile (needs a C++ compiler)")
    prune: PruneConfig = Field(default_factory=PruneConfig)
    int8: Int8Config = Field(default_factory=Int8Config)
    onnx: OnnxConfig = Field(default_factory=OnnxConfig)
    onnx_int8: OnnxInt8Config = Field(default_factory=OnnxInt8Config)

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, steps: list[str]) -> list[str]:
        from distil.compress.pipeline import STEPS

        if not steps:
            raise ValueError(f"no steps given; known steps: {', '.join(STEPS)}")
        for name in steps:
            _registered("step", name, list(STEPS))
        return steps


class LoggingConfig(Section):
    """Where per-epoch metrics go besides DIR/metrics.jsonl (always written)."""

    tensorboard: bool = Field(False, description="also write per-epoch scalars under DIR/tensorboard/<model> (needs the tensorboard extra)")


class ExperimentConfig(Section):
    name: str = "experiment"
    seed: int = 0
    device: str = Field("auto", description="'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    data: DataConfig
    teacher: TeacherConfig | None = Field(None, description="required unless the strategy needs no teacher (tf_kd, born_again, mutual)")
    student: ModelConfig
    distill: DistillConfig = Field(default_factory=DistillConfig)
    strategy: StrategyConfig = Field(default_factory=lambda: NoStrategy(), description="how models are combined: `distil strategies`")
    scratch: bool = Field(True, description="also train the student from scratch, with the same budget and seed")
    measure: MeasureConfig = Field(default_factory=MeasureConfig)
    compress: CompressConfig | None = Field(None, description="compress and export the distilled student after the run (see `distil compress`)")
    cache: CacheConfig = Field(default_factory=CacheConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    sweep: SweepConfig | None = Field(None, description="search space of `distil sweep` (ignored by `distil run`)")

    @model_validator(mode="after")
    def _teacher_needs_weights_or_training(self) -> ExperimentConfig:
        if self.teacher is None:
            if self.strategy.name not in TEACHERLESS:
                raise ValueError(f"teacher: required field is missing (only strategies {', '.join(TEACHERLESS)} run without one)")
            return self
        if self.teacher.sha256 and not self.teacher.weights:
            raise ValueError("teacher.sha256 is set but teacher.weights is not")
        return self


def dump_config(config: ExperimentConfig) -> dict[str, Any]:
    """The config as a run writes it to ``config.yaml`` (and ``--resume`` compares it): every value,
    except that each of ``distill.terms`` keeps only the fields that were given. A term's unset fields
    mean "the preset's value" (:meth:`DistillConfig.term_specs`), so writing their defaults would make
    the file, run again, train another objective.
    """
    raw = config.model_dump(mode="json")
    raw["distill"]["terms"] = [t.model_dump(mode="json", exclude_unset=True) for t in config.distill.terms]
    return raw


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate a YAML experiment config; relative paths resolve next to the file."""
    path = Path(path)
    config = validate_config(read_raw(path, overrides), source=str(path))
    return resolve_paths(config, path.parent)


def read_raw(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The YAML mapping with the overrides applied, not yet validated (a sweep derives its trials from it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (data, teacher, student, ...), got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return raw


def validate_config(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply ``a.b.c=value`` to the raw mapping; the value is parsed as YAML (``5``, ``0.1``, ``[8, 16]``)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. student.epochs=5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    set_path(raw, key, value)


# Lists whose entries are addressed by one of their fields: ``distill.terms.KD.params.T=2`` sets T of
# the term whose loss is KD, adding ``{loss: KD}`` if the file has none (it then updates the preset's KD).
KEYED_LISTS = {("distill", "terms"): "loss"}


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` of the raw mapping to ``value``, creating sections on the way."""
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _keyed_entry(node, KEYED_LISTS[tuple(parts[:i])], part, key)
            continue
        keyed = tuple(parts[: i + 1]) in KEYED_LISTS
        child = node.setdefault(part, [] if keyed else {})
        if not isinstance(child, list if keyed else dict):
            raise ConfigError(f"override {key!r}: {part} is not a {'list of terms' if keyed else 'section'}")
        node = child
    if isinstance(node, list):
        raise ConfigError(f"override {key!r}: name a field of the entry, e.g. {key}.weight")
    node[parts[-1]] = value


def _keyed_entry(entries: list[Any], field: str, name: str, key: str) -> dict[str, Any]:
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError(f"override {key!r}: the list holds {entry!r}, not a mapping with {field!r}")
        if entry.get(field) == name:
            return entry
    entries.append({field: name})
    return entries[-1]


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    def resolve(p: str | None) -> str | None:
        return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

    return map_paths(config, resolve)


def map_paths(config: ExperimentConfig, fn: Callable[[str | None], str | None]) -> ExperimentConfig:
    """Apply ``fn`` to every file path of the config (data, teacher weights, the strategy's)."""
    teacher = config.teacher.model_copy(update={"weights": fn(config.teacher.weights)}) if config.teacher else None
    data = config.data.model_copy(update={"path": fn(config.data.path)})
    return config.model_copy(update={"teacher": teacher, "data": data, "strategy": config.strategy.resolve_paths(fn)})


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        where = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            lines.append(f"  {where}: unknown key{hint}; accepted keys here: {', '.join(known)}")
        elif e["type"] == "missing":
            lines.append(f"  {where}: required field is missing")
        else:
            lines.append(f"  {where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = ExperimentConfig
    tagged: dict[str, type[BaseModel]] = {}  # a union chosen by its `name` (strategy): the next part is the tag
    for part in loc:
        if part in tagged:
            model, tagged = tagged[part], {}
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        members = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel) and "name" in a.model_fields]
        if members:
            tagged = {typing.get_args(m.model_fields["name"].annotation)[0]: m for m in members}
            continue
        # an optional section (``compress: CompressConfig | None``): its keys are the section's
        annotation = next((a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


# The strategy section's models build on the sections above, so they are imported once those exist.
from distil.strategies.options import TEACHERLESS, NoStrategy, StrategyConfig
from distil.sweep.space import SweepConfig

ExperimentConfig.model_rebuild()
