"""Benchmark: a causal LM teacher distilled into a ~9x smaller student on the King James Bible.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/language-models/run.py [--seeds 0] [--out /work/bench/lm] [KEY=VALUE ...]

Runs configs/lm/kjv.yaml once per seed (teacher, then students: data only, forward KL, reverse KL,
GKD on-policy, sequence-level) and writes results.json (every summary) and results.md (one table per
seed, the prompts' continuations, and the goal check) next to this script.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from distil.config.lm import load_lm_config
from distil.hardware import set_threads
from distil.lm_experiment import run_lm_experiment
from distil.report.lm import lm_markdown

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parents[1] / "configs" / "lm" / "kjv.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="/work/bench/lm")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    set_threads()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=False).stdout.strip()
    summaries = []
    for seed in args.seeds:
        config = load_lm_config(CONFIG, [*args.overrides, f"seed={seed}"])
        summaries.append(run_lm_experiment(config, Path(args.out) / f"seed{seed}"))
        (HERE / "results.json").write_text(json.dumps({"commit": commit, "config": str(CONFIG.relative_to(HERE.parents[1])), "overrides": args.overrides, "runs": summaries}, indent=1) + "\n")
    lines = [f"# Results (commit {commit}, `{' '.join(args.overrides) or 'no overrides'}`)", ""]
    for s in summaries:
        lines += [f"## seed {s['seed']}", "", lm_markdown(s), ""]
        teacher = s["models"][0]
        for m in s["models"][1:]:
            gap, speed = m.get("gap_recovered"), m["speedup_b1"]
            if gap is not None:
                ok = gap >= 0.5 and speed >= 5
                lines.append(f"- {m['method']}: {100 * gap:.1f} % of the log-perplexity gap at {speed:.1f}x the teacher's greedy b=1 speed: goal {'met' if ok else 'not met'}")
        lines += ["", "Continuations (greedy):", ""]
        for i, prompt in enumerate(s["prompts"]):
            lines.append(f"- **{prompt}**")
            for m in s["models"]:
                lines.append(f"  - {m['name']}: {m['samples'][i]!r}")
        lines += ["", f"teacher outputs: `{json.dumps(s['teacher_outputs'])}`", f"machine: `{json.dumps(s['machine'])}`", ""]
        del teacher
    (HERE / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
