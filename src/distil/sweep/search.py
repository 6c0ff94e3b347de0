"""``distil sweep CONFIG --trials N --out DIR``: an Optuna study whose trials are ordinary run directories.

DIR holds ``sweep.yaml`` (the validated base config: the sweep's identity), ``optuna.journal`` (the
study, an append-only log that survives a killed process), ``reference/`` (the teacher, trained once
or loaded, and the scratch student of the base config), ``trial-000/``, ``trial-001/``, ... (each a
``distil run`` directory, its config.yaml the base config plus the trial's overrides) and the results
(``results.md``, ``results.csv``, ``best.yaml``, then ``results.json`` last).

Running the same command again resumes: finished trials are kept, a trial a killed process left
running is marked failed and its parameters queued again, and only the missing trials run.
"""

from __future__ import annotations

import copy
import fcntl
import inspect
import json
import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from distil.config import ExperimentConfig, read_raw, resolve_paths, set_path, validate_config
from distil.config.sweep import SweepConfig, encode_choice, trial_values
from distil.errors import ConfigError
from distil.experiment import run_experiment
from distil.session import read_summary
from distil.sweep.results import write_results
from distil.weights import atomic_write

IDENTITY = "sweep.yaml"
JOURNAL = "optuna.journal"
LOCK = ".lock"
REFERENCE = "reference"
STUDY = "distil-sweep"
#: What every trial changes besides its parameters: no scratch student (the reference run has it) and no
#: compression (``distil run best.yaml`` does both for the chosen config).
TRIAL_FIXED = {"scratch": False, "compress": None}


def run_sweep(
    config_path: str | Path, overrides: list[str], trials: int, out: str | Path, console: Console | None = None, command: str | None = None
) -> dict[str, Any]:
    """Run (or resume) the sweep until ``trials`` trials have finished; returns the summary of results.json."""
    started = time.perf_counter()
    config_path, out = Path(config_path), Path(out)
    console = console or Console(stderr=True)
    raw = read_raw(config_path, overrides)
    base = resolve_paths(validate_config(raw, source=str(config_path)), config_path.parent)
    if base.sweep is None:
        raise ConfigError(f"{config_path}: no sweep: section; add one with params (example: configs/sweeps/mnist1d_kd.yaml)")
    space = base.sweep
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    check_space(raw, space, base, str(config_path))
    identity = base.model_dump(mode="json")
    _check_out(out, identity)

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        if not (out / IDENTITY).exists():
            text = yaml.safe_dump(identity, sort_keys=False)
            atomic_write(out / IDENTITY, lambda tmp: tmp.write_text(text))
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / JOURNAL)))
        study = optuna.create_study(storage=storage, study_name=STUDY, direction=space.goal, load_if_exists=True)
        requeued = _requeue_interrupted(study)
        if requeued:
            console.print(f"sweep: trials {', '.join(map(str, requeued))} were interrupted; their parameters run again", highlight=False)
        goal = trials
        if space.sampler == "grid":
            size = _grid_size(space)
            if goal > size:
                console.print(f"sweep: the grid has {size} points; running {size} trials, not {goal}", highlight=False)
                goal = size
        reference = _reference_run(base, out, console)
        fixed = {**TRIAL_FIXED, **_teacher_overrides(base, out, reference)}
        model = space.model or f"student_{base.distill.method}"
        context = {"config_path": config_path, "overrides": overrides, "out": out, "command": command, "trials": goal, "started": started, "reference": reference}
        while (done := _finished(study)) < goal:
            console.print(f"sweep: trial {done + 1} of {goal}", highlight=False)
            try:
                _run_trial(study, space, raw, fixed, model, config_path, overrides, out, console)
            finally:
                write_results(study, space, raw, model, final=False, **context)
        return write_results(study, space, raw, model, final=True, **context)


def check_space(raw: dict[str, Any], space: SweepConfig, base: ExperimentConfig, source: str) -> None:
    """Validate the config at every range's ends and an inside value, and at every choice, before any trial.

    So a path that does not exist, or a value its field refuses, fails in a second with the parameter
    named, and nothing is written.
    """
    from distil.losses import LOSSES

    if space.metric == "val_accuracy" and not base.data.val_size:
        raise ConfigError("sweep.metric val_accuracy needs a validation split: data.val_size must be > 0")
    trial_base = _trial_raw(raw, TRIAL_FIXED)
    for path, param in space.params.items():
        loss_param = re.fullmatch(r"distill\.terms\.([^.]+)\.params\.([^.]+)", path)
        if loss_param and loss_param[1] in LOSSES:
            accepted = inspect.signature(LOSSES[loss_param[1]].__init__).parameters
            if loss_param[2] not in accepted and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
                known = ", ".join(k for k in accepted if k != "self")
                raise ConfigError(f"sweep.params.{path}: loss {loss_param[1]} has no argument {loss_param[2]!r}; its arguments: {known}")
        if param.tied is not None:
            continue
        tied = {p: t for p, t in space.params.items() if t.tied == path}
        for value in param.probe_values():
            values = {path: value, **{p: t.offset + t.scale * value for p, t in tied.items()}}
            trial = copy.deepcopy(trial_base)
            try:
                for p, v in values.items():
                    set_path(trial, p, v)
                validate_config(trial, source=f"{source} with {', '.join(f'{p}={v!r}' for p, v in values.items())}")
            except ConfigError as err:
                raise ConfigError(f"sweep.params.{path}: {err}") from None


def _trial_raw(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    trial = copy.deepcopy(raw)
    trial.pop("sweep", None)
    for path, value in values.items():
        set_path(trial, path, value)
    return trial


def _check_out(out: Path, identity: dict[str, Any]) -> None:
    """A new directory, or the same sweep to resume; anything else is refused before a file is written."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / IDENTITY).is_file():
        raise ConfigError(f"--out {out} exists, is not empty and holds no {IDENTITY}: not a sweep directory; choose another --out")
    recorded = yaml.safe_load((out / IDENTITY).read_text())
    changes = _differences(recorded, identity)
    if changes:
        shown = "; ".join(f"{k}: {a!r} → {b!r}" for k, a, b in changes[:8]) + (f"; … {len(changes) - 8} more" if len(changes) > 8 else "")
        raise ConfigError(f"--out {out} is a sweep of another config (recorded → now: {shown}); resume with the same config and overrides, or choose another --out")


def _differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in dict.fromkeys([*a, *b]) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [(prefix.rstrip("."), a, b)]


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One process per sweep directory; the lock dies with its process, so a killed sweep can resume."""
    with open(out / LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"--out {out}: another `distil sweep` is running on this directory") from None
        yield


def _requeue_interrupted(study: Any) -> list[int]:
    """Trials left running by a killed process: failed, and their parameters queued for the next trial."""
    from optuna.trial import TrialState

    numbers = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
        numbers.append(t.number)
    return numbers


def _finished(study: Any) -> int:
    """Trials that count toward --trials: complete ones and those that diverged (a result, not an accident)."""
    from optuna.trial import TrialState

    return sum(t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "error" in t.user_attrs) for t in study.get_trials(deepcopy=False))


def _reference_run(base: ExperimentConfig, out: Path, console: Console) -> dict[str, Any] | None:
    """The teacher (trained once, or loaded) and the base config's scratch student: DIR/reference."""
    if base.teacher is None and not base.scratch:
        return None
    path = out / REFERENCE
    if (path / "summary.json").is_file():
        return read_summary(path)
    console.print("sweep: reference run (teacher and scratch student, shared by every trial)", highlight=False)
    return run_experiment(base.model_copy(update={"sweep": None, "compress": None}), path, steps=("teacher", "scratch"), console=console)


def _teacher_overrides(base: ExperimentConfig, out: Path, reference: dict[str, Any] | None) -> dict[str, Any]:
    """A teacher the config trains is trained once (in the reference run); every trial loads it."""
    if base.teacher is None or base.teacher.weights or reference is None:
        return {}
    row = next(m for m in reference["models"] if m["name"] == "teacher")
    return {"teacher.weights": str((out / REFERENCE / row["weights"]).resolve()), "teacher.sha256": row["sha256"]}


def _distributions(space: SweepConfig) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    made: dict[str, Any] = {}
    for path in space.sampled:
        p = space.params[path]
        if p.kind == "choices":
            made[path] = CategoricalDistribution([encode_choice(c) for c in p.choices or []])
        elif p.kind == "int":
            made[path] = IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            made[path] = FloatDistribution(float(p.low), float(p.high), log=p.log, step=None if p.step is None else float(p.step))
    return made


def _grid_size(space: SweepConfig) -> int:
    size = 1
    for path in space.sampled:
        size *= len(space.params[path].grid())
    return size


def _sampler(space: SweepConfig, number: int) -> Any:
    """A fresh sampler per trial. TPE and random are seeded with (seed, trial number), so a resumed sweep
    draws what an uninterrupted one would have (the history they learn from is the same); the grid is
    shuffled once by the seed and hands out its points by trial number."""
    from optuna import samplers

    class Grid(samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass  # GridSampler would call study.stop(), which only works inside optimize(); the sweep counts trials itself

    seed = (space.seed * 1_000_003 + number) % 2**32
    made = {
        "tpe": lambda: samplers.TPESampler(seed=seed),
        "random": lambda: samplers.RandomSampler(seed=seed),
        "grid": lambda: Grid({p: [encode_choice(v) for v in space.params[p].grid()] for p in space.sampled}, seed=space.seed),
    }
    return made[space.sampler]()


def _run_trial(study: Any, space: SweepConfig, raw: dict[str, Any], fixed: dict[str, Any], model: str, config_path: Path, overrides: list[str], out: Path, console: Console) -> None:
    from optuna.trial import TrialState

    study.sampler = _sampler(space, len(study.get_trials(deepcopy=False)))
    trial = study.ask(_distributions(space))
    values = trial_values(space, trial.params)
    run_dir = out / f"trial-{trial.number:03d}"
    items = [f"{k}={json.dumps(v)}" for k, v in {**values, **fixed}.items()]
    trial.set_user_attr("values", values)
    trial.set_user_attr("overrides", items)
    trial.set_user_attr("dir", run_dir.name)
    console.print(f"sweep: trial {trial.number}: {', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in values.items())}", highlight=False)
    config = resolve_paths(validate_config(_trial_raw(raw, {**values, **fixed}), source=f"trial {trial.number}"), config_path.parent)
    command = shlex.join(["distil", "run", str(config_path), *overrides, *items, "--out", str(run_dir)])
    try:
        summary = run_experiment(config, run_dir, steps=("teacher", "kd"), console=console, command=command)
    except FloatingPointError as err:  # the sampled values diverge: a result of the sweep, recorded
        trial.set_user_attr("error", f"diverged: {err}")
        study.tell(trial, state=TrialState.FAIL)
        console.print(f"sweep: trial {trial.number} diverged", highlight=False)
        return
    row = next((m for m in summary["models"] if m["name"] == model), None)
    if row is None:
        study.tell(trial, state=TrialState.FAIL)
        raise ConfigError(f"sweep.model {model!r} is not a model of the trial's run; its models: {', '.join(m['name'] for m in summary['models'])}")
    trial.set_user_attr("test_accuracy", row["accuracy"])
    trial.set_user_attr("seconds", summary["wall_seconds"])
    study.tell(trial, float(row[space.metric]))
    console.print(f"sweep: trial {trial.number}: {space.metric} {row[space.metric]:.4g}", highlight=False)
