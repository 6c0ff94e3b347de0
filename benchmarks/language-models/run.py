"""Benchmark: a causal LM teacher distilled into a ~9x smaller student on the King James Bible.

    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/language-models/run.py [--seeds 0] [--out /work/bench/lm] [--parallel]
        [--teacher PATH] [KEY=VALUE ...]
    DISTIL_THREADS=1 PYTHONPATH=src python benchmarks/language-models/run.py --collect 0 [--out /work/bench/lm]

Runs configs/lm/kjv.yaml per seed into OUT/seedN: the teacher (trained, or ``--teacher`` weights), then the
students: data only, forward KL with and without CE, reverse KL, GKD on-policy, sequence-level with and without
word-level KD. ``--parallel`` (for a shared machine, where each process gets its own share of the CPU): the
teacher first, then the top-k teacher cache built once, then the methods as four processes side by side
(``data+fkl``, ``kd+rkl``, ``gkd``, ``seqkd+seqkd_fkl``, each
``distil run`` with ``methods=[...]`` into OUT/seedN/part-*), merged into one summary: the teacher row of
the ``data+fkl`` part, every student row, the gap recovered against that part's data-only student, and
each row's speed-up against the teacher measured in the same process. Further methods run by hand as
``distil run configs/lm/kjv.yaml --out OUT/seedN/part-e teacher.weights=... methods=[...]`` join the merge
of ``--collect``. Writes results.json (every summary)
and results.md (the table per seed, the mean over seeds, the prompts' continuations, the goal check).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from distil.config.lm import load_lm_config
from distil.hardware import set_threads
from distil.lm_experiment import load_data, run_lm_experiment, subset
from distil.report.lm import lm_markdown, write_lm_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG = ROOT / "configs" / "lm" / "kjv.yaml"
PARTS = {"a": ["data", "fkl"], "b": ["kd", "rkl"], "c": ["gkd"], "d": ["seqkd", "seqkd_fkl"]}


def run_parallel(seed: int, out: Path, overrides: list[str], teacher: str | None, parts: str = "abcd") -> dict:
    """Teacher, then the cache, then the methods in four processes; the merged summary."""
    import torch

    from distil.engine.lm_teacher import TokenLogitCache
    from distil.engine.teacher_store import TeacherStore
    from distil.lm_experiment import build
    from distil.weights import load_weights

    base = [*overrides, f"seed={seed}"]
    if teacher is None:  # train it alone: a run without students
        run_lm_experiment(load_lm_config(CONFIG, [*base, "methods=[]"]), out / "teacher")
        teacher = str(out / "teacher" / "teacher.safetensors")
    base.append(f"teacher.weights={teacher}")
    config = load_lm_config(CONFIG, base)

    def start(part: str) -> tuple[subprocess.Popen, object]:
        cmd = [sys.executable, "-m", "distil", "run", str(CONFIG), "--out", str(out / f"part-{part}"), *base, f"methods=[{','.join(PARTS[part])}]"]
        log = open(out / f"part-{part}.log", "w")  # noqa: SIM115 — closed after the process ends
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log

    procs = [start("d")] if "d" in parts else []  # sequence-level KD reads the samples (and builds their own cache for seqkd_fkl): it starts at once
    data = load_data(config)
    model = load_weights(build(config.teacher, data, seed), teacher).eval()
    text = subset(data.train, config.student.train.blocks, seed)
    TokenLogitCache(model, text, vocab_size=data.vocab_size, top_k=config.cache.top_k, store=TeacherStore(config.cache.dir))
    del model
    torch.set_num_threads(1)
    procs += [start(part) for part in ("a", "b", "c") if part in parts]
    for proc, log in procs:
        proc.wait()
        log.close()
        if proc.returncode:
            raise SystemExit(f"{proc.args}: exit {proc.returncode}; see {log.name}")
    return merge(parts_of(out), out)


def parts_of(out: Path) -> list[dict]:
    """The summaries of OUT/part-* in name order: a, b, c, d and any extra method run there the same way."""
    return [json.loads((d / "summary.json").read_text()) for d in sorted(out.glob("part-*")) if (d / "summary.json").is_file()]


def merge(parts: list[dict], out: Path) -> dict:
    """One summary from the parts: part a's teacher and data-only rows are the references."""
    first = parts[0]
    rows = [first["models"][0]] + [m for p in parts for m in p["models"][1:]]
    scratch = next(m for m in rows if m["method"] == "data")
    gap = scratch["test_nll"] - rows[0]["test_nll"]
    for m in rows[1:]:
        if m is not scratch:
            m["gap_recovered"] = (scratch["test_nll"] - m["test_nll"]) / gap if gap > 0 else None
    summary = {
        **first,
        "models": rows,
        "methods": {k: v for p in parts for k, v in p["methods"].items()},
        "teacher_outputs": {k: v for p in parts for k, v in p["teacher_outputs"].items()},
        "parts": [[m["name"] for m in p["models"][1:]] for p in parts],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_lm_report(out, summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default="/work/bench/lm")
    parser.add_argument("--parallel", action="store_true", help="methods as four processes side by side (see the docstring)")
    parser.add_argument("--teacher", help="teacher weights to use instead of training one (one seed)")
    parser.add_argument("--parts", default="abcd", help="with --parallel: which parts to run (" + ", ".join(f"{k}: {'+'.join(v)}" for k, v in PARTS.items()) + "); a must be one")
    parser.add_argument("--collect", type=int, nargs="+", help="write the results of these finished seeds; run nothing")
    parser.add_argument("--commit", help="the commit the runs were made at (default: HEAD)")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    set_threads()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=False).stdout.strip()
    commit = args.commit or head
    if args.collect is None:
        for seed in args.seeds:
            out = Path(args.out) / f"seed{seed}"
            if args.parallel:
                out.mkdir(parents=True, exist_ok=True)
                run_parallel(seed, out, args.overrides, args.teacher, args.parts)
            else:
                overrides = [*args.overrides, f"seed={seed}"] + ([f"teacher.weights={args.teacher}"] if args.teacher else [])
                run_lm_experiment(load_lm_config(CONFIG, overrides), out)
    seeds = args.collect or args.seeds
    for seed in args.collect or []:  # parallel runs: merge their parts again (extra parts may have been added)
        if (Path(args.out) / f"seed{seed}" / "part-a").is_dir():
            merge(parts_of(Path(args.out) / f"seed{seed}"), Path(args.out) / f"seed{seed}")
    summaries = [json.loads((Path(args.out) / f"seed{seed}" / "summary.json").read_text()) for seed in seeds]
    record = {"commit": commit, "config": str(CONFIG.relative_to(ROOT)), "overrides": args.overrides, "runs": summaries}
    (HERE / "results.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# Results (commit {commit}, `{' '.join(args.overrides) or 'no overrides'}`, seeds {', '.join(map(str, seeds))})", ""]
    lines += mean_table(summaries)
    for s in summaries:
        lines += [f"## seed {s['seed']}", "", lm_markdown(s), ""]
        for m in s["models"][1:]:
            gap, speed = m.get("gap_recovered"), m["speedup_b1"]
            if gap is not None:
                ok = gap >= 0.5 and speed >= 5
                lines.append(
                    f"- {m['method']}: {100 * gap:.1f} % of the log-perplexity gap at {speed:.1f}x the teacher's greedy b=1 speed: "
                    f"goal {'met' if ok else 'not met'}"
                )
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
        "| model | seeds | params | test ppl | KL(t‖s)/token | gap recovered % | greedy tok/s b=1 | greedy tok/s b=32 | speed-up b=1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        rows = [m for s in summaries for m in s["models"] if m["name"] == name]  # a method may have run for fewer seeds
        gaps = [100 * r["gap_recovered"] for r in rows if r.get("gap_recovered") is not None]
        lines.append(
            f"| {name} | {len(rows)} | {rows[0]['params']:,} | {stat([r['test_ppl'] for r in rows], '{:.2f}')} | {stat([r['kl_to_teacher'] for r in rows], '{:.4f}')} "
            f"| {stat(gaps, '{:.1f}')} | {stat([r['tokens_per_s'].get('greedy_b1', 0) for r in rows], '{:,.0f}')} "
            f"| {stat([r['tokens_per_s'].get('greedy_b32', 0) for r in rows], '{:,.0f}')} | {stat([r['speedup_b1'] for r in rows], '{:.2f}')} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
