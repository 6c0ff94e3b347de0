"""Crash-safe runs: every fit of an experiment is saved after each epoch, and ``--resume`` continues it.

A run re-executes its steps deterministically, so resuming is per *named fit* (``teacher``,
``student_scratch``, ``student_kd``, a strategy's members, ...): each fit looks for its checkpoint
and restores it before its first epoch. A finished fit restores its last epoch and runs none; a
partial one continues with the next epoch; a fit without checkpoint trains as usual. What is saved
is :class:`~distil.engine.trainer.LoopState` — model, objective (connectors, loss parameters and
buffers such as CRD's memory), optimizer, LR scheduler, the data-order generator (batch order and
augmentation draws), the best-epoch weights and the history, the epoch (which is also the position in
a teacher's view cache), the state of teacher outputs that have one (an EMA teacher's weights, the
teacher's own view stream: ``ViewTeacher.state_dict``) — plus torch's global RNG (CUDA's too), so the
continued run is bit for bit the uninterrupted one.

On disk, ``DIR/checkpoints/NAME.json`` (the manifest: structure, history, sha256 of the tensors file and
of itself) and ``NAME.eEPOCH.safetensors`` (every tensor, optimizer state flattened). No pickle. The
tensors file of each epoch has its own name and the manifest is replaced (atomically) only after it,
so a kill at any instant leaves a manifest whose tensors exist; the previous epoch's file is deleted
afterwards. A file that does not match its recorded hash is reported and never loaded. Files are not
fsync'd: a killed process loses nothing the kernel holds, and after a power cut a torn file fails its
hash (reported, not loaded). Two fsyncs took 8 ms a save on the development machine (profiled), a
third of a small MLP's epoch (benchmarks/checkpoint/README.md).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from distil.engine.trainer import EpochRecord, LoopState
from distil.errors import CheckpointError, ConfigError
from distil.session.run_dir import CONFIG, SUMMARY, RunDir
from distil.weights import atomic_write

FORMAT = 1
CHECKPOINTS = "checkpoints"
PLAN = "_plan.json"  # the steps and methods of the command that made the run (no fit is named so)


class RunCheckpoints:
    """The checkpoints of one run directory; :meth:`fit` hands out one per named fit."""

    def __init__(self, run_dir: RunDir, console: Console | None = None, writes: bool = True) -> None:
        self.run_dir = run_dir
        self.root = run_dir.path / CHECKPOINTS
        self.console = console or Console(stderr=True)
        self.writes = writes  # under torchrun only rank 0 writes; every rank restores
        self._used: dict[str, int] = {}

    def fit(self, name: str) -> FitCheckpoint:
        """The checkpoint of the fit called ``name``; a name used again in a run gets ``NAME#2``, ... ."""
        self._used[name] = self._used.get(name, 0) + 1
        key = name if self._used[name] == 1 else f"{name}#{self._used[name]}"
        return FitCheckpoint(self, key, name)

    def start(self, plan: dict[str, Any]) -> None:
        """Record what the run does beyond its config (``distil train`` and ``distil run`` share configs)."""
        if not self.writes:
            return
        text = json.dumps(plan) + "\n"
        atomic_write(self.root / PLAN, lambda tmp: tmp.write_text(text))

    def clear(self) -> None:
        """Forget every checkpoint: a fresh run starts, or the run finished (summary.json says it all)."""
        if self.writes:
            shutil.rmtree(self.root, ignore_errors=True)

    def verify(self) -> int:
        """Check every checkpoint's hashes before anything is written; returns how many there are."""
        manifests = sorted(p for p in self.root.glob("*.json") if p.name != PLAN) if self.root.is_dir() else []
        for path in manifests:
            read_checkpoint(path)
        return len(manifests)


class FitCheckpoint:
    """Saves one fit after every epoch and restores it before the first (``trainer.Checkpoint``)."""

    def __init__(self, run: RunCheckpoints, key: str, name: str) -> None:
        self.run, self.key, self.name = run, key, name
        self.manifest = run.root / f"{key}.json"

    def save(self, state: LoopState) -> None:
        """Write this epoch's tensors, then the manifest that points at them, then drop the older file.

        Under torchrun every rank calls this (the batch-order and RNG states differ per rank and are
        gathered, one per rank); rank 0 writes. Model, optimizer and the rest are the same on all ranks.
        """
        per_rank = _per_rank_states(state)
        if not self.run.writes:
            return
        tensors: dict[str, torch.Tensor] = {}
        structure = {
            "model": _flatten(state.model.state_dict(), "model", tensors),
            "objective": _flatten(state.objective.state_dict(), "objective", tensors),
            "best": _flatten(state.best_state, "best", tensors),
            "optimizer": _flatten(state.optimizer.state_dict(), "optimizer", tensors),
            "scheduler": _flatten(state.scheduler.state_dict(), "scheduler", tensors),
            "ranks": _flatten(per_rank, "ranks", tensors),
        }
        if state.teacher is not None:  # an EMA teacher's weights, a view stream's position
            structure["teacher"] = _flatten(state.teacher.state_dict(), "teacher", tensors)
        data = save_safetensors(_unshared(tensors))
        tensors_file = self.run.root / f"{self.key}.e{state.epoch}.safetensors"
        atomic_write(tensors_file, lambda tmp: tmp.write_bytes(data))
        body = {
            "format": FORMAT,
            "name": self.key,
            "epoch": state.epoch,
            "fit": _fit_key(state),
            "tensors": tensors_file.name,
            "tensors_sha256": hashlib.sha256(data).hexdigest(),
            "result": {
                "best_epoch": state.result.best_epoch,
                "best_val_accuracy": state.result.best_val_accuracy,
                "history": [r.as_dict() for r in state.result.history],
            },
            "state": structure,
        }
        text = json.dumps({**body, "sha256": _body_sha256(body)}, indent=1) + "\n"
        atomic_write(self.manifest, lambda tmp: tmp.write_text(text))
        pattern = re.compile(rf"{re.escape(self.key)}\.e(\d+)\.safetensors")
        for old in self.run.root.iterdir():
            if old.name != tensors_file.name and pattern.fullmatch(old.name):
                old.unlink(missing_ok=True)

    def restore(self, state: LoopState) -> None:
        """Put the saved state into the fresh loop (nothing happens when there is no checkpoint)."""
        if not self.manifest.is_file():
            return
        body, tensors = read_checkpoint(self.manifest)
        expected = _fit_key(state)
        if body["fit"] != expected:
            differ = ", ".join(f"{k}: {body['fit'].get(k)!r} → {v!r}" for k, v in expected.items() if body["fit"].get(k) != v)
            raise CheckpointError(
                f"checkpoint {self.manifest} was saved by a fit with other settings ({differ}); delete it to retrain {self.key}"
            )
        saved = _unflatten(body["state"], tensors)
        try:
            state.model.load_state_dict(saved["model"])
            state.objective.load_state_dict(saved["objective"])
            state.optimizer.load_state_dict(saved["optimizer"])
            state.scheduler.load_state_dict(saved["scheduler"])
            if state.teacher is not None and "teacher" in saved:
                state.teacher.load_state_dict(saved["teacher"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"checkpoint {self.manifest} does not fit {self.key}'s model or objective ({str(err).splitlines()[0]}); delete it to retrain {self.key}"
            ) from None
        ranks = saved["ranks"]
        if len(ranks) != state.sync.world_size:
            raise CheckpointError(
                f"checkpoint {self.manifest} was saved by {len(ranks)} process(es), this run has {state.sync.world_size}: "
                f"resume with the same number of processes (torchrun --nproc_per_node), or delete it to retrain {self.key}"
            )
        mine = ranks[state.sync.rank]
        state.order.set_state(mine["order"])
        state.best_state = saved["best"]
        state.epoch = body["epoch"]
        result = body["result"]
        state.result.best_epoch, state.result.best_val_accuracy = result["best_epoch"], result["best_val_accuracy"]
        state.result.history[:] = [EpochRecord(**r) for r in result["history"]]
        _set_rng_state(mine, _device(state))
        for record in state.result.history:  # metrics.jsonl was restarted: it gets the restored epochs first
            if self.run.writes:
                self.run.run_dir.log_epoch(self.name, record.as_dict())
        epochs = state.settings.epochs
        done = "finished before the interruption" if state.epoch == epochs else f"continues after epoch {state.epoch}/{epochs}"
        self.run.console.print(f"[{self.name}] restored from {self.manifest.name}: {done}", highlight=False, markup=False)


def check_resume(run_dir: RunDir, config: dict[str, Any], plan: dict[str, Any], console: Console) -> str:
    """What ``--resume`` finds in ``run_dir``: ``"new"``, ``"finished"`` or ``"resume"``.

    Raises :class:`ConfigError` when the directory was run with another config (the differing keys
    are listed, old → new) or another command's ``plan`` (steps, methods), and :class:`CheckpointError`
    when a checkpoint is corrupt. Nothing is written here: a refused resume leaves the directory as it was.
    """
    path = run_dir.path / CONFIG
    if not path.is_file():
        console.print(f"--resume: {run_dir.path} holds no run ({CONFIG} missing); starting a new run", highlight=False)
        return "new"
    try:
        old = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"--resume: {path} is not valid YAML ({err}); it cannot be compared with the config") from None
    new = yaml.safe_load(yaml.safe_dump(config, sort_keys=False))  # the form config.yaml is written in
    old = _as_written_now(old if isinstance(old, dict) else {})
    differ = config_differences(old, new)
    if differ:
        listed = "; ".join(f"{key}: {_show(a)} → {_show(b)}" for key, a, b in differ)
        raise ConfigError(
            f"--resume: {run_dir.path} was run with another config ({listed}); resume with the same config and overrides, "
            f"or start over without --resume (which replaces the run)"
        )
    finished = (run_dir.path / SUMMARY).is_file()
    recorded = _recorded_plan(run_dir, finished)
    if recorded is not None and recorded != plan:
        raise ConfigError(
            f"--resume: {run_dir.path} was made by another command (steps {', '.join(recorded['steps'])}; methods "
            f"{', '.join(recorded['methods']) or '-'}), this one runs steps {', '.join(plan['steps'])}; methods {', '.join(plan['methods']) or '-'}: "
            f"resume with the command that made it"
        )
    if finished:
        console.print(f"--resume: {run_dir.path} already finished ({SUMMARY} present); nothing to resume", highlight=False)
        return "finished"
    count = RunCheckpoints(run_dir, console).verify()
    console.print(f"--resume: {run_dir.path}: {count} fit checkpoint{'s' * (count != 1)} verified", highlight=False)
    return "resume"


def _recorded_plan(run_dir: RunDir, finished: bool) -> dict[str, Any] | None:
    """The plan in summary.json (finished) or checkpoints/_plan.json; ``None`` where neither says."""
    try:
        if finished:
            return json.loads((run_dir.path / SUMMARY).read_text()).get("plan")
        path = run_dir.path / CHECKPOINTS / PLAN
        return json.loads(path.read_text()) if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ConfigError(f"--resume: {run_dir.path}: cannot read what the run did ({err}); start over without --resume") from None


def _as_written_now(old: dict[str, Any]) -> dict[str, Any]:
    """``old`` (a run's config.yaml) as this version of distil writes it: a field added since the run was
    made reads as its default, so only values that were set differently count as differences. A file
    that no longer validates is compared as it is (its differences are then listed)."""
    from distil.config.files import dump_config, validate_config

    try:
        return yaml.safe_load(yaml.safe_dump(dump_config(validate_config(old)), sort_keys=False))
    except ConfigError:
        return old


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old, new)`` for every leaf that differs; a missing key reads as ``<absent>``."""
    out = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """A checked checkpoint: the manifest and its tensors, both matching their recorded sha256, or :class:`CheckpointError`."""
    try:
        body = json.loads(path.read_text())
        recorded = body.pop("sha256")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AttributeError, TypeError):
        raise CheckpointError(f"checkpoint {path} is corrupt (not a checkpoint manifest); it was not loaded. {_REMEDY}") from None
    if _body_sha256(body) != recorded or body.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is corrupt (its content does not match its sha256); it was not loaded. {_REMEDY}")
    tensors_file = path.parent / str(body.get("tensors"))
    if not tensors_file.is_file():
        raise CheckpointError(f"checkpoint {path} names {tensors_file.name}, which is missing; it was not loaded. {_REMEDY}")
    data = tensors_file.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != body.get("tensors_sha256"):
        raise CheckpointError(
            f"checkpoint {tensors_file} is corrupt: sha256 {actual}, but {path.name} recorded {body.get('tensors_sha256')}; it was not loaded. {_REMEDY}"
        )
    try:
        tensors = load_safetensors(data)
    except SafetensorError as err:
        raise CheckpointError(f"checkpoint {tensors_file} is not a safetensors file ({err}); it was not loaded. {_REMEDY}") from None
    return body, tensors


_REMEDY = "Delete that fit's checkpoint files to retrain it, or start over without --resume"
_ABSENT = "<absent>"


def _show(value: Any) -> str:
    return value if value is _ABSENT else json.dumps(value)


def _fit_key(state: LoopState) -> dict[str, Any]:
    """What makes two fits the same fit (besides the config, already compared): settings and seed."""
    return json.loads(json.dumps({**asdict(state.settings), "seed": state.seed}))


def _body_sha256(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _device(state: LoopState) -> torch.device:
    return next(iter(state.model.parameters()), torch.empty(0)).device


def _per_rank_states(state: LoopState) -> list[dict[str, torch.Tensor]]:
    """Each rank's batch-order generator and global RNG (CPU, and the CUDA device trained on), in rank order.

    Dropout and CRD's negative sampling draw from the global RNG, so it is saved beside the order.
    """
    mine = {"order": state.order.get_state(), "cpu": torch.get_rng_state()}
    device = _device(state)
    if device.type == "cuda":
        mine["cuda"] = torch.cuda.get_rng_state(device)
    gathered = {key: state.sync.gather(value) for key, value in mine.items()}
    return [{key: gathered[key][rank] for key in mine} for rank in range(state.sync.world_size)]


def _set_rng_state(states: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


# Optimizer and scheduler state dicts nest tensors in dicts (int keys), lists and tuples: tensors go
# to safetensors under their path, the rest to JSON with markers that give the exact types back.
def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        if path in tensors:
            raise ValueError(f"checkpoint: two tensors at {path}")
        tensors[path] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _flatten(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[k, _flatten(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    raise TypeError(f"checkpoint: cannot save a {type(obj).__name__} at {path}")


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied weights): the second and later are copied."""
    seen: set[int] = set()
    out = {}
    for key, tensor in tensors.items():
        ptr = tensor.untyped_storage().data_ptr()
        out[key] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return out


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__items__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    return {k: _unflatten(v, tensors) for k, v in obj.items()}
