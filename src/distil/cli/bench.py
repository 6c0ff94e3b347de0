"""``distil bench methods|speed``: benchmarks that write their results as tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from distil.cli.app import Config, OutDir, Overrides, app, err, load_config_file, out, user_errors

bench = typer.Typer(no_args_is_help=True, help="Benchmarks that write their results as tables.")
app.add_typer(bench, name="bench")


@bench.command("methods")
@user_errors
def bench_methods_command(
    config: Config,
    overrides: Overrides = None,
    out_dir: OutDir = Path("runs/bench-methods"),
    methods: Annotated[str, typer.Option(help="comma-separated presets (see `distil methods`)")] = "kd,dkd,dist,lskd,fitnet,at,sp,rkd,pkt,crd,crd+kd",
    seeds: Annotated[int, typer.Option(min=1, help="seeds 0..N-1 for every method")] = 3,
) -> None:
    """Every method × seed on the config's teacher/student pair: DIR/results.md and DIR/results.csv."""
    import shlex
    import sys

    from distil.bench.methods import bench_methods
    from distil.engine.methods import METHODS
    from distil.errors import ConfigError

    chosen = [m.strip() for m in methods.split(",") if m.strip() and m.strip() != "scratch"]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise ConfigError(f"--methods: unknown {unknown or 'empty list'}; known methods: {', '.join(METHODS)}")
    cfg = load_config_file(config, overrides)
    command = shlex.join(["distil", *sys.argv[1:]])
    rows = bench_methods(cfg, chosen, list(range(seeds)), out_dir, command, console=err)
    table = Table(title=f"methods — {out_dir / 'results.md'}")
    for col in ("method", "test acc", "gap closed", "s/epoch"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["method"], f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} %", f"{100 * r['gap_closed']:+.0f} %", f"{r['seconds_per_epoch']:.1f}")
    out.print(table)


@bench.command("speed")
@user_errors
def bench_speed_command(
    config: Annotated[Path | None, typer.Argument(help="experiment YAML (default: the Fashion-MNIST demo)")] = None,
    overrides: Overrides = None,
    out_dir: OutDir = Path("runs/bench-speed"),
    epochs: Annotated[int | None, typer.Option(min=1, help="epochs per run (default: 3; --quick: the config's)")] = None,
    samples: Annotated[int | None, typer.Option(min=1, help="use only this many training samples")] = None,
    quick: Annotated[bool, typer.Option(help="scikit-learn digits and small CNNs: seconds, for a smoke test")] = False,
    reference_workers: Annotated[int, typer.Option(min=0, help="DataLoader workers of the tutorial-style reference (the tutorial uses 2)")] = 2,
    inputs: Annotated[str, typer.Option(help="settings to time, comma-separated: noaug, aug (crop+flip), fm (function matching on cached mixup/cutmix pairs vs the student on the same mixed inputs)")] = "noaug,aug",
) -> None:
    """Distillation vs the student alone vs a tutorial-style KD loop, interleaved: DIR/speed.json."""
    import shlex
    import sys

    from distil.bench.speed import bench_speed, quick_config, rows

    if quick:
        cfg = quick_config()
    else:
        cfg = load_config_file(config or Path("configs/fashion_mnist/demo.yaml"), overrides)
        epochs = epochs or 3
    result = bench_speed(cfg, out_dir, epochs=epochs, samples=samples, reference_workers=reference_workers, inputs=tuple(i.strip() for i in inputs.split(",") if i.strip()), command=shlex.join(["distil", *sys.argv[1:]]), log=lambda m: err.print(m, highlight=False))
    table = Table(title=f"speed — {out_dir / 'speed.json'} ({result['threads']} threads)")
    for col in ("inputs", "run", "median s/epoch", "× student", "test acc"):
        table.add_column(col)
    for row in rows(result):
        table.add_row(*row)
    out.print(table)
    for key in ("kd_over_student_noaug", "kd_over_student_aug", "kd_over_student_fm", "reference_over_kd_noaug", "reference_over_kd_aug"):
        if key in result:
            out.print(f"{key} = {result[key]:.3f}", highlight=False)
