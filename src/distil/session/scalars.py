"""Per-epoch scalars for TensorBoard (``logging.tensorboard: true``): DIR/tensorboard/<model>/.

One event directory per model, so TensorBoard overlays the teacher's, the scratch student's and the
distilled student's curves under the same tags (``loss``, ``val_accuracy``, ``lr``, ``terms/<name>``).
The values are the ones written to metrics.jsonl, and the step is the epoch. tensorboard is an
optional extra: the off path imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from distil.engine.trainer import EpochRecord
from distil.errors import ConfigError

TENSORBOARD = "tensorboard"


def require_tensorboard() -> None:
    """Fail before any work when the config asks for TensorBoard and the package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("logging.tensorboard needs the tensorboard package: pip install 'distil[tensorboard]'") from None


@contextmanager
def epoch_scalars(enabled: bool, run_dir: Path, model: str) -> Iterator[Callable[[EpochRecord], None]]:
    """A callable that logs one epoch's record; a no-op when TensorBoard logging is off."""
    if not enabled:
        yield lambda record: None
        return
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD / model))

    def log(record: EpochRecord) -> None:
        writer.add_scalar("loss", record.loss, record.epoch)
        writer.add_scalar("val_accuracy", record.val_accuracy, record.epoch)
        writer.add_scalar("lr", record.lr, record.epoch)
        for name, value in record.terms.items():
            writer.add_scalar(f"terms/{name}", value, record.epoch)
        writer.flush()  # an interrupted run keeps its curves up to the last epoch

    try:
        yield log
    finally:
        writer.close()
