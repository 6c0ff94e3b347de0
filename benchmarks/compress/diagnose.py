"""benchmarks/compress: why a pruned student can be slower in ONNX Runtime — channel widths, graph optimization levels, int8 forms.

The demo student's architecture (``cnn``, one conv per stage) at several widths, random weights (speed
does not depend on them), exported like ``distil compress`` does, then timed in ONNX Runtime (one
thread) at each graph optimization level, and as int8 (QDQ and QOperator, per channel and per tensor,
calibrated on 1,024 Fashion-MNIST training images). Median seconds of ``--repeats`` rounds, each the
median of many calls; rounds interleave the models so that load from other jobs hits all of them.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/compress/diagnose.py --json benchmarks/compress/diagnose.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distil.compress.export import export_onnx, quantize_onnx
from distil.hardware import machine, set_threads
from distil.models import build_model

WIDTHS = {"16/32/64 (student)": (16, 32, 64), "11/22/45 (30 % exact)": (11, 22, 45), "16/16/48 (30 %, multiples of 16)": (16, 16, 48), "8/24/48 (30 %, multiples of 8)": (8, 24, 48)}


def median_seconds(run, x: np.ndarray, calls: int) -> float:
    for _ in range(3):
        run(x)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    set_threads(1)
    from distil.data import load_dataset

    data = load_dataset("fashion_mnist", val_size=5000, seed=0)
    x1, x256 = data.test.x[:1].numpy(), data.test.x[:256].numpy()
    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}  # fmt: skip
    tmp = Path(tempfile.mkdtemp())
    cases: dict[str, tuple[Path, str]] = {}
    for label, widths in WIDTHS.items():
        torch.manual_seed(0)
        model = build_model("cnn", input_shape=(1, 28, 28), num_classes=10, widths=widths, convs_per_stage=1).eval()
        path = export_onnx(model, (1, 28, 28), tmp / f"{'-'.join(map(str, widths))}.onnx")
        for level in levels:
            cases[f"{label} | fp32 | {level}"] = (path, level)
        if widths in ((16, 32, 64), (16, 16, 48)):
            for fmt in ("qdq", "qoperator"):
                for per_channel in (True, False):
                    q = quantize_onnx(path, tmp / f"{path.stem}.{fmt}.{per_channel}.onnx", data.train.x[:1024], fmt=fmt, per_channel=per_channel)
                    cases[f"{label} | int8 {fmt} {'per channel' if per_channel else 'per tensor'} | all"] = (q, "all")
    rounds: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for name, (path, level) in cases.items():
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads, options.graph_optimization_level = 1, 1, levels[level]
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

            def run(x, session=session):
                return session.run(None, {"input": x})

            rounds[name].append((median_seconds(run, x1, 300), median_seconds(run, x256, 9)))
    rows = []
    for name, values in rounds.items():
        b1 = statistics.median(v[0] for v in values) * 1e3
        b256 = 256 / statistics.median(v[1] for v in values)
        rows.append({"case": name, "latency_ms_b1": round(b1, 4), "throughput_b256": round(b256)})
        print(f"| {name} | {b1:.4f} | {b256:,.0f} |", flush=True)
    if args.json:
        record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "onnxruntime": ort.__version__, "repeats": args.repeats, "rows": rows}
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
