"""``distil compress``: the steps declared in ``compress.steps``, applied in order to a run's student.

A step is a function named in ``STEPS`` (:mod:`distil.compress.steps`); it
gets the :class:`Chain` (data, teacher, the current float model and its name) and its own section of
the config, and returns the table rows it made. ``prune`` and ``lowrank`` replace the current model (later steps start
from the pruned one); ``int8``, ``onnx`` and ``onnx-int8`` each add a deployable form of the current
model. Every row is measured by :func:`distil.engine.measure.measure`, and the teacher and the starting
student are re-measured in the same session so that ratios compare like with like.

Files go to ``RUN_DIR/compressed/``: each is written under a temporary name and renamed into place
only after its check passed, and ``summary.json`` is rewritten (atomically) after every step, so a
failed step leaves neither a file nor a row behind.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from distil.compress.chain import COMPRESSED, Chain
from distil.compress.steps import CLAIMS, STEPS
from distil.errors import ConfigError, DistilError


def _remeasure(chain: Chain, entry: dict[str, Any], model: nn.Module, path: Path) -> list[dict[str, Any]]:
    """The run's own rows measured again now (same session as the compressed rows), plus torch.compile rows if asked."""
    from distil.engine.measure import measure, timing_input

    cfg = chain.config
    data = chain.data.for_teacher() if entry.get("role") == "teacher" else chain.data  # paired: the teacher's own inputs
    kw = dict(latency_repeats=cfg.measure.latency_repeats, throughput_repeats=cfg.measure.throughput_repeats)
    entry.update(chain.with_tokenizer(measure(model, timing_input(data), runtime="torch", size_bytes=path.stat().st_size, **kw)))
    extra = []
    if chain.compress.compiled:
        compiled = {**entry, "name": f"{entry['name']}.compiled", "method": entry["method"], "source": entry["name"]}
        compiled.update(measure(model, timing_input(data), runtime="torch-compiled", test=(data.test.x, data.test.y), size_bytes=path.stat().st_size, **kw))
        extra.append(compiled)
    return extra


def compress_run(run_dir: str | Path, config=None, console: Console | None = None, *, resume: bool = False) -> dict[str, Any]:
    """Compress the student of a finished run as ``config.compress`` says; returns the updated summary.

    ``config`` defaults to the run's own ``config.yaml`` (with the default compress section if it has
    none). Raises :class:`DistilError` for a step that fails with ``on_error: stop`` — the rows and
    files of the steps before it are kept, and valid. ``resume``: go on with an interrupted chain
    (:mod:`distil.compress.resume`) instead of starting a new one.
    """
    from distil.compress.resume import finished_steps, replay

    console = console or Console(stderr=True)
    started = time.perf_counter()
    run_dir = Path(run_dir)
    config, summary, data, teacher, student, arch, base = load_run(run_dir, config)
    check_steps(config.compress, student)
    done = finished_steps(summary, config) if resume else []
    out = run_dir / COMPRESSED
    chain = Chain(config=config, data=data, teacher=teacher, model=student, name=base, out=out, console=console, arch=arch)

    from distil.session import RunDir

    run = RunDir(run_dir)
    if resume:
        for staged in out.glob(".*.staged.*"):  # a step cut short leaves its staged file, never a final one
            staged.unlink()
        rows = summary["models"]
        by_name = {r["name"]: r for r in rows}
        for step in done:
            replay(chain, step, by_name)
        summary["compress"]["steps"] = done
        summary["compress"].setdefault("resumed", []).append({"after_steps": len(done), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        console.print(f"compress: resumed after {len(done)} finished step(s){': ' + ', '.join(s['step'] for s in done) if done else ''}; now at {chain.label}", highlight=False)
        run.write_summary(summary)
    else:
        # a new chain replaces the last one: its files and rows go first, so nothing stale looks valid
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        summary["models"] = [m for m in summary["models"] if "source" not in m]
        rows = summary["models"]
        for entry in list(rows):
            if entry["name"] in ("teacher", base):
                model = teacher if entry["name"] == "teacher" else student
                rows.extend(_remeasure(chain, entry, model, run_dir / entry["weights"]))
        import onnxruntime

        from distil.hardware import machine

        summary["compress"] = {"config": config.compress.model_dump(mode="json"), "steps": [], "measured_again": ["teacher", base],
                               "machine": {**machine(), "onnxruntime": onnxruntime.__version__}}  # fmt: skip
        run.write_summary(summary)
    for name in config.compress.steps[len(done) :]:
        console.print(f"compress: {name} of {chain.label}", highlight=False)
        t0 = time.perf_counter()
        try:
            made = STEPS[name](chain)
        except DistilError as err:
            summary["compress"]["steps"].append({"step": name, "from": chain.name, "arch": chain.arch, "status": "failed", "error": str(err)})
            run.write_summary(summary)
            if config.compress.on_error == "stop":
                raise type(err)(f"compress step {name!r} on {chain.label}: {err}") from None
            console.print(f"[yellow]compress: step {name!r} skipped: {err}[/]", highlight=False)
            continue
        for new in made:
            new["speedup"] = speedup(rows, new)
            if new["speedup"] is not None:
                new["speedup"]["claimed"] = "speed" in CLAIMS[name]
            rows.append(new)
        summary["compress"]["steps"].append({"step": name, "from": made[0]["source"], "status": "ok", "rows": [m["name"] for m in made], "seconds": round(time.perf_counter() - t0, 2)})
        run.write_summary(summary)
    summary["compress"]["wall_seconds"] = round(time.perf_counter() - started, 2)
    run.write_summary(summary)
    return summary


def reference(rows: list[dict[str, Any]], new: dict[str, Any]) -> dict[str, Any] | None:
    """The row ``new`` is compared with — "the step before" it, the one it is most directly comparable to:

    - an int8 form against the fp32 form of the same model: ``onnx-int8`` against that model's ONNX
      row, PyTorch ``int8`` against the PyTorch model;
    - the ONNX export of a changed model against the ONNX export of the model before the change
      (``student.pruned.onnx`` against ``student.onnx``: did pruning pay once deployed);
    - otherwise the row of the model it was made from (``student.onnx`` against ``student`` in
      PyTorch, ``student.pruned`` against ``student``).
    """
    by_name = {r["name"]: r for r in rows}
    source = new.get("source", "")
    if new["method"] == "onnx-int8" and f"{source}.onnx" in by_name:
        return by_name[f"{source}.onnx"]
    if new["method"] == "onnx":
        earlier = [r for r in rows if r.get("method") == "onnx" and r.get("runtime") == new.get("runtime")]
        if earlier:
            return earlier[-1]
    return by_name.get(source)


def speedup(rows: list[dict[str, Any]], new: dict[str, Any]) -> dict[str, Any] | None:
    """``new``'s speed-up over its :func:`reference` row, measured in this session: batch-1 latency and batch-256 throughput ratios (> 1: faster)."""
    ref = reference(rows, new)
    if ref is None or not new.get("latency_ms_b1") or not ref.get("latency_ms_b1"):
        return None
    return {"over": ref["name"], "b1": round(ref["latency_ms_b1"] / new["latency_ms_b1"], 3), "b256": round(new["throughput_b256"] / ref["throughput_b256"], 3)}


def check_steps(compress, student: nn.Module) -> None:
    """What can be checked against the starting student before anything is written: the per-layer ranks of
    ``lowrank`` when no ``prune`` comes before it (a :class:`ConfigError` naming the field)."""
    steps = compress.steps
    if "lowrank" in steps and "prune" not in steps[: steps.index("lowrank")]:
        from distil.compress.lowrank import check_ranks

        check_ranks(student, compress.lowrank.ranks, compress.lowrank.conv)


def run_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()):
    """The run's ``config.yaml`` with ``overrides``; a run made without a ``compress`` section gets the default one."""
    from distil.config import CompressConfig
    from distil.session import read_config

    if overrides and read_config(run_dir).compress is None:  # config.yaml says `compress: null`: overrides need a section to set
        overrides = ["compress={}", *overrides]
    config = read_config(run_dir, overrides)
    return config if config.compress is not None else config.model_copy(update={"compress": CompressConfig()})


def load_run(run_dir: Path, config=None):
    """Config, summary, data (CPU), teacher and the student to compress, all checked before any work."""
    from distil.config import CompressConfig
    from distil.session import SUMMARY, read_summary
    from distil.weights import load_weights

    config = config if config is not None else run_config(run_dir)
    if config.compress is None:
        config = config.model_copy(update={"compress": CompressConfig()})
    if not (run_dir / SUMMARY).is_file():
        raise ConfigError(f"{run_dir}: no {SUMMARY}; compress needs a finished run (`distil run CONFIG --out {run_dir}`)")
    summary = read_summary(run_dir)
    entries = {m["name"]: m for m in summary["models"] if "source" not in m}
    base = config.compress.student or f"student_{config.distill.method}"
    if base not in entries or base == "teacher":
        students = [n for n, m in entries.items() if m.get("role") == "student"]
        raise ConfigError(f"compress.student: {base!r} is not a student of {run_dir} (students: {', '.join(students) or 'none'})")
    if "teacher" not in entries:
        raise ConfigError(f"{run_dir}: the run has no teacher; the recovery fine-tune distils from it")
    cfg = config
    data = cfg.data.load(cfg.seed)
    # paired data: the teacher is built for (and measured on) its own inputs, data.for_teacher()
    teacher = load_weights(cfg.teacher.build(data.for_teacher(), cfg.seed), run_dir / entries["teacher"]["weights"]).eval()
    student = load_weights(cfg.student.build(data, cfg.seed), run_dir / entries[base]["weights"]).eval()
    return config, summary, data, teacher, student, cfg.student.arch, base
