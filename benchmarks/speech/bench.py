"""benchmarks/speech: Hinton et al. 2015's ensemble experiment on synthesized spoken words.

For each seed, one `distil run` of ``configs/speech/bench.yaml`` (the ensemble strategy): four
teachers (TC-ResNet14-1.5 twice, TC-ResNet14, TC-ResNet8-1.5; seeds s … s+3) → their ensemble → a
TC-ResNet8-0.5 student distilled from it, next to the student distilled from the first teacher alone
(``student_kd``) and trained from scratch (``student_scratch``). Accuracy is on the test split:
utterances by voices that no training utterance uses.

Then, per seed, the ensemble and the ensemble's student are timed at batch 1 (one thread), in PyTorch
eager and exported to ONNX (ONNX Runtime): median and minimum of 300 calls, after the runs (the
table's own PyTorch latencies were measured while the other seeds trained, see :func:`b1_ms`).

The goals (issue 18): the student from the ensemble recovers ≥ 80 % of the ensemble's gain over a
single teacher, ``(acc(student_ensemble) − acc(teacher)) / (acc(ensemble) − acc(teacher))`` with the
first teacher (TC-ResNet14-1.5) as "a single teacher", and its batch-1 latency is ≥ 20× lower than the
ensemble's. Also reported: the gain over the mean member, and over the student from one teacher.

    DISTIL_THREADS=1 python benchmarks/speech/bench.py --seeds 0,10,20 --out /work/bench/speech/runs

``--config configs/speech/ten_teachers.yaml`` (benchmarks/speech/ten-teachers): ten teachers and a
transfer set of unlabeled clips by the training voices; the run then also has ``student_transfer_kd``
(the same student on the same labelled + unlabeled clips, from the first teacher alone), and the
results add how much of the gain that student recovers and what the ensemble adds over it.

    DISTIL_THREADS=1 python benchmarks/speech/bench.py --config configs/speech/ten_teachers.yaml --seeds 0,10,20 \
        --out /work/bench/speech2/runs --results benchmarks/speech/ten-teachers
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from distil.compress.export import OnnxModel, export_onnx
from distil.config.files import read_raw, resolve_paths, validate_config
from distil.engine.measure import cpu_latency, percentile
from distil.experiment import run_experiment
from distil.hardware import machine, set_threads
from distil.models import build_model
from distil.strategies.ensemble import Ensemble
from distil.weights import load_weights

CONFIG = Path("configs/speech/bench.yaml")
HERE = Path(__file__).parent
KEEP = ("name", "role", "arch", "method", "accuracy", "val_accuracy", "params", "latency_ms_b1", "train_seconds")
SHAPE = (1, 40, 51)
CLASSES = 21


def config(seed: int, overrides: list[str], teachers_from: Path | None = None, student: dict[str, Any] | None = None, file: Path = CONFIG):
    """The run's config (``file``); ``teachers_from``: load the teachers trained by that seed's run (only
    the students train); ``student``: replace the student's ``arch``/``kwargs``."""
    raw = read_raw(file, [f"seed={seed}", *overrides])
    if teachers_from is not None:
        raw["teacher"]["weights"] = str((teachers_from / "teacher.safetensors").resolve())
        for i, member in enumerate(raw["strategy"]["teachers"], start=1):
            member["weights"] = str((teachers_from / f"teacher_{i}.safetensors").resolve())
    if student:
        raw["student"].update(student)
    return resolve_paths(validate_config(raw, str(file)), file.parent)


def b1_ms(model: torch.nn.Module, folder: Path, name: str, repeats: int = 300) -> dict[str, float]:
    """Batch-1 latency (ms) of ``model`` in PyTorch eager and exported to ONNX (ONNX Runtime), one thread:
    the median and the minimum of ``repeats`` calls. On a shared CPU a call longer than the scheduler's
    slice is often cut by other processes, which inflates the median of slow models (the ensemble's PyTorch
    median was 28 ms against 3.4 ms for its four members timed one by one); the minimum is the cost of the work."""
    out = {}
    eager = cpu_latency(model, SHAPE, batch=1, repeats=repeats, warmup=20)
    path = export_onnx(model.eval(), SHAPE, folder / f"{name}.onnx")
    onnx = cpu_latency(OnnxModel(path, threads=1), SHAPE, batch=1, repeats=repeats, warmup=20, copy_model=False)
    for runtime, times in (("torch", eager), ("onnx", onnx)):
        out[f"{runtime}_median"] = 1e3 * percentile(times, 0.5)
        out[f"{runtime}_min"] = 1e3 * min(times)
    return out


def run_seed(
    seed: int, out: Path, overrides: list[str], latency: bool = True, teachers_from: Path | None = None, student: dict[str, Any] | None = None, file: Path = CONFIG
) -> dict[str, Any]:
    if not (out / "summary.json").is_file():
        print(f"--- seed {seed}: {out}", flush=True)
        run_experiment(config(seed, overrides, teachers_from, student, file), out, command=shlex.join(["python", *sys.argv]), resume=(out / "config.yaml").is_file())
    rows = {m["name"]: {k: m.get(k) for k in KEEP} for m in json.loads((out / "summary.json").read_text())["models"]}
    onnx_file = out / "latency_b1.json"
    if not latency:
        return {"rows": rows}
    if not onnx_file.is_file():
        cfg = validate_config(read_raw(out / "config.yaml", []), str(out / "config.yaml"))
        members = []
        for name, member in zip(["teacher"] + [f"teacher_{i}" for i in range(1, 1 + len(cfg.strategy.teachers))], [cfg.teacher, *cfg.strategy.teachers]):
            model = build_model(member.arch, input_shape=SHAPE, num_classes=CLASSES, **member.kwargs)
            load_weights(model, out / f"{name}.safetensors")
            members.append(model.eval())
        student = build_model(cfg.student.arch, input_shape=SHAPE, num_classes=CLASSES, **cfg.student.kwargs)
        load_weights(student, out / "student_ensemble_kd.safetensors")
        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as tmp:
            latency = {"teacher_ensemble": b1_ms(Ensemble(members), Path(tmp), "ensemble"), "student_ensemble_kd": b1_ms(student, Path(tmp), "student")}
        onnx_file.write_text(json.dumps(latency, indent=1))
    onnx = json.loads(onnx_file.read_text())
    return {"rows": rows, "latency_ms_b1": onnx}


def summarise(seeds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    per_seed = {}
    for seed, result in seeds.items():
        r = result["rows"]
        acc = {name: row["accuracy"] for name, row in r.items()}
        members = [row["accuracy"] for name, row in r.items() if row["role"] == "teacher"]
        single, ensemble, student = acc["teacher"], acc["teacher_ensemble"], acc["student_ensemble_kd"]
        gain = ensemble - single
        per_seed[seed] = {
            "accuracy": acc,
            "mean_member": statistics.mean(members),
            "recovered_vs_teacher": (student - single) / gain if gain > 0 else None,
            "recovered_vs_mean_member": (student - statistics.mean(members)) / (ensemble - statistics.mean(members)) if ensemble > statistics.mean(members) else None,
            "student_gain_over_one_teacher_kd": student - acc["student_kd"] if "student_kd" in acc else None,  # None: scratch=false strategy.baseline=false
            # with a transfer set: the same student and clips from the first teacher alone
            "recovered_by_one_teacher_transfer": (acc["student_transfer_kd"] - single) / gain if gain > 0 and "student_transfer_kd" in acc else None,
            "ensemble_over_one_teacher_transfer": student - acc["student_transfer_kd"] if "student_transfer_kd" in acc else None,
            "params": {name: row["params"] for name, row in r.items()},
            "torch_latency_ms_b1": {name: row["latency_ms_b1"] for name, row in r.items()},
            "latency_ms_b1": result["latency_ms_b1"],
            "speedup_b1": {k: result["latency_ms_b1"]["teacher_ensemble"][k] / result["latency_ms_b1"]["student_ensemble_kd"][k] for k in result["latency_ms_b1"]["teacher_ensemble"]},
        }
    names = list(next(iter(per_seed.values()))["accuracy"])
    mean = {name: statistics.mean(s["accuracy"][name] for s in per_seed.values()) for name in names}
    std = {name: statistics.stdev(s["accuracy"][name] for s in per_seed.values()) if len(per_seed) > 1 else 0.0 for name in names}
    gain = mean["teacher_ensemble"] - mean["teacher"]
    of_means = {"ensemble_gain": gain, "recovered_vs_teacher": (mean["student_ensemble_kd"] - mean["teacher"]) / gain if gain > 0 else None}
    if "student_transfer_kd" in mean:
        of_means["recovered_by_one_teacher_transfer"] = (mean["student_transfer_kd"] - mean["teacher"]) / gain if gain > 0 else None
    return {"per_seed": per_seed, "mean_accuracy": mean, "std_accuracy": std, "of_means": of_means}


def table(summary: dict[str, Any]) -> str:
    seeds = list(summary["per_seed"])
    first = summary["per_seed"][seeds[0]]
    lines = [f"| model | params | test accuracy ({', '.join(f'seed {s}' for s in seeds)}) | mean ± std | PyTorch b1 ms (seed {seeds[0]}) |", "|---|---:|---|---:|---:|"]
    for name, mean in summary["mean_accuracy"].items():
        accs = ", ".join(f"{100 * summary['per_seed'][s]['accuracy'][name]:.1f}" for s in seeds)
        std = summary.get("std_accuracy", {}).get(name, 0.0)
        lines.append(f"| {name} | {first['params'][name]:,} | {accs} | {100 * mean:.2f} ± {100 * std:.2f} | {first['torch_latency_ms_b1'][name]:.3f} |")
    of = summary.get("of_means", {})
    if of.get("recovered_vs_teacher") is not None:
        lines += ["", f"Of the means: the ensemble gains {100 * of['ensemble_gain']:+.2f} points over the first teacher; the student from the ensemble recovers {100 * of['recovered_vs_teacher']:.0f} % of it"
                  + (f", the student from the first teacher on the same clips {100 * of['recovered_by_one_teacher_transfer']:.0f} %" if of.get("recovered_by_one_teacher_transfer") is not None else "") + "."]
    lines += ["", "| seed | recovered (vs teacher) | recovered (vs mean member) | ensemble-student − student_kd (one teacher, labelled clips only) | b1 ms ensemble / student, PyTorch min (median) | speed-up PyTorch min (median) | b1 ms ensemble / student, ONNX min (median) | speed-up ONNX min (median) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s, r in summary["per_seed"].items():
        rec = "n/a" if r["recovered_vs_teacher"] is None else f"{100 * r['recovered_vs_teacher']:.0f} %"
        rec_m = "n/a" if r["recovered_vs_mean_member"] is None else f"{100 * r['recovered_vs_mean_member']:.0f} %"
        e, st, up = r["latency_ms_b1"]["teacher_ensemble"], r["latency_ms_b1"]["student_ensemble_kd"], r["speedup_b1"]
        cells = []
        for rt in ("torch", "onnx"):
            cells.append(f"{e[rt + '_min']:.3f} / {st[rt + '_min']:.3f} ({e[rt + '_median']:.3f} / {st[rt + '_median']:.3f})")
            cells.append(f"{up[rt + '_min']:.1f}× ({up[rt + '_median']:.1f}×)")
        over_kd = r["student_gain_over_one_teacher_kd"]
        lines.append(f"| {s} | {rec} | {rec_m} | {'n/a' if over_kd is None else f'{100 * over_kd:+.1f} pts'} | {' | '.join(cells)} |")
    if any(r.get("recovered_by_one_teacher_transfer") is not None for r in summary["per_seed"].values()):
        lines += ["", "| seed | recovered by student_transfer_kd (one teacher, same clips) | student_ensemble_kd − student_transfer_kd |", "|---|---:|---:|"]
        for s, r in summary["per_seed"].items():
            one = r.get("recovered_by_one_teacher_transfer")
            gap = r.get("ensemble_over_one_teacher_transfer")
            lines.append(f"| {s} | {'n/a' if one is None else f'{100 * one:.0f} %'} | {'n/a' if gap is None else f'{100 * gap:+.1f} pts'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,10,20")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the run config (default configs/speech/bench.yaml)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-speech"))
    parser.add_argument("--results", type=Path, default=HERE, help="where results.json and results.md go")
    parser.add_argument("--only-seed", action="store_true", help="train the seeds' runs only: no ONNX timing, no results (run seeds in parallel processes, then once without this flag)")
    parser.add_argument("--teachers-from", type=Path, help="a previous --out: load each seed's four trained teachers from it (only the students train)")
    parser.add_argument("--student", type=json.loads, help='the student instead of the config\'s, e.g. \'{"arch": "tc_resnet", "kwargs": {"blocks_per_stage": 2, "width_mult": 1.5}}\'')
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args()
    set_threads()
    start = time.time()
    seeds = {}
    for s in args.seeds.split(","):
        reuse = None if args.teachers_from is None else args.teachers_from / f"seed{s}"
        seeds[int(s)] = run_seed(int(s), args.out / f"seed{s}", args.overrides, not args.only_seed, reuse, args.student, args.config)
    if args.only_seed:
        return
    summary = summarise(seeds)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    results = {"config": str(args.config), "overrides": args.overrides, "student": args.student, "teachers_from": str(args.teachers_from or ""), "command": shlex.join(["python", *sys.argv]), "commit": commit,
               "machine": machine(), "threads": torch.get_num_threads(), "seconds": round(time.time() - start, 1), **summary}  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (args.results / "results.md").write_text(table(summary))
    print(table(summary))


if __name__ == "__main__":
    main()
