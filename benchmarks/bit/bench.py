"""benchmarks/bit: Big Transfer (Kolesnikov et al. 2020) from Fashion-MNIST to digits with 10 labels per class.

Upstream, once (not per seed): ``distil train configs/bit/upstream.yaml`` pre-trains the GroupNorm +
Weight-Standardized ResNet-v2 (77.6k parameters) on the 55,000 Fashion-MNIST training images; its weights
are shipped as ``configs/bit/upstream.safetensors`` and every seed reuses them (``--upstream DIR`` reads
that run's summary for its test accuracy).

Downstream, per seed: ``configs/strategies/bit.yaml`` (scikit-learn digits upsampled to 28×28, 10 labels
per class chosen by the seed, the other training images unlabeled), one ``distil run``:

- ``bit_finetuned``: the upstream weights, a new zero head, fine-tuned with the BiT-HyperRule (100 < 20k
  samples: 500 steps, warm-up 100, ×0.1 at 200/300/400, no MixUp) at base_lr 0.1 (the config's: BiT's
  0.003 × 2048/64, the ratio of BiT-R50's feature width to this model's);
- ``bit_scratch``: the same architecture from random weights, 500 steps (SGD lr 0.05, cosine);
- ``student_scratch``: the 6.3k-parameter CNN on the 100 labels;
- ``student_kd``: the CNN distilled from ``bit_finetuned`` (KD T=4, α=0.9) on the 100 labelled images;
- ``student_kd_unlabeled``: the same plus the teacher's outputs on the unlabeled training images;
- variant ``published_lr`` (a second run): ``bit_finetuned`` at BiT's own lr 0.003 and ``student_kd`` from it;
- variant ``native_8x8`` (a third run): every row of the main run on the digits' own 8×8 images (the
  upstream model pre-trained at 28×28; global pooling takes any size).

    DISTIL_THREADS=1 python benchmarks/bit/bench.py --seeds 0,1,2 --out runs/bench-bit [--upstream runs/bit-upstream]

A finished run directory is read, not rerun: seeds can run as separate processes (``--seeds 0`` …) and a
last call with every seed gathers them into results.json / results.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from distil.config.files import read_raw, resolve_paths, validate_config
from distil.experiment import run_experiment
from distil.hardware import machine, set_threads

CONFIG = Path("configs/strategies/bit.yaml")
KEEP = ("name", "role", "method", "arch", "accuracy", "val_accuracy", "params", "train_seconds", "epochs", "best_epoch", "schedule")
#: variant → the overrides that make it (on top of the config's)
VARIANTS = {
    "main": [],
    "published_lr": ["strategy.base_lr=0.003", "strategy.scratch=null", "strategy.unlabeled=false", "scratch=false"],
    "native_8x8": ["data.options.size=8"],
}
ROWS = {
    ("published_lr", "bit_finetuned"): "ResNet-v2 GN+WS, pre-trained on Fashion-MNIST, fine-tuned, BiT-HyperRule with BiT's lr 0.003",
    ("published_lr", "student_kd"): "student CNN, KD from that model (100 labelled images)",
    ("main", "bit_finetuned"): "ResNet-v2 GN+WS, pre-trained on Fashion-MNIST, fine-tuned, BiT-HyperRule at lr 0.1 — the teacher",
    ("main", "bit_scratch"): "ResNet-v2 GN+WS, same architecture from random weights (500 steps)",
    ("main", "student_scratch"): "student CNN, labels only",
    ("main", "student_kd"): "student CNN, KD from the fine-tuned teacher (100 labelled images)",
    ("main", "student_kd_unlabeled"): "student CNN, KD from the fine-tuned teacher (+ 1,194 unlabeled images)",
    ("native_8x8", "bit_finetuned"): "at 8×8 (no upsampling): ResNet-v2 fine-tuned, lr 0.1",
    ("native_8x8", "bit_scratch"): "at 8×8: ResNet-v2 from random weights",
    ("native_8x8", "student_scratch"): "at 8×8: student CNN, labels only",
    ("native_8x8", "student_kd"): "at 8×8: student CNN, KD (100 labelled images)",
    ("native_8x8", "student_kd_unlabeled"): "at 8×8: student CNN, KD (+ unlabeled images)",
}


def run(out: Path, overrides: list[str]) -> list[dict[str, Any]]:
    if not (out / "summary.json").is_file():  # finished before: the script can be rerun after an interruption
        print(f"--- {out}  {' '.join(overrides)}", flush=True)
        cfg = resolve_paths(validate_config(read_raw(CONFIG, overrides), str(CONFIG)), CONFIG.parent)
        run_experiment(cfg, out, command=shlex.join(["python", *sys.argv]), resume=(out / "config.yaml").is_file())
    return [{k: m.get(k) for k in KEEP} for m in json.loads((out / "summary.json").read_text())["models"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-bit"))
    parser.add_argument("--upstream", type=Path, help="the `distil train configs/bit/upstream.yaml` run directory (its test accuracy goes in the table)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args()
    set_threads()
    seeds = [int(s) for s in args.seeds.split(",")]
    start = time.time()
    results: dict[str, Any] = {"config": str(CONFIG), "overrides": args.overrides, "runs": {}}
    for seed in seeds:
        for variant, overrides in VARIANTS.items():
            results["runs"][f"seed{seed}/{variant}"] = run(args.out / f"seed{seed}" / variant, [*args.overrides, f"seed={seed}", *overrides])
    if args.upstream is not None and (args.upstream / "summary.json").is_file():
        teacher = next(m for m in json.loads((args.upstream / "summary.json").read_text())["models"] if m["name"] == "teacher")
        results["upstream"] = {k: teacher.get(k) for k in KEEP}
    results.update(machine=machine(), wall_seconds=round(time.time() - start, 1), command=shlex.join(["python", *sys.argv]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    (args.out / "results.md").write_text(table(results, seeds))
    print((args.out / "results.md").read_text())


def _mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


def table(results: dict[str, Any], seeds: list[int]) -> str:
    lines = [
        f"| model | params | digits test accuracy % ({len(seeds)} seeds, mean ± std) | per seed | train s (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for (variant, name), label in ROWS.items():
        rows = [next((m for m in results["runs"].get(f"seed{s}/{variant}", []) if m["name"] == name), None) for s in seeds]
        if any(r is None for r in rows):
            continue
        acc = [r["accuracy"] for r in rows]
        per_seed = " / ".join(f"{100 * a:.1f}" for a in acc)
        lines.append(f"| {label} | {rows[0]['params']:,} | {_mean_std(acc)} | {per_seed} | {statistics.mean(r['train_seconds'] for r in rows):.0f} |")
    up = results.get("upstream")
    if up:
        lines.append(f"| upstream: the ResNet-v2 on Fashion-MNIST (once, seed 0; its own test set) | {up['params']:,} | {100 * up['accuracy']:.2f} (Fashion-MNIST) | – | {up['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
