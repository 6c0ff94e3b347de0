"""How each model is built and trained: ``teacher:``, ``student:`` and every section shaped like them."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from distil.config.base import Section
from distil.data import Dataset
from distil.data.tokens import trim
from distil.engine.trainer import TrainSettings
from distil.errors import ModelError
from distil.models import build_model


class TrainConfig(Section):
    """How one model is trained: the same settings serve the teacher, scratch and distilled students."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "step", "constant", "linear"] = Field("cosine", description="lr factor over training: cosine decay, step (milestones), constant, or linear decay to 0 (BERT fine-tuning)")
    warmup: float = Field(0.0, ge=0, lt=1, description="fraction of the steps over which lr rises linearly from 0 before the schedule (e.g. 0.1 for fine-tuning a transformer)")
    clip_norm: float | None = Field(None, gt=0, description="clip the gradients' global L2 norm to this value before each step (e.g. 1.0 for transformers)")
    milestones: list[float] = Field([0.5, 0.75], description="step schedule: fractions of the epochs where lr *= gamma")
    gamma: float = Field(0.1, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="bf16: forward passes under bf16 autocast (weights, gradients and loss maths stay fp32); auto: bf16 where "
        "the hardware has it natively (CUDA with bf16; a CPU with avx512_bf16 or AMX), else fp32. Default fp32: bf16 measured "
        "1.3-2x faster for CNNs on an avx512_bf16 CPU but slower for a small MLP, and it changes the trained weights "
        "(benchmarks/precision/README.md)",
    )

    def settings(self) -> TrainSettings:
        """These settings as the training loop takes them."""
        return TrainSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            milestones=tuple(self.milestones),
            gamma=self.gamma,
            precision=self.precision,
            warmup=self.warmup,
            clip_norm=self.clip_norm,
        )


class ModelConfig(TrainConfig):
    arch: str = Field(description="a registered model (see `distil models`) or 'package.module:factory'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="arguments of the model factory")

    @field_validator("kwargs")
    @classmethod
    def _data_decides_shapes(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        taken = sorted({"input_shape", "num_classes", "vocab_size", "token_counts", "tokenizer_dir", "task"} & set(kwargs))
        if taken:
            raise ValueError(f"{', '.join(taken)} come from the dataset; remove them from kwargs")
        return kwargs

    def build(self, data: Dataset, seed: int, **kwargs: Any) -> nn.Module:
        """This model for ``data``'s input shape and classes, with the initial weights ``seed`` gives
        (``kwargs`` add to or replace the config's, e.g. a strategy's dropout)."""
        text = getattr(data, "text", None)
        data_args = text.model_args() if text is not None else {}  # vocabulary size, token counts, tokenizer folder, task
        model = build_model(self.arch, input_shape=data.input_shape, num_classes=data.num_classes, seed=seed, **data_args, **{**self.kwargs, **kwargs})
        if text is not None:
            _check_outputs(self.arch, model, data)
        return model


def _check_outputs(arch: str, model: nn.Module, data: Dataset) -> None:
    """A text model must answer the data's task: logits per text (B, C) or per token (B, L, C)."""
    assert data.text is not None
    x = trim(data.train.x[:2].cpu())
    was_training = model.training
    try:
        with torch.inference_mode():
            out = model.eval()(x)
    except Exception:  # noqa: BLE001  a model that cannot run is reported where it is trained, with its own error
        return
    finally:
        model.train(was_training)
    tagging = data.text.task == "tag"
    if isinstance(out, torch.Tensor) and out.dim() != (3 if tagging else 2):
        if tagging:
            raise ModelError(
                f"model {arch!r} returns {tuple(out.shape)} logits, one row per text, but {data.name!r} is tagged per word; "
                "use a tagger: bilstm_tagger, lstm_tagger, cnn_tagger, transformer_tagger, or a Hugging Face folder (hf:PATH, minilm)"
            )
        raise ModelError(f"model {arch!r} returns {tuple(out.shape)} logits, but {data.name!r} has one label per text; expected (batch, classes)")


class TeacherConfig(ModelConfig):
    weights: str | None = Field(None, description="load these weights instead of training: .safetensors, or a tensor-only PyTorch state_dict (.pt/.pth/.bin, read with weights_only=True)")
    sha256: str | None = Field(None, description="expected sha256 of the weights file")
