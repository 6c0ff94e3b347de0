"""``distil compress``: prune, factorize, quantize and export a finished run's student."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from distil.cli.app import app, err, print_summary, user_errors, write_run_report


class OnError(str, Enum):
    stop = "stop"
    skip = "skip"


@app.command()
@user_errors
def compress(
    run_dir: Annotated[Path, typer.Argument(help="a finished run directory (from `distil run`)")],
    overrides: Annotated[list[str] | None, typer.Argument(help="overrides of the compress section, e.g. compress.prune.rounds=2 compress.int8.mode=dynamic")] = None,
    steps: Annotated[str | None, typer.Option(help="comma-separated steps in order: prune, lowrank, int8, onnx, onnx-int8")] = None,
    sparsity: Annotated[float | None, typer.Option(help="pruning sparsity in [0, 1): fraction of channels (channels) or weights (magnitude) removed")] = None,
    prune_method: Annotated[str | None, typer.Option("--prune-method", help="channels (a smaller dense model) or magnitude (unstructured)")] = None,
    epochs: Annotated[int | None, typer.Option(help="KD recovery epochs after each pruning round")] = None,
    energy: Annotated[float | None, typer.Option(help="lowrank: keep the smallest rank holding this share of Σσ², in (0, 1]")] = None,
    rank_ratio: Annotated[float | None, typer.Option("--rank-ratio", help="lowrank: rank = ⌈ratio × the layer's rank⌉, in (0, 1] (instead of --energy)")] = None,
    student: Annotated[str | None, typer.Option(help="the model of summary.json to compress (default: student_<method>)")] = None,
    on_error: Annotated[OnError | None, typer.Option("--on-error", help="a failing step: stop (exit 2) or skip it and go on")] = None,
    compiled: Annotated[bool | None, typer.Option("--compiled/--no-compiled", help="also time the teacher and student with torch.compile")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="go on with an interrupted chain from its first unfinished step (same settings)")] = False,
) -> None:
    """Prune, quantize and export a run's distilled student: RUN_DIR/compressed/, rows in summary.json, the table.

    The steps and their settings come from the run's `compress:` section (or the defaults), then from
    the options and the compress.KEY=VALUE overrides.
    """
    from distil.compress.pipeline import compress_run, run_config

    given = {"steps": steps and f"[{steps}]", "prune.sparsity": sparsity, "prune.method": prune_method, "prune.epochs": epochs, "lowrank.energy": energy, "lowrank.rank_ratio": rank_ratio,
             "student": student, "on_error": on_error and on_error.value, "compiled": compiled}  # fmt: skip
    items = [f"compress.{k}={v}" for k, v in given.items() if v is not None]
    if (energy is None) != (rank_ratio is None):  # one rank rule on the command line replaces the config's other one
        items.append(f"compress.lowrank.{'energy' if energy is None else 'rank_ratio'}=null")
    bad = [o for o in overrides or [] if not o.startswith("compress.")]
    if bad:
        from distil.errors import ConfigError

        raise ConfigError(f"compress overrides must be compress.KEY=VALUE (the run itself is fixed), got {', '.join(bad)}")
    config = run_config(run_dir, [*items, *(overrides or [])])
    if resume and not items and not overrides:  # `--resume` alone: the interrupted chain's own settings
        from distil.compress.resume import interrupted_settings

        config = interrupted_settings(run_dir, config)
    print_summary(compress_run(run_dir, config, console=err, resume=resume))
    write_run_report(run_dir)
