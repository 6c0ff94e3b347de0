"""What the compression steps share: the :class:`Chain` (data, teacher, the current model), a
measured table row, and the recovery objective (KD + CE against the run's teacher).

The steps are in :mod:`distil.compress.steps`; :mod:`distil.compress.pipeline` runs them in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from distil.engine.objective import Objective

COMPRESSED = "compressed"


@dataclass
class Chain:
    """What the steps share: data (CPU), the teacher, and the model the next step starts from."""

    config: Any  # ExperimentConfig with a compress section
    data: Any  # Dataset
    teacher: nn.Module
    model: nn.Module
    name: str
    out: Path
    console: Console
    onnx: Path | None = None  # the ONNX file of the current model, once exported
    arch: str = ""
    _teacher_outputs: Any = field(default=None, repr=False)
    _tokenize_ms: float | None = field(default=None, repr=False)

    @property
    def compress(self):
        return self.config.compress

    @property
    def label(self) -> str:
        """The current model for messages: its name and architecture (``student_kd (bilstm)``)."""
        return f"{self.name} ({self.arch})" if self.arch else self.name

    def with_tokenizer(self, measured: dict[str, Any]) -> dict[str, Any]:
        """Text: ``measured`` plus the tokenizer's latency on the same typical sentence (measured once per chain)."""
        text = getattr(self.data, "text", None)
        if text is None or "latency_ms_b1" not in measured:
            return measured
        if self._tokenize_ms is None:
            from distil.engine.measure import tokenize_latency_ms

            self._tokenize_ms = tokenize_latency_ms(text)
        return {**measured, "tokenize_ms_b1": round(self._tokenize_ms, 4), "latency_ms_b1_text": round(measured["latency_ms_b1"] + self._tokenize_ms, 4)}

    @property
    def reads_tokens(self) -> bool:
        """Whether the model reads token ids (text data)."""
        from distil.data.tokens import is_tokens

        return is_tokens(self.data.train.x)

    def held_out(self, n: int) -> torch.Tensor:
        """Inputs no step trained on: the validation split (the test split when there is none)."""
        return self._held_out_split().x[:n]

    def held_out_labels(self, n: int) -> torch.Tensor | None:
        """The labels of :meth:`held_out`'s inputs (a tagger's parity counts its tagged tokens only)."""
        y = self._held_out_split().y
        return None if y is None else y[:n]

    def _held_out_split(self):
        return self.data.val if len(self.data.val) else self.data.test

    def calibration(self, n: int) -> torch.Tensor:
        """A seeded random sample of ``n`` training inputs."""
        g = torch.Generator().manual_seed(self.config.seed)
        index = torch.randperm(len(self.data.train), generator=g)[:n]
        return self.data.train.x[index]

    def teacher_outputs(self, augment):
        """The teacher's outputs on the training inputs, cached once for every recovery fine-tune."""
        from distil.engine.teacher_outputs import teacher_outputs

        if self._teacher_outputs is None:
            # paired data: the teacher sees its own input of each sample (x_teacher), un-augmented
            self._teacher_outputs = teacher_outputs(self.teacher, self.data.train.x, augment.enabled, set(), teacher_x=self.data.train.x_teacher)
        return self._teacher_outputs


Step = Callable[[Chain], list[dict[str, Any]]]
def row(chain: Chain, name: str, method: str, runtime: str, model: nn.Module, path: Path, *, counted: nn.Module | None = None, train_seconds: float = 0.0, **details: Any) -> dict[str, Any]:
    """One table row (:class:`~distil.session.ModelResult`), measured like every other row."""
    from distil.engine.measure import measure, timing_input
    from distil.session import ModelResult
    from distil.weights import file_sha256

    cfg = chain.config
    measured = measure(model, timing_input(chain.data), runtime=runtime, test=(chain.data.test.x, chain.data.test.y), size_bytes=path.stat().st_size,
                       counted=counted, latency_repeats=cfg.measure.latency_repeats, throughput_repeats=cfg.measure.throughput_repeats)  # fmt: skip
    result = ModelResult(name, "student", method, chain.arch, cfg.seed, f"{COMPRESSED}/{path.name}", file_sha256(path), chain.with_tokenizer(measured),
                         train_seconds=train_seconds, source=chain.name, details=details)  # fmt: skip
    return result.as_dict()


def recovery_objective(config: Any, model: nn.Module, teacher: nn.Module, data: Any) -> Objective:
    """What pruning and QAT fine-tune with: ``alpha × KD(T) + (1 − alpha) × CE`` against the run's
    teacher (``compress.prune.temperature``, ``.alpha``), built like every objective, with the run's seed.
    Paired data: the teacher is probed on its own inputs (``train.x_teacher``)."""
    from distil.engine.objective import build_objective
    from distil.losses import CE, KD

    p = config.compress.prune
    terms = [KD(T=p.temperature) * p.alpha, CE() * (1.0 - p.alpha)]
    teacher_probe = None if data.train.x_teacher is None else data.train.x_teacher[:8]  # paired: the teacher's own inputs
    return build_objective(terms, model, teacher, data.train.x[:8], n_data=len(data.train), seed=config.seed, teacher_probe_x=teacher_probe)


# ------------------------------------------------------------------------------------------------ driver
