"""benchmarks/semi_supervised: FixMatch with 10 and 100 labels per class on Fashion-MNIST, the demo pair.

For each seed and each K in ``--labels`` (labels per class; a seeded, stratified choice; every other
training image is an unlabeled input), four runs of ``configs/fashion_mnist/semi/fixmatch_100.yaml``
with ``data.labels_per_class=K``:

- ``labels``: the student trained on the K·10 labelled images alone (``distil train --model student``:
  batch 64 and as many epochs as the teacher, so it gets as many steps as the teacher and is not
  starved by the FixMatch config's batch of 512);
- ``teacher``: the teacher (the 288k CNN) trained on the same labelled images, then FixMatch with that
  teacher as the pseudo-labeller (``strategy.labeller=teacher``);
- ``ema``: FixMatch without a teacher: the student's EMA labels the weak views (the teacher of the
  ``teacher`` run is loaded but not used);
- ``given``: FixMatch pseudo-labelled by the demo's shipped teacher, which was trained on all 55,000
  labelled training images: a teacher that saw far more labels than the student (reported apart);
- ``soft``, ``given_soft``: ``configs/fashion_mnist/semi/soft_100_given_teacher.yaml`` (``targets:
  soft``: the teacher's soft targets at T = 4 on every row, no augmentation, the demo's student
  schedule) with the teacher of the ``teacher`` run (trained on the same
  labels) and with the shipped teacher.

The fully supervised student (all 55,000 labels) comes from benchmarks/self_supervised (its
``student_scratch``, same seeds), read from ``--supervised DIR/results.json``.

    DISTIL_THREADS=1 python benchmarks/semi_supervised/bench.py --seeds 0,1,2 --labels 10,100 --out runs/bench-semi
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
from distil.experiment import run_experiment
from distil.hardware import machine, set_threads

CONFIG = Path("configs/fashion_mnist/semi/fixmatch_100.yaml")
SOFT = Path("configs/fashion_mnist/semi/soft_100_given_teacher.yaml")
SHIPPED = Path("configs/fashion_mnist/teacher.safetensors").resolve()
SHIPPED_SHA = "4eb800c9d7879d145f516332a89ddf8314550322ba60d893511be2c26c037a9d"
#: teacher epochs per labels-per-class: about 600-1,000 steps of batch 64 whatever the labelled count
TEACHER_EPOCHS = {10: 300, 100: 60}
#: labels per class for which the shipped teacher (all 55,000 labels) labels too: the goal's row
GIVEN_FOR = {100}
KEEP = ("name", "method", "accuracy", "val_accuracy", "params", "train_seconds", "epochs", "best_epoch", "mask_rate", "labeller_val_accuracy", "labelled", "unlabeled")


def config(overrides: list[str], path: Path = CONFIG):
    return resolve_paths(validate_config(read_raw(path, overrides), str(path)), path.parent)


def run(out: Path, overrides: list[str], steps: tuple[str, ...] = ("teacher", "scratch", "kd"), path: Path = CONFIG) -> list[dict[str, Any]]:
    if not (out / "summary.json").is_file():  # finished before: the script can be rerun after an interruption
        print(f"--- {out}  {' '.join(overrides)}", flush=True)
        resume = (out / "config.yaml").is_file()
        run_experiment(config(overrides, path), out, steps=steps, command=shlex.join(["python", *sys.argv]), resume=resume)
    return [{k: m.get(k) for k in KEEP} for m in json.loads((out / "summary.json").read_text())["models"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--labels", default="10,100", help="labels per class, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-semi"))
    parser.add_argument("--only", help="run only these variants (comma-separated: labels,teacher,ema,given,soft,given_soft); no tables")
    parser.add_argument("--soft", default="", help="config overrides for the soft-target runs only (after the common ones)")
    parser.add_argument("--supervised", type=Path, default=Path("runs/bench-ssl/results.json"), help="benchmarks/self_supervised results (the fully supervised student)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args()
    set_threads()
    seeds, labels = [int(s) for s in args.seeds.split(",")], [int(k) for k in args.labels.split(",")]
    only = set(args.only.split(",")) if args.only else {"labels", "teacher", "ema", "given", "soft", "given_soft"}
    soft = args.soft.split()
    start = time.time()
    results: dict[str, Any] = {"config": str(CONFIG), "overrides": args.overrides, "runs": {}}
    for k in labels:
        for seed in seeds:
            root = args.out / f"k{k}" / f"seed{seed}"
            common = [*args.overrides, f"seed={seed}", f"data.labels_per_class={k}", f"teacher.epochs={TEACHER_EPOCHS.get(k, 60)}"]
            if "labels" in only:
                student = ["student.batch_size=64", f"student.epochs={TEACHER_EPOCHS.get(k, 60)}", "student.lr=0.05"]
                results["runs"][f"k{k}/seed{seed}/labels"] = run(root / "labels", [*common, *student], steps=("scratch",))
            if {"teacher", "ema", "soft"} & only:  # ema and soft read the teacher this run trains
                results["runs"][f"k{k}/seed{seed}/teacher"] = run(root / "teacher", [*common, "scratch=false", "strategy.labeller=teacher"])
            if "ema" in only:
                trained = (root / "teacher" / "teacher.safetensors").resolve()
                results["runs"][f"k{k}/seed{seed}/ema"] = run(root / "ema", [*common, "scratch=false", "strategy.labeller=ema", f"teacher.weights={trained}"])
            if "given" in only and k in GIVEN_FOR:
                given = [*common, "scratch=false", "strategy.labeller=teacher", f"teacher.weights={SHIPPED}", f"teacher.sha256={SHIPPED_SHA}"]
                results["runs"][f"k{k}/seed{seed}/given"] = run(root / "given", given)
            # soft targets: the demo's student schedule from SOFT, not the FixMatch overrides
            labelled = [f"seed={seed}", f"data.labels_per_class={k}", "scratch=false", *soft]
            if "soft" in only:
                trained = (root / "teacher" / "teacher.safetensors").resolve()
                results["runs"][f"k{k}/seed{seed}/soft"] = run(root / "soft", [*labelled, f"teacher.weights={trained}", "teacher.sha256=null"], path=SOFT)
            if "given_soft" in only and k in GIVEN_FOR:
                results["runs"][f"k{k}/seed{seed}/given_soft"] = run(root / "given_soft", labelled, path=SOFT)
    if args.only:
        return
    supervised = None
    if args.supervised.is_file():
        found = json.loads(args.supervised.read_text())["runs"]
        supervised = [next(m for m in found[f"given/seed{s}"] if m["name"] == "student_scratch")["accuracy"] for s in seeds]
    results.update(supervised=supervised, machine=machine(), wall_seconds=round(time.time() - start, 1), command=shlex.join(["python", *sys.argv]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(table(results, seeds, labels))
    print((args.out / "results.md").read_text())


def _mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


ROWS = {
    "teacher (288k), labels only": ("teacher", "teacher"),
    "student, labels only": ("labels", "student_scratch"),
    "student, FixMatch, EMA labeller (no teacher)": ("ema", "student_fixmatch"),
    "student, FixMatch, teacher labeller (teacher trained on the same labels)": ("teacher", "student_fixmatch"),
    "student, FixMatch, the shipped teacher labeller (trained on all 55,000 labels)": ("given", "student_fixmatch"),
    "student, soft targets of the teacher trained on the same labels": ("soft", "student_soft"),
    "student, soft targets of the shipped teacher (trained on all 55,000 labels)": ("given_soft", "student_soft"),
}


def table(results: dict[str, Any], seeds: list[int], labels: list[int]) -> str:
    runs = results["runs"]
    supervised = results.get("supervised")
    lines = [
        f"| labels per class | model | test accuracy % ({len(seeds)} seeds, mean ± std) | below the fully supervised student | mask rate at the end | train s |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    full = statistics.mean(supervised) if supervised else None
    for k in labels:
        for label, (variant, name) in ROWS.items():
            if f"k{k}/seed{seeds[0]}/{variant}" not in runs:
                continue
            rows = [next(m for m in runs[f"k{k}/seed{s}/{variant}"] if m["name"] == name) for s in seeds]
            acc = [r["accuracy"] for r in rows]
            gap = f"{100 * (full - statistics.mean(acc)):.2f} points" if full is not None else "–"
            masks = [r["mask_rate"] for r in rows if r.get("mask_rate") is not None]
            mask = f"{100 * statistics.mean(masks):.1f} %" if masks else "–"
            lines.append(f"| {k} | {label} | {_mean_std(acc)} | {gap} | {mask} | {statistics.median(r['train_seconds'] for r in rows):.0f} |")
    if supervised:
        lines.append(f"| all (55,000) | student, supervised (benchmarks/self_supervised) | {_mean_std(supervised)} | 0 | – | – |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
