"""The generalist + specialists table (Hinton et al. 2015 §5) of benchmarks/speech/ten-teachers.

Reads the ``summary.json`` of ``distil run configs/speech/specialists.yaml`` per seed (the generalist
loaded from the ten-teachers run of that seed) and writes specialists.json / specialists.md here:

    python benchmarks/speech/ten-teachers/specialists_table.py /work/bench/speech2/specialists --seeds 0,10,20
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

HERE = Path(__file__).parent
ROWS = ("teacher", "teacher_specialists", "student_scratch", "student_kd", "student_specialists_kd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, help="the folder holding seed<s>/summary.json")
    parser.add_argument("--seeds", default="0,10,20")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed = {}
    for s in seeds:
        models = json.loads((args.runs / f"seed{s}" / "summary.json").read_text())["models"]
        per_seed[s] = {m["name"]: {k: m.get(k) for k in ("method", "params", "accuracy")} for m in models}
    names = [n for n in per_seed[seeds[0]] if n in ROWS or n.startswith("specialist_")]
    lines = [f"| model | params | test accuracy % ({', '.join(f'seed {s}' for s in seeds)}) | mean |", "|---|---:|---|---:|"]
    for n in names:
        accs = [100 * per_seed[s][n]["accuracy"] for s in seeds]
        what = f"{n} (on its own 4-way task: 3 classes + dustbin)" if n.startswith("specialist_") else n
        cells = ", ".join(f"{a:.1f}" for a in accs)
        lines.append(f"| {what} | {per_seed[seeds[0]][n]['params']:,} | {cells} | {statistics.mean(accs):.2f} |")
    lines += ["", "Specialists' classes (found from the generalist's confusion matrix on the training clips):", ""]
    for s in seeds:
        subsets = [per_seed[s][n]["method"].removesuffix(" + dustbin") for n in per_seed[s] if n.startswith("specialist_")]
        lines.append(f"- seed {s}: {'; '.join(subsets)}")
    (HERE / "specialists.json").write_text(json.dumps({"runs": str(args.runs), "per_seed": per_seed}, indent=1))
    (HERE / "specialists.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
