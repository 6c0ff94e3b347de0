"""What the server serves: :class:`ServedModel` (a backend plus what a client needs to know about it).

:func:`load_models` reads a run directory or a bare ``.onnx`` file:

* **run directory** (``distil run``'s output): input shape, class names and normalization come from
  ``summary.json``'s ``data``; the student is the distilled one (else the scratch one). With the
  ``onnxruntime`` runtime an ``.onnx`` file under ``RUN_DIR/compressed/`` is preferred (the fp32
  ``student*.onnx``); without one the student is rebuilt from ``config.yaml`` and its safetensors
  weights and exported to a temporary ONNX file (:func:`export_onnx`), whose outputs are checked
  against PyTorch's; if that is not possible the PyTorch module itself is served, and the model
  metadata says so. The teacher, when ``teacher.safetensors`` exists, is served too, as ``teacher``.
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
from distil.serve.backends import Backend, OnnxBackend, TorchBackend

log = logging.getLogger("distil.serve")

RUNTIMES = ("onnxruntime", "torch")


@dataclass
class ServedModel:
    """A model as the server sees it: a backend, class names, and the normalization of its inputs."""

    name: str
    backend: Backend
    class_names: tuple[str, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    role: str = "student"
    info: dict[str, Any] = field(default_factory=dict)  # arch, method, accuracy, source, ...

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.backend.input_shape

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def metadata(self) -> dict[str, Any]:
        """The OIP model-metadata response, with distil's own facts under ``parameters``."""
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": self.backend.platform,
            "inputs": [{"name": self.backend.input_name, "datatype": "FP32", "shape": [-1, *self.input_shape]}],
            "outputs": [
                {"name": "logits", "datatype": "FP32", "shape": [-1, self.num_classes]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, self.num_classes]},
            ],
            "parameters": {
                "runtime": self.backend.name,
                "role": self.role,
                "class_names": list(self.class_names),
                "mean": list(self.mean),
                "std": list(self.std),
                **self.info,
            },
        }


def load_models(target: str | Path, runtime: str = "onnxruntime", name: str = "student") -> list[ServedModel]:
    """The models to serve from a run directory or an ``.onnx`` file; the first is the main one."""
    if runtime not in RUNTIMES:
        raise ModelError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    path = Path(target)
    if path.is_dir():
        return _from_run_dir(path, runtime, name)
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
    classes = _probe(backend)
    class_names = tuple(str(c) for c in meta.get("class_names", range(classes)))
    if len(class_names) != classes:
        raise ModelError(f"{path}: the model has {classes} outputs but its sidecar names {len(class_names)} classes")
    return ServedModel(
        name, backend, class_names, tuple(meta.get("mean", ())), tuple(meta.get("std", ())), "student", {"source": str(path)}
    )


def _from_run_dir(run: Path, runtime: str, name: str) -> list[ServedModel]:
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        raise ModelError(f"{run}: no summary.json; serve a finished run directory (`distil run ... --out {run}`) or an .onnx file")
    try:
        summary = json.loads(summary_path.read_text())
        data = summary["data"]
        # rows of other runtimes (distil compress adds ONNX rows) are found through compressed/ instead
        rows = {m["name"]: m for m in summary.get("models", []) if str(m.get("weights", "")).endswith(".safetensors")}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"{summary_path}: not a distil run summary ({err})") from None
    students = [m for m in rows.values() if m.get("role") == "student" and m.get("method") != "scratch"] or [
        m for m in rows.values() if m.get("role") == "student"
    ]
    if not students:
        raise ModelError(f"{run}/summary.json lists no student model")
    student = students[-1]
    if "text" in data:
        raise ModelError(f"{run}: a text run; `distil serve` takes image and signal runs for now (serving text — tokenizer in the server, BYTES inputs — is issue #15)")
    common = {"class_names": tuple(data["class_names"]), "mean": tuple(data["mean"]), "std": tuple(data["std"])}
    shape = tuple(data["input_shape"])
    served = [_run_model(run, name, "student", student, shape, runtime, common)]
    if "teacher" in rows and (run / rows["teacher"]["weights"]).is_file():
        if name == "teacher":
            raise ModelError("--model-name teacher clashes with the run's teacher, served as 'teacher'; choose another name")
        served.append(_run_model(run, "teacher", "teacher", rows["teacher"], shape, runtime, common))
    return served


def _run_model(run: Path, name: str, role: str, row: dict[str, Any], shape: tuple[int, ...], runtime: str, common: dict) -> ServedModel:
    info = {k: row[k] for k in ("arch", "method", "accuracy", "params") if k in row} | {"source": str(run)}
    backend: Backend | None = None
    if runtime == "onnxruntime":
        onnx_file = compressed_onnx(run, role)
        if onnx_file is not None:
            backend, info["weights"] = OnnxBackend(onnx_file), str(onnx_file)
    if backend is None:
        model = _rebuild(run, role, row, shape)
        info["weights"] = str(run / row["weights"])
        backend = TorchBackend(model, shape)
        if runtime == "onnxruntime":
            exported = export_onnx(model, shape)
            if exported is not None:
                backend = exported
                info["exported"] = "torch.onnx.export at start-up, outputs checked against PyTorch"
            else:
                info["fallback"] = "no ONNX file and the export failed or is unavailable: serving PyTorch eager"
    if _probe(backend) != len(common["class_names"]):
        raise ModelError(f"{name}: the model's outputs do not match the run's {len(common['class_names'])} classes")
    return ServedModel(name, backend, role=role, info=info, **common)


def compressed_onnx(run: Path, role: str) -> Path | None:
    """The ONNX file ``distil compress`` left for ``role``: the fp32 one when there are several."""
    files = sorted((run / "compressed").glob(f"{role}*.onnx"))
    if not files:
        return None
    plain = [f for f in files if not any(tag in f.stem for tag in ("int8", "fp16", "quant", "pruned"))]
    return (plain or files)[0]


def _rebuild(run: Path, role: str, row: dict[str, Any], shape: tuple[int, ...]):
    import yaml

    from distil.config import validate_config
    from distil.models import build_model
    from distil.weights import load_weights

    config = validate_config(yaml.safe_load((run / "config.yaml").read_text()), source=str(run / "config.yaml"))
    cfg = config.teacher if role == "teacher" else config.student
    data = json.loads((run / "summary.json").read_text())["data"]
    model = build_model(cfg.arch, input_shape=shape, num_classes=data["num_classes"], **cfg.kwargs)
    return load_weights(model, run / row["weights"], row.get("sha256"))


def export_onnx(model, input_shape: tuple[int, ...]) -> OnnxBackend | None:
    """``model`` exported to a temporary ONNX file with a dynamic batch axis, or None when that fails.

    Written by the compress package's exporter. The exported graph must reproduce
    PyTorch's logits on a probe batch (atol 1e-4), else it is not used.
    """
    import torch

    from distil.compress.export import export_onnx as write_onnx

    probe = torch.randn(4, *input_shape, generator=torch.Generator().manual_seed(0))
    path = Path(tempfile.mkdtemp(prefix="distil-serve-")) / "model.onnx"
    try:
        with torch.inference_mode():
            expected = model(probe).numpy()
        # The TorchScript exporter: fast at start-up and needs no onnxscript; compress uses the dynamo one.
        write_onnx(model, tuple(input_shape), path, exporter="torchscript")
        backend = OnnxBackend(path)
        if not np.allclose(backend.predict(probe.numpy()), expected, atol=1e-4):
            log.warning("ONNX export differs from PyTorch; serving PyTorch")
            return None
        return backend
    except Exception as err:  # noqa: BLE001  any exporter failure means: serve PyTorch instead
        log.warning("ONNX export failed (%s); serving PyTorch", err)
        return None


def _probe(backend: Backend) -> int:
    """Run one zero batch through ``backend`` (a broken model fails at start-up) and return K."""
    out = backend.predict(np.zeros((1, *backend.input_shape), dtype=np.float32))
    if out.ndim != 2:
        raise ModelError(f"the model returns an output of shape {out.shape}; expected logits (N, K)")
    return int(out.shape[1])
