"""benchmarks/tagging: a BiLSTM tagger distilled into a one-direction LSTM tagger (part-of-speech).

configs/text/pos/bench.yaml: train on 20k OANC sentences (machine-tagged), test on 1k hand-tagged WSJ
lines. For each seed and each student ``delay`` (tokens the one-direction student reads ahead):

1. ``delay`` 0 (the first): one ``distil run`` with the ``unlabeled`` strategy — the BiLSTM teacher
   trained with that seed, then the student from the labels (``scratch``), by KD on the training
   sentences (``baseline``) and by KD on the training sentences plus unlabeled movie-review sentences
   the teacher tags (the transfer set);
2. every other delay: the same run loading that seed's teacher (``teacher.weights``).

DIR/results.json holds every run's rows; DIR/results.md the mean ± std over seeds, the gap closed
``(student − scratch) / (teacher − scratch)`` and batch-1 latencies on the typical (median-length)
test sentence. The runs' own latencies are taken while other runs share the machine; ``--latency``
times the first seed's teacher and students again, alone, in one process (interleaved rounds, the
function every table row uses; DIR/latency.json), and the table then quotes those.

    DISTIL_THREADS=1 python benchmarks/tagging/tagging_bench.py --seeds 0,1,2 --delays 0,2 --out runs/bench-tagging
    DISTIL_THREADS=1 python benchmarks/tagging/tagging_bench.py --seeds 0,1,2 --delays 0,2 --out runs/bench-tagging --latency
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
from distil.engine.measure import measure, timing_input, tokenize_latency_ms
from distil.experiment import run_experiment
from distil.hardware import machine, set_threads
from distil.weights import load_weights

CONFIG = Path("configs/text/pos/bench.yaml")
VARIANTS = {"labels": "student_scratch", "kd": "student_kd", "kd+transfer": "student_unlabeled_kd"}
KEEP = ("accuracy", "params", "size_bytes", "latency_ms_b1", "latency_ms_b1_text", "tokenize_ms_b1", "throughput_b256", "train_seconds")


def config(overrides: list[str]):
    return resolve_paths(validate_config(read_raw(CONFIG, overrides), str(CONFIG)), CONFIG.parent)


def run(out: Path, overrides: list[str]) -> dict[str, Any]:
    summary_file = out / "summary.json"
    if summary_file.is_file():  # finished before: the script can be rerun after an interruption
        return json.loads(summary_file.read_text())
    print(f"--- {out}  {' '.join(overrides)}", flush=True)
    resume = (out / "config.yaml").is_file()  # interrupted: continue from its last epoch checkpoint
    return run_experiment(config(overrides), out, command=shlex.join(["python", *sys.argv]), resume=resume)


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
    parser.add_argument("--latency", action="store_true", help="time the first seed's models alone (DIR/latency.json)")
    parser.add_argument("--rounds", type=int, default=3, help="latency: every model is timed once per round; the median is kept")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="a table row per delay for the transfer-set students of another --out DIR (runs with other overrides), gap against this run's",
    )
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
    if args.latency:
        (args.out / "latency.json").write_text(json.dumps(latency(args.out, seeds[0], delays, args.overrides, args.rounds), indent=1))
    timed = json.loads((args.out / "latency.json").read_text()) if (args.out / "latency.json").is_file() else None
    extra = {}
    for item in args.extra:
        label, _, folder = item.partition("=")
        extra[label] = {key: json.loads((Path(folder) / key / "summary.json").read_text())["models"] for key in results["runs"] if (Path(folder) / key / "summary.json").is_file()}
    results["extra"] = extra
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / "results.md").write_text(table(results, seeds, delays, timed))
    print((args.out / "results.md").read_text())


def latency(root: Path, seed: int, delays: list[int], overrides: list[str], rounds: int) -> dict[str, Any]:
    """Batch-1 latency of ``seed``'s teacher and each delay's KD-on-transfer student, timed alone."""
    cfg = config(overrides)
    data = cfg.data.load(seed)
    sample = timing_input(data)
    first = root / f"delay{delays[0]}" / f"seed{seed}"
    models = {"teacher": load_weights(cfg.teacher.build(data, seed), first / "teacher.safetensors")}
    for delay in delays:
        student = cfg.student.model_copy(update={"kwargs": {**cfg.student.kwargs, "delay": delay}})
        models[f"delay{delay}"] = load_weights(student.build(data, seed), root / f"delay{delay}" / f"seed{seed}" / "student_unlabeled_kd.safetensors")
    times: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for _ in range(rounds):  # interleaved: a slow moment of the machine hits every model, not one
        for name, model in models.items():
            times[name].append(measure(model, sample, latency_repeats=100, throughput_repeats=3))
    keys = ("latency_ms_b1", "latency_ms_b1_p95", "throughput_b256")
    return {
        "typical_sentence": data.text.typical_sentence,
        "tokens": int(sample.shape[1]),
        "tokenize_ms_b1": round(statistics.median(tokenize_latency_ms(data.text) for _ in range(rounds)), 4),
        "models": {name: {k: round(statistics.median(r[k] for r in rows), 4) for k in keys} for name, rows in times.items()},
        "machine": machine(),
        "command": shlex.join(["python", *sys.argv]),
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(results: dict[str, Any], seeds: list[int], delays: list[int], timed: dict[str, Any] | None = None) -> str:
    """Mean ± std over seeds per student and variant, the gap closed and batch-1 latencies: from
    latency.json (one process, alone) when it exists, else the median of the runs' own rows."""
    runs = results["runs"]
    teachers = [row(runs[f"delay{delays[0]}/seed{s}"]["models"], "teacher") for s in seeds]
    t_mean, t_std = _mean_std([100 * t["accuracy"] for t in teachers])
    t_lat = timed["models"]["teacher"]["latency_ms_b1"] if timed else statistics.median(t["latency_ms_b1"] for t in teachers)
    source = f"latency.json: seed {seeds[0]}'s models timed alone, one process" if timed else "the median of the runs' own rows (runs shared the machine)"
    lines = [
        f"Teacher (BiLSTM tagger, {teachers[0]['params']:,} params): token accuracy on WSJ {t_mean:.2f} ± {t_std:.2f} % "
        f"over seeds {', '.join(map(str, seeds))}; batch-1 latency on the typical test sentence {t_lat:.3f} ms. Latencies: {source}.",
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
            lat = timed["models"][f"delay{delay}"]["latency_ms_b1"] if timed else statistics.median(r["latency_ms_b1"] for r in rows)
            gap = (mean - means["labels"]) / (t_mean - means["labels"]) if variant != "labels" else 0.0
            student = f"lstm_tagger delay {delay}"
            lines.append(f"| {student} | {rows[0]['params']:,} | {variant} | {mean:.2f} ± {std:.2f} | {100 * gap:+.1f} % | {lat:.3f} ms | {t_lat / lat:.1f}× |")
        for label, found in results.get("extra", {}).items():
            keys = [f"delay{delay}/seed{s}" for s in seeds if f"delay{delay}/seed{s}" in found]
            if not keys:
                continue
            rows = [row(found[k], VARIANTS["kd+transfer"]) for k in keys]
            mean, std = _mean_std([100 * r["accuracy"] for r in rows])
            gap = (mean - means["labels"]) / (t_mean - means["labels"])
            lines.append(f"| {student} | {rows[0]['params']:,} | {label} ({len(keys)} seeds) | {mean:.2f} ± {std:.2f} | {100 * gap:+.1f} % | {lat:.3f} ms | {t_lat / lat:.1f}× |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
