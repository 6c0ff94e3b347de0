"""``distil compress --resume``: go on with an interrupted chain from the first step it did not finish.

``summary.json`` is rewritten after every step (the step's files first, its rows and its record
``{"step", "status", "rows"}`` last), so what it lists as done is on disk, whole. Resuming replays the
finished steps without their work — the model a ``prune`` or ``lowrank`` step left is rebuilt from its
safetensors file (channel counts from the tensors' shapes; a factorized layer from the ranks its row
recorded), an ``onnx`` step's file becomes the chain's ONNX again — and runs the rest. The rows of the
finished steps are kept as they were measured; the summary records when the chain was resumed.

A resume is refused (exit 2, nothing changed) when there is no interrupted chain (never compressed, or
the chain finished), or when the compress settings differ from the interrupted chain's: its rows would
not belong to one chain.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from distil.compress.chain import Chain
from distil.errors import CheckpointError, ConfigError


def interrupted_settings(run_dir: Path, config):
    """``config`` with the compress section the interrupted chain ran with (``distil compress RUN --resume``
    without options); ``config`` itself when the run records none."""
    from distil.config import CompressConfig
    from distil.session import SUMMARY, read_summary

    if not (Path(run_dir) / SUMMARY).is_file():
        return config
    record = read_summary(run_dir).get("compress") or {}
    if "config" not in record:
        return config
    return config.model_copy(update={"compress": CompressConfig.model_validate(record["config"])})


def finished_steps(summary: dict[str, Any], config) -> list[dict[str, Any]]:
    """The records of the steps the interrupted chain finished, in order (ConfigError when there is nothing to resume)."""
    record = summary.get("compress")
    if not record:
        raise ConfigError("compress --resume: the run was never compressed; run `distil compress RUN` without --resume")
    if "wall_seconds" in record:
        raise ConfigError("compress --resume: the last chain finished; nothing to resume (run without --resume to compress again)")
    wanted = config.compress.model_dump(mode="json")
    if record.get("config") != wanted:
        changed = sorted(k for k in set(wanted) | set(record.get("config") or {}) if wanted.get(k) != (record.get("config") or {}).get(k))
        raise ConfigError(
            f"compress --resume: the compress settings differ from the interrupted chain's ({', '.join('compress.' + k for k in changed)}); "
            "give the same options, or run without --resume to start over"
        )
    steps = config.compress.steps
    done = []
    for i, step in enumerate(record.get("steps", [])):
        skipped = step["status"] == "failed" and config.compress.on_error == "skip"
        if i >= len(steps) or step["step"] != steps[i] or not (step["status"] == "ok" or skipped):
            break
        done.append(step)
    return done


def replay(chain: Chain, step: dict[str, Any], rows: dict[str, dict[str, Any]]) -> None:
    """Put ``chain`` where the finished ``step`` left it, from its files (CheckpointError when one is missing)."""
    if step["status"] != "ok":
        return  # a step skipped with on_error: skip left the chain as it was
    name = step["step"]
    if name in ("prune", "lowrank"):
        made = f"{chain.name}.{'pruned' if name == 'prune' else 'lowrank'}"
        model = _rebuilt(chain, name, made, rows)
        chain.model, chain.name, chain.onnx = model, made, None
    elif name == "onnx":
        path = chain.out / f"{chain.name}.onnx"
        _exists(path, name)
        chain.onnx = path


def _rebuilt(chain: Chain, step: str, made: str, rows: dict[str, dict[str, Any]]):
    from safetensors.torch import load_file

    path = chain.out / f"{made}.safetensors"
    _exists(path, step)
    state = load_file(path)
    model = copy.deepcopy(chain.model).cpu()
    if step == "prune":
        from distil.compress.prune import resize_to

        resize_to(model, state)
    else:
        from distil.compress import lowrank

        factorized = rows.get(made, {}).get("lowrank", {}).get("factorized")
        if not factorized:
            raise CheckpointError(f"compress --resume: the row {made!r} does not record its factorized layers; run without --resume to start over")
        rule = lowrank.RankRule(ranks={layer: plan["rank"] for layer, plan in factorized.items()}, min_saving=0.0)
        lowrank.factorize(model, rule, chain.compress.lowrank.conv, only=list(factorized))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"compress --resume: {path} does not fit the model the {step} step makes ({str(err).splitlines()[0]}); run without --resume to start over") from None
    return model.eval()


def _exists(path: Path, step: str) -> None:
    if not path.is_file():
        raise CheckpointError(f"compress --resume: the finished {step} step's file {path} is missing; run without --resume to start over")
