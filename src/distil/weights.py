"""Model weights on disk: safetensors only (never pickle), written atomically, checked on load."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
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


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(model: nn.Module, path: str | Path, sha256: str | None = None) -> nn.Module:
    """Load safetensors weights into ``model``; every mismatch is a :class:`ModelError` that says what."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} not found")
    if sha256 is not None:
        actual = file_sha256(path)
        if actual != sha256.lower():
            raise ModelError(f"weights file {path}: sha256 is {actual}, expected {sha256}; the file is corrupt or not the one the config names")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ModelError(f"weights file {path} is not a safetensors file ({err}); distil loads only safetensors, never pickles") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing in file: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"not in model: {', '.join(unexpected[:5])}{' …' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"shape mismatch: {'; '.join(wrong[:5])}{' …' if len(wrong) > 5 else ''}")
        raise ModelError(f"weights file {path} does not fit the model ({'; '.join(parts)}); check the arch and kwargs that made it")
    with torch.no_grad():
        model.load_state_dict(state)
    return model
