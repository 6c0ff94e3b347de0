"""benchmarks/self_supervised: what a student's embedding knows after self-supervised distillation.

Fashion-MNIST, the demo pair (the shipped 288k-parameter CNN teacher, the 24k-parameter CNN student).
For each seed, two ``distil run``s:

1. ``configs/fashion_mnist/ssl/given.yaml``: the teacher loaded; the student trained on the labels
   (``student_scratch``: *supervised*); the student distilled from the frozen teacher across two views
   of the training inputs without their labels (``student_ssl_given``);
2. ``configs/fashion_mnist/ssl/ema.yaml``: no teacher; the student taught by its own EMA (``student_ssl_ema``).

Every model's embedding is probed the same way (:mod:`distil.engine.probe`: logistic regression on the
frozen training features with the training labels, and weighted 20-NN), and the untrained student of
the seed (*random init*) is probed too: what the architecture gives before any training.

DIR/results.json holds every run's rows, DIR/results.md the mean ± std over seeds.

    DISTIL_THREADS=1 python benchmarks/self_supervised/bench.py --seeds 0,1,2 --out runs/bench-ssl
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from distil.config.files import read_raw, resolve_paths, validate_config
from distil.engine.probe import probe
from distil.experiment import run_experiment
from distil.hardware import machine, set_threads

CONFIGS = {"given": Path("configs/fashion_mnist/ssl/given.yaml"), "ema": Path("configs/fashion_mnist/ssl/ema.yaml")}
#: table row → (run, model row)
ROWS = {
    "teacher (supervised, 288k)": ("given", "teacher"),
    "student, random init": ("random", "student"),
    "student, supervised (labels)": ("given", "student_scratch"),
    "student, SSL from the teacher": ("given", "student_ssl_given"),
    "student, SSL from its own EMA": ("ema", "student_ssl_ema"),
}
KEEP = ("method", "accuracy", "probe_accuracy", "knn_accuracy", "params", "train_seconds", "epochs")


def config(path: Path, overrides: list[str]):
    return resolve_paths(validate_config(read_raw(path, overrides), str(path)), path.parent)


def run(path: Path, out: Path, overrides: list[str]) -> dict[str, Any]:
    if (out / "summary.json").is_file():  # finished before: the script can be rerun after an interruption
        return json.loads((out / "summary.json").read_text())
    print(f"--- {out}  {' '.join(overrides)}", flush=True)
    resume = (out / "config.yaml").is_file()
    return run_experiment(config(path, overrides), out, command=shlex.join(["python", *sys.argv]), resume=resume)


def random_init(seed: int, overrides: list[str]) -> dict[str, Any]:
    cfg = config(CONFIGS["given"], [*overrides, f"seed={seed}"])
    data = cfg.data.load(seed)
    scores, _ = probe(cfg.student.build(data, seed), data.train.x, data.train.y, data.test.x, data.test.y, data.num_classes)
    return {"name": "student", "method": "random init", **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-ssl"))
    parser.add_argument("--only", choices=sorted(CONFIGS), help="run one of the two configs (two processes can share the seeds)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args()
    set_threads()
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.time()
    results: dict[str, Any] = {"configs": {k: str(v) for k, v in CONFIGS.items()}, "overrides": args.overrides, "runs": {}}
    for seed in seeds:
        for kind, path in CONFIGS.items():
            if args.only in (None, kind):
                summary = run(path, args.out / kind / f"seed{seed}", [*args.overrides, f"seed={seed}"])
                results["runs"][f"{kind}/seed{seed}"] = [{k: m.get(k) for k in ("name", *KEEP)} for m in summary["models"]]
        if args.only is None:
            results["runs"][f"random/seed{seed}"] = [random_init(seed, args.overrides)]
    if args.only is not None:
        return
    results.update(machine=machine(), wall_seconds=round(time.time() - start, 1), command=shlex.join(["python", *sys.argv]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(table(results, seeds))
    print((args.out / "results.md").read_text())


def _cell(values: list[float | None]) -> str:
    values = [100 * v for v in values if v is not None]
    if not values:
        return "–"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


def table(results: dict[str, Any], seeds: list[int]) -> str:
    lines = [
        f"Mean ± std over seeds {', '.join(map(str, seeds))}; train s: the median over seeds.",
        "",
        "| model | method | linear probe % | 20-NN % | test accuracy % | train s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, (kind, name) in ROWS.items():
        rows = [next(m for m in results["runs"][f"{kind}/seed{s}"] if m["name"] == name) for s in seeds]
        seconds = [r.get("train_seconds") for r in rows if r.get("train_seconds") is not None]
        lines.append(
            f"| {label} | {rows[0].get('method', '')} | {_cell([r.get('probe_accuracy') for r in rows])} | {_cell([r.get('knn_accuracy') for r in rows])} "
            f"| {_cell([r.get('accuracy') for r in rows])} | {statistics.median(seconds) if seconds else '–'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
