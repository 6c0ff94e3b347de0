"""Teachable mode (``distil serve RUN --teachable``): a person names classes, gives a few examples, presses
Train; knowledge moves by frozen parameters, and a small student is served.

The job (:class:`TeachJob`, one at a time, in a background thread) has four stages:

1. **embedding** — the run's teacher, frozen, embeds every example: the input of its last
   ``nn.Linear`` (:func:`distil.engine.probe.embeddings`);
2. **head** — a linear head on those features (multinomial logistic regression, L-BFGS;
   :func:`~distil.engine.probe.fit_linear_probe`) is installed as the teacher's new classifier:
   teacher + head is the new task's teacher (seconds);
3. **distil** — a small CNN student learns it: the examples, each also shifted by up to ``shift``
   pixels (``views`` copies, seeded), are labelled by the new teacher (exact cache) and the student
   trains on ``0.9 · KD(T=4) + 0.1 · CE`` (Hinton et al. 2015) for ``epochs``; progress per epoch;
4. **export** — ONNX (checked against PyTorch), then served as the model ``teachable``; each Train
   that finishes is a new version of it (OIP versions, newest by default).

Everything a person sends is checked: 2..N distinct class names, examples that are images (415),
labels that are classes (422), a Train with no examples or a class without one (422), one example
for a class (allowed, with a warning), a second Train while one runs (409).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distil.serve.protocol import InferError

log = logging.getLogger("distil.serve")

MAX_CLASSES = 20
MAX_EXAMPLES = 2000


@dataclass(frozen=True)
class TeachSettings:
    student: dict[str, Any] = field(default_factory=lambda: {"widths": [8, 16, 32], "convs_per_stage": 1})
    epochs: int = 15
    views: int = 16  # shifted copies of each example the student learns from
    shift: int = 2  # pixels
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0


@dataclass
class Status:
    state: str = "idle"  # idle | training | ready | failed
    stage: str = ""
    progress: float = 0.0
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    version: str | None = None
    head_accuracy: float | None = None
    student_accuracy: float | None = None
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Teachable:
    """The classes and examples a person gave, and the one training job (state for the teachable routes)."""

    def __init__(self, teacher, input_shape: tuple[int, ...], mean: tuple[float, ...], std: tuple[float, ...], settings: TeachSettings | None = None) -> None:
        self.teacher = teacher.eval()
        self.input_shape = tuple(input_shape)
        self.mean, self.std = tuple(mean), tuple(std)
        self.settings = settings or TeachSettings()
        self.classes: tuple[str, ...] = ()
        self.examples: list[tuple[np.ndarray, int]] = []  # raw (C, H, W) in [0, 1], class index
        self.status = Status()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="distil-teachable-"))

    @property
    def running(self) -> bool:
        return self.status.state == "training"

    def set_classes(self, names: object) -> tuple[str, ...]:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InferError('expected {"classes": ["name", "name", ...]}', 422)
        cleaned = [n.strip() for n in names]
        if not 2 <= len(cleaned) <= MAX_CLASSES or any(not n for n in cleaned) or len(set(cleaned)) != len(cleaned):
            raise InferError(f"name between 2 and {MAX_CLASSES} classes, each non-empty and different; got {names}", 422)
        with self._lock:
            if self.running:
                raise InferError("a training job is running; wait for it before changing the classes", 409)
            self.classes, self.examples = tuple(cleaned), []
        return self.classes

    def add_example(self, raw: np.ndarray, label: str) -> dict[str, int]:
        """Keep one example (raw scale, ``input_shape``) of ``label``; returns the count per class."""
        if not self.classes:
            raise InferError("name the classes first (POST /teach/classes)", 409)
        if label not in self.classes:
            raise InferError(f"unknown class {label!r}; the classes are: {', '.join(self.classes)}", 422)
        with self._lock:
            if len(self.examples) >= MAX_EXAMPLES:
                raise InferError(f"at most {MAX_EXAMPLES} examples are kept", 413)
            self.examples.append((raw.astype(np.float32).reshape(self.input_shape), self.classes.index(label)))
        return self.counts()

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(self.classes, 0)
        for _, k in self.examples:
            found[self.classes[k]] += 1
        return found

    def start(self, serve) -> Status:
        """Check the examples and start the job (``serve(model_path, classes, info)`` serves its result)."""
        with self._lock:
            if self.running:
                raise InferError("a training job is running already; wait for it (GET /teach/status)", 409)
            counts = self.counts()
            if not self.examples:
                raise InferError("there are no examples to learn from: add at least one image per class", 422)
            empty = [c for c, n in counts.items() if n == 0]
            if empty:
                raise InferError(f"class {', '.join(map(repr, empty))} has no examples: add at least one image of each class", 422)
            warnings = [f"class {c!r} has one example: the model will know it poorly" for c, n in counts.items() if n == 1]
            self.status = Status("training", "embedding", 0.0, "starting", warnings)
            examples, classes = list(self.examples), self.classes
            self._thread = threading.Thread(target=self._run, args=(examples, classes, serve), daemon=True, name="teachable-job")
            self._thread.start()
            return self.status

    def _run(self, examples, classes, serve) -> None:
        start = time.perf_counter()
        try:
            path, info = self._train(examples, classes)
            self.status.stage, self.status.progress = "serving", 1.0
            version = serve(path, classes, info)
            self.status.version = version
            self.status.seconds = round(time.perf_counter() - start, 2)
            self.status.state, self.status.message = "ready", f"version {version} is served as 'teachable'"
        except Exception as err:
            log.exception("teachable job failed")
            self.status.state, self.status.message = "failed", f"{type(err).__name__}: {err}"

    def _train(self, examples, classes) -> tuple[Path, dict[str, Any]]:
        import torch

        from distil.compress.export import export_onnx
        from distil.data import Split
        from distil.engine.objective import build_objective
        from distil.engine.probe import embeddings, fit_linear_probe, install_probe
        from distil.engine.teacher_outputs import CacheSettings, teacher_outputs
        from distil.engine.trainer import TrainSettings, fit
        from distil.losses import CE, KD
        from distil.models import build_model
        from distil.strategies.frozen_backbone import last_linear, with_new_head

        s = self.settings
        k = len(classes)
        raw = np.stack([x for x, _ in examples])
        y = torch.tensor([label for _, label in examples])
        x = torch.from_numpy(self._normalize(raw))

        self.status.stage, self.status.progress = "embedding", 0.05
        features = embeddings(self.teacher, x)
        self.status.stage, self.status.progress = "head", 0.1
        head_teacher = with_new_head(self.teacher, last_linear(self.teacher), k, who="teachable").eval()
        fitted = fit_linear_probe(features, y, k)
        install_probe(head_teacher, fitted)
        head_teacher.requires_grad_(False)
        self.status.head_accuracy = fitted.accuracy(features, y)

        self.status.stage, self.status.progress = "distil", 0.15
        views, view_y = self._views(x, y)
        train = Split(views, view_y)
        student = build_model("cnn", input_shape=self.input_shape, num_classes=k, seed=s.seed, **s.student)
        objective = build_objective([KD(T=4.0) * 0.9, CE() * 0.1], student, head_teacher, views[:8], n_data=len(train), seed=s.seed)
        targets = teacher_outputs(head_teacher, views, None, objective.teacher_taps, settings=CacheSettings(store=False, seed=s.seed),
                                  temperature=objective.temperature, exact_logits=objective.needs_exact_logits)  # fmt: skip

        def progress(record) -> None:
            self.status.progress = 0.15 + 0.75 * (record.epoch + 1) / s.epochs
            self.status.message = f"epoch {record.epoch + 1}/{s.epochs}, loss {record.loss:.3f}"

        settings = TrainSettings(epochs=s.epochs, batch_size=s.batch_size, optimizer="sgd", lr=s.lr, weight_decay=5e-4, schedule="cosine")
        fit(student, train, Split(x, y), objective, settings, seed=s.seed, teacher=targets, on_epoch=progress)
        student.eval()
        with torch.inference_mode():
            self.status.student_accuracy = float((student(x).argmax(1) == y).float().mean())

        self.status.stage, self.status.progress = "export", 0.95
        path = self.folder / f"teachable-{int(time.time() * 1000)}.onnx"
        export_onnx(student, self.input_shape, path, exporter="torchscript", atol=1e-4)
        info = {"method": "teachable: linear head on the frozen teacher's embedding, distilled into a small CNN", "arch": "cnn",
                "params": sum(p.numel() for p in student.parameters()), "size_bytes": path.stat().st_size, "examples": len(examples),
                "head_accuracy_on_examples": self.status.head_accuracy, "accuracy_on_examples": self.status.student_accuracy}  # fmt: skip
        return path, info

    def _normalize(self, raw: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (raw.ndim - 2)
        return ((raw - np.asarray(self.mean, np.float32).reshape(shape)) / np.asarray(self.std, np.float32).reshape(shape)).astype(np.float32)

    def _views(self, x, y):
        """``views`` copies of every example, each shifted by a seeded offset of up to ``shift`` pixels (the first unshifted)."""
        import torch

        s = self.settings
        generator = torch.Generator().manual_seed(s.seed)
        parts = [x]
        for _ in range(s.views - 1):
            dy, dx = (int(v) for v in torch.randint(-s.shift, s.shift + 1, (2,), generator=generator))
            parts.append(torch.roll(x, shifts=(dy, dx), dims=(-2, -1)))
        return torch.cat(parts), y.repeat(s.views)


def teachable_from_run(run: str | Path, settings: TeachSettings | None = None) -> Teachable:
    """Teachable mode on a run directory: its teacher (rebuilt from config.yaml, PyTorch) is the frozen
    backbone, its data's input shape and normalization are the examples'."""
    import json

    from distil.errors import ModelError
    from distil.serve.repository import rebuild_model

    run = Path(run)
    try:
        summary = json.loads((run / "summary.json").read_text())
        data = summary["data"]
        teacher_row = next(m for m in summary["models"] if m.get("name") == "teacher")
    except (OSError, ValueError, KeyError, StopIteration) as err:
        raise ModelError(f"{run}: teachable mode needs a finished image run with a teacher ({err})") from None
    shape = tuple(data["input_shape"])
    if "text" in data or len(shape) != 3:
        raise ModelError(f"{run}: teachable mode takes images; the run's inputs are {list(shape)}")
    teacher = rebuild_model(run, "teacher", teacher_row, shape)
    return Teachable(teacher, shape, tuple(data["mean"]), tuple(data["std"]), settings)


#: The backbone of `distil serve --teachable` without a run: the demo's teacher (weights shipped beside it).
DEFAULT_CONFIG = Path("configs/fashion_mnist/demo.yaml")


def teachable_from_config(config: str | Path = DEFAULT_CONFIG, settings: TeachSettings | None = None) -> Teachable:
    """Teachable mode on an experiment config whose teacher has ``weights``: that teacher is the frozen
    backbone; the config's data give the input shape and the normalization (its training split's)."""
    from distil.config import load_config
    from distil.errors import ConfigError
    from distil.weights import load_weights

    cfg = load_config(Path(config), [])
    if not cfg.teacher.weights:
        raise ConfigError(f"{config}: teacher.weights is not set; teachable mode needs a trained teacher as its backbone")
    data = cfg.data.load(cfg.seed)
    if data.text is not None or len(data.input_shape) != 3:
        raise ConfigError(f"{config}: teachable mode takes images; the data's inputs are {list(data.input_shape)}")
    teacher = load_weights(cfg.teacher.build(data, cfg.seed), cfg.teacher.weights, cfg.teacher.sha256)
    return Teachable(teacher, tuple(data.input_shape), tuple(data.mean), tuple(data.std), settings)
