"""benchmarks/text: the teacher's and every student's latency, measured in one process, one after another.

The grid's runs (text_bench.py) each time their own rows while another run shares the machine; the
ratios this README quotes come from this script instead, run alone: the seed-0 models of one dataset,
timed with the function every table row uses (``distil.engine.measure.measure``) on the test
sentence of median length, batch 1 and 256, plus the tokenizer on that sentence.

    DISTIL_THREADS=1 python benchmarks/text/latency.py mr --bench runs/bench-text --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from distil.config.files import read_raw, resolve_paths, validate_config
from distil.engine.measure import measure, timing_input, tokenize_latency_ms
from distil.hardware import machine, set_threads
from distil.weights import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--bench", type=Path, default=Path("runs/bench-text"))
    parser.add_argument("--archs", default="bilstm,lstm,textcnn,boe")
    parser.add_argument("--rounds", type=int, default=3, help="every model is timed once per round; the median of the rounds is kept")
    args = parser.parse_args()
    set_threads()
    root = args.bench / args.dataset
    path = Path(f"configs/text/{args.dataset}/bench.yaml")
    cfg = resolve_paths(validate_config(read_raw(path, []), str(path)), path.parent)
    data = cfg.data.load(0)
    sample = timing_input(data)
    models = {"teacher": load_weights(cfg.teacher.build(data, 0), root / "teacher" / "teacher.safetensors")}
    for arch in args.archs.split(","):
        student_cfg = cfg.student.model_copy(update={"arch": arch})
        models[arch] = load_weights(student_cfg.build(data, 0), root / arch / "transfer" / "seed0" / "student_unlabeled_kd.safetensors")
    times: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    for _ in range(args.rounds):  # interleaved: a slow moment of the machine hits every model, not one
        for name, model in models.items():
            times[name].append(measure(model, sample, latency_repeats=100, throughput_repeats=5))
    tokenize = statistics.median(tokenize_latency_ms(data.text) for _ in range(args.rounds))
    keys = ("latency_ms_b1", "latency_ms_b1_p95", "latency_ms_b256", "throughput_b256")
    result = {
        "dataset": args.dataset,
        "typical_sentence": data.text.typical_sentence,
        "tokens": int(sample.shape[1]),
        "tokenize_ms_b1": round(tokenize, 4),
        "models": {name: {"params": rows[0]["params"], **{k: round(statistics.median(r[k] for r in rows), 4) for k in keys}} for name, rows in times.items()},
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
    }
    teacher = result["models"]["teacher"]
    for name, row in result["models"].items():
        row["teacher_over_student_b1"] = round(teacher["latency_ms_b1"] / row["latency_ms_b1"], 1)
        row["teacher_over_student_b1_with_tokenizer"] = round((teacher["latency_ms_b1"] + tokenize) / (row["latency_ms_b1"] + tokenize), 1)
    (root / "latency.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result["models"], indent=1))


if __name__ == "__main__":
    main()
