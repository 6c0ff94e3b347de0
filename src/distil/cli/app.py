"""The ``distil`` Typer app and what every command group shares: consoles, argument types, user
errors as one line and exit 2, the summary table and the report after a run."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from distil.errors import DistilError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="distil: knowledge distillation for PyTorch. Run `distil run CONFIG --out DIR` for a whole experiment.",
)
# Off a terminal (CI logs, pipes) rich would wrap at 80 columns; the table needs more.
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)
out = Console(width=None if Console().is_terminal else 160)

F = TypeVar("F", bound=Callable[..., Any])

Config = Annotated[Path, typer.Argument(help="experiment YAML (see configs/)")]
Overrides = Annotated[list[str] | None, typer.Argument(help="overrides like student.epochs=5 data.val_size=0.2")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="run directory to write")]
Resume = Annotated[bool, typer.Option("--resume", help="continue the interrupted run in --out from its checkpoints (same config and overrides)")]


def user_errors(command: F) -> F:
    """Report a user error as one line on stderr and exit 2, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DistilError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def load_config_file(path: Path, overrides: list[str] | None):
    from distil.config import load_config

    return load_config(path, overrides or [])


def print_summary(summary: dict) -> None:
    from distil.engine.distributed import is_main_process
    from distil.report.table import summary_table

    if not is_main_process():  # under torchrun, rank 0 prints and writes for all
        return
    out.print(summary_table(summary))


def write_run_report(run_dir: Path) -> None:
    """The run's report.html; the run is finished and its summary.json kept even if drawing fails."""
    from distil.engine.distributed import is_main_process

    if not is_main_process():
        return
    try:
        from distil.report.html import write_report

        err.print(f"report: {write_report(run_dir)}", highlight=False)
    except Exception as e:  # noqa: BLE001 — a plotting failure must not turn a finished run into a failed command
        err.print(f"[yellow]report: not written ({escape(f'{type(e).__name__}: {e}')}); `distil report {run_dir}` tries again[/]", highlight=False)


def listing(title: str, items: dict[str, str]) -> None:
    table = Table(title=title)
    table.add_column("name")
    table.add_column("description")
    for name, description in items.items():
        table.add_row(name, escape(description))  # "[benchmarks/...]" is text, not markup
    out.print(table)
