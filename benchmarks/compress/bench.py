"""benchmarks/compress: compression chains of the demo student, measured in one session, with the speed-up of every step.

Each variant copies a finished demo run (``distil run configs/fashion_mnist/demo.yaml``) and runs
``distil compress`` on the copy with its own steps and settings (:data:`VARIANTS`); the teacher and
the distilled student are measured again in every variant, so its ratios compare like with like.
Every row carries ``speedup`` (see :func:`distil.compress.pipeline.speedup`): batch-1 latency and
batch-256 throughput against "the step before" — the same deployed form before the last model change
(``student_kd.pruned.onnx`` against ``student_kd.onnx``), else the model it was made from.

Goals (issue #17, item 4), checked per variant: every step that claims speed is faster than the step
before at batch 256; the fastest deployed student (ONNX Runtime or PyTorch int8) is ≥ 40× faster than
the teacher in PyTorch eager at batch 1, and within 1 point of the distilled student's accuracy.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/compress/bench.py RUN_DIR --out /work/bench/lowrank/chains \\
        --variants exact,rounded,lowrank --json benchmarks/compress/results.json --md benchmarks/compress/results.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from distil.compress.pipeline import compress_run, run_config
from distil.hardware import machine, set_threads

CHAIN = ["onnx", "onnx-int8", "prune", "int8", "onnx", "onnx-int8"]
#: name → (what it shows, overrides of the run's config)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "exact": ("the demo chain as before: 30 % of the channels pruned exactly (16/32/64 → 11/22/45), 1 epoch of KD recovery",
              [f"compress.steps={CHAIN}", "compress.prune.multiple_of=1", "compress.prune.epochs=1"]),
    "rounded": ("the demo chain with kept channels rounded to multiples of 16 (16/32/64 → 16/16/48), 4 epochs of KD recovery",
                [f"compress.steps={CHAIN}", "compress.prune.multiple_of=16", "compress.prune.epochs=4"]),
    "lowrank": ("low-rank factorization (Tucker-2, rank ratio 0.5, ranks multiples of 16, 2 epochs of KD recovery), then the rounded pruning (4 epochs) and int8",
                ["compress.steps=[onnx, onnx-int8, lowrank, onnx, onnx-int8, prune, int8, onnx, onnx-int8]", "compress.lowrank.rank_ratio=0.5",
                 "compress.lowrank.epochs=2", "compress.prune.multiple_of=16", "compress.prune.epochs=4"]),
}  # fmt: skip
#: rows that are deployed students (the goal's candidates)
DEPLOYED = ("onnxruntime", "torch-int8")
KEEP = ("name", "method", "runtime", "source", "accuracy", "params", "size_bytes", "latency_ms_b1", "latency_ms_b1_p95", "latency_ms_b256",
        "throughput_b256", "train_seconds", "speedup", "prune", "lowrank", "onnx_int8", "parity")  # fmt: skip


def variant(run_dir: Path, out: Path, name: str, common: list[str]) -> dict[str, Any]:
    """Copy the run to ``out/name`` and compress it as the variant says; its rows, goal checks and seconds."""
    target = out / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("compressed", "report*", "*.log"))
    what, overrides = VARIANTS[name]
    overrides = [*overrides, *common]
    print(f"--- {name}: {' '.join(shlex.quote(o) for o in overrides)}", flush=True)
    t0 = time.perf_counter()
    summary = compress_run(target, run_config(target, overrides))
    rows = [{k: m[k] for k in KEEP if k in m} for m in summary["models"] if m["name"] == "teacher" or m["name"] == "student_kd" or m.get("source")]
    return {"variant": name, "what": what, "overrides": overrides, "seconds": round(time.perf_counter() - t0, 1), "rows": rows, "goals": goals(rows)}


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The two goals of item 4 on this variant's rows."""
    by = {r["name"]: r for r in rows}
    teacher, student = by["teacher"], by["student_kd"]
    slower = [r["name"] for r in rows if r.get("speedup") and r["speedup"]["claimed"] and r["speedup"]["b256"] <= 1.0]
    deployed = [r for r in rows if r["runtime"] in DEPLOYED]
    fastest = min(deployed, key=lambda r: r["latency_ms_b1"])
    close = [r for r in deployed if 100 * (student["accuracy"] - r["accuracy"]) <= 1.0]
    best_close = min(close, key=lambda r: r["latency_ms_b1"]) if close else None

    def against(r: dict[str, Any]) -> dict[str, Any]:
        return {"name": r["name"], "vs_teacher_b1": round(teacher["latency_ms_b1"] / r["latency_ms_b1"], 1),
                "accuracy_points": round(100 * (r["accuracy"] - student["accuracy"]), 2)}  # fmt: skip

    met = against(fastest)
    return {
        "every_step_faster_at_b256": not slower,
        "slower_at_b256": slower,
        "fastest_deployed": met,
        "fastest_meets_40x_within_1_point": met["vs_teacher_b1"] >= 40 and met["accuracy_points"] >= -1.0,
        "fastest_within_1_point": against(best_close) if best_close else None,
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = []
    for v in results:
        lines += [f"### {v['variant']}: {v['what']}", "", "| model | runtime | test acc | params | size | b=1 ms | b=256 /s | speed-up over | b=1 | b=256 | claims speed |",
                  "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|"]  # fmt: skip
        for r in v["rows"]:
            s = r.get("speedup") or {}
            lines.append(f"| {r['name']} | {r['runtime']} | {100 * r['accuracy']:.2f} % | {r['params']:,} | {r['size_bytes'] / 1024:.1f} KB | "
                         f"{r['latency_ms_b1']:.4f} | {r['throughput_b256']:,.0f} | {s.get('over', '–')} | "
                         f"{(str(s['b1']) + '×') if s else '–'} | {(str(s['b256']) + '×') if s else '–'} | {('yes' if s['claimed'] else 'no (size)') if s else '–'} |")  # fmt: skip
        g = v["goals"]
        f = g["fastest_deployed"]
        slower = f" (slower: {', '.join(g['slower_at_b256'])})" if g["slower_at_b256"] else ""
        met = "met" if g["fastest_meets_40x_within_1_point"] else "not met"
        lines += ["", f"- every step faster than the step before at batch 256: **{'yes' if g['every_step_faster_at_b256'] else 'no'}**{slower}",
                  f"- fastest deployed student: {f['name']}, {f['vs_teacher_b1']}× the teacher's batch-1 speed (eager), {f['accuracy_points']:+.2f} points → goal (≥ 40×, within 1 point) **{met}**"]  # fmt: skip
        if g["fastest_within_1_point"] and g["fastest_within_1_point"]["name"] != f["name"]:
            c = g["fastest_within_1_point"]
            lines.append(f"- fastest deployed student within 1 point: {c['name']}, {c['vs_teacher_b1']}×, {c['accuracy_points']:+.2f} points")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished demo run (distil run configs/fashion_mnist/demo.yaml)")
    parser.add_argument("--out", type=Path, required=True, help="where the variants' copies of the run go")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--set", dest="common", action="append", default=[], help="an override for every variant, e.g. compress.prune.epochs=2")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args(argv)
    set_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    results = [variant(args.run_dir, args.out, name, args.common) for name in args.variants.split(",")]
    record = {"command": " ".join(shlex.quote(a) for a in sys.argv), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "variants": results}
    text = markdown(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.md:
        args.md.write_text(text + "\n")


if __name__ == "__main__":
    main()
