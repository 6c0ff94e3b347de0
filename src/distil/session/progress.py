"""Progress of training: a bar per epoch on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from distil.engine.trainer import EpochRecord


@dataclass
class EpochReporter:
    console: Console
    model: str
    epochs: int
    progress: Progress | None = None
    task: int | None = None

    def on_batch(self, step: int, steps: int) -> None:
        # About 50 updates an epoch: enough for the eye, negligible next to the training steps.
        if self.progress is not None and self.task is not None and (step % max(1, steps // 50) == 0 or step == steps):
            self.progress.update(self.task, completed=step, total=steps)

    def on_epoch(self, r: EpochRecord) -> None:
        terms = ", ".join(f"{k} {v:.4f}" for k, v in r.terms.items())
        self.console.print(
            f"[{self.model}] epoch {r.epoch}/{self.epochs}  loss {r.loss:.4f} ({terms})  "
            f"val acc {r.val_accuracy:.4f}  {r.seconds:.1f}s",
            highlight=False,
            markup=False,
        )
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=0, description=f"{self.model} epoch {min(r.epoch + 1, self.epochs)}/{self.epochs}")


@contextmanager
def epoch_reporter(console: Console, model: str, epochs: int) -> Iterator[EpochReporter]:
    if not console.is_terminal:
        yield EpochReporter(console, model, epochs)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{model} epoch 1/{epochs}", total=None)
        yield EpochReporter(console, model, epochs, progress, task)
