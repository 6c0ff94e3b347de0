"""The ``distill:`` section: a method preset, adjusted or extended term by term."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import Field, field_validator

from distil.config.base import Section, registered
from distil.engine.methods import METHODS
from distil.engine.objective import TermSpec
from distil.losses import LOSSES


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
        return registered("loss", loss, sorted(LOSSES))


class DistillConfig(Section):
    """The distillation objective: a method preset (``distil methods``), optionally adjusted term by term."""

    method: str = Field("kd", description="a preset from `distil methods`: kd, dkd, at, fitnet, crd, crd+kd, ...")
    terms: list[TermConfig] = Field(default_factory=list, description="terms updating or extending the method's")

    @field_validator("method")
    @classmethod
    def _known_method(cls, method: str) -> str:
        return registered("method", method, list(METHODS))

    def term_specs(self, method: str | None = None, extend: bool = True) -> list[TermSpec]:
        """The method's terms with ``terms`` applied: same loss → update the given fields, else append.

        ``method`` defaults to the config's. With ``extend=False`` (``distil bench methods``, which runs
        presets side by side) terms only update: a term is not forced onto every method.
        """
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
