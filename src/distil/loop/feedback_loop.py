"""The deploy loop: re-distil the served student on the training data plus what was served, compare,
promote only if it is not worse.

``run_loop(RUN, FEEDBACK)`` — the command ``distil loop RUN --feedback DIR``:

1. **Inputs, not answers.** The feedback folder (``distil serve --feedback DIR``) holds the served
   inputs: tensors at raw scale, normalized with the run's statistics, or a text-classification
   run's texts, tokenized with the run's own tokenizer (:mod:`distil.loop.inputs`: what differs
   between the kinds of run; tagging and paired runs are refused). A sample is *held out* when
   the first byte of sha256(id) — of the text itself for a text run, so repeated texts fall on one side — falls under ``holdout`` (20 %): a fixed choice per sample, so a
   growing folder keeps its held-out samples held out in every later loop.
2. **Labels.** The teacher labels every feedback input with soft targets — the KD term over the
   training split extended by the feedback inputs, through the ordinary teacher cache (exact logits,
   on disk under ``cache_dir``, keyed by the teacher and the inputs' bytes, like any transfer set).
   A person's correction is the sample's hard label (the CE term); uncorrected feedback has the
   label −100, which CE skips, so only the teacher speaks for it. Objective:
   ``alpha · KD(T) + (1 − alpha) · CE`` (Hinton et al. 2015), ``alpha`` = 0.9, ``T`` = 4.
3. **Training.** The new student starts from the newest version's weights and trains ``epochs``
   (default: the run's ``student.epochs``) with the run's student settings but a tenth of its
   learning rate (``lr``; a fine-tune: on the Fashion-MNIST demo one epoch at the run's own 0.1 lost
   0.8 point on test and was refused); the validation split picks the epoch, as in every fit.
4. **Comparison on the same held-out data.** Old (the newest version) and new are evaluated on the
   run's test split and on the held-out feedback, whose label is the correction where there is one
   and the teacher's top class otherwise. The new one is promoted iff it is not worse than the old
   by more than ``tolerance`` (0.5 point) on either.
5. **Promotion** writes ``RUN/versions/N/`` (:mod:`distil.session.versions`): weights, the ONNX
   export (a text model's with dynamic batch and length), and the summary row measured like every
   row (text: with the tokenizer's latency), ``summary.json`` last. Every attempt is a
   line of ``versions/history.jsonl``. ``distil serve RUN`` picks the new version up.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distil.errors import DataError

TOLERANCE = 0.005
HOLDOUT = 0.2
TEMPERATURE = 4.0
ALPHA = 0.9
FINE_TUNE_LR = 0.1  # the loop's default learning rate, as a share of the run's student.lr


@dataclass
class LoopResult:
    """What one loop did: the two students' scores on the same held-out data, and the decision."""

    old: dict[str, float]
    new: dict[str, float]
    promoted: bool
    version: int | None  # the new version's number when promoted
    reason: str
    feedback: dict[str, int] = field(default_factory=dict)  # samples: train, held out, corrected

    def as_dict(self) -> dict[str, Any]:
        finite = lambda scores: {k: (v if math.isfinite(v) else None) for k, v in scores.items()}  # NaN (a diverged retrain) → null
        return {"old": finite(self.old), "new": finite(self.new), "promoted": self.promoted, "version": self.version, "reason": self.reason, "feedback": self.feedback}


def held_out(key: str, fraction: float) -> bool:
    """Whether a feedback sample is held out for evaluation: fixed per key (its id; a text's words), sha256's first byte < fraction · 256."""
    return hashlib.sha256(key.encode()).digest()[0] < fraction * 256


def run_loop(
    run: Path,
    feedback: Path,
    *,
    tolerance: float = TOLERANCE,
    holdout: float = HOLDOUT,
    epochs: int | None = None,
    lr: float | None = None,
    cache_dir: str | None = None,
    log=print,
) -> LoopResult:
    """One turn of the deploy loop on ``run`` with the feedback folder ``feedback`` (see the module doc)."""
    from distil.data import Split
    from distil.data.sources.transfer import UNCORRECTED
    from distil.data.tokens import concat
    from distil.engine.evaluate import accuracy, predict_logits
    from distil.engine.objective import build_objective
    from distil.engine.teacher_outputs import CacheSettings, teacher_outputs
    from distil.engine.trainer import fit
    from distil.hardware import resolve_device
    from distil.loop.inputs import input_kind
    from distil.losses import CE, KD
    from distil.session import read_config, read_summary
    from distil.session.versions import promoted_versions
    from distil.weights import load_weights

    run, feedback = Path(run), Path(feedback)
    config = read_config(run)
    summary = read_summary(run)
    data = config.data.load(config.seed)
    kind = input_kind(run, data)
    fb = kind.read(run, feedback, data)
    out_mask = np.array([held_out(k, holdout) for k in fb.keys], dtype=bool)
    device = resolve_device(config.device)

    teacher_row = next((m for m in summary["models"] if m.get("name") == "teacher"), None)
    if teacher_row is None:
        raise DataError(f"{run}: the run has no teacher row; the loop's labels come from the teacher")
    teacher = load_weights(config.teacher.build(data, config.seed), run / teacher_row["weights"]).eval().to(device)
    versions = promoted_versions(run)
    old_weights = versions[-1].weights if versions else run / _base_student(summary)["weights"]
    old = load_weights(config.student.build(data, config.seed), old_weights).eval().to(device)

    # held-out feedback: the correction where there is one, else the teacher's top class
    x_out = fb.x[torch.from_numpy(out_mask)].to(device)
    teacher_top = predict_logits(teacher, x_out).argmax(1).cpu().numpy() if len(x_out) else np.zeros(0, np.int64)
    corrected_out = fb.corrected[out_mask]
    y_out = torch.from_numpy(np.where(corrected_out != UNCORRECTED, corrected_out, teacher_top)).to(device)

    def scores(model: torch.nn.Module) -> dict[str, float]:
        found = {"test": accuracy(model, data.test.x.to(device), data.test.y.to(device))}
        if len(x_out):
            found["feedback"] = accuracy(model, x_out, y_out)
        return found

    # training: the run's training split plus the feedback not held out; corrections as labels, −100 elsewhere
    x_in = fb.x[torch.from_numpy(~out_mask)]
    y_in = torch.from_numpy(fb.corrected[~out_mask])
    train = Split(concat([data.train.x, x_in]), torch.cat([data.train.y, y_in])).to(device)
    new = copy.deepcopy(old).train()
    settings = config.student.settings()
    settings = replace(settings, epochs=epochs if epochs is not None else settings.epochs, lr=lr if lr is not None else settings.lr * FINE_TUNE_LR)
    log(f"loop: {len(train)} training inputs ({len(x_in)} from feedback, {int((y_in != UNCORRECTED).sum())} corrected), {int(out_mask.sum())} feedback held out")
    start = time.perf_counter()
    objective = build_objective([KD(T=TEMPERATURE) * ALPHA, CE() * (1 - ALPHA)], new, teacher, train.x[:8], n_data=len(train), seed=config.seed)
    targets = teacher_outputs(teacher, train.x, None, objective.teacher_taps, settings=CacheSettings(dir=cache_dir, seed=config.seed),
                              temperature=objective.temperature, exact_logits=objective.needs_exact_logits)  # fmt: skip
    before = scores(old)
    try:
        fit(new, train, data.val.to(device), objective, settings, seed=config.seed, teacher=targets)
    except FloatingPointError as err:  # a diverged retrain is an outcome of the loop, not a crash: nothing promoted
        diverged: str | None = str(err)
    else:
        diverged = None
    seconds = time.perf_counter() - start
    new.eval()
    after = {k: float("nan") for k in before} if diverged else scores(new)
    worse = {k: round(before[k] - after[k], 4) for k in before if not after[k] >= before[k] - tolerance - 1e-12}
    promoted = not worse
    if diverged:
        reason = f"the retrain failed: {diverged}"
    elif promoted:
        reason = f"not worse than the old student by more than {100 * tolerance:g} point on the test split and the held-out feedback"
    else:
        reason = "worse by " + ", ".join(f"{100 * d:.2f} points on {k}" for k, d in worse.items()) + f" (tolerance {100 * tolerance:g})"
    counts = {"train": int((~out_mask).sum()), "held_out": int(out_mask.sum()), "corrected": int((fb.corrected != UNCORRECTED).sum())}
    result = LoopResult(before, after, promoted, None, reason, counts)
    if promoted:
        result.version = _promote(run, config, data, kind, new, before, after, reason, counts, seconds, old_weights)
    _append_history(run, result)
    return result


def _base_student(summary: dict[str, Any]) -> dict[str, Any]:
    """Version 1's weights: the most accurate of the run's own (safetensors, not compressed) distilled students."""
    own = [m for m in summary["models"] if m.get("role") == "student" and "source" not in m and str(m.get("weights", "")).endswith(".safetensors")]
    distilled = [m for m in own if m.get("method") != "scratch"] or own
    if not distilled:
        raise DataError("the run lists no student of its own to start the loop from")
    return max(distilled, key=lambda m: m.get("accuracy", 0.0))


def _promote(run: Path, config, data, kind, model, before, after, reason, counts, seconds, old_weights: Path) -> int:
    """Write ``versions/N/`` — weights, ONNX, then summary.json (last, atomically) — and return N."""
    from distil.compress.export import OnnxModel, export_onnx
    from distil.engine.measure import measure, timing_input
    from distil.session.versions import ONNX, SUMMARY, WEIGHTS, next_version, versions_dir
    from distil.weights import atomic_write, file_sha256, save_weights

    number = next_version(run)
    folder = versions_dir(run) / str(number)
    folder.mkdir(parents=True)
    model = model.cpu().eval()
    save_weights(model, folder / WEIGHTS)
    export_onnx(model, tuple(data.input_shape), folder / ONNX, exporter="torchscript", example=kind.export_example(data), atol=1e-4)
    measured = measure(OnnxModel(folder / ONNX), timing_input(data), runtime="onnxruntime", test=(data.test.x, data.test.y),
                       size_bytes=(folder / ONNX).stat().st_size, counted=model,
                       latency_repeats=config.measure.latency_repeats, throughput_repeats=config.measure.throughput_repeats)  # fmt: skip
    measured |= kind.row_extras(data, measured)
    row = {"name": f"student.v{number}", "role": "student", "method": "loop", "arch": config.student.arch, **measured,
           "feedback_accuracy": after.get("feedback"), "train_seconds": round(seconds, 2), "weights": f"versions/{number}/{ONNX}",
           "sha256": file_sha256(folder / ONNX)}  # fmt: skip
    record = {"version": number, "row": row, "loop": {"old": before, "new": after, "reason": reason, "feedback": counts, "started_from": str(old_weights)}}
    atomic_write(folder / SUMMARY, lambda tmp: tmp.write_text(json.dumps(record, indent=2) + "\n"))
    return number


def _append_history(run: Path, result: LoopResult) -> None:
    from distil.session.versions import HISTORY, versions_dir

    versions_dir(run).mkdir(exist_ok=True)
    with open(versions_dir(run) / HISTORY, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **result.as_dict()}) + "\n")
