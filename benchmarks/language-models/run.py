"""Benchmark: a causal LM teacher distilled into a ~9x smaller student on the King James Bible.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/language-models/run.py [--seeds 0] [--out /work/bench/lm] [KEY=VALUE ...]
    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/language-models/run.py --collect 0 1 2 [--out /work/bench/lm]

Runs configs/lm/kjv.yaml once per seed into OUT/seedN (teacher, then students: data only, forward KL,
reverse KL, GKD on-policy, sequence-level) and writes results.json (every summary) and results.md (one
table per seed, the mean over seeds, the prompts' continuations, the goal check) next to this script.
``--collect`` runs nothing and writes the results of finished runs OUT/seedN (seeds run as separate
processes side by side).
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
    parser.add_argument("--collect", type=int, nargs="+", help="write the results of these finished seeds; run nothing")
    parser.add_argument("--commit", help="the commit the runs were made at (default: HEAD)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    set_threads()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=False).stdout.strip()
    commit = args.commit or head
    if args.collect is None:
        for seed in args.seeds:
            run_lm_experiment(load_lm_config(CONFIG, [*args.overrides, f"seed={seed}"]), Path(args.out) / f"seed{seed}")
    seeds = args.collect or args.seeds
    summaries = [json.loads((Path(args.out) / f"seed{seed}" / "summary.json").read_text()) for seed in seeds]
    record = {"commit": commit, "config": str(CONFIG.relative_to(HERE.parents[1])), "overrides": args.overrides, "runs": summaries}
    (HERE / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# Results (commit {commit}, `{' '.join(args.overrides) or 'no overrides'}`, seeds {', '.join(map(str, seeds))})", ""]
    lines += mean_table(summaries)
    for s in summaries:
        lines += [f"## seed {s['seed']}", "", lm_markdown(s), ""]
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
    (HERE / "results.md").write_text("\n".join(lines) + "\n")


def mean_table(summaries: list[dict]) -> list[str]:
    """Mean ± std over seeds of each model's held-out perplexity, KL, gap recovered and speed-up."""
    import statistics

    def stat(values: list[float], fmt: str) -> str:
        if len(values) < 2:
            return fmt.format(values[0]) if values else "–"
        return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"

    names = [m["name"] for m in summaries[0]["models"]]
    lines = [
        f"## Mean over {len(summaries)} seed(s)",
        "",
        "| model | params | test ppl | KL(t‖s)/token | gap recovered % | greedy tok/s b=1 | greedy tok/s b=32 | speed-up b=1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        rows = [next(m for m in s["models"] if m["name"] == name) for s in summaries]
        gaps = [100 * r["gap_recovered"] for r in rows if r.get("gap_recovered") is not None]
        lines.append(
            f"| {name} | {rows[0]['params']:,} | {stat([r['test_ppl'] for r in rows], '{:.2f}')} | {stat([r['kl_to_teacher'] for r in rows], '{:.4f}')} "
            f"| {stat(gaps, '{:.1f}')} | {stat([r['tokens_per_s'].get('greedy_b1', 0) for r in rows], '{:,.0f}')} "
            f"| {stat([r['tokens_per_s'].get('greedy_b32', 0) for r in rows], '{:,.0f}')} | {stat([r['speedup_b1'] for r in rows], '{:.2f}')} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
