"""Tokenized sentences cached on disk, so a second load of the same text reads ids instead of tokenizing.

An entry is one safetensors file ``<key>.safetensors`` under :func:`tokens_dir`, holding ``ids``
(int64 ``(N, L)``, right-padded with 0) and ``truncated`` (bool ``(N,)``). The key is the sha256 of
everything the ids depend on: the tokenizer.json bytes (through their sha256), ``max_length`` and
the texts in order. Files are written atomically; an unreadable or inconsistent file is rebuilt
with a warning. The data loaded are held in memory (the cache only saves the tokenizing).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from distil.data.text.tokenizer import Encoded, TextTokenizer
from distil.weights import save_tensors

#: Changes when the file layout or the way ids are made changes, so old entries are not read.
CACHE_VERSION = "tokens-v1"


def data_cache_dir() -> Path:
    """Where distil keeps downloaded corpora and tokenized text: ``$DISTIL_DATA_CACHE`` or ``~/.cache/distil/data``."""
    env = os.environ.get("DISTIL_DATA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "distil" / "data"


def tokens_dir() -> Path:
    """The token cache: ``tokens/`` under :func:`data_cache_dir`."""
    return data_cache_dir() / "tokens"


def tokens_key(tokenizer: TextTokenizer, texts: Sequence[str]) -> str:
    """sha256 of (cache version, tokenizer.json sha256, max_length, the texts with their lengths)."""
    digest = hashlib.sha256(f"{CACHE_VERSION}\n{tokenizer.sha256}\n{tokenizer.max_length}\n{len(texts)}\n".encode())
    for text in texts:
        data = text.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def cached_encode(tokenizer: TextTokenizer, texts: Sequence[str], directory: Path | None = None) -> tuple[Encoded, Path, bool]:
    """``tokenizer.encode(texts)``, read from the cache when an entry exists, else computed and stored.

    Returns the encoding, the cache file and whether it was read from the cache (``directory``:
    default :func:`tokens_dir`).
    """
    file = (directory or tokens_dir()) / f"{tokens_key(tokenizer, texts)}.safetensors"
    if file.is_file():
        encoded = _read(file, len(texts))
        if encoded is not None:
            return encoded, file, True
    encoded = tokenizer.encode(texts)
    metadata = {
        "version": CACHE_VERSION,
        "tokenizer": tokenizer.spec,
        "tokenizer_sha256": tokenizer.sha256,
        "max_length": str(tokenizer.max_length),
    }
    try:
        save_tensors({"ids": encoded.ids, "truncated": encoded.truncated}, file, metadata)
    except OSError as error:  # a read-only or full disk costs the next load time, not this one
        warnings.warn(
            f"could not cache the tokenized text in {file} ({error}); it will be tokenized again next time", RuntimeWarning, stacklevel=2
        )
    return encoded, file, False


def _read(file: Path, rows: int) -> Encoded | None:
    """The entry in ``file``, or None (with a warning) when it is unreadable or not what its key promises."""
    try:
        tensors = load_file(str(file))
        ids, truncated = tensors["ids"], tensors["truncated"]
        if ids.dtype != torch.int64 or ids.dim() != 2 or len(ids) != rows or truncated.dtype != torch.bool or truncated.shape != (rows,):
            raise ValueError(
                f"holds ids {tuple(ids.shape)} {ids.dtype} and truncated {tuple(truncated.shape)} {truncated.dtype} for {rows} texts"
            )
    except (SafetensorError, OSError, KeyError, ValueError) as error:
        warnings.warn(f"token cache {file} is corrupt or incomplete ({error}); tokenizing again", RuntimeWarning, stacklevel=3)
        return None
    return Encoded(ids, truncated)
