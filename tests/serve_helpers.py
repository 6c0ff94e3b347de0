"""Shared by the serve tests: a tiny finished run on digits, and a real uvicorn server in a thread."""

from __future__ import annotations

import atexit
import functools
import io
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import uvicorn
from PIL import Image

from distil.config import validate_config
from distil.experiment import run_experiment
from distil.models import build_model
from distil.weights import load_weights

TINY = {
    "name": "tiny-serve",
    "seed": 0,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [64]}, "epochs": 1, "batch_size": 64, "lr": 0.1},
    "student": {"arch": "mlp", "kwargs": {"hidden": [16]}, "epochs": 1, "batch_size": 64, "lr": 0.1},
    "scratch": False,
    "device": "cpu",
    "measure": {"latency_repeats": 1, "throughput_repeats": 1},
}


@functools.cache
def tiny_run() -> Path:
    """A finished run directory (teacher trained, student distilled), made once per test session."""
    from rich.console import Console

    out = Path(tempfile.mkdtemp(prefix="distil-serve-test-")) / "run"
    atexit.register(shutil.rmtree, out.parent, True)
    run_experiment(validate_config(TINY), out, console=Console(quiet=True))
    return out


def local_model(run: Path, role: str = "student") -> torch.nn.Module:
    """The run's model rebuilt in PyTorch: what "running the model locally" means."""
    cfg = validate_config(TINY)
    spec = cfg.teacher if role == "teacher" else cfg.student
    model = build_model(spec.arch, input_shape=(1, 8, 8), num_classes=10, **spec.kwargs)
    return load_weights(model, run / ("teacher.safetensors" if role == "teacher" else "student_kd.safetensors")).eval()


def local_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


class ThreadedServer:
    """uvicorn on a free 127.0.0.1 port in a thread; ``stop()`` shuts it down and joins the thread."""

    def __init__(self, app) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadedServer:  # noqa: PYI034
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.sock.close()


def digit_png(index: int = 0) -> tuple[bytes, np.ndarray]:
    """A digits image as an 8×8 grayscale PNG, and its pixels in [0, 1] (what training saw, up to 8 bits)."""
    from sklearn.datasets import load_digits

    pixels = np.round(load_digits().images[index] / 16 * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L").save(buffer, "PNG")
    return buffer.getvalue(), pixels.astype(np.float32) / 255
