"""benchmarks/text: a fine-tuned MiniLM teacher → BiLSTM, LSTM, TextCNN and bag-of-embeddings students.

For one dataset (``mr`` or ``tweets``, configs/text/<dataset>/bench.yaml):

1. the teacher: MiniLM fine-tuned end to end with seed 0 (``distil train``), once; every run loads it;
2. for each student architecture and seed, two ``distil run``s: one with the ``unlabeled`` strategy,
   which gives the student from the labels (``scratch``), by KD on the training sentences
   (``baseline``) and by KD on the transfer set (the training sentences included); one with text
   augmentation (KD on 2 cached augmented views per sentence: masking 0.1, replacement 0.1, n-gram
   sampling 0.25, Tang et al. 2019); every student trains 5 epochs; the transfer set is 8,000
   unlabeled sentences plus the training sentences;
3. DIR/results.json: every run's rows; DIR/results.md: mean ± std over seeds, gap closed
   ``(student − scratch) / (teacher − scratch)`` and the teacher's batch-1 latency over the student's.

    DISTIL_THREADS=1 python benchmarks/text/text_bench.py mr --seeds 3 --out runs/bench-text
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

ARCHS = ("bilstm", "lstm", "textcnn", "boe")
#: variant -> (overrides, rows it adds: name in the run → variant label)
TRANSFER = {
    "mr": ["strategy.name=unlabeled", "strategy.baseline=true", "strategy.transfer={name: mr_reviews, max_samples: 8000, include_train: true}"],
    "tweets": ["strategy.name=unlabeled", "strategy.baseline=true", "strategy.transfer={name: tweets, options: {subset: 6000, rest: true}, max_samples: 8000, include_train: true}"],
}
AUGMENT = ["data.augment={mask: 0.1, replace: 0.1, ngram: 0.25}", "cache.views=2"]
#: Student epochs (every variant): the budget that fits both datasets' grids in about an hour on 2 cores.
EPOCHS = 5
VARIANTS = {
    "labels": ("transfer", "student_scratch"),
    "kd": ("transfer", "student_kd"),
    "kd+transfer": ("transfer", "student_unlabeled_kd"),
    "kd+augment": ("augment", "student_kd"),
}


def config(dataset: str, overrides: list[str]):
    path = Path(f"configs/text/{dataset}/bench.yaml")
    raw = read_raw(path, overrides)
    return resolve_paths(validate_config(raw, str(path)), path.parent)


def run(dataset: str, out: Path, overrides: list[str], steps: tuple[str, ...] | None = None) -> dict[str, Any]:
    summary_file = out / "summary.json"
    if summary_file.is_file():  # finished before: the script can be rerun after an interruption
        return json.loads(summary_file.read_text())
    print(f"--- {out}  {' '.join(overrides)}", flush=True)
    kwargs = {"steps": steps} if steps else {}
    resume = (out / "config.yaml").is_file()  # interrupted: continue from its last epoch checkpoint
    return run_experiment(config(dataset, overrides), out, command=shlex.join(["python", *sys.argv]), resume=resume, **kwargs)


def row(summary: dict[str, Any], name: str) -> dict[str, Any]:
    for m in summary["models"]:
        if m["name"] == name:
            keep = ("accuracy", "params", "size_bytes", "latency_ms_b1", "latency_ms_b1_text", "tokenize_ms_b1", "throughput_b256", "train_seconds")
            return {k: m.get(k) for k in keep}
    raise KeyError(f"no row {name!r} in {summary.get('name')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(TRANSFER))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--archs", default=",".join(ARCHS))
    parser.add_argument("--out", type=Path, default=Path("runs/bench-text"))
    args = parser.parse_args()
    set_threads()  # as the CLI does: DISTIL_THREADS, else one per core
    root = args.out / args.dataset
    start = time.time()

    teacher_dir = root / "teacher"
    teacher_summary = run(args.dataset, teacher_dir, ["scratch=true", "measure.latency_repeats=30", "measure.throughput_repeats=3"], steps=("teacher",))
    weights = (teacher_dir / "teacher.safetensors").resolve()
    load_teacher = [f"teacher.weights={weights}"]

    results: dict[str, Any] = {"dataset": args.dataset, "teacher": row(teacher_summary, "teacher"), "runs": {}}
    for arch in args.archs.split(","):
        for seed in range(args.seeds):
            base = [*load_teacher, f"student.arch={arch}", f"student.epochs={EPOCHS}", f"seed={seed}"]
            runs = {
                "transfer": [*base, *TRANSFER[args.dataset]],  # scratch, kd, kd on the transfer set
                "augment": [*base, "scratch=false", *AUGMENT],
            }
            for variant, overrides in runs.items():
                summary = run(args.dataset, root / arch / variant / f"seed{seed}", overrides)
                results["runs"][f"{arch}/{variant}/seed{seed}"] = {"overrides": overrides, "models": [m for m in summary["models"]]}
    results["machine"] = machine()
    results["wall_seconds"] = round(time.time() - start, 1)
    results["command"] = shlex.join(["python", *sys.argv])
    (root / "results.json").write_text(json.dumps(results, indent=1, default=str))
    latency_file = root / "latency.json"
    latency = json.loads(latency_file.read_text()) if latency_file.is_file() else None
    (root / "results.md").write_text(table(results, args.archs.split(","), args.seeds, latency))
    print((root / "results.md").read_text())


def table(results: dict[str, Any], archs: list[str], seeds: int, latency: dict[str, Any] | None = None) -> str:
    """Mean ± std per student and variant, gap closed, and latencies: from latency.json (one quiet
    process, see latency.py) when it exists, else the median of the runs' own rows."""
    teacher = results["teacher"]
    t_acc = 100 * teacher["accuracy"]
    timed = latency["models"] if latency else None
    t_lat = timed["teacher"]["latency_ms_b1"] if timed else teacher["latency_ms_b1"]
    source = "latency.json (one process, alone)" if timed else "each run's own row (runs shared the machine)"
    lines = [
        f"Teacher (MiniLM fine-tuned end to end, seed 0): {t_acc:.2f} %, {teacher['params']:,} params, batch-1 latency {t_lat:.3f} ms. Latencies from {source}.",
        "",
        f"| student | params | variant | test acc (mean ± std, {seeds} seeds) | gap closed | latency b=1 | teacher / student b=1 |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for arch in archs:
        means: dict[str, float] = {}
        for variant, (run_kind, name) in VARIANTS.items():
            rows = [row({"models": results["runs"][f"{arch}/{run_kind}/seed{s}"]["models"], "name": arch}, name) for s in range(seeds)]
            accs = [100 * r["accuracy"] for r in rows]
            mean = statistics.mean(accs)
            std = statistics.stdev(accs) if len(accs) > 1 else 0.0
            means[variant] = mean
            lat = timed[arch]["latency_ms_b1"] if timed else statistics.median(r["latency_ms_b1"] for r in rows)
            gap = (mean - means["labels"]) / (t_acc - means["labels"]) if variant != "labels" else 0.0
            lines.append(f"| {arch} | {rows[0]['params']:,} | {variant} | {mean:.2f} ± {std:.2f} | {100 * gap:+.0f} % | {lat:.3f} ms | {t_lat / lat:.0f}× |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
