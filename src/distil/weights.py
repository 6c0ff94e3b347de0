"""Model weights on disk: written as safetensors, atomically; read without ever unpickling.

distil writes only safetensors. It reads safetensors, and — for weights made elsewhere (a teacher
trained in someone's own loop) — PyTorch checkpoints (``.pt``/``.pth``/``.bin``) strictly through
``torch.load(weights_only=True)``, which rebuilds tensors and plain containers but refuses any other
pickled object. A file that needs more than that is refused with a message saying how to re-save it.

A *partial* file holds only what a model trains: :func:`save_trainable` writes the parameters with
``requires_grad`` and every buffer, and marks the file with the metadata ``{"distil.partial": "1"}``.
:func:`load_weights` reads such a file onto a freshly built model whose other parameters are frozen
and come from elsewhere (a teacher fine-tuned with ``train_layers=k``: the frozen encoder is the
pretrained folder's); every key the file lacks must be a frozen parameter of that model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from distil.errors import ModelError


def atomic_write(path: Path, write: callable) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save named tensors as one safetensors file, atomically."""
    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))
    return path


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Save the state dict (parameters and buffers, fp32 as trained) as one safetensors file."""
    return save_tensors(model.state_dict(), path, metadata)


#: The safetensors metadata key that marks a file written by :func:`save_trainable`.
PARTIAL_KEY = "distil.partial"


def save_trainable(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None, *, half: bool = False) -> Path:
    """Save the trainable parameters (``requires_grad``) and all buffers of ``model``, marked as a partial file.

    :func:`load_weights` loads it back onto a model built the same way, whose frozen parameters are
    already in place. A model with nothing frozen gives the same tensors as :func:`save_weights`.
    ``half``: floating-point tensors stored as fp16 (half the file; loading casts them back to the
    model's dtype, so the loaded model is the saved one rounded to fp16).
    """
    trainable = {name for name, p in model.named_parameters(remove_duplicate=False) if p.requires_grad}
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    state = {k: v for k, v in model.state_dict().items() if k in trainable or k not in params}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return save_tensors(state, path, {**(metadata or {}), PARTIAL_KEY: "1"})


def is_partial(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file written by :func:`save_trainable`."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return False
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get(PARTIAL_KEY) == "1"
    except (SafetensorError, OSError):
        return False  # read_state_dict reports an unreadable file


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelError(f"weights file {path} is not a safetensors file ({err}); {ACCEPTED}") from None


# Where a training script's checkpoint keeps its state_dict (``torch.save({"epoch": 3, "model": ...})``).
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
# Wrappers that prefix every key: DistributedDataParallel / DataParallel, and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
REPICKLE_HINT = (
    "this file contains pickled Python objects; distil loads only tensors: save model.state_dict() with "
    "safetensors (safetensors.torch.save_file) or torch.save(model.state_dict())"
)


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    """A tensor-only PyTorch checkpoint: ``weights_only=True`` refuses anything that would run code."""
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 — torch raises many types for a bad file; each becomes a ModelError
        # Recognised by name: importing pickle only to catch its error would invite its use elsewhere.
        # weights_only names the class it refused ("Unsupported global"); other errors mean a bad file.
        if type(err).__name__ == "UnpicklingError" and any(m in str(err) for m in ("Unsupported global", "Unsupported class")):
            raise ModelError(f"weights file {path}: {REPICKLE_HINT}") from None
        raise ModelError(f"weights file {path} is not a PyTorch checkpoint ({type(err).__name__}: {str(err)[:200]}); {ACCEPTED}") from None
    return _strip_wrappers(_state_dict_of(obj, path))


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict itself, or the one a checkpoint dict holds under a usual key."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
        keys = ", ".join(map(str, list(obj)[:8]))
        raise ModelError(f"weights file {path}: a dict with keys [{keys}] but no state_dict (names → tensors) at the top or under {', '.join(STATE_DICT_KEYS)}")
    raise ModelError(f"weights file {path} holds a {type(obj).__name__}, not a state_dict (names → tensors); save model.state_dict()")


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``module.conv.weight`` → ``conv.weight`` when every key carries the wrapper's prefix."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state, stripped = {k[len(prefix) :]: v for k, v in state.items()}, True
    return state


# File suffix → reader. Anything else is refused: the extension says which format a file claims to be.
READERS: dict[str, Callable[[Path], dict[str, torch.Tensor]]] = {
    ".safetensors": _read_safetensors,
    ".pt": _read_torch,
    ".pth": _read_torch,
    ".bin": _read_torch,
}
ACCEPTED = "distil loads .safetensors, or tensor-only PyTorch checkpoints (.pt, .pth, .bin) through torch.load(weights_only=True); it never unpickles"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The named tensors of a weights file (any of :data:`READERS`), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} not found")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ModelError(f"weights file {path}: unknown extension {path.suffix or '(none)'!r}; expected one of {', '.join(READERS)} ({ACCEPTED})")
    return reader(path)


def convert_weights(source: str | Path, dest: str | Path) -> Path:
    """Re-save a weights file as safetensors (``distil convert-weights``): the same tensors, checked by sha256 later."""
    dest = Path(dest)
    if dest.suffix != ".safetensors":
        raise ModelError(f"output {dest}: expected a .safetensors file name")
    # Cloned: tied weights share storage in a state_dict, and safetensors refuses shared tensors.
    return save_tensors({k: v.clone() for k, v in read_state_dict(source).items()}, dest)


def load_weights(model: nn.Module, path: str | Path, sha256: str | None = None) -> nn.Module:
    """Load weights (see :func:`read_state_dict`) into ``model``; every mismatch is a :class:`ModelError` that says what.

    A partial file (:func:`save_trainable`) may lack frozen parameters of ``model`` (``requires_grad``
    false), which keep their values; any other missing key is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} not found")
    if sha256 is not None:
        actual = file_sha256(path)
        if actual != sha256.lower():
            raise ModelError(f"weights file {path}: sha256 is {actual}, expected {sha256}; the file is corrupt or not the one the config names")
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    partial = is_partial(path)
    if partial:
        frozen = {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
        missing = [k for k in missing if k not in frozen]
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            what = "missing in the partial file, and not frozen in the model" if partial else "missing in file"
            parts.append(f"{what}: {', '.join(missing[:5])}{f' … ({len(missing)} in all)' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"not in model: {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"shape mismatch: {'; '.join(wrong[:5])}{' …' if len(wrong) > 5 else ''}")
        raise ModelError(f"weights file {path} does not fit the model ({'; '.join(parts)}); check the arch and kwargs that made it")
    with torch.no_grad():
        model.load_state_dict(state, strict=not partial)
    return model
