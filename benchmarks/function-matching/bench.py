"""benchmarks/function-matching: patient and consistent distillation (Beyer et al. 2022) on the demo pair.

Each *variant* is one ``distil run`` of ``configs/fashion_mnist/demo.yaml`` (the shipped 288k teacher,
the 24k student, batch 256, SGD lr 0.1, cosine decay) with ``student.epochs=E``; the run trains the
student from scratch *with the same augmentation and budget* next to the distilled one, so every
variant carries its own fair scratch baseline:

- ``kd``: the demo as it is: no augmentation, Hinton KD (T=4, 0.9 KD + 0.1 CE), the exact cache;
- ``kd_views``: crop 2 px + flip, KD on ``--views`` pre-drawn views per sample (the view cache);
- ``fm``: crop 2 px + flip + mixup (α=1) or cutmix (α=1) on every sample, half each: ``fm``
  (KL at T=1 to the teacher on the same mixed view, no label term) on ``--views`` pre-drawn views,
  i.e. ``configs/fashion_mnist/function_matching.yaml``;
- ``kd_mix``: the same mixed views, Hinton KD (T=4, 0.9 KD + 0.1 CE on the mixed labels).

The scratch student of ``kd`` is plain; the scratch student of ``fm``/``kd_mix`` sees the same
mixed inputs and learns their mixed labels (CE on ``λ·y_i + (1−λ)·y_j``). Gap closed is
``(student − scratch) / (teacher − scratch)`` against each of the two scratch baselines.

    DISTIL_THREADS=1 python benchmarks/function-matching/bench.py --epochs 10,30 --variants kd,kd_views,fm --out runs/bench-fm
    python benchmarks/function-matching/bench.py --out runs/bench-fm --table   # results.json + results.md from finished runs
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from distil.config.files import read_raw, resolve_paths, validate_config
from distil.experiment import run_experiment
from distil.hardware import machine, set_threads

DEMO = Path("configs/fashion_mnist/demo.yaml")
FM = Path("configs/fashion_mnist/function_matching.yaml")
CROP = ["data.augment.crop_padding=2", "data.augment.hflip=true"]
MIX = [*CROP, "data.augment.mixup=1.0", "data.augment.cutmix=1.0"]
#: variant → (config, overrides, method, what it is)
VARIANTS: dict[str, tuple[Path, list[str], str, str]] = {
    "kd": (DEMO, [], "kd", "KD (T=4), no augmentation, exact cache"),
    "kd_views": (DEMO, CROP, "kd", "KD (T=4), crop+flip, cached views"),
    "fm": (FM, [], "fm", "function matching (KL T=1), crop+flip+mixup/cutmix, cached views"),
    "kd_mix": (DEMO, MIX, "kd", "KD (T=4) + 0.1 CE, crop+flip+mixup/cutmix, cached views"),
}
KEEP = ("name", "method", "accuracy", "val_accuracy", "train_seconds", "epochs", "best_epoch", "teacher_outputs")


def run(variant: str, epochs: int, seed: int, views: int, out: Path, subset: int | None = None) -> dict[str, Any]:
    path, overrides, method, _ = VARIANTS[variant]
    overrides = [*overrides, f"student.epochs={epochs}", f"seed={seed}", f"cache.views={views}", "compress=null", f"distill.method={method}"]
    folder = out / f"{variant}-e{epochs}-s{seed}"
    if subset:  # SUBSET training images + the config's 5,000 validation images, carved from a seeded subset
        overrides += ["data.name=subset:fashion_mnist", f"data.options.images={subset + 5000}"]
        folder = out / f"{variant}-e{epochs}-s{seed}-sub{subset}"
    if not (folder / "summary.json").is_file():
        print(f"--- {folder}  {' '.join(overrides)}", flush=True)
        cfg = resolve_paths(validate_config(read_raw(path, overrides), str(path)), path.parent)
        start = time.time()
        run_experiment(cfg, folder, command=shlex.join(["python", *sys.argv]))
        (folder / "wall.json").write_text(json.dumps({"wall_seconds": round(time.time() - start, 1)}))
    summary = json.loads((folder / "summary.json").read_text())
    models = {m["name"]: {k: m.get(k) for k in KEEP} for m in summary["models"]}
    return {"variant": variant, "epochs": epochs, "seed": seed, "views": views, "train_images": subset or 55000, "overrides": overrides, "models": models,
            "wall_seconds": summary["wall_seconds"], "machine": summary["machine"]}  # fmt: skip


def gap(student: float, scratch: float, teacher: float) -> float:
    return (student - scratch) / (teacher - scratch)


def table(out: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/row.json"))]
    plain = {(r.get("train_images"), r["epochs"], r["seed"]): r["models"]["student_scratch"]["accuracy"] for r in rows if r["variant"] == "kd"}
    lines = [
        "| train images | epochs | seed | variant | scratch, same aug. % | student % | teacher % | gap closed vs same-aug. scratch | vs plain scratch | student train s | run wall s |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = list(VARIANTS)
    for r in sorted(rows, key=lambda r: (-r.get("train_images", 55000), r["epochs"], r["seed"], order.index(r["variant"]))):
        m = r["models"]
        student = next(v for k, v in m.items() if k.startswith("student_") and k != "student_scratch")
        t, s, d = m["teacher"]["accuracy"], m["student_scratch"]["accuracy"], student["accuracy"]
        p = plain.get((r.get("train_images"), r["epochs"], r["seed"]))
        vs_plain = f"{100 * gap(d, p, t):.0f} %" if p is not None else "–"
        lines.append(
            f"| {r.get('train_images', 55000):,} | {r['epochs']} | {r['seed']} | {VARIANTS[r['variant']][3]} | {100 * s:.2f} | {100 * d:.2f} | {100 * t:.2f} | "
            f"{100 * gap(d, s, t):.0f} % | {vs_plain} | {student['train_seconds']:.0f} | {r['wall_seconds']:.0f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", default="10,30")
    parser.add_argument("--variants", default="kd,kd_views,fm")
    parser.add_argument("--views", type=int, default=8, help="pre-drawn views per sample (cache.views) for the augmented variants")
    parser.add_argument("--subset", type=int, default=None, help="train on a seeded subset of this many images (needs benchmarks/function-matching on PYTHONPATH)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-fm"))
    parser.add_argument("--table", action="store_true", help="only write results.md/json from the finished runs")
    args = parser.parse_args()
    if not args.table:
        set_threads()
        for epochs in [int(e) for e in args.epochs.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                for variant in args.variants.split(","):
                    row = run(variant, epochs, seed, args.views, args.out, args.subset)
                    sub = f"-sub{args.subset}" if args.subset else ""
                    (args.out / f"{variant}-e{epochs}-s{seed}{sub}" / "row.json").write_text(json.dumps(row, indent=1))
    table(args.out)


if __name__ == "__main__":
    main()
