"""What the server serves: :class:`ServedModel` (a backend plus what a client needs to know about it).

:func:`load_models` reads a run directory or a bare ``.onnx`` file:

* **run directory** (``distil run``'s output): input shape, class names and normalization come from
  ``summary.json``'s ``data``; the student is the row that :func:`~distil.serve.selection.choose_row`
  picks — by default the fastest servable student row at batch 1 (ONNX rows first) within 0.5 point
  of the best student, or ``row`` by name — and the model reports that row's own numbers. An ONNX row
  is served from its file; a run's own ``.safetensors`` student is rebuilt from ``config.yaml`` and,
  with the ``onnxruntime`` runtime, exported to a temporary ONNX file (:func:`export_onnx`) whose
  outputs are checked against PyTorch's; if that is not possible the PyTorch module itself is served,
  and the model metadata says so. The teacher, when ``teacher.safetensors`` exists, is served too, as
  ``teacher`` (from ``compressed/teacher*.onnx`` when compress made one). Promoted versions
  (``RUN/versions/N``, ``distil loop``) are served by :func:`version_model` (see watch.py).
* **text runs** (``summary.json``'s ``data`` has ``text``): the model's input is a
  :class:`~distil.serve.inputs.TextInput` — BYTES strings, tokenized in the server with the run's
  tokenizer (its tokenizer.json checked against the run's sha256; see :mod:`distil.serve.text_runs`).
  The ONNX export is traced on real encoded sentences and checked by the exporter at a second batch
  and length; a graph that cannot take any length is not used, and PyTorch serves.
* **MODEL.onnx**: metadata from a JSON sidecar (``MODEL.json`` or ``MODEL.onnx.json``, the keys of
  ``summary.json``'s ``data``) when present, else the shape from the graph and classes ``"0".."K-1"``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from distil.errors import ModelError
from distil.serve.audio import AudioInput, audio_input
from distil.serve.backends import Backend, OnnxBackend, TorchBackend
from distil.serve.inputs import Batch, Limits, TensorInput, TextInput
from distil.serve.selection import Selection, choose_row, servable
from distil.serve.text_runs import text_input, vocabulary_args
from distil.session.versions import Version

log = logging.getLogger("distil.serve")

RUNTIMES = ("onnxruntime", "torch")
OUTPUTS = ("logits", "probabilities")


@dataclass
class ServedModel:
    """A model as the server sees it: a backend, class names, and its input (what requests hold and how
    they become a batch: an FP32 tensor normalized with ``mean``/``std``, or text and its tokenizer).

    Without ``input``, the input is an FP32 tensor of the backend's ``input_name`` and ``input_shape``.
    """

    name: str
    backend: Backend
    class_names: tuple[str, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    role: str = "student"
    info: dict[str, Any] = field(default_factory=dict)  # arch, method, accuracy, source, ...
    input: TensorInput | TextInput | AudioInput | None = None
    version: str = "1"  # the OIP model version: 1 is the run's own model, 2, 3, ... distil loop's promotions

    def __post_init__(self) -> None:
        if self.input is None:
            self.input = TensorInput(self.backend.input_name, getattr(self.backend, "input_shape", ()), self.mean, self.std)

    @property
    def inputs(self) -> TensorInput | TextInput | AudioInput:
        """The model's input (never None after construction)."""
        assert self.input is not None
        return self.input

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape (``()`` for text: a string)."""
        return self.inputs.shape

    @property
    def is_text(self) -> bool:
        return isinstance(self.input, TextInput)

    @property
    def tags_words(self) -> bool:
        """Whether the model is a tagger: logits ``(N, L, K)``, a class (tag) per word."""
        return isinstance(self.input, TextInput) and self.input.tags_words

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The OIP outputs: logits and probabilities; taggers add ``tags``, one class name per word."""
        return OUTPUTS + (("tags",) if self.tags_words else ())

    def outputs(self, batch: Batch, logits: np.ndarray) -> dict[str, np.ndarray]:
        """The OIP output tensors of ``logits`` (``batch``'s); a tagger's ``tags`` are ``(N, W)`` strings, padded with ""."""
        tensors = {"logits": logits, "probabilities": softmax(logits)}
        if self.tags_words:
            tags = word_tags(batch, tensors["probabilities"])
            table = np.full((len(tags), max(len(t) for t in tags)), "", dtype=object)
            for i, row in enumerate(tags):
                table[i, : len(row)] = [self.class_names[k] for k, _ in row]
            tensors["tags"] = table
        return tensors

    def metadata(self) -> dict[str, Any]:
        """The OIP model-metadata response, with distil's own facts under ``parameters``."""
        return {
            "name": self.name,
            "versions": [self.version],  # the app lists every version of the name
            "platform": self.backend.platform,
            "inputs": [self.inputs.metadata()],
            "outputs": self._output_metadata(),
            "parameters": {
                "runtime": self.backend.name,
                "role": self.role,
                "class_names": list(self.class_names),
                "mean": list(self.mean),
                "std": list(self.std),
                **({"text": self.inputs.description} if isinstance(self.input, TextInput) else {}),
                **({"audio": self.inputs.description} if isinstance(self.input, AudioInput) else {}),
                **self.info,
            },
        }


    def _output_metadata(self) -> list[dict[str, Any]]:
        per_sample = [-1, self.num_classes] if self.tags_words else [self.num_classes]  # taggers: a row per token
        entries = [{"name": n, "datatype": "FP32", "shape": [-1, *per_sample]} for n in OUTPUTS]
        if self.tags_words:
            entries.append({"name": "tags", "datatype": "BYTES", "shape": [-1, -1]})
        return entries


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis of ``logits`` (classes), as float32: what /v2 infer and /predict report."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def word_tags(batch: Batch, probabilities: np.ndarray) -> list[list[tuple[int, float]]]:
    """Per text of a tagger's batch, per word: the class (tag) index and probability at the word's token."""
    assert batch.positions is not None, "a tagger's batch carries the token position of each word"
    out = []
    for row, positions in zip(probabilities, batch.positions):
        picked = row[positions] if positions else np.zeros((0, row.shape[-1]), np.float32)
        out.append([(int(p.argmax()), float(p.max())) for p in picked])
    return out


def load_models(target: str | Path, runtime: str = "onnxruntime", name: str = "student", row: str | None = None) -> list[ServedModel]:
    """The models to serve from a run directory or an ``.onnx`` file; the first is the main one.

    The student row of a run is chosen by :func:`~distil.serve.selection.choose_row` (the stated rule,
    or ``row`` by name); its own numbers are what the model reports."""
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    path = Path(target)
    if path.is_dir():
        return _from_run_dir(path, runtime, name, row)
    if path.is_file() and path.suffix == ".onnx":
        return [_from_onnx_file(path, name)]
    raise ModelError(f"{path}: expected a run directory (with summary.json) or an .onnx file")


def _from_onnx_file(path: Path, name: str) -> ServedModel:
    backend = OnnxBackend(path)
    meta: dict[str, Any] = {}
    for sidecar in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise ModelError(f"{sidecar}: not readable as JSON ({err})") from None
            meta = meta.get("data", meta)
            break
    model_input: TensorInput | TextInput
    if isinstance(meta.get("text"), dict):  # a text model: the sidecar names its tokenizer
        model_input = text_input(meta["text"], str(path))
        if not backend.graph_input.takes_any_length:
            raise ModelError(f"{path}: a text model (its sidecar names a tokenizer) must take int64 ids (N, L) of any L; the graph's input is {backend.input_type} {backend.input_shape}")
    else:
        if any(d < 0 for d in backend.input_shape):
            raise ModelError(f"{path}: input {backend.input_name!r} has shape {backend.input_shape}; every axis but the batch must be fixed (or give a sidecar naming the tokenizer of a text model)")
        model_input = TensorInput(backend.input_name, backend.input_shape, tuple(meta.get("mean", ())), tuple(meta.get("std", ())))
    classes = _probe(backend, model_input)
    class_names = tuple(str(c) for c in meta.get("class_names", range(classes)))
    if len(class_names) != classes:
        raise ModelError(f"{path}: the model has {classes} outputs but its sidecar names {len(class_names)} classes")
    return ServedModel(name, backend, class_names, model_input.mean, model_input.std, "student", {"source": str(path)}, model_input)


def _from_run_dir(run: Path, runtime: str, name: str, wanted: str | None = None) -> list[ServedModel]:
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        raise ModelError(f"{run}: no summary.json; serve a finished run directory (`distil run ... --out {run}`) or an .onnx file")
    try:
        summary = json.loads(summary_path.read_text())
        data = summary["data"]
        models = [m for m in summary.get("models", []) if isinstance(m, dict) and "name" in m]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{summary_path}: not a distil run summary ({err})") from None
    selection = choose_row(run, models, runtime, wanted)
    shape = tuple(data["input_shape"])
    text = data.get("text")
    # one input for both models: the tokenizer is loaded once and student and teacher read the same ids
    model_input: TensorInput | TextInput | AudioInput
    if text is not None:
        model_input = text_input(text, str(run))
    else:  # an audio run (spoken_words) takes waveforms and computes its features; any other run, tensors
        model_input = audio_input(run, data) or TensorInput("input", shape, tuple(data["mean"]), tuple(data["std"]))
    common = {"class_names": tuple(data["class_names"]), "mean": model_input.mean, "std": model_input.std, "input": model_input}
    rows = {m["name"]: m for m in models}
    served = [_run_model(run, name, "student", selection, shape, runtime, common, rows)]
    teacher = rows.get("teacher")
    if "paired" in data:  # the teacher takes another input (another modality) than the one a request carries
        log.info("%s: paired data (the teacher sees %s); serving the student only", run, data["paired"]["teacher"]["input"])
    elif teacher is not None and (run / teacher["weights"]).is_file():
        if name == "teacher":
            raise ModelError("--model-name teacher clashes with the run's teacher, served as 'teacher'; choose another name")
        served.append(_run_model(run, "teacher", "teacher", Selection(teacher, "the run's teacher"), shape, runtime, common, rows))
    return served


def _run_model(
    run: Path, name: str, role: str, selection: Selection, shape: tuple[int, ...], runtime: str, common: dict, rows: dict[str, dict]
) -> ServedModel:
    """The model of ``selection``'s row: its ONNX file, or its safetensors rebuilt (and exported when ONNX Runtime serves)."""
    row = selection.row
    model_input: TensorInput | TextInput | AudioInput = common["input"]
    backend: Backend | None = None
    if str(row["weights"]).endswith(".onnx"):
        candidate = OnnxBackend(run / row["weights"])
        if not isinstance(model_input, TextInput) or candidate.graph_input.takes_any_length:
            backend = candidate
        elif row.get("source") in rows and servable(run, rows[row["source"]], "torch"):  # a text graph of one fixed length: serve the row it was made from
            log.warning("%s takes %s %s, not token ids of any length; serving %s", row["weights"], candidate.input_type, candidate.input_shape, row["source"])
            selection = Selection(rows[row["source"]], f"{selection.reason}; {row['name']} takes one fixed length", selection.best)
            row = selection.row
        else:
            raise ModelError(f"{run / row['weights']}: a text model must take token ids of any length")
    card = selection.card()
    card["measured_runtime"] = card.pop("runtime", None)
    info = {**card, "source": str(run)}
    if backend is not None:
        info["weights"] = str(run / row["weights"])
    elif role == "teacher" and runtime == "onnxruntime" and (onnx_file := compressed_onnx(run, role)) is not None:
        candidate = OnnxBackend(onnx_file)
        if not isinstance(model_input, TextInput) or candidate.graph_input.takes_any_length:
            backend, info["weights"] = candidate, str(onnx_file)
        else:
            log.warning("%s takes %s %s, not token ids of any length; not used", onnx_file, candidate.input_type, candidate.input_shape)
    if backend is None:
        model = rebuild_model(run, role, row, shape)
        info["weights"] = str(run / row["weights"])
        backend = TorchBackend(model, shape)
        if runtime == "onnxruntime":
            exported = export_onnx(model, model_input if isinstance(model_input, TextInput) else shape)
            if exported is not None:
                backend = exported
                info["exported"] = "torch.onnx.export at start-up, outputs checked against PyTorch"
            else:
                info["fallback"] = "no ONNX file and the export failed or is unavailable: serving PyTorch eager"
    if _probe(backend, model_input) != len(common["class_names"]):
        raise ModelError(f"{name}: the model's outputs do not match the run's {len(common['class_names'])} classes")
    return ServedModel(name, backend, role=role, info=info, **common)


def version_model(base: ServedModel, version: Version) -> ServedModel:
    """A promoted version (``RUN/versions/N``, :mod:`distil.session.versions`) of ``base``: its ONNX file
    with ``base``'s input (a text model's tokenizer is shared) and classes, reporting its own summary row and the comparison that promoted it."""
    backend = OnnxBackend(version.onnx)
    if base.is_text and not backend.graph_input.takes_any_length:
        raise ModelError(f"{version.onnx}: a text model must take token ids of any length; the graph's input is {backend.input_type} {backend.input_shape}")
    if _probe(backend, base.inputs) != base.num_classes:
        raise ModelError(f"{version.onnx}: the model's outputs do not match the {base.num_classes} classes of {base.name!r}")
    row = version.row
    card = Selection(row, f"distil loop promotion: version {version.number}").card()
    card["measured_runtime"] = card.pop("runtime", None)
    info = {**card, "feedback_accuracy": row.get("feedback_accuracy"), "loop": version.summary.get("loop"), "source": str(version.folder), "weights": str(version.onnx)}
    return ServedModel(base.name, backend, base.class_names, base.mean, base.std, base.role, info, base.inputs, version=str(version.number))


def compressed_onnx(run: Path, role: str) -> Path | None:
    """The ONNX file ``distil compress`` left for ``role``: the fp32 one when there are several."""
    exact = run / "compressed" / f"{role}.onnx"  # the model itself, exported: what its row measured
    if exact.is_file():
        return exact
    files = sorted((run / "compressed").glob(f"{role}*.onnx"))
    if not files:
        return None
    plain = [f for f in files if not any(tag in f.stem for tag in ("int8", "fp16", "quant", "pruned", "lowrank"))]
    return (plain or files)[0]


def rebuild_model(run: Path, role: str, row: dict[str, Any], shape: tuple[int, ...]):
    """The run's ``role`` model built from ``config.yaml`` (a text model with the vocabulary of its weights) and loaded."""
    import yaml

    from distil.config import validate_config
    from distil.models import build_model
    from distil.weights import load_weights

    config = validate_config(yaml.safe_load((run / "config.yaml").read_text()), source=str(run / "config.yaml"))
    cfg = config.teacher if role == "teacher" else config.student
    data = json.loads((run / "summary.json").read_text())["data"]
    weights = run / row["weights"]
    text_args = vocabulary_args(weights, data["text"]) if "text" in data else {}
    model = build_model(cfg.arch, input_shape=shape, num_classes=data["num_classes"], **text_args, **cfg.kwargs)
    return load_weights(model, weights, row.get("sha256"))


def export_onnx(model, model_input: tuple[int, ...] | TextInput) -> OnnxBackend | None:
    """``model`` exported to a temporary ONNX file with a dynamic batch axis, or None when that fails.

    ``model_input``: the per-sample shape of a tensor model, or a text model's input. The compress
    package's exporter does the export and the check (:func:`distil.compress.export.export_onnx` with
    ``atol``): traced on an example — :data:`PROBE_TEXTS` encoded by the run's tokenizer (a padded
    batch of real sentences), or a seeded random batch — whose outputs must reproduce PyTorch's
    (atol 1e-4), and for text also at another batch and length (the graph must take any length);
    else the file is not used.
    """
    import torch

    from distil.compress.export import export_onnx as write_onnx

    if isinstance(model_input, TextInput):
        example = torch.from_numpy(model_input.encode(PROBE_TEXTS, Limits()).x)
        shape: tuple[int, ...] = (int(model_input.description.get("max_length", example.shape[1])),)
    else:
        shape = tuple(model_input)
        example = torch.randn(4, *shape, generator=torch.Generator().manual_seed(0))
    path = Path(tempfile.mkdtemp(prefix="distil-serve-")) / "model.onnx"
    try:
        # The TorchScript exporter: fast at start-up and needs no onnxscript; compress uses the dynamo one.
        write_onnx(model, shape, path, exporter="torchscript", example=example, atol=1e-4)
        return OnnxBackend(path)
    except Exception as err:  # noqa: BLE001  any exporter failure means: serve PyTorch instead
        log.warning("ONNX export failed (%s); serving PyTorch", err)
        return None


#: Sentences whose ids an exported text model is traced on and checked with: one padded batch of several lengths.
PROBE_TEXTS = (
    "a short probe",
    "a probe sentence",
    "a longer probe sentence, with more words in it than the others",
    "and one more",
)


def _probe(backend: Backend, model_input: TensorInput | TextInput | AudioInput) -> int:
    """Run the input's probe batch through ``backend`` (a broken model fails at start-up) and return K."""
    batch = model_input.probe()
    out = backend.predict(batch.x)
    token_rows = isinstance(model_input, TextInput) and model_input.tags_words
    if out.ndim != (3 if token_rows else 2) or len(out) != len(batch):
        expected = "(N, L, K): a tagger's row per token" if token_rows else "logits (N, K)"
        raise ModelError(f"the model returns an output of shape {out.shape}; expected {expected}")
    return int(out.shape[-1])
