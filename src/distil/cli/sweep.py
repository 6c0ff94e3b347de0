"""``distil sweep``: hyper-parameter search over a config's ``sweep:`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distil.cli.app import Overrides, app, err, load_config_file, out, user_errors


@app.command()
@user_errors
def sweep(
    config: Annotated[Path, typer.Argument(help="experiment YAML with a sweep: section (see configs/sweeps/)")],
    overrides: Overrides = None,
    trials: Annotated[int, typer.Option(help="trials to have finished; run again with a larger N to add trials")] = 10,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="sweep directory: new, or the one of an interrupted sweep to resume")] = Path("runs/sweep"),
) -> None:
    """Hyper-parameter search (Optuna) over the config's sweep: section; each trial is a run directory.

    Writes DIR/results.md, results.csv, results.json and best.yaml (the best config, for `distil run`).
    The same command again resumes an interrupted sweep: finished trials are kept.
    """
    import shlex
    import sys

    from distil.sweep.results import results_table
    from distil.sweep.search import run_sweep

    summary = run_sweep(config, overrides or [], trials, out_dir, console=err, command=shlex.join(["distil", *sys.argv[1:]]))
    out.print(results_table(summary, load_config_file(config, overrides).sweep, f"sweep — {out_dir / 'results.md'}"))
    if summary["best"] is not None:
        out.print(f"best: trial {summary['best']['trial']} → {out_dir / 'best.yaml'}", highlight=False)
