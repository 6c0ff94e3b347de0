"""Control for benchmarks/cross-modal: the same CRD objective (queue memory, weight 0.8 + CE, 10 epochs) with
the student on the camera's own 28×28 images (student_view and inputs removed), seed 0, one run.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/cross-modal/control_same_modality.py
"""

import json
from pathlib import Path

from distil.config.files import read_raw, resolve_paths, validate_config
from distil.experiment import run_experiment
from distil.hardware import set_threads

OUT = "/work/bench/paired/control28b"  # run directory, outside the repository

set_threads()
path = Path("configs/fashion_mnist/cross_modal/crd.yaml")
raw = read_raw(path, ["seed=0"])
raw["data"].pop("student_view")
raw["data"].pop("inputs")
cfg = resolve_paths(validate_config(raw, str(path)), path.parent)
s = run_experiment(cfg, OUT, steps=["teacher", "kd"], methods=["crd"])
print(json.dumps([(m["name"], m["accuracy"], m.get("train_seconds")) for m in s["models"]]))
