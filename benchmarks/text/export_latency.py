"""benchmarks/text: batch-1 latency of the text students in PyTorch, ONNX Runtime fp32 and ONNX Runtime
dynamic int8, at typical sentence lengths (issue #15).

Every student is built at its default size with MR's vocabulary (vocab "data": the tokens of MR's
training sentences), exported once with dynamic batch and length (``distil.compress.export``,
exporter ``auto`` = torchscript for text), quantized with ONNX Runtime ``quantize_dynamic``, and timed
on one real sentence per length: MR's median test sentence, and 16 / 64 / 128 tokens cut from MR
test sentences laid end to end. Weights are untrained (latency does not depend on them); the
accuracy of int8 is measured on trained models by ``distil compress`` (tests/test_text_export.py).
Medians of ``--repeats`` timed calls after warm-up, with ``distil.engine.measure.cpu_latency`` (the
function behind every table row).

    DISTIL_THREADS=1 python benchmarks/text/export_latency.py --out benchmarks/text/export_latency
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

import onnxruntime
import torch

from distil import load_dataset
from distil.compress.export import OnnxModel, export_onnx, quantize_onnx_dynamic
from distil.data.tokens import PAD_ID, trim, typical_row
from distil.engine.measure import cpu_latency
from distil.hardware import machine, set_threads
from distil.models import build_model

CLASSIFIERS = ("bilstm", "lstm", "textcnn", "boe", "text_transformer")
TAGGERS = ("bilstm_tagger", "lstm_tagger", "cnn_tagger", "transformer_tagger")
LENGTHS = (16, 64, 128)
POS_TAGS = 49  # the classes of the `pos` dataset (48 Penn Treebank tags in OANC, plus WSJ's closing quote)


def sentences(x: torch.Tensor, lengths: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """name → (1, L) real token ids: the median test sentence, and ``lengths`` tokens of test sentences laid end to end."""
    row = typical_row(x)
    out = {"median": trim(x[row : row + 1])}
    stream = x[x != PAD_ID]
    for n in lengths:
        out[str(n)] = stream[:n].view(1, n).clone()
    return out


def median_ms(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    return statistics.median(cpu_latency(model, x, batch=1, repeats=repeats, warmup=max(10, repeats // 10), copy_model=False)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/text/export_latency"), help="writes OUT.json and OUT.md")
    parser.add_argument("--archs", default=",".join(CLASSIFIERS + TAGGERS))
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    set_threads()
    load = [round(v, 2) for v in os.getloadavg()]  # other jobs sharing the 2 cores show here
    data = load_dataset("mr", max_length=max(LENGTHS), seed=0)
    inputs = sentences(data.test.x, LENGTHS)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            tagger = arch in TAGGERS
            model = build_model(arch, input_shape=data.input_shape, num_classes=POS_TAGS if tagger else len(data.class_names),
                                vocab_size=data.text.vocab_size, token_counts=data.text.token_counts, seed=0,
                                **({"task": "tag"} if tagger else {})).eval()  # fmt: skip
            fp32 = export_onnx(model, data.input_shape, Path(tmp) / f"{arch}.onnx", exporter="auto", example=data.train.x[:8])
            int8 = quantize_onnx_dynamic(fp32, Path(tmp) / f"{arch}.int8.onnx")
            runtimes = {"torch": model, "onnxruntime": OnnxModel(fp32), "onnxruntime-int8": OnnxModel(int8)}
            entry = {"arch": arch, "params": sum(p.numel() for p in model.parameters()), "onnx_bytes": fp32.stat().st_size,
                     "onnx_int8_bytes": int8.stat().st_size, "latency_ms_b1": {}, "max_abs_diff": {}}  # fmt: skip
            for name, x in inputs.items():
                with torch.inference_mode():
                    ref = model(x)
                entry["max_abs_diff"][name] = {r: float((runtimes[r](x) - ref).abs().max()) for r in ("onnxruntime", "onnxruntime-int8")}
                entry["latency_ms_b1"][name] = {r: round(median_ms(m, x, args.repeats), 4) for r, m in runtimes.items()}
            print(arch, json.dumps(entry["latency_ms_b1"]), flush=True)
            results.append(entry)
    report = {
        "command": f"DISTIL_THREADS={torch.get_num_threads()} python benchmarks/text/export_latency.py --out {args.out} --repeats {args.repeats}",
        "machine": {**machine(), "onnxruntime": onnxruntime.__version__, "load_average_at_start": load},
        "data": {"name": "mr", "median_test_sentence_tokens": int(inputs["median"].shape[1]), "vocab_rows": "data (MR training tokens)"},
        "results": results,
    }
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))


def markdown(report: dict) -> str:
    names = ["median", *map(str, LENGTHS)]
    median = report["data"]["median_test_sentence_tokens"]
    m = report["machine"]
    lines = [
        "# Text students: batch-1 latency in PyTorch, ONNX Runtime and ONNX Runtime dynamic int8",
        "",
        f"`{report['command']}`",
        "",
        (
            f"Machine: {m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']}, onnxruntime {m['onnxruntime']}, {m['torch_threads']} thread; "
            f"load average at start {m['load_average_at_start']} (other jobs shared the 2 cores)."
        ),
        f"Median of the timed calls, ms; `median` is MR's median test sentence ({median} tokens). Default-size students, MR vocabulary, untrained weights.",
        "",
        "| model | params | ONNX | int8 | " + " | ".join(f"{n} torch / ort / int8" for n in names) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(names),
    ]
    for r in report["results"]:
        cells = [" / ".join(f"{r['latency_ms_b1'][n][k]:.3f}" for k in ("torch", "onnxruntime", "onnxruntime-int8")) for n in names]
        lines.append(f"| {r['arch']} | {r['params']:,} | {r['onnx_bytes'] / 1e6:.2f} MB | {r['onnx_int8_bytes'] / 1e6:.2f} MB | " + " | ".join(cells) + " |")
    worst = max(d["onnxruntime"] for r in report["results"] for d in r["max_abs_diff"].values())
    lines += ["", f"Largest |ONNX fp32 − torch| over all models and lengths: {worst:.2g}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
