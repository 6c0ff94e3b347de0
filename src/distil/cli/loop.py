"""``distil loop``: re-distil a served run's student on its feedback; promote it as a new version if not worse."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distil.cli.app import app, err, out, user_errors


@app.command()
@user_errors
def loop(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (the one `distil serve` serves)")],
    feedback: Annotated[Path, typer.Option(help="the folder `distil serve RUN --feedback DIR` filled (inputs, corrections)")],
    tolerance: Annotated[float, typer.Option(min=0.0, max=1.0, help="promote unless worse by more than this accuracy (0.005 = half a point)")] = 0.005,
    holdout: Annotated[float, typer.Option(min=0.0, max=0.9, help="share of the feedback held out for the comparison (fixed per sample)")] = 0.2,
    epochs: Annotated[int | None, typer.Option(min=1, help="training epochs (default: the run's student.epochs)")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="learning rate (default: a tenth of the run's student.lr: a fine-tune)")] = None,
) -> None:
    """Teacher-label the feedback, re-distil the student on train + feedback, compare old and new on the test
    split and the held-out feedback, and promote the new one to RUN/versions/N only if it is not worse."""
    from rich.markup import escape

    from distil.errors import ConfigError
    from distil.loop import run_loop

    if not (run_dir / "summary.json").is_file():
        raise ConfigError(f"{run_dir}: no summary.json; the loop starts from a finished run (`distil run CONFIG --out {run_dir}`)")
    result = run_loop(run_dir, feedback, tolerance=tolerance, holdout=holdout, epochs=epochs, lr=lr, log=lambda line: err.print(escape(line), highlight=False))
    for part in result.old:
        new = result.new[part]
        out.print(f"{part:>9}: old {100 * result.old[part]:.2f} %  new {100 * new:.2f} %", highlight=False)
    verdict = f"promoted to version {result.version} ({run_dir}/versions/{result.version})" if result.promoted else "kept the old student"
    out.print(f"{verdict}: {result.reason}", highlight=False)
