"""The compression steps ``compress.steps`` may name, each registered in
:data:`STEPS`: ``prune`` replaces the chain's current model (later steps start from
the pruned one), and so does ``lowrank`` (factorized layers); ``int8``, ``onnx`` and ``onnx-int8`` each add a deployable form of the current model.

Each pruning round, and int8 QAT, fine-tunes with KD against the teacher (:func:`_recover`); int8 and ONNX
models are checked against the float model on held-out inputs, and ONNX files are written under a staging
name and renamed into place only once their check passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from distil.compress.chain import Chain, Step, recovery_objective, row
from distil.compress.export import DYNAMIC_OPS
from distil.config import COMPRESS_STEPS


def _recover(chain: Chain, model: nn.Module, epochs: int, lr: float) -> float:
    """Fine-tune ``model`` in place with the recovery objective against the teacher; seconds spent."""
    from distil.engine.trainer import TrainSettings, fit

    p = chain.compress.prune
    cfg = chain.config
    augment = cfg.data.augment.build(chain.data)
    objective = recovery_objective(cfg, model, chain.teacher, chain.data)
    settings = TrainSettings(epochs=epochs, batch_size=p.batch_size, optimizer="sgd", lr=lr, momentum=0.9, weight_decay=cfg.student.weight_decay, schedule="cosine",
                             precision=cfg.student.precision)  # fmt: skip
    result = fit(model, chain.data.train, chain.data.val, objective, settings, seed=cfg.seed, teacher=chain.teacher_outputs(augment), augment=augment)
    return result.train_seconds


def prune_step(chain: Chain) -> list[dict[str, Any]]:
    """Prune (channels or magnitude) in ``rounds``, each followed by a KD recovery fine-tune."""
    import copy

    from distil.compress import prune
    from distil.weights import save_weights

    p = chain.compress.prune
    model = copy.deepcopy(chain.model).cpu()
    example = chain.data.train.x[:8]
    info: dict[str, Any] = {}
    seconds = 0.0
    from distil.engine.evaluate import accuracy

    accuracy_after_prune = []
    for r in range(1, p.rounds + 1):
        if p.method == "channels":
            # channels kept per round multiply: (1 − s)^(r/R) of the original after round r
            keep = (1.0 - p.sparsity) ** (1.0 / p.rounds)
            info = prune.channel_prune(model, 1.0 - keep, example, multiple_of=p.multiple_of)
        else:
            prune.magnitude_prune(model, 1.0 - (1.0 - p.sparsity) ** (r / p.rounds))
        accuracy_after_prune.append(round(accuracy(model, chain.data.test.x, chain.data.test.y), 4))
        if p.epochs:
            seconds += _recover(chain, model, p.epochs, p.lr)
    prune.finalize(model)
    name = f"{chain.name}.pruned"
    path = save_weights(model, chain.out / f"{name}.safetensors", metadata={"arch": chain.arch, "role": "student", "method": "pruned", "source": chain.name})
    extra = {"prune": {"method": p.method, "sparsity": p.sparsity, "rounds": p.rounds, "recovery_epochs": p.epochs, "multiple_of": p.multiple_of,
                       "accuracy_before_recovery": accuracy_after_prune, "weight_sparsity": round(prune.sparsity_of(model), 4), **info}}  # fmt: skip
    result = row(chain, name, "pruned", "torch", model, path, train_seconds=round(seconds, 4), **extra)
    chain.model, chain.name, chain.onnx = model, name, None
    return [result]


def lowrank_step(chain: Chain) -> list[dict[str, Any]]:
    """Low-rank factorization of the current model (:mod:`distil.compress.lowrank`), then KD recovery like pruning."""
    import copy

    from distil.compress import lowrank
    from distil.engine.evaluate import accuracy
    from distil.weights import save_weights

    c = chain.compress.lowrank
    model = copy.deepcopy(chain.model).cpu()
    example = chain.data.train.x[:1]
    macs = lowrank.model_macs(model, example)
    rule = lowrank.RankRule(**c.rule, ranks=c.ranks, multiple=c.multiple_of, min_saving=c.min_saving)
    plans = lowrank.factorize(model, rule, c.conv)
    before_recovery = round(accuracy(model, chain.data.test.x, chain.data.test.y), 4)
    seconds = _recover(chain, model, c.epochs, c.lr) if c.epochs else 0.0
    name = f"{chain.name}.lowrank"
    path = save_weights(model, chain.out / f"{name}.safetensors", metadata={"arch": chain.arch, "role": "student", "method": "lowrank", "source": chain.name})
    extra = {"lowrank": {**c.rule, "conv": c.conv, "multiple_of": c.multiple_of, "min_saving": c.min_saving, "recovery_epochs": c.epochs, "accuracy_before_recovery": before_recovery,
                         "macs": macs, "macs_after": lowrank.model_macs(model, example),
                         "factorized": {p.layer: p.as_dict() for p in plans if p.skipped is None},
                         "left_whole": {p.layer: p.skipped for p in plans if p.skipped is not None}}}  # fmt: skip
    result = row(chain, name, "lowrank", "torch", model, path, train_seconds=round(seconds, 4), **extra)
    chain.model, chain.name, chain.onnx = model, name, None
    return [result]


def int8_step(chain: Chain) -> list[dict[str, Any]]:
    """PyTorch int8 of the current model (static, dynamic or QAT with KD), checked against fp32."""
    from distil.compress import quantize
    from distil.compress.export import check_parity, parity
    from distil.weights import save_tensors

    q = chain.compress.int8
    strict = chain.compress.on_error == "stop"
    seconds = 0.0
    if q.mode == "static":
        model = quantize.static_int8(chain.model, chain.calibration(q.calibration), backend=q.backend, strict=strict)
    elif q.mode == "dynamic":
        model = quantize.dynamic_int8(chain.model)
    else:
        prepared = quantize.prepare_qat(chain.model, chain.data.train.x[:8], backend=q.backend)
        seconds = _recover(chain, prepared, q.epochs, q.lr)
        model = quantize.convert(prepared, strict=strict)
    name = f"{chain.name}.int8"
    checked = check_parity(f"int8 ({q.mode})", parity(chain.model, model, chain.held_out(chain.compress.onnx.samples), y=chain.held_out_labels(chain.compress.onnx.samples)), min_agreement=q.min_agreement)
    path = save_tensors(quantize.int8_tensors(model), chain.out / f"{name}.safetensors", metadata={"arch": chain.arch, "method": "int8", "mode": q.mode, "source": chain.name})
    left = quantize.unquantized_layers(model)
    extra = {"int8": {"mode": q.mode, "backend": q.backend, "fp32_layers": left}, "parity": checked.as_dict()}
    return [row(chain, name, "int8", "torch-int8", model, path, counted=chain.model, train_seconds=round(seconds, 4), **extra)]


def _export(chain: Chain) -> tuple[Path, dict[str, Any]]:
    """The current model as ONNX, checked in onnxruntime; cached for a following ``onnx-int8``.

    Text models are traced on a few training sentences (dynamic batch and length), others on a random
    batch; checked on held-out inputs (text: also one sentence at a time at several lengths and a
    padded mixed batch).
    """
    from distil.compress.export import OnnxModel, check_parity, export_onnx, parity

    o = chain.compress.onnx
    final = chain.out / f"{chain.name}.onnx"
    staged = chain.out / f".{chain.name}.staged.onnx"
    try:
        # Text traces real sentences (dynamic batch and length); images a random batch, as before text existed.
        example = chain.data.train.x[:8] if chain.reads_tokens else None
        export_onnx(chain.model, chain.data.input_shape, staged, exporter=o.exporter, opset=o.opset, example=example)
        checked = check_parity(f"onnx ({chain.label})", parity(chain.model, OnnxModel(staged), chain.held_out(o.samples), y=chain.held_out_labels(o.samples)), atol=o.tolerance)
        staged.replace(final)
    finally:
        staged.unlink(missing_ok=True)
    chain.onnx = final
    return final, checked.as_dict()


def onnx_step(chain: Chain) -> list[dict[str, Any]]:
    """ONNX export (one file, dynamic batch), run in onnxruntime and checked against PyTorch."""
    from distil.compress.export import OnnxModel

    path, checked = _export(chain)
    from distil.compress.export import resolve_exporter

    extra = {"onnx": {"exporter": resolve_exporter(chain.compress.onnx.exporter, chain.reads_tokens), "opset": chain.compress.onnx.opset}, "parity": checked}
    return [row(chain, f"{chain.name}.onnx", "onnx", "onnxruntime", OnnxModel(path), path, counted=chain.model, **extra)]


def onnx_int8_mode(chain: Chain) -> str:
    """``static`` or ``dynamic``: ``auto`` is dynamic for token inputs (nothing to calibrate), static otherwise."""
    from distil.compress.export import ExportError

    mode = chain.compress.onnx_int8.mode
    tokens = chain.reads_tokens
    if mode == "auto":
        return "dynamic" if tokens else "static"
    if mode == "static" and tokens:
        raise ExportError(f"onnx-int8 (static) of {chain.label}: static quantization calibrates float inputs, and this model reads token ids; use compress.onnx_int8.mode: dynamic")
    return mode


def onnx_int8_step(chain: Chain) -> list[dict[str, Any]]:
    """ONNX Runtime int8 of the current model's ONNX file, checked against fp32: static (QDQ or QOperator,
    calibrated on training inputs) or dynamic (int8 weights, activations per call; the form for text)."""
    from distil.compress.export import OnnxModel, check_parity, parity, quantize_onnx, quantize_onnx_dynamic

    q = chain.compress.onnx_int8
    mode = onnx_int8_mode(chain)
    source = chain.onnx if chain.onnx is not None and chain.onnx.is_file() else _export(chain)[0]
    final = chain.out / f"{chain.name}.int8.onnx"
    staged = chain.out / f".{chain.name}.int8.staged.onnx"
    try:
        if mode == "dynamic":
            quantize_onnx_dynamic(source, staged, per_channel=q.per_channel)
        else:
            quantize_onnx(source, staged, chain.calibration(q.calibration), fmt=q.format, per_channel=q.per_channel)
        checked = check_parity(f"onnx-int8 ({mode}, {chain.label})", parity(chain.model, OnnxModel(staged), chain.held_out(chain.compress.onnx.samples), y=chain.held_out_labels(chain.compress.onnx.samples)), min_agreement=q.min_agreement)
        staged.replace(final)
    finally:
        staged.unlink(missing_ok=True)
    form = {"ops": list(DYNAMIC_OPS)} if mode == "dynamic" else {"format": q.format}
    extra = {"onnx_int8": {"mode": mode, **form, "per_channel": q.per_channel}, "parity": checked.as_dict()}
    return [row(chain, f"{chain.name}.onnx-int8", "onnx-int8", "onnxruntime", OnnxModel(final), final, counted=chain.model, **extra)]


#: What each step's row claims to improve. ``onnx-int8`` claims size only: on the demo student, ONNX
#: Runtime's int8 convolutions (QDQ or QOperator, per channel or per tensor) are slower than fp32 at
#: batch 1 and 0.6–1.5× its throughput at batch 256, slower wherever the fp32 convolutions run in the
#: blocked NCHWc layout (benchmarks/compress/README.md), so no speed is claimed for it.
CLAIMS: dict[str, tuple[str, ...]] = {"prune": ("speed", "size"), "lowrank": ("speed", "size"), "int8": ("speed", "size"), "onnx": ("speed",), "onnx-int8": ("size",)}

#: name → step; the names are the ones ``compress.steps`` accepts (distil.config.COMPRESS_STEPS)
STEPS: dict[str, Step] = {"prune": prune_step, "lowrank": lowrank_step, "int8": int8_step, "onnx": onnx_step, "onnx-int8": onnx_int8_step}
assert tuple(STEPS) == COMPRESS_STEPS == tuple(CLAIMS), "every configurable step has a function and a claim, and no other"
