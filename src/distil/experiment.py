"""One experiment, end to end: data → teacher (trained or loaded) → students → strategy → test → summary.

``run_experiment`` is what ``distil run`` calls; ``distil train`` and ``distil distill`` run a subset of
its steps. All inputs are validated (data found, every model built, teacher weights checked) before
the first epoch, so a typo fails in seconds, not after the teacher has trained. The steps themselves
(fit, record, teacher outputs, distil) are the run session's (:mod:`distil.session`), which every
strategy uses too.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from distil.config import ExperimentConfig, dump_config
from distil.data import Dataset
from distil.engine import distributed
from distil.engine.objective import task_objective
from distil.engine.taps import LOGITS
from distil.errors import ConfigError
from distil.hardware import machine
from distil.session import RunSession, read_summary
from distil.session.checkpoints import check_resume
from distil.strategies import prepare_strategy
from distil.weights import load_weights

STEPS = ("teacher", "scratch", "kd")


class Experiment:
    """The steps of ``distil run`` in order, on a :class:`~distil.session.RunSession`."""

    def __init__(self, session: RunSession, resume: bool = False) -> None:
        self.session = session
        self.config = session.config
        self.resume = resume

    def run(self, steps: Collection[str] = STEPS, methods: Sequence[str] | None = None) -> dict[str, Any]:
        """Run ``steps``; the ``kd`` step distils one student per method (default: the config's method)."""
        cfg, session = self.config, self.session
        # Methods named explicitly (a benchmark) run as presets, adjusted but not extended by distill.terms.
        extend = methods is None
        methods = list(methods or [cfg.distill.method])
        unknown = set(steps) - set(STEPS)
        if unknown:
            raise ValueError(f"unknown steps {sorted(unknown)}; known: {STEPS}")
        if cfg.logging.tensorboard:
            from distil.session.scalars import require_tensorboard

            require_tensorboard()
        started = time.perf_counter()
        # Checked before anything is loaded or written: a refused resume leaves the directory untouched.
        plan = {"steps": [s for s in STEPS if s in steps], "methods": methods if "kd" in steps else []}
        found = check_resume(session.run_dir, dump_config(cfg), plan, session.console) if self.resume else "new"
        if found == "finished":
            return read_summary(session.run_dir.path)
        data = cfg.data.load(cfg.seed)
        augment = cfg.data.augment.build(data)  # before any work: a field for the other kind of data is an error
        if data.paired and getattr(augment, "mixes", False):
            field = "mixup" if cfg.data.augment.mixup else "cutmix"
            raise ConfigError(
                f"data.augment.{field}: {data.name!r} is paired: the teacher sees its own, un-augmented input of each sample, "
                "so it cannot see the student's mixed image (function matching needs the same image for both); turn mixing off"
            )
        if data.paired and cfg.compress is not None and "kd" in steps:
            raise ConfigError(
                f"compress: {data.name!r} is paired (the teacher sees other inputs than the student), which the compression "
                "steps (their recovery KD) do not support yet; remove the compress section"
            )
        described = data.describe()
        if session.dist is not None:
            data = self._shard(data, steps)
        # Build every model before training any, so a bad arch or weights file fails at once.
        # Paired data: the teacher is built, trained and measured on its own inputs (data.for_teacher()).
        teacher = session.build(cfg.teacher, data.for_teacher()) if {"teacher", "kd"} & set(steps) and cfg.teacher is not None else None
        if teacher is not None and cfg.teacher.weights:
            load_weights(teacher, cfg.teacher.weights, cfg.teacher.sha256)
        if {"scratch", "kd"} & set(steps):
            session.build(cfg.student, data)
        strategy = prepare_strategy(session, data, teacher) if "kd" in steps else None
        direct = "kd" in steps and teacher is not None and (strategy is None or getattr(cfg.strategy, "baseline", False))
        objectives = {m: session.objective(session.build(cfg.student, data), teacher, data, method=m, extend=extend) for m in methods} if direct else {}
        if session.writes:
            session.run_dir.start(dump_config(cfg))
        if found == "new":
            session.checkpoints.clear()
        session.checkpoints.start(plan)
        if session.dist is not None:
            session.dist.barrier()  # no rank may look for checkpoints before rank 0 has cleared a new run's old ones
        per_rank = f" ({len(data.train)} per process × {session.dist.world_size})" if session.dist is not None else ""
        unlabeled = f" + {described['sizes']['unlabeled']:,} unlabeled" if "unlabeled" in described["sizes"] else ""
        session.say(f"data: {data.name} train {described['sizes']['train']}{per_rank}{unlabeled} / val {len(data.val)} / test {len(data.test)}, input {data.input_shape}, from {data.source}; device {session.device}")
        if "paired" in described:
            pair = described["paired"]
            derived = f" ({pair['student']['derived']})" if "derived" in pair["student"] else ""
            session.say(f"paired inputs: teacher sees {pair['teacher']['input']} {tuple(pair['teacher']['input_shape'])}, student sees {pair['student']['input']} {tuple(pair['student']['input_shape'])}{derived}")
        if "text" in described:
            text = described["text"]
            what = "tags per word" if text.get("task") == "tag" else "a label per text"
            session.say(f"text ({what}): tokenizer {text['tokenizer']} ({text['vocab_size']:,} tokens), median test sentence {text['median_test_length']} tokens" + (f"; {text['tokens']}" if "tokens" in text else ""))
            if "truncation" in text:
                session.say(f"text: {text['truncation']}")
        data = session.on_device(data)

        if teacher is not None:
            teacher.to(session.device)
            teacher_data = data.for_teacher()
            if cfg.teacher.weights:
                session.record("teacher", "teacher", "loaded", teacher, teacher_data, cfg.teacher, None)
            else:
                result = session.fit("teacher", teacher, teacher_data, task_objective(cfg.teacher.label_smoothing), cfg.teacher, augment)
                session.record("teacher", "teacher", "trained", teacher, teacher_data, cfg.teacher, result)
        if "scratch" in steps:
            student = session.build(cfg.student, data)
            result = session.fit("student_scratch", student, data, task_objective(cfg.student.label_smoothing), cfg.student, augment)
            session.record("student_scratch", "student", "scratch", student, data, cfg.student, result)
        outputs = None
        for method, objective in objectives.items():
            assert teacher is not None
            if outputs is None or outputs.info.get("taps") != sorted(objective.teacher_taps | {LOGITS}):
                outputs = None  # hold one cache at a time: methods with other taps replace it
                outputs = session.teacher_outputs(teacher, objective, data.train, augment)
            student = session.build(cfg.student, data)
            session.distil(f"student_{method}", method, student, cfg.student, teacher, objective, data, augment, outputs=outputs)
        if strategy is not None:
            strategy.run(data, teacher, augment)

        summary = {
            "name": cfg.name,
            "dataset": data.name,
            "data": described,
            "seed": cfg.seed,
            "strategy": cfg.strategy.name,
            "device": str(session.device),
            "command": session.command,
            "machine": machine(),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - started, 2),  # of this process: a resumed run counts from its restart
            "resumed": found == "resume",
            "plan": plan,  # steps and methods: --resume refuses another command's run
            "models": [r.as_dict() for r in session.results],
        }
        if session.dist is not None:
            summary["distributed"] = {**session.dist.describe(), "train_per_rank": len(data.train)}
        if not session.writes:
            return summary
        session.run_dir.write_summary(summary)
        session.checkpoints.clear()  # summary.json now says everything; a resume of a finished run returns it
        # Compression (pruning fine-tunes, int8 calibration, ONNX) runs in rank 0 alone, as one process.
        if cfg.compress is not None and "kd" in steps:
            from distil.compress.pipeline import compress_run

            summary = compress_run(session.run_dir.path, cfg, console=session.console)
        return summary

    def _shard(self, data: Dataset, steps: Collection[str]) -> Dataset:
        """This rank's shard of the training split, after checking that the batches of the models that
        will train divide among the ranks (``batch_size`` is the global batch)."""
        dist, cfg = self.session.dist, self.config
        assert dist is not None
        trains_teacher = "teacher" in steps and cfg.teacher is not None and not cfg.teacher.weights
        if trains_teacher:
            dist.check_batch_size(cfg.teacher.batch_size, "teacher.batch_size")
        if {"scratch", "kd"} & set(steps):
            dist.check_batch_size(cfg.student.batch_size, "student.batch_size")
        return dist.shard_dataset(data, cfg.seed)


def run_experiment(
    config: ExperimentConfig, out: str | Path, steps: Collection[str] = STEPS, console: Console | None = None, methods: Sequence[str] | None = None,
    resume: bool = False, command: str | None = None,
) -> dict[str, Any]:
    """Run ``steps`` of the experiment; returns the summary also written to ``out/summary.json``.

    Under ``torchrun`` every process runs this: each trains on its shard of the training data with
    gradients averaged across processes, and only rank 0 prints and writes ``out``. ``resume``
    continues an interrupted run in ``out`` from its checkpoints (see :mod:`distil.session.checkpoints`).
    ``command`` is what the summary records as the command that made the run (default: this process's).
    """
    if "scratch" in steps and not config.scratch:
        steps = [s for s in steps if s != "scratch"]
    with distributed.process_group(config.device) as dist:
        return Experiment(RunSession(config, out, console=console, command=command, dist=dist), resume=resume).run(steps, methods)
