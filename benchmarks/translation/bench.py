"""English → Spanish (KJV → Reina-Valera 1909): teacher vs students from data, word-level KD, sequence-level
KD and both (Kim & Rush 2016), one run per seed of configs/translation/bible_en_es.yaml.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/translation/bench.py --seeds 0 --out runs/bench-translation [KEY=VALUE ...]

Writes OUT/seed-S/ (a run directory each), then benchmarks/translation/results.json and results.md
(mean ± std over seeds where more than one) and checks the issue's goal: the sequence-level-distilled
student decoding greedily within 1 BLEU of the teacher with beam 5, at ≥ 10× lower latency per sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from pathlib import Path

from distil.config.translation import load_translation_config
from distil.hardware import machine, set_threads
from distil.translation import run_translation

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parents[1] / "configs" / "translation" / "bible_en_es.yaml"
FIELDS = ["bleu", "bleu_beam", "chrf", "chrf_beam", "latency_ms_greedy", "latency_ms_beam", "tokens_per_s", "train_seconds"]


def _mean(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", default="runs/bench-translation")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    set_threads()
    seeds = [int(s) for s in args.seeds.split(",")]
    summaries = []
    for seed in seeds:
        config = load_translation_config(CONFIG, [*args.overrides, f"seed={seed}"])
        summaries.append(run_translation(config, Path(args.out) / f"seed-{seed}", command=f"benchmarks/translation/bench.py --seeds {args.seeds} {' '.join(args.overrides)}"))
    names = [m["name"] for m in summaries[0]["models"]]
    table = {name: {f: [next(m for m in s["models"] if m["name"] == name)[f] for s in summaries] for f in FIELDS} for name in names}
    first = {m["name"]: m for m in summaries[0]["models"]}
    teacher_beam = statistics.mean(table["teacher"]["bleu_beam"])
    teacher_latency = statistics.mean(table["teacher"]["latency_ms_beam"])
    goal = {}
    if "student_seq_kd" in table:
        s = table["student_seq_kd"]
        goal = {
            "seq_kd_greedy_bleu": statistics.mean(s["bleu"]), "teacher_beam_bleu": teacher_beam,
            "bleu_gap": round(teacher_beam - statistics.mean(s["bleu"]), 2),
            "latency_ratio": round(teacher_latency / statistics.mean(s["latency_ms_greedy"]), 2),
        }
        goal["met"] = goal["bleu_gap"] <= 1.0 and goal["latency_ratio"] >= 10.0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True, cwd=HERE).stdout.strip() or os.environ.get("DISTIL_COMMIT", "")
    results = {
        "config": str(CONFIG.relative_to(HERE.parents[1])), "overrides": args.overrides, "seeds": seeds, "commit": commit, "machine": machine(),
        "data": summaries[0]["data"], "models": {n: {**{k: v for k, v in first[n].items() if k in ("role", "method", "arch", "params", "size_bytes")}, **table[n]} for n in names},
        "goal": goal, "examples": summaries[0]["examples"], "wall_seconds": [s["wall_seconds"] for s in summaries],
    }
    (HERE / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    lines = [
        f"English → Spanish, {summaries[0]['data']['sizes']} pairs, seeds {seeds}; BLEU/chrF: sacrebleu on detokenized text (test split); ms/sent: median of {30} test sentences translated alone, one thread",
        "",
        "| model | method | params | size | BLEU greedy | BLEU beam 5 | chrF greedy | chrF beam 5 | ms/sent greedy | ms/sent beam 5 | tok/s greedy | train s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        t = table[n]
        lines.append(f"| {n} | {first[n]['method']} | {first[n]['params']:,} | {first[n]['size_bytes'] / 1024:.0f} KB | " + " | ".join(_mean(t[f]) for f in FIELDS) + " |")
    if goal:
        lines += ["", f"Goal (seq-KD student greedy within 1 BLEU of the teacher's beam 5, ≥ 10× lower latency): BLEU gap {goal['bleu_gap']:.2f}, latency ratio {goal['latency_ratio']:.1f}× — {'met' if goal['met'] else 'not met'}"]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
