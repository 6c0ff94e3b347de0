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
from text_helpers import polar_sentences, tagged_sentences

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


# --- a tiny text run: sentences that differ by one polar word, the packaged MiniLM tokenizer ---------

def tiny_text_config(folder: Path) -> dict:
    """A text run config on a CSV written into ``folder``: a TextCNN teacher, a bag-of-embeddings student."""
    csv = folder / "train.csv"
    csv.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in polar_sentences(160, 0)))
    return {
        "name": "tiny-text-serve",
        "seed": 0,
        "data": {"name": "text_csv", "path": str(csv), "val_size": 0.2, "max_length": 24},
        "teacher": {
            "arch": "textcnn",
            "kwargs": {"embed_dim": 16, "maps": 16, "dropout": 0.0, "min_count": 1},
            "epochs": 8,
            "batch_size": 16,
            "optimizer": "adamw",
            "lr": 1e-2,
        },
        "student": {
            "arch": "boe",
            "kwargs": {"embed_dim": 16, "min_count": 1},
            "epochs": 15,
            "batch_size": 16,
            "optimizer": "adamw",
            "lr": 2e-2,
            "weight_decay": 0.0,
        },
        "scratch": False,
        "device": "cpu",
        "measure": {"latency_repeats": 1, "throughput_repeats": 1},
    }


@functools.cache
def tiny_text_run() -> Path:
    """A finished text run directory (teacher trained, student distilled), made once per test session.

    Its tokens are cached under the run's temporary folder (``data-cache``), not in ~/.cache.
    """
    import pytest
    from rich.console import Console

    root = Path(tempfile.mkdtemp(prefix="distil-text-serve-test-"))
    atexit.register(shutil.rmtree, root, True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTIL_DATA_CACHE", str(root / "data-cache"))
        patch.setenv("DISTIL_CACHE", str(root / "teacher-cache"))
        run_experiment(validate_config(tiny_text_config(root)), root / "run", console=Console(quiet=True))
    return root / "run"


def text_reference(run: Path):
    """The run's dataset and its student and teacher rebuilt in PyTorch from the data (not from the server's code)."""
    import pytest
    import yaml

    cfg = validate_config(yaml.safe_load((run / "config.yaml").read_text()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTIL_DATA_CACHE", str(run.parent / "data-cache"))
        data = cfg.data.load(cfg.seed)
    student = load_weights(cfg.student.build(data, 0), run / "student_kd.safetensors").eval()
    teacher = load_weights(cfg.teacher.build(data, 0), run / "teacher.safetensors").eval()
    return data, {"student": student, "teacher": teacher}


def text_logits(data, model: torch.nn.Module, texts: list[str]) -> np.ndarray:
    """``model``'s logits for ``texts``, tokenized with the dataset's own tokenizer."""
    with torch.inference_mode():
        return model(data.text.encode(texts)).numpy()


# --- a tiny tagging run: a toy grammar tagged with Penn Treebank tags ---------------------------------

@functools.cache
def tiny_tagger_run() -> Path:
    """A finished tagging run (CNN tagger teacher, one-direction LSTM tagger student), made once per test session."""
    import pytest
    from rich.console import Console

    root = Path(tempfile.mkdtemp(prefix="distil-tagger-serve-test-"))
    atexit.register(shutil.rmtree, root, True)
    corpus = root / "tagged.txt"
    corpus.write_text("\n".join(tagged_sentences(200, 0, phrases=1)) + "\n")
    config = {
        "name": "tiny-tagger-serve",
        "seed": 0,
        "data": {"name": "tagged_text", "path": str(corpus), "val_size": 0.2, "max_length": 24},
        "teacher": {
            "arch": "cnn_tagger",
            "kwargs": {"embed_dim": 16, "width": 32, "layers": 2, "dropout": 0.0},
            "epochs": 6,
            "batch_size": 16,
            "optimizer": "adamw",
            "lr": 1e-2,
        },
        "student": {
            "arch": "lstm_tagger",
            "kwargs": {"embed_dim": 16, "hidden_size": 16, "dropout": 0.0},
            "epochs": 8,
            "batch_size": 16,
            "optimizer": "adamw",
            "lr": 2e-2,
        },
        "scratch": False,
        "device": "cpu",
        "measure": {"latency_repeats": 1, "throughput_repeats": 1},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTIL_DATA_CACHE", str(root / "data-cache"))
        patch.setenv("DISTIL_CACHE", str(root / "teacher-cache"))
        run_experiment(validate_config(config), root / "run", console=Console(quiet=True))
    return root / "run"


def local_word_tags(data, model: torch.nn.Module, text: str) -> tuple[list[str], list[str]]:
    """The words of ``text`` and ``model``'s tag for each, as the tagging contract defines them
    (``TextInfo.encode_words``: the logits at each word's first piece)."""
    encoded = data.text.encode_words(text)
    with torch.inference_mode():
        logits = model(encoded.ids)[0]
    return encoded.words, [data.class_names[int(logits[p].argmax())] for p in encoded.positions]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def headless_chromium(*flags: str):
    """A Selenium driver of Debian's headless Chromium (skips the test without chromium, chromium-driver
    or selenium), with ``flags`` added to the usual ones; the caller quits it."""
    import pytest

    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver
