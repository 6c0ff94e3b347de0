"""benchmarks/tagging: a BiLSTM tagger distilled into a one-direction LSTM tagger (part-of-speech).

configs/text/pos/bench.yaml: train on 20k OANC sentences (machine-tagged), test on 1k hand-tagged WSJ
lines. For each seed and each student ``delay`` (tokens the one-direction student reads ahead):

1. ``delay`` 0 (the first): one ``distil run`` with the ``unlabeled`` strategy — the BiLSTM teacher
   trained with that seed, then the student from the labels (``scratch``), by KD on the training
   sentences (``baseline``) and by KD on the training sentences plus unlabeled movie-review sentences
   the teacher tags (the transfer set);
2. every other delay: the same run loading that seed's teacher (``teacher.weights``).

DIR/results.json holds every run's rows; DIR/results.md the mean ± std over seeds, the gap closed
``(student − scratch) / (teacher − scratch)`` and batch-1 latencies (one typical test sentence).

    DISTIL_THREADS=1 python benchmarks/tagging/tagging_bench.py --seeds 3 --delays 0,1 --out runs/bench-tagging
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

CONFIG = Path("configs/text/pos/bench.yaml")
VARIANTS = {"labels": "student_scratch", "kd": "student_kd", "kd+transfer": "student_unlabeled_kd"}
KEEP = ("accuracy", "params", "size_bytes", "latency_ms_b1", "latency_ms_b1_text", "tokenize_ms_b1", "throughput_b256", "train_seconds")


def run(out: Path, overrides: list[str]) -> dict[str, Any]:
    summary_file = out / "summary.json"
    if summary_file.is_file():  # finished before: the script can be rerun after an interruption
        return json.loads(summary_file.read_text())
    print(f"--- {out}  {' '.join(overrides)}", flush=True)
    config = resolve_paths(validate_config(read_raw(CONFIG, overrides), str(CONFIG)), CONFIG.parent)
    resume = (out / "config.yaml").is_file()  # interrupted: continue from its last epoch checkpoint
    return run_experiment(config, out, command=shlex.join(["python", *sys.argv]), resume=resume)


def row(models: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for m in models:
        if m["name"] == name and "source" not in m:
            return {k: m.get(k) for k in KEEP}
    raise KeyError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--delays", default="0,1", help="comma-separated student delays; the first trains the teacher")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tagging"))
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args()
    set_threads()  # as the CLI does: DISTIL_THREADS, else one per core
    seeds = [int(s) for s in args.seeds.split(",")]
    delays = [int(d) for d in args.delays.split(",")]
    start = time.time()
    results: dict[str, Any] = {"config": str(CONFIG), "overrides": args.overrides, "runs": {}}
    for seed in seeds:
        first = args.out / f"delay{delays[0]}" / f"seed{seed}"
        for delay in delays:
            out = args.out / f"delay{delay}" / f"seed{seed}"
            overrides = [*args.overrides, f"seed={seed}", f"student.kwargs.delay={delay}"]
            if out != first:
                overrides.append(f"teacher.weights={(first / 'teacher.safetensors').resolve()}")
            summary = run(out, overrides)
            results["runs"][f"delay{delay}/seed{seed}"] = {"overrides": overrides, "models": summary["models"]}
    results["machine"] = machine()
    results["wall_seconds"] = round(time.time() - start, 1)
    results["command"] = shlex.join(["python", *sys.argv])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / "results.md").write_text(table(results, seeds, delays))
    print((args.out / "results.md").read_text())


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(results: dict[str, Any], seeds: list[int], delays: list[int]) -> str:
    """Mean ± std over seeds per student and variant, the gap closed and batch-1 latencies (medians over runs)."""
    runs = results["runs"]
    teachers = [row(runs[f"delay{delays[0]}/seed{s}"]["models"], "teacher") for s in seeds]
    t_mean, t_std = _mean_std([100 * t["accuracy"] for t in teachers])
    t_lat = statistics.median(t["latency_ms_b1"] for t in teachers)
    lines = [
        f"Teacher (BiLSTM tagger, {teachers[0]['params']:,} params): token accuracy on WSJ {t_mean:.2f} ± {t_std:.2f} % "
        f"over seeds {', '.join(map(str, seeds))}; batch-1 latency on a typical test sentence {t_lat:.3f} ms (median over runs).",
        "",
        f"| student | params | variant | token accuracy (mean ± std, {len(seeds)} seeds) | gap closed | latency b=1 | teacher / student b=1 |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for delay in delays:
        means: dict[str, float] = {}
        for variant, name in VARIANTS.items():
            rows = [row(runs[f"delay{delay}/seed{s}"]["models"], name) for s in seeds]
            mean, std = _mean_std([100 * r["accuracy"] for r in rows])
            means[variant] = mean
            lat = statistics.median(r["latency_ms_b1"] for r in rows)
            gap = (mean - means["labels"]) / (t_mean - means["labels"]) if variant != "labels" else 0.0
            student = f"lstm_tagger delay {delay}"
            lines.append(f"| {student} | {rows[0]['params']:,} | {variant} | {mean:.2f} ± {std:.2f} | {100 * gap:+.0f} % | {lat:.3f} ms | {t_lat / lat:.1f}× |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
