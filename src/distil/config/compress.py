"""The ``compress:`` section: prune, quantize and export the distilled student (``distil compress``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from distil.config.base import Section, registered

#: The steps ``compress.steps`` may name; :data:`distil.compress.steps.STEPS` holds one function for each.
COMPRESS_STEPS = ("prune", "lowrank", "int8", "onnx", "onnx-int8")


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
    multiple_of: int = Field(16, ge=1, description="channels: kept channels rounded to a multiple of this (16: ONNX Runtime's NCHWc block on AVX-512, a multiple of AVX2's 8; 1: the exact sparsity)")


class LowRankConfig(Section):
    """Low-rank factorization (truncated SVD of Linear layers, Tucker-2 or spatial split of convolutions), then KD recovery."""

    energy: float | None = Field(None, gt=0, le=1, description="keep the smallest rank whose singular values hold this share of Σσ², in (0, 1]")
    rank_ratio: float | None = Field(None, gt=0, le=1, description="instead of energy: rank = ⌈ratio × the layer's rank⌉, in (0, 1] (0.5 when neither is given)")
    ranks: dict[str, int | list[int]] = Field(default_factory=dict, description="per layer (module path): a rank, or [r_out, r_in] for a Tucker-2 convolution; overrides energy/rank_ratio")
    conv: Literal["tucker2", "spatial"] = Field("tucker2", description="k×k convolutions: tucker2 (1×1, k×k core, 1×1; Kim et al. 2016) or spatial (k×1 then 1×k; Jaderberg et al. 2014)")
    multiple_of: int = Field(16, ge=1, description="ranks rounded up to a multiple of this (SIMD-friendly widths; 1: as chosen)")
    min_saving: float = Field(0.25, ge=0, lt=1, description="leave a layer whole unless factorizing saves at least this share of its multiply-adds")
    epochs: int = Field(1, ge=0, description="KD recovery epochs after factorizing (0: none); lr, batch size and loss from compress.prune")
    lr: float = Field(0.01, gt=0, description="recovery learning rate (SGD, cosine)")

    @model_validator(mode="after")
    def _one_rule(self) -> LowRankConfig:
        if self.energy is not None and self.rank_ratio is not None:
            raise ValueError("give energy or rank_ratio, not both")
        return self

    @property
    def rule(self) -> dict[str, float]:
        """The rank rule in effect: ``{"energy": e}`` or ``{"rank_ratio": r}`` (0.5 by default: on the demo
        student an energy of 0.9 keeps ranks so high that no layer saves a quarter of its multiply-adds)."""
        return {"energy": self.energy} if self.energy is not None else {"rank_ratio": self.rank_ratio if self.rank_ratio is not None else 0.5}


class Int8Config(Section):
    """PyTorch int8 (torch.ao FX, x86/fbgemm): static post-training, dynamic (Linear only) or quantization-aware training with KD."""

    mode: Literal["static", "dynamic", "qat"] = "static"
    backend: Literal["x86", "fbgemm", "qnnpack"] = "x86"
    calibration: int = Field(1024, ge=1, description="training inputs used to calibrate activation ranges")
    epochs: int = Field(1, ge=1, description="qat: epochs of KD fine-tuning with fake quantization")
    lr: float = Field(0.001, gt=0, description="qat: learning rate")
    min_agreement: float = Field(0.9, ge=0, le=1, description="least argmax agreement with the fp32 model on held-out inputs")


class OnnxConfig(Section):
    exporter: Literal["auto", "dynamo", "torchscript"] = Field(
        "auto", description="torch.onnx exporter: dynamo (torch.export), the legacy torchscript, or auto: torchscript for text models (dynamic length), dynamo otherwise"
    )
    opset: int = Field(18, ge=13)
    tolerance: float = Field(1e-3, gt=0, description="largest max |onnxruntime − torch| of the logits accepted")
    samples: int = Field(1000, ge=1, description="held-out inputs (validation split) of the parity check")


class OnnxInt8Config(Section):
    mode: Literal["auto", "static", "dynamic"] = Field(
        "auto", description="static: calibrated quantize_static; dynamic: quantize_dynamic (int8 weights of MatMul/Gemm/LSTM/embeddings); auto: dynamic for text, static otherwise"
    )
    format: Literal["qdq", "qoperator"] = Field("qdq", description="ONNX Runtime quantized graph form (static)")
    per_channel: bool = True
    calibration: int = Field(1024, ge=1, description="training inputs used to calibrate activation ranges")
    min_agreement: float = Field(0.9, ge=0, le=1, description="least argmax agreement with the fp32 model on held-out inputs")


class CompressConfig(Section):
    """``distil compress`` (and ``distil run`` when present): steps applied in order to the distilled student.

    ``prune`` and ``lowrank`` replace the model the later steps start from; ``int8``, ``onnx`` and ``onnx-int8`` each
    add a deployable model of the current one. Every step adds a row to the run's table.
    """

    student: str | None = Field(None, description="the model of summary.json to compress (default: student_<distill.method>)")
    steps: list[str] = Field(["onnx", "onnx-int8", "prune", "int8", "onnx", "onnx-int8"], description="steps in order: prune, lowrank, int8, onnx, onnx-int8")
    on_error: Literal["stop", "skip"] = Field("stop", description="a failing step (unsupported layer, parity): stop with exit 2, or skip it and go on")
    compiled: bool = Field(False, description="also time the teacher and student with torch.compile (needs a C++ compiler)")
    prune: PruneConfig = Field(default_factory=PruneConfig)
    lowrank: LowRankConfig = Field(default_factory=LowRankConfig)
    int8: Int8Config = Field(default_factory=Int8Config)
    onnx: OnnxConfig = Field(default_factory=OnnxConfig)
    onnx_int8: OnnxInt8Config = Field(default_factory=OnnxInt8Config)

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, steps: list[str]) -> list[str]:
        if not steps:
            raise ValueError(f"no steps given; known steps: {', '.join(COMPRESS_STEPS)}")
        for name in steps:
            registered("step", name, list(COMPRESS_STEPS))
        return steps
