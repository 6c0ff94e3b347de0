"""Commands that list what is registered: models, datasets, methods, strategies, losses."""

from __future__ import annotations

from distil.cli.app import app, listing, out


@app.command()
def models() -> None:
    """List the registered model architectures."""
    from distil.models import list_models

    listing("models (any nn.Module also works as 'package.module:factory')", list_models())


@app.command()
def datasets() -> None:
    """List the registered datasets."""
    from distil.data import list_datasets

    listing("datasets", list_datasets())


@app.command()
def methods() -> None:
    """List the method presets (use `distill.method` in YAML; adjust terms with `distill.terms`)."""
    from distil.engine.methods import list_methods

    listing("methods", list_methods())
    out.print("Strategies that combine models (ensembles, mutual learning, born-again, ...): `distil strategies`.")


@app.command()
def strategies() -> None:
    """List the training strategies (`strategy.name` in YAML; examples in configs/strategies/)."""
    from distil.strategies import list_strategies

    listing("strategies (strategy: {name: ..., ...}; none = teacher → student)", list_strategies())


@app.command()
def losses() -> None:
    """List the registered losses."""
    from distil.losses import list_losses

    listing("losses", list_losses())
