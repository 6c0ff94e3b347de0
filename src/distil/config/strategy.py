"""The ``strategy:`` section of an experiment config: one pydantic model per strategy, chosen by ``name``.

Every strategy is a configuration of the same engine (the one ``fit`` loop, objectives built from
``distill.method`` / ``distill.terms``); these models only say which models take part and how they
are wired. Extra keys are forbidden as everywhere else in the config, and cross-checks that need
the data or the models (class counts, shapes, class subsets) run before training starts.

The set is open: :func:`register_options` adds a strategy's options under a name (what
:func:`distil.strategies.register_strategy` does), and ``name: "package.module:Class"`` names a
:class:`distil.strategies.Strategy` subclass whose ``Options`` validate the section.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from distil.config.base import Section, registered
from distil.config.data import DataConfig, ViewsConfig
from distil.config.training import ModelConfig, TeacherConfig, TrainConfig
from distil.errors import ConfigError
from distil.imports import import_object

Resolve = Callable[[str | None], str | None]


class StrategyOptions(Section):
    """What every strategy's options share: ``name`` picks the strategy; the rest are its own fields."""

    name: str
    #: False for strategies whose teachers are virtual or each other: the config may then have no `teacher`
    needs_teacher: ClassVar[bool] = True

    def resolve_paths(self, resolve: Resolve) -> Self:
        """The options with every file path they hold passed through ``resolve`` (relative to the config file)."""
        return self


class NoStrategy(StrategyOptions):
    """Today's experiment: teacher → scratch student → distilled student."""

    name: Literal["none"] = "none"


class _WithBaseline(StrategyOptions):
    baseline: bool = Field(False, description="also distil the student directly from `teacher` (the ordinary student_<method> row)")


class MemberConfig(TeacherConfig):
    """One more member of an ensemble: a model trained on the labels (or loaded), with its own seed."""

    seed: int | None = Field(None, description="seed of its initial weights and batch order (default: run seed + its position)")


def check_member_weights(weights: list[float] | None, teachers: int) -> None:
    """An ensemble's ``weights``: one per member (``teacher`` + ``teachers`` others), >= 0, a positive sum."""
    if weights is not None:
        n = 1 + teachers
        if len(weights) != n:
            raise ValueError(f"weights has {len(weights)} entries but the ensemble has {n} members (teacher + {teachers} teachers)")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {weights}")


class TransferConfig(Section):
    """Inputs without labels: a registered dataset whose labels are dropped, or an ``npz`` with only ``x``."""

    name: str = Field(description="a registered dataset (`distil datasets`) or 'package.module:loader'; npz needs only an array x")
    path: str | None = Field(None, description="where the data is; relative to the config file")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options, e.g. {num_samples: 20000, generation_seed: 1} for mnist1d")
    include_train: bool = Field(True, description="also use the labelled training inputs (their labels unused)")
    max_samples: int | None = Field(None, ge=1, description="keep at most this many transfer samples (the first ones)")


def refuse_include_train(transfer: TransferConfig | None, strategy: str, where: str) -> None:
    """``transfer.include_train`` is read by the unlabeled-transfer strategies only; elsewhere the training
    inputs are always used, so ``false`` would be silently ignored: it is refused (``true``, the default,
    is what happens, and a dumped config writes it)."""
    if transfer is not None and not transfer.include_train:
        raise ValueError(f"transfer.include_train: false is not possible with the {strategy} strategy ({where}); remove it")


class EnsembleOptions(_WithBaseline):
    """Hinton et al. 2015 §3 (an ensemble distilled into one model); CRD-EN (Tian 2020) for feature terms."""

    name: Literal["ensemble"]
    teachers: list[MemberConfig] = Field(min_length=1, description="members besides `teacher`, which is member 0")
    weights: list[float] | None = Field(None, description="one weight per member (teacher first); normalised to sum 1; default equal")
    combine: Literal["probs", "logits"] = Field("probs", description="probs: mean of the members' softmax(z/T); logits: mean of their logits")
    transfer: TransferConfig | None = Field(
        None, description="Hinton 2015 §2: more inputs without labels; the student learns the ensemble's soft targets on them beside the labelled training rows (include_train: false is refused)"
    )

    @model_validator(mode="after")
    def _weights_fit_members(self) -> EnsembleOptions:
        check_member_weights(self.weights, len(self.teachers))
        refuse_include_train(self.transfer, "ensemble", "its transfer set is always learnt beside the labelled training rows")
        return self

    def resolve_paths(self, resolve: Resolve) -> EnsembleOptions:
        teachers = [t.model_copy(update={"weights": resolve(t.weights)}) for t in self.teachers]
        transfer = None if self.transfer is None else self.transfer.model_copy(update={"path": resolve(self.transfer.path)})
        return self.model_copy(update={"teachers": teachers, "transfer": transfer})


class _Transfer(_WithBaseline):
    transfer: TransferConfig

    def resolve_paths(self, resolve: Resolve) -> Any:
        return self.model_copy(update={"transfer": self.transfer.model_copy(update={"path": resolve(self.transfer.path)})})


class UnlabeledOptions(_Transfer):
    """Hinton 2015's transfer set: the teacher's soft targets on inputs that have no labels."""

    name: Literal["unlabeled"]


class NoisyStudentOptions(_Transfer):
    """Xie et al. 2020, Noisy Student: the noised student, as large or larger, becomes the next teacher."""

    name: Literal["noisy_student"]
    iterations: int = Field(2, ge=1, description="teacher → student rounds; each student teaches the next round")
    input_noise: float = Field(0.1, ge=0, description="std of Gaussian noise added to the student's inputs (normalised units)")
    dropout: float | None = Field(None, ge=0, lt=1, description="passed as `dropout` to the student's factory (e.g. mlp)")


class BornAgainOptions(StrategyOptions):
    """Furlanello et al. 2018, born-again networks: generation k teaches generation k+1, same architecture."""

    needs_teacher: ClassVar[bool] = False

    name: Literal["born_again"]
    generations: int = Field(3, ge=1, description="distilled generations after generation 0 (the scratch student)")



class TfKDOptions(StrategyOptions):
    """Yuan et al. 2020, teacher-free KD (Tf-KD_reg): a virtual teacher that puts ``correct_prob`` on the label."""

    needs_teacher: ClassVar[bool] = False

    name: Literal["tf_kd"]
    correct_prob: float = Field(0.9, gt=0, lt=1, description="the virtual teacher's probability of the true class")



class TAKDOptions(_WithBaseline):
    """Mirzadeh et al. 2020, teacher-assistant KD: teacher → assistant(s) → student, each step distilled."""

    name: Literal["takd"]
    assistants: list[ModelConfig] = Field(min_length=1, description="from the largest to the smallest; each is distilled from the one before")


class MutualOptions(StrategyOptions):
    """Zhang et al. 2018, deep mutual learning: a cohort trained together, each distilling from the others."""

    needs_teacher: ClassVar[bool] = False

    name: Literal["mutual"]
    students: int = Field(2, ge=1, description="copies of `student` (seeds seed, seed+1, ...) in the cohort")
    teacher_trains: bool = Field(False, description="`teacher` joins the cohort and keeps training while it teaches")
    T: float = Field(1.0, gt=0, description="temperature of the peers' KL terms (DML: 1)")

    @model_validator(mode="after")
    def _a_cohort(self) -> MutualOptions:
        if self.students + int(self.teacher_trains) < 2:
            raise ValueError("mutual learning needs at least two models: students >= 2, or teacher_trains: true")
        return self



class FrozenBackboneOptions(StrategyOptions):
    """Transfer: the trained teacher's backbone, frozen, with a new head for a new label set; optional fine-tuning."""

    name: Literal["frozen_backbone"]
    data: DataConfig | None = Field(None, description="the new task's data (default: the config's data)")
    label_map: list[int] | None = Field(None, description="new label of each old class, e.g. parity [0, 1, 0, 1, ...]")
    head: str | None = Field(None, description="module path of the head to replace (default: the last nn.Linear)")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=5), description="training of the new head")
    finetune: TrainConfig | None = Field(None, description="then train everything (backbone unfrozen) with these settings")

    @field_validator("label_map")
    @classmethod
    def _labels(cls, label_map: list[int] | None) -> list[int] | None:
        if label_map is not None and (min(label_map, default=0) < 0 or len(set(label_map)) < 2):
            raise ValueError(f"label_map must map classes to labels 0..K-1 with at least 2 new classes, got {label_map}")
        return label_map

    def resolve_paths(self, resolve: Resolve) -> FrozenBackboneOptions:
        if self.data is None:
            return self
        return self.model_copy(update={"data": self.data.model_copy(update={"path": resolve(self.data.path)})})


class BiTOptions(StrategyOptions):
    """Kolesnikov et al. 2020, Big Transfer (BiT): a model pre-trained upstream, a new zero-initialised head,
    fine-tuned on the run's data with the BiT-HyperRule (steps, lr schedule, MixUp by the data's size), then
    the teacher of the config's student (``distill.method``)."""

    needs_teacher: ClassVar[bool] = False

    name: Literal["bit"]
    arch: str = Field("resnet_v2", description="the pre-trained model's architecture (a registered model or 'package.module:factory')")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="arguments of its factory, as when it was pre-trained")
    weights: str = Field(description="the upstream weights (.safetensors; e.g. DIR/teacher.safetensors of `distil train`); relative to the config file")
    sha256: str | None = Field(None, description="expected sha256 of the weights file")
    head: str | None = Field(None, description="module path of the head to replace (default: the last nn.Linear)")
    batch_size: int = Field(512, ge=1, description="the rule's batch (BiT: 512); a training split smaller than it is one batch; lr scales as batch_size/512")
    base_lr: float = Field(0.003, gt=0, description="the rule's learning rate at batch 512 (BiT: 0.003)")
    steps: int | None = Field(None, ge=1, description="override the rule's schedule length (default: 500 / 10k / 20k steps by the training split's size)")
    mixup: float | None = Field(None, ge=0, description="override the rule's MixUp alpha (default: 0.1 from 20k training samples, else 0; 0: off)")
    scratch: TrainConfig | None = Field(None, description="also train the same architecture from random weights on the run's data with these settings (the baseline)")
    unlabeled: bool = Field(True, description="the student also learns the fine-tuned model's outputs on the data's unlabeled inputs (data.labels_per_class's rest), as student_<method>_unlabeled")

    @field_validator("kwargs")
    @classmethod
    def _data_decides_shapes(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        taken = sorted({"input_shape", "num_classes"} & set(kwargs))
        if taken:
            raise ValueError(f"{', '.join(taken)} come from the data and the weights file; remove them from kwargs")
        return kwargs

    def model(self) -> ModelConfig:
        """The pre-trained architecture as a model section (its training settings are the rule's, set by the strategy)."""
        return ModelConfig(arch=self.arch, kwargs=self.kwargs)

    def resolve_paths(self, resolve: Resolve) -> BiTOptions:
        return self.model_copy(update={"weights": resolve(self.weights)})


class SelfSupervisedOptions(StrategyOptions):
    """Self-supervised distillation on inputs without labels: a frozen teacher's representation, or the
    student's own EMA (BYOL / DINO), matched across two augmented views; judged by a linear probe and k-NN."""

    needs_teacher: ClassVar[bool] = False

    name: Literal["self_supervised"]
    teacher: Literal["given", "ema"] = Field("given", description="given: the config's teacher, frozen; ema: no teacher, the exponential moving average of the student")
    momentum: float = Field(0.99, ge=0, lt=1, description="ema: the average's momentum m in θ_t <- m·θ_t + (1-m)·θ_s, per step")
    views: ViewsConfig | None = Field(None, description="strong views of images/signals after data.augment (two views are needed: this or data.augment must change the input)")
    transfer: TransferConfig | None = Field(None, description="more inputs without labels (default: the training inputs alone, their labels unused)")
    probe_baselines: bool = Field(True, description="also probe the run's teacher and scratch student (linear probe and k-NN columns)")

    def resolve_paths(self, resolve: Resolve) -> SelfSupervisedOptions:
        if self.transfer is None:
            return self
        return self.model_copy(update={"transfer": self.transfer.model_copy(update={"path": resolve(self.transfer.path)})})


class SemiSupervisedOptions(StrategyOptions):
    """FixMatch (Sohn et al. 2020) with a pseudo-labeller of choice: the student learns the labels of the
    few labelled samples and, on every sample, the confident pseudo-label of a weak view from its strong view
    (``targets: soft``: the labeller's softened distribution instead, as SimCLRv2 distils on unlabeled data)."""

    needs_teacher: ClassVar[bool] = False

    name: Literal["semi_supervised"]
    labeller: Literal["teacher", "ema", "self"] = Field(
        "ema", description="who pseudo-labels the weak views: the config's teacher (frozen), the student's EMA (Mean Teacher) or the student's current weights (FixMatch)"
    )
    momentum: float = Field(0.999, ge=0, lt=1, description="labeller ema: the average's momentum m in θ_t <- m·θ_t + (1-m)·θ_s, per step")
    targets: Literal["hard", "soft"] = Field(
        "hard",
        description="hard: FixMatch, the labeller's confident argmax (threshold); soft: its whole softened distribution on every row, Hinton KD at temperature T (no threshold)",
    )
    threshold: float = Field(0.95, ge=0, le=1, description="targets hard: a pseudo-label counts where the labeller's max softmax(z/T) is at least this (FixMatch's τ)")
    T: float = Field(1.0, gt=0, description="temperature of the labeller's softmax: for the threshold (hard) or of the KD term, gradients × T² (soft)")
    unlabeled_ratio: int = Field(7, ge=1, description="μ: unlabeled samples per labelled one in a batch (the labelled samples are repeated to approach it)")
    weight: float = Field(1.0, ge=0, description="λ_u: weight of the FixMatch term (CE on the labelled rows has weight 1)")
    strong: ViewsConfig = Field(
        default_factory=lambda: ViewsConfig(scale=0.35, jitter=0.4, erase=0.5),
        description="the student's strong view of images and signals, after data.augment (the weak view); off for text",
    )
    comatch: float = Field(0.0, ge=0, description="weight of CoMatch's graph term on the student's embedding (0: off)")
    transfer: TransferConfig | None = Field(None, description="more inputs without labels, added to the unlabeled pool (include_train: false is refused)")
    labels_baseline: bool = Field(
        True, description="also train student_labels: the same loop on the repeated labelled rows alone (same views, same passes over each label)"
    )

    @model_validator(mode="after")
    def _threshold_is_for_hard_targets(self) -> SemiSupervisedOptions:
        refuse_include_train(self.transfer, "semi_supervised", "the transfer set joins data.unlabeled in the unlabeled pool; the labelled rows keep their labels")
        if self.targets == "soft" and "threshold" in self.model_fields_set:
            raise ValueError(f"threshold ({self.threshold}) keeps confident hard pseudo-labels; targets: soft learns the labeller's whole distribution on every row: remove threshold or set targets: hard")
        return self

    def resolve_paths(self, resolve: Resolve) -> SemiSupervisedOptions:
        if self.transfer is None:
            return self
        return self.model_copy(update={"transfer": self.transfer.model_copy(update={"path": resolve(self.transfer.path)})})


class SpecialistsOptions(_WithBaseline):
    """Hinton et al. 2015 §5: specialists on confusable classes (plus a dustbin class) refine the generalist."""

    name: Literal["specialists"]
    subsets: list[list[int | str]] | None = Field(None, description="class subsets (indices or names); default: from the generalist's confusion matrix")
    count: int = Field(2, ge=1, description="specialists to find when subsets is not given")
    size: int = Field(2, ge=2, description="classes per found subset")
    specialist: ModelConfig | None = Field(None, description="architecture and training of each specialist (default: the teacher's)")


#: name → options model of every registered strategy (the built-ins' below; more by register_options)
STRATEGY_OPTIONS: dict[str, type[StrategyOptions]] = {}


def register_options(name: str, options: type[StrategyOptions]) -> None:
    """Let ``strategy: {name: NAME, ...}`` validate against ``options``."""
    if not (isinstance(options, type) and issubclass(options, StrategyOptions)):
        raise ConfigError(f"strategy {name!r}: options must be a subclass of distil.config.StrategyOptions, got {options!r}")
    STRATEGY_OPTIONS[name] = options


for _name, _options in {
    "none": NoStrategy, "ensemble": EnsembleOptions, "unlabeled": UnlabeledOptions, "noisy_student": NoisyStudentOptions,
    "born_again": BornAgainOptions, "tf_kd": TfKDOptions, "takd": TAKDOptions, "mutual": MutualOptions,
    "frozen_backbone": FrozenBackboneOptions, "specialists": SpecialistsOptions, "self_supervised": SelfSupervisedOptions,
    "semi_supervised": SemiSupervisedOptions, "bit": BiTOptions,
}.items():  # fmt: skip
    register_options(_name, _options)


def strategy_options(name: str) -> type[StrategyOptions]:
    """The options model of strategy ``name``: a registered name, or ``"package.module:Class"`` naming a
    strategy class with an ``Options`` model. Raises ValueError (unknown name) or ConfigError (bad import)."""
    if ":" in name:
        strategy = import_object(name, "strategy", ConfigError, attr="Class", example="mypkg.strategies:MyStrategy")
        options = getattr(strategy, "Options", None)
        if not (isinstance(options, type) and issubclass(options, StrategyOptions)):
            raise ConfigError(f"strategy {name!r}: expected a distil.strategies.Strategy subclass with an `Options` model (a StrategyOptions subclass), got {strategy!r}")
        return options
    return STRATEGY_OPTIONS[registered("strategy", name, list(STRATEGY_OPTIONS))]


def teacherless() -> list[str]:
    """The registered strategies that run without a `teacher` section."""
    return [name for name, options in STRATEGY_OPTIONS.items() if not options.needs_teacher]
