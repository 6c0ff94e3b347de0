"""The model registry: architectures by name, and how any factory is called.

``MODELS`` maps a name to its factory; :func:`register_model` is the decorator that fills it, so the
built-in architectures and a user's own are added the same way and nothing branches on names.
:func:`build_model` builds either a registered name or ``"package.module:factory"`` (see
:mod:`distil.models.user`), checks the arguments against the factory's signature first and turns
every mistake into a :class:`~distil.errors.ModelError` that says what was asked, what was expected
and what exists.

Text models take more from the data than a shape: :data:`TEXT_DATA_ARGS` (the tokenizer's vocabulary
size, the training split's token counts, the tokenizer's folder and the task: ``"classify"`` or ``"tag"``). Those are optional: a factory
gets each one only when its signature names it, so image factories (and user factories written for
images) never see them, and a factory that names ``vocab_size`` is a text model. A pretrained folder
(``"minilm"``, ``"hf:PATH"``; see :mod:`distil.pretrained`) builds a Hugging Face teacher
(:mod:`distil.models.hf`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from distil.errors import ModelError
from distil.models.user import load_factory
from distil.pretrained import is_pretrained_spec

F = TypeVar("F", bound=Callable[..., nn.Module])

#: Arguments a factory gets from the data rather than from the user.
DATA_ARGS = ("input_shape", "num_classes")
#: Optional arguments from text data, passed only to factories whose signature names them:
#: ``vocab_size`` (int: ids are < vocab_size), ``token_counts`` (int64 tensor (vocab_size,): how often
#: each id occurs in the training split, or None) and ``tokenizer_dir`` (str: the tokenizer's folder,
#: or None). The data gives None for all three when it is not text.
TEXT_DATA_ARGS = ("vocab_size", "token_counts", "tokenizer_dir", "task")


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture: ``factory(*, input_shape, num_classes, **kwargs) -> nn.Module``."""

    factory: Callable[..., nn.Module]
    description: str

    @property
    def text(self) -> bool:
        """Whether the model reads token ids (its factory takes ``vocab_size``)."""
        return takes_text(self.factory)


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, description: str = "") -> Callable[[F], F]:
    """Decorator: make ``factory`` buildable as ``build_model(name, input_shape=..., num_classes=...)``.

    ``description`` is the one line ``distil models`` shows; it defaults to the first line of the
    factory's docstring. A name may not contain ``:`` (that form means ``package.module:factory``).
    """
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise ModelError(f"a model name must be a non-empty string without ':' or surrounding spaces, got {name!r}")

    def add(factory: F) -> F:
        if not callable(factory):
            raise ModelError(f"register_model({name!r}) must decorate a callable, got {factory!r}")
        existing = MODELS.get(name)
        if existing is not None and _qualified(existing.factory) != _qualified(factory):
            raise ModelError(f"model name {name!r} is already registered to {_qualified(existing.factory)}")
        doc = (inspect.getdoc(factory) or "").strip()
        MODELS[name] = ModelEntry(factory, description or (doc.splitlines()[0] if doc else ""))
        return factory

    return add


def build_model(
    name: str,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    seed: int | None = None,
    vocab_size: int | None = None,
    token_counts: torch.Tensor | None = None,
    tokenizer_dir: str | None = None,
    task: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (C×H×W, C×L, or L for token ids) and ``num_classes`` logits.

    ``name`` is a registered name (see :func:`list_models`), ``"package.module:factory"``, whose
    factory is imported and called with ``kwargs`` (and ``input_shape``/``num_classes`` if its
    signature takes them), or a pretrained folder (``"minilm"``, ``"hf:PATH"``), which builds a
    Hugging Face classifier (:func:`distil.models.hf.hf_classifier`). ``vocab_size``,
    ``token_counts``, ``tokenizer_dir`` and ``task`` (``"classify"`` or ``"tag"``) describe text data (:data:`TEXT_DATA_ARGS`); each reaches
    only a factory whose signature names it. With ``seed``, torch's global RNG is seeded first, so
    the same seed gives the same initial weights (a run's scratch and distilled students start
    equal). Any problem with the name, the arguments or what the factory returns raises
    :class:`~distil.errors.ModelError`.
    """
    if seed is not None:
        torch.manual_seed(seed)
    if not isinstance(name, str):
        raise ModelError(f"a model name must be a string, got {name!r}")
    shape = _input_shape(name, input_shape)
    classes = _num_classes(name, num_classes)
    text = {"vocab_size": vocab_size, "token_counts": token_counts, "tokenizer_dir": tokenizer_dir, "task": task}
    return call_factory(name, _factory(name), input_shape=shape, num_classes=classes, kwargs=kwargs, text=text)


def _factory(name: str) -> Callable[..., Any]:
    if name in MODELS:
        return MODELS[name].factory
    if is_pretrained_spec(name):
        from distil.models.hf import pretrained_factory  # the module registers models itself: imported late

        return pretrained_factory(name)
    return load_factory(name) if ":" in name else _lookup(name).factory


def list_models() -> dict[str, str]:
    """Name → one line: what the model is and its parameter count at a default input.

    The count is for 1×28×28 inputs and 10 classes (1×40 for 1-D models), from building each model
    on the CPU (all built-in ones take ~0.3 s together); it is left out for a factory that fails and
    for text models, whose size depends on the data's vocabulary.
    """
    return {name: _describe(name, entry) for name, entry in MODELS.items()}


def count_parameters(model: nn.Module) -> int:
    """The number of parameters of ``model`` (trainable or not; buffers such as BN statistics excluded).

    Shared parameters count once. A lazy module's parameters have no size until its first forward
    pass, so they raise a ModelError saying so.
    """
    params = list(model.parameters())
    lazy = [name for name, p in model.named_parameters() if isinstance(p, UninitializedParameter)]
    if lazy:
        raise ModelError(
            f"cannot count the parameters of a model with uninitialised lazy parameters ({', '.join(lazy)}); run one forward pass first"
        )
    return sum(p.numel() for p in params)


def call_factory(
    label: str,
    factory: Callable[..., Any],
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    kwargs: Mapping[str, Any],
    text: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Call ``factory`` with the user's ``kwargs`` plus whichever of ``input_shape``/``num_classes`` it takes.

    ``text`` holds the :data:`TEXT_DATA_ARGS` of text data; each is passed only when the factory's
    signature names it (not through ``**kwargs``). The arguments are checked against the signature
    before the call, so an unknown one is reported by name with the accepted ones; a ``TypeError``
    from the call itself is reported the same way.
    """
    signature = _signature(factory)
    call = dict(kwargs)
    for arg in (*DATA_ARGS, *TEXT_DATA_ARGS):
        if arg in call:
            raise ModelError(f"model {label!r}: {arg} comes from the dataset and cannot be given as a model argument")
    data = {"input_shape": input_shape, "num_classes": num_classes}
    text_data = {arg: (text or {}).get(arg) for arg in TEXT_DATA_ARGS}
    if signature is None:
        call.update(data)
    else:
        params = signature.parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        accepted = _accepted(signature)
        if not takes_any:
            unknown = [k for k in call if k not in accepted]
            if unknown:
                raise ModelError(_unknown_args(label, unknown, accepted))
        for arg, value in data.items():
            if takes_any or _keyword(params.get(arg)):
                call[arg] = value
        for arg, value in text_data.items():
            if _keyword(params.get(arg)):
                call[arg] = value
        try:
            signature.bind(**call)
        except TypeError as err:
            raise ModelError(f"model {label!r}: {err}; it accepts {_describe_args(accepted)}") from None
    try:
        model = factory(**call)
    except TypeError as err:
        accepted_text = _describe_args(_accepted(signature)) if signature is not None else "arguments its signature does not show"
        raise ModelError(f"model {label!r} could not be built with arguments {dict(kwargs)!r}: {err}; it accepts {accepted_text}") from err
    if not isinstance(model, nn.Module):
        raise ModelError(f"model {label!r}: the factory returned {type(model).__qualname__}, expected a torch.nn.Module")
    return model


def _lookup(name: str) -> ModelEntry:
    try:
        return MODELS[name]
    except KeyError:
        pass
    ranked = sorted(MODELS, key=lambda known: (-difflib.SequenceMatcher(None, name.lower(), known.lower()).ratio(), known))
    close = difflib.get_close_matches(name, MODELS, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    raise ModelError(
        f"unknown model {name!r}{hint}; expected a registered name, 'package.module:factory' or 'hf:PATH' (a Hugging Face model folder); "
        f"registered models, closest first: {', '.join(ranked)}"
    )


def _input_shape(name: Any, input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or isinstance(input_shape, str) or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ModelError(
            f"model {name!r}: input_shape must be a tuple of positive integers, (C, H, W) for images, (C, L) for signals or (L,) for token ids; "
            f"got {input_shape!r}"
        )
    return shape


def _num_classes(name: Any, num_classes: Any) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"model {name!r}: num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


def _qualified(factory: Callable[..., Any]) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C extensions have none
        return None


def _keyword(param: inspect.Parameter | None) -> bool:
    return param is not None and param.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _accepted(signature: inspect.Signature) -> dict[str, inspect.Parameter]:
    """The user-settable arguments of a factory: keyword-capable parameters other than the data's."""
    return {n: p for n, p in signature.parameters.items() if _keyword(p) and n not in DATA_ARGS and n not in TEXT_DATA_ARGS}


def takes_text(factory: Callable[..., Any]) -> bool:
    """Whether ``factory`` builds a text model: its signature names ``vocab_size``."""
    signature = _signature(factory)
    return signature is not None and _keyword(signature.parameters.get("vocab_size"))


def _describe_args(accepted: Mapping[str, inspect.Parameter]) -> str:
    if not accepted:
        return "no arguments besides input_shape and num_classes"
    parts = [n if p.default is inspect.Parameter.empty else f"{n}={p.default!r}" for n, p in accepted.items()]
    return ", ".join(parts)


def _unknown_args(label: str, unknown: list[str], accepted: Mapping[str, inspect.Parameter]) -> str:
    hints = []
    for arg in unknown:
        close = difflib.get_close_matches(arg, accepted, n=1, cutoff=0.6)
        hints.append(f"{arg!r} (did you mean {close[0]!r}?)" if close else repr(arg))
    noun = "argument" if len(unknown) == 1 else "arguments"
    return f"model {label!r} got unexpected {noun} {', '.join(hints)}; it accepts {_describe_args(accepted)}"


def _describe(name: str, entry: ModelEntry) -> str:
    count = None
    for shape in () if entry.text else ((1, 28, 28), (1, 40)):
        try:
            with torch.random.fork_rng(devices=[]):  # listing must not move the global RNG a run seeded
                model = call_factory(name, entry.factory, input_shape=shape, num_classes=10, kwargs={})
        except Exception:  # noqa: BLE001 - a listing must not fail because one user factory cannot build
            continue
        count = f"{_human(count_parameters(model))} params at {'×'.join(map(str, shape))}, 10 classes"
        break
    return f"{entry.description} ({count})" if count and entry.description else (count or entry.description)


def _human(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n / 1e3:.1f}k" if n >= 1_000 else str(n)
