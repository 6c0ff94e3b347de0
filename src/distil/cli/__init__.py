"""The ``distil`` command line, one module per command group. Every command validates its inputs
first; user errors exit with 2."""

from distil.cli.app import app

from distil.cli import runs  # noqa: F401  isort: skip  (each module registers its commands on `app`, in this order)
from distil.cli import compress  # noqa: F401  isort: skip
from distil.cli import sweep  # noqa: F401  isort: skip
from distil.cli import bench  # noqa: F401  isort: skip
from distil.cli import serve  # noqa: F401  isort: skip
from distil.cli import loop  # noqa: F401  isort: skip
from distil.cli import catalog  # noqa: F401  isort: skip


def main() -> None:
    from distil.hardware import set_threads

    set_threads()
    app()


__all__ = ["app", "main"]
