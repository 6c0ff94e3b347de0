"""The golden values of every method preset: what ``tests/golden/presets.json`` holds and how it is made.

For each preset of :data:`distil.engine.methods.METHODS` the objective is built on a seeded pair of
tiny CNNs (the student with fewer, narrower stages, so stage pairing, spatial resizing and channel
projection all happen) and run once, as a training step runs it, on one fixed batch. The record of a
preset is its description, the objective's temperature and taps, and per term: name, loss class,
the loss's constructor arguments (its public attributes), weight and scheduled weight at a few
points of training, the taps and their shapes, the connector (layers and tensor shapes) and the
weighted value; plus the total.

``tests/test_presets.py`` recomputes every record with :func:`preset_record` and compares. After a
deliberate change to a preset or a loss, regenerate (and review the diff of the JSON)::

    DISTIL_THREADS=1 .venv/bin/python tests/make_golden_presets.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distil.engine.methods import METHODS
from distil.engine.objective import Objective, build_objective
from distil.engine.taps import LOGITS, Taps, probe_shapes
from distil.models import build_model

FIXTURE = Path(__file__).parent / "golden" / "presets.json"

# Everything the values depend on; stored in the fixture too, so editing it without regenerating fails.
SETUP: dict[str, Any] = {
    "input_shape": [1, 16, 16],
    "num_classes": 10,
    # teacher: stages at 8×8, 4×4, 2×2 (16, 24, 32 channels); student: 8×8, 4×4 (4, 8 channels)
    "teacher": {"arch": "cnn", "seed": 1, "kwargs": {"widths": [16, 24, 32], "convs_per_stage": 1}},
    "student": {"arch": "cnn", "seed": 2, "kwargs": {"widths": [4, 8], "convs_per_stage": 1}},
    # The models compute in float64, so the features every loss sees are the same (rounded to fp32 by
    # the objective, which computes in fp32 as in training) whatever the CPU's conv kernels and threads.
    "model_dtype": "float64",
    "data_seed": 3,
    "batch": 16,
    "probe": 8,  # the first rows of the batch are the probe batch build_objective resolves taps with
    "n_data": 64,  # the training set the batch's indices (CRD's memory rows) come from
    "objective_seed": 0,
    "forward_seed": 4,  # torch's RNG before the forward: CRD draws its negatives from it
    "progress": 0.5,  # where in training the forward runs (past DKD's warm-up)
    "weight_progress": [0.0, 0.05, 0.5],  # where each term's scheduled weight is recorded
}


def models() -> tuple[nn.Module, nn.Module]:
    """The (student, teacher) pair of :data:`SETUP`, freshly built."""
    shape = tuple(SETUP["input_shape"])
    dtype = getattr(torch, SETUP["model_dtype"])
    made = [
        build_model(SETUP[side]["arch"], input_shape=shape, num_classes=SETUP["num_classes"], seed=SETUP[side]["seed"], **SETUP[side]["kwargs"]).to(dtype)
        for side in ("student", "teacher")
    ]
    return made[0], made[1]


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed batch: inputs, labels and the samples' indices in a training set of ``n_data``."""
    g = torch.Generator().manual_seed(SETUP["data_seed"])
    b, (c, h, w), dtype = SETUP["batch"], SETUP["input_shape"], getattr(torch, SETUP["model_dtype"])
    # Smooth random images with a brightness and contrast of their own: samples that differ as a whole
    # (iid pixel noise gives nearly equal pooled features, so relation losses compare near-uniform
    # distributions, a difference of nearly equal numbers that rounding moves by 1e-5 relative).
    coarse = torch.randn(b, c, h // 2, w // 2, generator=g, dtype=dtype)
    scale = 0.5 + 2.5 * torch.rand(b, 1, 1, 1, generator=g, dtype=dtype)
    offset = torch.randn(b, 1, 1, 1, generator=g, dtype=dtype)
    x = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) * scale + offset
    x = x + 0.1 * torch.randn(b, c, h, w, generator=g, dtype=dtype)
    y = torch.randint(0, SETUP["num_classes"], (SETUP["batch"],), generator=g)
    index = torch.randperm(SETUP["n_data"], generator=g)[: SETUP["batch"]]
    return x, y, index


def step_values(objective: Objective, student: nn.Module, teacher: nn.Module | None, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, progress: float) -> dict[str, torch.Tensor]:
    """One forward of the objective as ``engine.trainer.fit`` runs it: student and objective in training
    mode, the frozen teacher in eval mode without autograd (as its cache computes it)."""
    student.train()
    objective.train()
    teacher_out = None
    if teacher is not None and objective.uses_teacher:
        teacher.eval()
        with torch.no_grad(), Taps(teacher, objective.teacher_taps | {LOGITS}) as tapped:
            teacher_out = tapped.forward(x)
    with Taps(student, objective.student_taps) as tapped:
        student_out = tapped.forward(x)
        torch.manual_seed(SETUP["forward_seed"])
        return objective(student_out, teacher_out, y, index=index, progress=progress)


def _params(loss: nn.Module) -> dict[str, Any]:
    """A loss's constructor arguments as it keeps them: its public attributes (as its ``extra_repr``)."""
    return {k: v for k, v in vars(loss).items() if not k.startswith("_") and k != "training"}


def _shapes(module: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _connector(module: nn.Module) -> dict[str, Any]:
    leaves = [m for m in module.modules() if not list(m.children())]
    return {"layers": [type(m).__name__ for m in leaves], "tensors": _shapes(module)}


def preset_record(name: str) -> dict[str, Any]:
    """Build preset ``name`` on the fixed models, run one step's forward and describe what it computed."""
    student, teacher = models()
    x, y, index = batch()
    objective = build_objective(METHODS[name].terms, student, teacher, x[: SETUP["probe"]], n_data=SETUP["n_data"], seed=SETUP["objective_seed"])
    # per-sample shapes (the batch dimension left out) of what each side's taps read
    s_shapes = {k: list(v[1:]) for k, v in probe_shapes(student, x[: SETUP["probe"]], objective.student_taps).items()}
    t_shapes = {k: list(v[1:]) for k, v in probe_shapes(teacher, x[: SETUP["probe"]], objective.teacher_taps).items()}
    values = step_values(objective, student, teacher, x, y, index, SETUP["progress"])
    terms = []
    for term_name, term in zip(objective.names, objective.terms):
        uses_teacher = term.loss.uses_teacher
        terms.append(
            {
                "name": term_name,
                "loss": type(term.loss).__name__,
                "params": _params(term.loss),
                "loss_tensors": _shapes(term.loss),
                "weight": term.weight,
                "weight_at": {repr(p): term.weight_at(p) for p in SETUP["weight_progress"]},
                "student": term.student,
                "teacher": term.teacher if uses_teacher else None,
                "student_shape": s_shapes[term.student],
                "teacher_shape": t_shapes[term.teacher] if uses_teacher else None,
                "connector": _connector(objective.connectors[term_name]) if term_name in objective.connectors else None,
                "value": values[term_name].item() if term_name in values else None,
            }
        )
    return {
        "description": METHODS[name].description,
        "temperature": objective.temperature,
        "student_taps": sorted(objective.student_taps),
        "teacher_taps": sorted(objective.teacher_taps),
        "terms": terms,
        "total": torch.stack(list(values.values())).sum().item(),
    }


def golden() -> dict[str, Any]:
    return {
        "setup": SETUP,
        "torch": torch.__version__,
        "presets": {name: preset_record(name) for name in METHODS},
    }


def main() -> None:
    from distil.hardware import set_threads

    set_threads()
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(golden(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE} ({len(METHODS)} presets)", file=sys.stderr)


if __name__ == "__main__":
    main()
