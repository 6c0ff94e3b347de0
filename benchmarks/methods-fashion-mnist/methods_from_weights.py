"""Rebuild a methods table from the weights a `distil bench methods` run saved, when it was stopped early.

`distil bench methods` writes each seed's summary.json only when every method of that seed has
finished; each student's weights and its per-epoch metrics are written as soon as it is trained.
This script evaluates every saved student on the test split (the same `accuracy` the run uses),
takes the training seconds from metrics.jsonl, and writes DIR/results.md and DIR/results.csv with
the bench's own aggregation. Used for benchmarks/methods-fashion-mnist (see its README.md).

    python benchmarks/methods-fashion-mnist/methods_from_weights.py configs/fashion_mnist/methods.yaml runs/methods-fashion-mnist
"""

from __future__ import annotations

import json
import shlex
import sys
from collections import defaultdict
from pathlib import Path

from distil.bench.methods import _write, aggregate
from distil.config import load_config
from distil.engine.evaluate import accuracy
from distil.models import count_parameters
from distil.weights import load_weights


def seed_summary(config_path: str, run: Path) -> dict:
    seed = int(run.name.removeprefix("seed"))
    cfg = load_config(config_path).model_copy(update={"seed": seed})
    data = cfg.data.load(seed)
    seconds: dict[str, float] = defaultdict(float)
    epochs: dict[str, int] = defaultdict(int)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        seconds[record["model"]] += record["seconds"]
        epochs[record["model"]] += 1
    models = []
    for path in sorted(run.glob("*.safetensors")):
        name = path.name.removesuffix(".safetensors")
        if name.endswith(".objective") or (name != "teacher" and epochs[name] < cfg.student.epochs):
            continue  # connectors, or a student whose training was cut off
        role = "teacher" if name == "teacher" else "student"
        model = load_weights((cfg.teacher if role == "teacher" else cfg.student).build(data, seed), path).eval()
        models.append(
            {
                "name": name, "role": role, "method": "loaded" if role == "teacher" else name.removeprefix("student_"),
                "arch": (cfg.teacher if role == "teacher" else cfg.student).arch, "params": count_parameters(model),
                "accuracy": accuracy(model, data.test.x, data.test.y), "train_seconds": seconds[name], "epochs": epochs[name], "seed": seed,
            }
        )
    return {"dataset": data.name, "seed": seed, "models": models}


def main(config_path: str, out: str) -> None:
    out_dir = Path(out)
    summaries = [seed_summary(config_path, run) for run in sorted(out_dir.glob("seed*"))]
    command = shlex.join(["python", *sys.argv])
    rows = sorted(aggregate(summaries), key=lambda r: (r["method"] != "scratch", r["method"]))  # scratch first, as the bench
    _write(out_dir, rows, summaries, load_config(config_path), command)
    print((out_dir / "results.md").read_text())


if __name__ == "__main__":
    main(*sys.argv[1:])
