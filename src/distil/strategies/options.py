"""The ``strategy:`` section of an experiment config: one pydantic model per strategy, chosen by ``name``.

Every strategy is a configuration of the same engine (the one ``fit`` loop, objectives built from
``distill.method`` / ``distill.terms``); these models only say which models take part and how they
are wired. Extra keys are forbidden as everywhere else in the config, and cross-checks that need
the data or the models (class counts, shapes, class subsets) run before training starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from distil.config import DataConfig, ModelConfig, Section, TeacherConfig, TrainConfig

Resolve = Callable[[str | None], str | None]

#: Strategies that run without the config's `teacher` section (their teachers are virtual or each other).
TEACHERLESS = ("tf_kd", "born_again", "mutual")


class NoStrategy(Section):
    """Today's experiment: teacher → scratch student → distilled student."""

    name: Literal["none"] = "none"

    def resolve_paths(self, resolve: Resolve) -> NoStrategy:
        return self


class _WithBaseline(Section):
    baseline: bool = Field(False, description="also distil the student directly from `teacher` (the ordinary student_<method> row)")

    def resolve_paths(self, resolve: Resolve) -> Any:
        return self


class MemberConfig(TeacherConfig):
    """One more member of an ensemble: a model trained on the labels (or loaded), with its own seed."""

    seed: int | None = Field(None, description="seed of its initial weights and batch order (default: run seed + its position)")


class EnsembleOptions(_WithBaseline):
    """Hinton et al. 2015 §3 (an ensemble distilled into one model); CRD-EN (Tian 2020) for feature terms."""

    name: Literal["ensemble"]
    teachers: list[MemberConfig] = Field(min_length=1, description="members besides `teacher`, which is member 0")
    weights: list[float] | None = Field(None, description="one weight per member (teacher first); normalised to sum 1; default equal")
    combine: Literal["probs", "logits"] = Field("probs", description="probs: mean of the members' softmax(z/T); logits: mean of their logits")

    @model_validator(mode="after")
    def _weights_fit_members(self) -> EnsembleOptions:
        if self.weights is not None:
            n = 1 + len(self.teachers)
            if len(self.weights) != n:
                raise ValueError(f"weights has {len(self.weights)} entries but the ensemble has {n} members (teacher + {len(self.teachers)} teachers)")
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError(f"weights must be >= 0 with a positive sum, got {self.weights}")
        return self

    def resolve_paths(self, resolve: Resolve) -> EnsembleOptions:
        teachers = [t.model_copy(update={"weights": resolve(t.weights)}) for t in self.teachers]
        return self.model_copy(update={"teachers": teachers})


class TransferConfig(Section):
    """Inputs without labels: a registered dataset whose labels are dropped, or an ``npz`` with only ``x``."""

    name: str = Field(description="a registered dataset (`distil datasets`); npz needs only an array x")
    path: str | None = Field(None, description="where the data is; relative to the config file")
    options: dict[str, Any] = Field(default_factory=dict, description="loader options, e.g. {num_samples: 20000, generation_seed: 1} for mnist1d")
    include_train: bool = Field(True, description="also use the labelled training inputs (their labels unused)")
    max_samples: int | None = Field(None, ge=1, description="keep at most this many transfer samples (the first ones)")


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


class BornAgainOptions(Section):
    """Furlanello et al. 2018, born-again networks: generation k teaches generation k+1, same architecture."""

    name: Literal["born_again"]
    generations: int = Field(3, ge=1, description="distilled generations after generation 0 (the scratch student)")

    def resolve_paths(self, resolve: Resolve) -> BornAgainOptions:
        return self


class TfKDOptions(Section):
    """Yuan et al. 2020, teacher-free KD (Tf-KD_reg): a virtual teacher that puts ``correct_prob`` on the label."""

    name: Literal["tf_kd"]
    correct_prob: float = Field(0.9, gt=0, lt=1, description="the virtual teacher's probability of the true class")

    def resolve_paths(self, resolve: Resolve) -> TfKDOptions:
        return self


class TAKDOptions(_WithBaseline):
    """Mirzadeh et al. 2020, teacher-assistant KD: teacher → assistant(s) → student, each step distilled."""

    name: Literal["takd"]
    assistants: list[ModelConfig] = Field(min_length=1, description="from the largest to the smallest; each is distilled from the one before")


class MutualOptions(Section):
    """Zhang et al. 2018, deep mutual learning: a cohort trained together, each distilling from the others."""

    name: Literal["mutual"]
    students: int = Field(2, ge=1, description="copies of `student` (seeds seed, seed+1, ...) in the cohort")
    teacher_trains: bool = Field(False, description="`teacher` joins the cohort and keeps training while it teaches")
    T: float = Field(1.0, gt=0, description="temperature of the peers' KL terms (DML: 1)")

    @model_validator(mode="after")
    def _a_cohort(self) -> MutualOptions:
        if self.students + int(self.teacher_trains) < 2:
            raise ValueError("mutual learning needs at least two models: students >= 2, or teacher_trains: true")
        return self

    def resolve_paths(self, resolve: Resolve) -> MutualOptions:
        return self


class FrozenBackboneOptions(Section):
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


class SpecialistsOptions(_WithBaseline):
    """Hinton et al. 2015 §5: specialists on confusable classes (plus a dustbin class) refine the generalist."""

    name: Literal["specialists"]
    subsets: list[list[int | str]] | None = Field(None, description="class subsets (indices or names); default: from the generalist's confusion matrix")
    count: int = Field(2, ge=1, description="specialists to find when subsets is not given")
    size: int = Field(2, ge=2, description="classes per found subset")
    specialist: ModelConfig | None = Field(None, description="architecture and training of each specialist (default: the teacher's)")


StrategyConfig = Annotated[
    NoStrategy | EnsembleOptions | UnlabeledOptions | NoisyStudentOptions | BornAgainOptions | TfKDOptions | TAKDOptions | MutualOptions | FrozenBackboneOptions | SpecialistsOptions,
    Field(discriminator="name"),
]
