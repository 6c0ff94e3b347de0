"""Generation speed of the benchmark's teacher and student architectures, measured interleaved.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/language-models/speed.py RUN_DIR --teacher T.safetensors [--rounds 7] [--name speed]

Every student of a run has the same architecture, so its speed is one number, not one per method; on a
shared CPU the per-row speeds of the run's table drift with the load. Here teacher and student
(``RUN_DIR``: its config.yaml and student_data.safetensors; the teacher from --teacher) alternate, round after
round, greedy generation of 56 tokens after 8-token prompts of the held-out books at batch 1 and 32 with
the KV cache, in PyTorch and under ONNX Runtime (the exported step graph); each round's ratio is taken
and the median over rounds reported. Writes NAME.json (default speed.json) next to this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from distil.compress.lm_export import OnnxLM, export_lm_onnx
from distil.config.lm import load_lm_config
from distil.engine.lm_trainer import generation_speed
from distil.hardware import machine, set_threads
from distil.lm_experiment import build, load_data
from distil.weights import load_weights

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--name", default="speed", help="writes NAME.json here")
    args = parser.parse_args()
    set_threads()
    config = load_lm_config(args.run_dir / "config.yaml")
    data = load_data(config)
    teacher = load_weights(build(config.teacher, data, 0), args.teacher).eval()
    student = load_weights(build(config.student, data, 0), args.run_dir / "student_data.safetensors").eval()
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "teacher": teacher,
            "student": student,
            "teacher_onnx": OnnxLM(export_lm_onnx(teacher, Path(tmp) / "t.onnx")),
            "student_onnx": OnnxLM(export_lm_onnx(student, Path(tmp) / "s.onnx")),
        }
        prompts = {b: data.test[torch.arange(b) * 7 % data.test.shape[0], :8] for b in (1, 32)}
        speeds: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, model in models.items():
                for b, p in prompts.items():
                    speeds.setdefault(f"{name}_b{b}", []).append(generation_speed(model, p, 56, repeats=1))
    ratios = {
        f"{kind}b{b}": statistics.median(s / t for s, t in zip(speeds[f"student{kind}_b{b}"], speeds[f"teacher{kind}_b{b}"]))
        for kind in ("", "_onnx")
        for b in (1, 32)
    }
    result = {
        "rounds": args.rounds,
        "new_tokens": 56,
        "prompt_tokens": 8,
        "tokens_per_s_median": {k: statistics.median(v) for k, v in speeds.items()},
        "speedup_median_of_round_ratios": ratios,
        "machine": machine(),
    }
    result["student"] = {"kwargs": config.student.kwargs, "params": sum(p.numel() for p in student.parameters())}
    (HERE / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
