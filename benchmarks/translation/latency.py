"""Latency per sentence of every model of translation runs, measured interleaved (round-robin over the
models, sentence by sentence), so that CPU contention from other processes falls on all of them alike.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/translation/latency.py RUN_DIR [RUN_DIR ...] [--sentences 30] [--rounds 3]

For each model: the median over sentences × rounds of one test sentence translated alone (batch 1),
greedy and beam 5, in PyTorch and, for the exported student, ONNX Runtime. Writes latency.json here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from distil.compress.seq2seq_export import OnnxSeq2Seq
from distil.config.translation import TranslationConfig
from distil.hardware import machine, set_threads
from distil.models.seq2seq_decode import decode
from distil.translation.scores import timing_sentences
from distil.weights import load_weights

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--sentences", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    set_threads()
    models, sentences = {}, None
    for run in map(Path, args.runs):
        cfg = TranslationConfig.model_validate(yaml.safe_load((run / "config.yaml").read_text()))
        data = cfg.data.load(cfg.seed)
        if sentences is None:
            sentences = timing_sentences(data.tensors["test"][0], args.sentences)
        summary = json.loads((run / "summary.json").read_text())
        for row in summary["models"]:
            model_cfg = cfg.teacher if row["role"] == "teacher" else cfg.student
            model = model_cfg.build(data.source_vocab.size, data.target_vocab.size, 0)
            load_weights(model, run / row["weights"])
            models[f"{run.name}/{row['name']}"] = (model.eval(), row)
        if "export" in summary:
            models[f"{run.name}/{summary['export']['model']} [onnx]"] = (OnnxSeq2Seq(run / "onnx" / summary["export"]["model"]), {"params": None})
    assert sentences is not None
    times: dict[tuple[str, int], list[float]] = {(name, beam): [] for name in models for beam in (1, 5)}
    with torch.inference_mode():
        for name, (model, _) in models.items():  # warm-up
            decode(model, sentences[0], beam=5, max_len=64)
        for _ in range(args.rounds):
            for s in sentences:
                for name, (model, _) in models.items():
                    for beam in (1, 5):
                        start = time.perf_counter()
                        decode(model, s, beam=beam, max_len=64)
                        times[(name, beam)].append(1000 * (time.perf_counter() - start))
    result = {
        "command": "benchmarks/translation/latency.py " + " ".join(args.runs), "sentences": len(sentences), "rounds": args.rounds, "machine": machine(),
        "models": {name: {"params": row.get("params"), "ms_greedy": round(statistics.median(times[(name, 1)]), 2), "ms_beam5": round(statistics.median(times[(name, 5)]), 2)} for name, (_, row) in models.items()},
    }
    (HERE / "latency.json").write_text(json.dumps(result, indent=1) + "\n")
    for name, r in result["models"].items():
        print(f"{name:45s} {r['ms_greedy']:8.2f} ms greedy {r['ms_beam5']:8.2f} ms beam 5")


if __name__ == "__main__":
    main()
