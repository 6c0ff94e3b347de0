"""benchmarks/cross-modal: a cheap low-resolution sensor taught by a camera model (paired inputs).

``configs/fashion_mnist/cross_modal/crd.yaml``: the shipped Fashion-MNIST teacher (288k-parameter
CNN, trained on the 28×28 images, used as it is) teaches a 24k-parameter CNN that sees only a 7×7
noisy view of each image (``data.student_view: {downsample: 4, noise: 0.2}``). Per seed, one run
(``distil run``'s steps) holds four rows of the student: scratch (CE on the 7×7 inputs), KD (the
teacher's logits on the 28×28 image of each row), CRD (contrastive term on the embeddings + CE) and
CRD+KD. Every row: 10 epochs, batch 256, SGD 0.1 cosine, the same seed's initial weights.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/cross-modal/bench.py --seeds 0,1,2 --out /work/bench/paired/runs
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from distil.config.files import read_raw, resolve_paths, validate_config
from distil.experiment import run_experiment
from distil.hardware import set_threads

CONFIG = Path("configs/fashion_mnist/cross_modal/crd.yaml")
METHODS = ("kd", "crd", "crd+kd")
ROWS = {"teacher": "teacher (camera image, 1×28×28)", "student_scratch": "student, scratch", "student_kd": "student, KD", "student_crd": "student, CRD", "student_crd+kd": "student, CRD+KD"}
KEEP = ("name", "method", "accuracy", "val_accuracy", "params", "train_seconds", "best_epoch")


def config(overrides: list[str], path: Path = CONFIG):
    return resolve_paths(validate_config(read_raw(path, overrides), str(path)), path.parent)


def run(out: Path, overrides: list[str], methods: list[str]) -> dict[str, Any]:
    if not (out / "summary.json").is_file():  # finished before: the script can be rerun after an interruption
        print(f"--- {out}  {' '.join(overrides)}", flush=True)
        resume = (out / "config.yaml").is_file()
        run_experiment(config(overrides), out, methods=methods, resume=resume)
    return json.loads((out / "summary.json").read_text())


def table(per_seed: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, label in ROWS.items():
        found = [m for s in per_seed.values() for m in s["models"] if m["name"] == name]
        if not found:
            continue
        acc = [100 * m["accuracy"] for m in found]
        secs = [m.get("train_seconds", 0.0) for m in found]
        rows.append({
            "model": label, "name": name, "params": found[0]["params"],
            "test_accuracy_mean": round(statistics.mean(acc), 2), "test_accuracy_std": round(statistics.stdev(acc), 2) if len(acc) > 1 else 0.0,
            "test_accuracy": [round(a, 2) for a in acc], "train_seconds_median": round(statistics.median(secs), 1),
        })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]], seeds: list[int], inputs: str) -> str:
    lines = [
        f"Test accuracy, mean ± std over seeds {', '.join(map(str, seeds))} (10,000 test images; {inputs}).",
        "",
        "| model | params | test accuracy % | per seed | train s (median) |",
        "|---|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['test_accuracy_mean']:.2f} ± {r['test_accuracy_std']:.2f} | {', '.join(f'{a:.2f}' for a in r['test_accuracy'])} | {r['train_seconds_median']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, required=True, help="run directories (kept out of the repository)")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent, help="where results.json and results.md go")
    parser.add_argument("--methods", default=",".join(METHODS), help="distilled rows besides scratch")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. student.epochs=5")
    args = parser.parse_args()
    set_threads()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.time()
    methods = args.methods.split(",")
    per_seed = {seed: run(args.out / f"seed{seed}", [f"seed={seed}", *args.overrides], methods) for seed in seeds}
    rows = table(per_seed)
    first = per_seed[seeds[0]]
    pair = first["data"]["paired"]
    inputs = f"teacher: {pair['teacher']['input']} {'×'.join(map(str, pair['teacher']['input_shape']))}; student: {pair['student']['input']} {'×'.join(map(str, pair['student']['input_shape']))} ({pair['student'].get('derived', '')})"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    results = {
        "command": shlex.join(["python", *sys.argv]),
        "config": str(CONFIG),
        "overrides": args.overrides,
        "seeds": seeds,
        "methods": methods,
        "commit": commit,
        "machine": first["machine"],
        "wall_seconds": round(time.time() - started, 1),
        "inputs": pair,
        "rows": rows,
        "runs": {str(seed): [{k: m.get(k) for k in KEEP} | {"teacher_outputs": m.get("teacher_outputs", {}).get("reason")} for m in s["models"]] for seed, s in per_seed.items()},
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.results / "results.md").write_text(markdown(rows, seeds, inputs))
    print(markdown(rows, seeds, inputs))


if __name__ == "__main__":
    main()
