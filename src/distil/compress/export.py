"""ONNX: export a model as one file, run it in ONNX Runtime, check it against PyTorch, quantize it.

- :func:`export_onnx`: one self-contained ``.onnx`` file (``external_data=False``) with a dynamic batch
  dimension; the ``torch.export``-based exporter by default (``exporter="torchscript"`` for the legacy
  one, about 10× faster to export small models). Text models (token ids in, :func:`reads_tokens`) get
  an int64 input with two dynamic axes, ``batch`` and ``length``, and are run at a second length
  before the file is kept (an exporter that fixed the length fails there, with the model's name).
  With ``atol`` the file's outputs must also match PyTorch's there and on the traced example: the
  export-and-check that ``distil serve`` runs at start-up.
- :func:`session` and :func:`graph_inputs`: the one ONNX Runtime session and input description that
  :class:`OnnxModel` and ``distil serve``'s backend share (an int64 input is token ids).
- :func:`text_parity`: the ONNX model against PyTorch on real sentences of several lengths (the
  shortest, median and longest held-out sentence alone, and one batch that mixes lengths, padded).
- :func:`parity`: the ONNX model and the PyTorch model on the same held-out inputs: max absolute
  difference of the logits and the fraction of equal argmaxes (a tagger's: over the tagged tokens
  when labels are given, and over every real token). :func:`check_parity` raises
  :class:`ParityError` past a tolerance.
- :func:`quantize_onnx`: ONNX Runtime static int8 (``quantize_static``) in QDQ or QOperator form,
  calibrated on training inputs through a :class:`CalibrationDataReader`; :func:`quantize_onnx_dynamic`:
  ``quantize_dynamic`` (int8 weights of MatMul/Gemm/LSTM/…; activations quantized per call), the
  form for text models, whose integer input cannot be calibrated.

Every file is written under a temporary name and renamed into place only once it has passed its
check, so a file in ``compressed/`` is always one that ran and matched.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from distil.data.tokens import PAD_ID, is_tokens, length_order, lengths, token_positions, trim, typical_row
from distil.errors import DistilError
from distil.weights import atomic_write

# The names `distil serve` advertises over the Open Inference Protocol: one name for every exported file.
INPUT, OUTPUT = "input", "logits"
#: ONNX Runtime's type of an input of token ids (every text model distil exports); other inputs are float32.
TOKEN_TYPE = "tensor(int64)"
EXPORTERS = ("dynamo", "torchscript", "auto")
FORMATS = ("qdq", "qoperator")


class ExportError(DistilError):
    """A model could not be exported, or the exported file does not run."""


class ParityError(DistilError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress and warns about torchvision ops; distil reports its own result."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "")]  # "": onnxruntime.quantization logs to the root logger
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def reads_tokens(model: nn.Module, input_shape: tuple[int, ...]) -> bool:
    """Whether ``model`` reads token ids: one sample is ``(max_length,)`` and the model holds an ``nn.Embedding``.

    What :func:`export_onnx` assumes when it is given no ``example``: every text model of distil (the
    students' ``TokenEmbedding``, Hugging Face encoders) has an embedding table, no image or signal
    model has one, and their samples have two or more axes.
    """
    return len(input_shape) == 1 and any(isinstance(m, nn.Embedding) for m in model.modules())


def example_input(model: nn.Module, input_shape: tuple[int, ...], example: torch.Tensor | None = None) -> torch.Tensor:
    """What the exporter traces with: ``example`` (real inputs) or a made-up batch of the right kind.

    Token batches are cut to their longest row and made at least 2 × 2, with one shorter row, so that
    neither dynamic axis is 1 (an exporter fixes axes it sees as 1) and the padding path is traced.
    """
    if example is None:
        if not reads_tokens(model, input_shape):
            return torch.randn(2, *input_shape)
        width = max(2, min(8, input_shape[0]))
        example = torch.arange(1, 2 * width + 1, dtype=torch.int64).view(2, width)
    example = example.detach().cpu()
    if not is_tokens(example):
        return example if len(example) >= 2 else example.expand(2, *example.shape[1:]).clone()
    example = trim(example)
    if len(example) < 2:
        example = example.expand(2, -1).clone()
    if example.shape[1] < 2:
        example = torch.nn.functional.pad(example, (0, 1), value=PAD_ID)
    if bool((example != PAD_ID).all()):  # a row with padding, so that the traced graph masks it
        example = example.clone()
        example[-1, -1] = PAD_ID
    return example.contiguous()


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path,
    *,
    exporter: str = "dynamo",
    opset: int = 18,
    example: torch.Tensor | None = None,
    atol: float | None = None,
) -> Path:
    """Write ``model`` (eval mode, CPU, a copy) as one ONNX file: input ``input``, output ``logits``.

    Numeric models: a float32 input ``(batch, *input_shape)``. Text models — token ids, found from
    ``example`` (an integer ``(B, L)`` batch, best a few real sentences) or, without one, by
    :func:`reads_tokens` — an int64 input ``(batch, length)`` with both axes dynamic (``length`` at most
    ``input_shape[0]``, the data's ``max_length``) and outputs ``(batch, C)`` or, per token,
    ``(batch, length, C)``. A text export is run once more at another length and batch before it is
    kept, so an exporter that fixed an axis is an :class:`ExportError` naming the model.

    ``atol``: also run the file on the traced batch (``example``: best real inputs) and, for text, at
    that second batch and length, and keep it only if its outputs are within ``atol`` of PyTorch's
    (else :class:`ExportError`). ``None`` (what ``distil compress`` uses, which checks parity on
    held-out data afterwards): shapes only, and only for text.

    ``exporter="auto"``: ``torchscript`` for token models, ``dynamo`` otherwise. In torch 2.13 the
    ``dynamo`` exporter keeps ``length`` dynamic for textcnn, boe and text_transformer, but
    ``torch.export`` fixes the sequence length of ``nn.LSTM`` and the exporter then silently makes the
    input's length static: for bilstm that is an :class:`ExportError` here (the file's input has a
    fixed length), for lstm it may pass. ``torchscript`` keeps both axes dynamic for all of them.
    """
    import copy

    if exporter not in EXPORTERS:
        raise ExportError(f"onnx exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    path = Path(path)
    model = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    name = type(model).__name__
    x = example_input(model, tuple(input_shape), example)
    tokens = is_tokens(x)
    exporter = resolve_exporter(exporter, tokens)
    try:
        with torch.no_grad():
            out_rank = model(x).dim()
    except Exception as err:  # noqa: BLE001  the model's own error, reported with its name
        raise ExportError(f"onnx export of {name}: the model does not run on a {'token' if tokens else 'float'} batch {tuple(x.shape)}: {_first_line(err)}") from None
    axes = {0: "batch", 1: "length"} if tokens else {0: "batch"}
    out_axes = {0: "batch", 1: "length"} if tokens and out_rank == 3 else {0: "batch"}

    def write(tmp: Path) -> None:
        with _quiet():
            if exporter == "dynamo":
                dims = {0: torch.export.Dim("batch")}
                if tokens:
                    dims[1] = torch.export.Dim("length", max=max(int(input_shape[0]), x.shape[1]))
                torch.onnx.export(model, (x,), str(tmp), dynamo=True, external_data=False, opset_version=opset, verbose=False,
                                  input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=(dims,))  # fmt: skip
            else:
                torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=[INPUT], output_names=[OUTPUT],
                                  dynamic_axes={INPUT: axes, OUTPUT: out_axes})  # fmt: skip
            _check_export(model, tmp, x, int(input_shape[0]) if tokens else 0, exporter, atol)

    try:
        atomic_write(path, write)
    except DistilError:
        raise
    except Exception as err:
        raise ExportError(f"onnx export ({exporter}) of {name} failed: {_first_line(err)}") from None
    return path


def resolve_exporter(exporter: str, tokens: bool) -> str:
    """``auto`` → ``torchscript`` for token inputs (both axes stay dynamic for every text model), ``dynamo`` otherwise."""
    if exporter != "auto":
        return exporter
    return "torchscript" if tokens else "dynamo"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_export(model: nn.Module, path: Path, example: torch.Tensor, max_length: int, exporter: str, atol: float | None) -> None:
    """Run the written file in ONNX Runtime before it is kept (see :func:`export_onnx`).

    Token models: the input must keep both axes free, and the file must run at a batch and a length
    it was not traced with (:func:`_other_shape`); an axis fixed at export fails here. With ``atol``
    the outputs on ``example`` and at that other shape must be within ``atol`` of PyTorch's.
    """
    tokens = is_tokens(example)
    if not tokens and atol is None:
        return
    name = type(model).__name__
    hint = "; use exporter torchscript (or auto), which keeps both axes dynamic" if exporter == "dynamo" else ""
    if tokens:
        import onnx

        dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
        fixed = [f"{axis} = {d.dim_value}" for axis, d in zip(("batch", "length"), dims) if d.HasField("dim_value")]
        if fixed:
            raise ExportError(f"onnx export ({exporter}) of {name}: the exporter fixed {', '.join(fixed)} of the input "
                              f"(torch.export specialised it while tracing){hint}")  # fmt: skip
    runner = session(path)
    batches = ([example] if atol is not None else []) + ([_other_shape(example, max_length)] if tokens else [])
    for x in batches:
        traced = x is example
        where = f"batch {len(x)} × length {x.shape[1]}" if tokens else f"batch {tuple(x.shape)}"
        with torch.no_grad():
            expected = model(x)
        try:
            got = runner.run(None, {INPUT: x.contiguous().numpy()})[0]
        except Exception as err:  # noqa: BLE001  onnxruntime raises its own exception types
            if traced:
                raise ExportError(
                    f"onnx export ({exporter}) of {name}: the file does not run on the {where} it was traced with: {_first_line(err)}"
                ) from None
            raise ExportError(f"onnx export ({exporter}) of {name}: the file does not run at {where} "
                              f"(traced at {tuple(example.shape)}), the exporter fixed an axis{hint} — {_first_line(err)}") from None  # fmt: skip
        if tuple(got.shape) != tuple(expected.shape):
            raise ExportError(f"onnx export ({exporter}) of {name}: at {where} the file returns {tuple(got.shape)}, PyTorch {tuple(expected.shape)}"
                              + ("" if traced else "; the exporter fixed an axis"))  # fmt: skip
        if atol is not None:
            diff = float(np.abs(got - expected.float().numpy()).max()) if got.size else 0.0
            if not diff <= atol:
                raise ExportError(
                    f"onnx export ({exporter}) of {name}: at {where} the file's outputs differ from PyTorch's by up to {diff:.3g} (tolerance {atol:g})"
                )


def _other_shape(example: torch.Tensor, max_length: int) -> torch.Tensor:
    """Token ids at a batch (one row more) and a length (3 longer, else 1 shorter) that ``example`` does not have."""
    length = example.shape[1] + 3 if example.shape[1] + 3 <= max_length else max(1, example.shape[1] - 1)
    rows = [example[i % len(example)] for i in range(len(example) + 1)]
    x = torch.stack([torch.nn.functional.pad(r, (0, max(0, length - len(r))), value=PAD_ID)[:length] for r in rows])
    x[:, 0] = torch.where(x[:, 0] == PAD_ID, example[0, 0], x[:, 0])  # no empty row
    return x


def session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session: what :class:`OnnxModel` and ``distil serve``'s backend both run.

    ``threads`` (intra-op): ``None``, torch's, so both runtimes get the same cores; ``0``, ONNX
    Runtime's own default. A file that does not load is an :class:`ExportError`; without
    onnxruntime installed, ``ImportError``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    # ONNX Runtime's default, stated: all graph optimizations, the layout ones included — the NCHWc
    # convolutions that make the demo student ~2× faster need channel counts that are multiples of the
    # block (16 on AVX-512, 8 on AVX2); pruning rounds to them (compress.prune.multiple_of)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4  # errors are raised (ExportError), not also logged
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise ExportError(f"onnxruntime cannot load {path}: {_first_line(err)}") from None


@dataclass(frozen=True)
class GraphInput:
    """One input of an ONNX file as ONNX Runtime reports it.

    ``type``: ONNX Runtime's, e.g. ``"tensor(float)"`` or ``"tensor(int64)"``; ``shape``: one sample's,
    -1 for a dynamic axis (the length of token ids).
    """

    name: str
    type: str
    shape: tuple[int, ...]

    @property
    def reads_tokens(self) -> bool:
        """An int64 input: token ids (how distil exports every text model); anything else is numeric."""
        return self.type == TOKEN_TYPE

    @property
    def takes_any_length(self) -> bool:
        """Token ids ``(N, L)`` with ``L`` free: what a text model's file must take."""
        return self.reads_tokens and self.shape == (-1,)

    @property
    def dtype(self) -> torch.dtype:
        """What the input is cast to before a run: int64 token ids, or float32."""
        return torch.int64 if self.reads_tokens else torch.float32


def graph_inputs(runner) -> list[GraphInput]:
    """The inputs of the ONNX Runtime session ``runner`` (see :func:`session`)."""
    return [
        GraphInput(i.name, i.type, tuple(int(d) if isinstance(d, int) and d > 0 else -1 for d in i.shape[1:])) for i in runner.get_inputs()
    ]


class OnnxModel(nn.Module):
    """An ONNX Runtime session behind the ``nn.Module`` call: tensors in, logits tensor out (CPU).

    It lets :mod:`distil.engine.evaluate` and :mod:`distil.engine.measure` treat a deployed file like
    any model, so every row of the table is measured by the same code.
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = session(path, threads)
        first = graph_inputs(self.session)[0]
        self.input_name = first.name
        self.input_dtype = first.dtype  # token ids, or numeric inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to("cpu", self.input_dtype).contiguous().numpy()
        try:
            return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])
        except Exception as err:  # noqa: BLE001  onnxruntime raises its own exception types
            raise ExportError(f"onnxruntime cannot run {self.path.name} on an input of shape {tuple(x.shape)}: {_first_line(err)}") from None

    def __deepcopy__(self, memo: dict) -> OnnxModel:
        return self  # a session is immutable for inference and cannot be copied


@dataclass(frozen=True)
class Parity:
    """How far ``candidate``'s outputs are from ``reference``'s; ``cases``: per text case (see :func:`text_cases`).

    ``argmax_agreement``: the fraction of equal argmaxes — per sample, or for per-token outputs
    ``(B, L, C)`` (taggers) over the tokens named by ``agreement_over``: ``"tagged tokens"`` (labels
    given: the tokens that carry a tag, those a tagger is scored on) or ``"all tokens"`` (no labels:
    every non-padding token, [CLS]/[SEP] and the later pieces of words included).
    ``token_agreement``: per-token outputs only, the agreement over all (non-padding) tokens.
    """

    max_abs_diff: float
    argmax_agreement: float
    samples: int
    cases: tuple[dict[str, Any], ...] = ()
    token_agreement: float | None = None
    agreement_over: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement, "samples": self.samples}
        if self.agreement_over is not None:
            out |= {"agreement_over": self.agreement_over, "token_agreement": self.token_agreement}
        if self.cases:
            out["cases"] = list(self.cases)
        return out

    @property
    def worst(self) -> dict[str, Any] | None:
        """The text case with the largest difference, if any."""
        return max(self.cases, key=lambda c: c["max_abs_diff"], default=None)


def _agreement(
    ref: torch.Tensor, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Equal argmaxes over the last axis (flat, float) and, for per-token outputs ``(B, L, C)`` of token
    inputs, the same at every real token (else ``None``).

    The first counts, for per-token outputs, the tagged tokens (``y != IGNORE``) when per-token labels
    ``y`` are given, else every real token (:func:`~distil.data.tokens.token_positions`).
    """
    same = ref.argmax(-1) == out.argmax(-1)
    if same.dim() != 2 or not is_tokens(x):
        return same.flatten().float(), None
    width = min(same.shape[1], x.shape[1])
    same, x = same[:, :width], x[:, :width]
    every = same[token_positions(x, None)].float()
    if y is None or y.dim() != 2:
        return every, every
    return same[token_positions(x, y)].float(), every


def _mean(values: list[torch.Tensor]) -> float:
    joined = torch.cat(values) if values else torch.zeros(0)
    return float(joined.mean().item()) if len(joined) else 1.0


def _compare(
    ref: torch.Tensor, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None = None
) -> tuple[float, torch.Tensor, torch.Tensor | None]:
    if ref.shape != out.shape:
        raise ParityError(f"outputs of shape {tuple(out.shape)} where PyTorch gives {tuple(ref.shape)} (input {tuple(x.shape)})")
    same, every = _agreement(ref, out, x, y)
    return (float((ref - out).abs().max().item()) if ref.numel() else 0.0), same, every


def _case_rows(x: torch.Tensor, mixed: int = 16) -> dict[str, torch.Tensor]:
    """The rows of :func:`text_cases`: name → row indices of ``x``."""
    if not is_tokens(x) or len(x) == 0:
        return {}
    order = length_order(x)
    cases = {"short": order[:1], "median": torch.tensor([typical_row(x)]), "long": order[-1:]}
    spread = order[torch.linspace(0, len(x) - 1, min(mixed, len(x))).round().long()].unique()
    if len(spread) > 1:
        cases["mixed"] = spread  # unique() sorts the indices: the split's order, lengths mixed
    return cases


def text_cases(x: torch.Tensor, mixed: int = 16) -> dict[str, torch.Tensor]:
    """Real sentences of several lengths from the token ids ``x``: name → batch (cut to its longest row).

    ``short``, ``median`` and ``long``: the shortest, the median-length and the longest sentence, each
    alone (batch 1, no padding — how a server sees one request); ``mixed``: up to ``mixed`` sentences
    spread over the lengths, in their split order, right-padded to the longest (a batch with padding).
    """
    return {name: trim(x[index]) for name, index in _case_rows(x, mixed).items()}


def parity(reference: nn.Module, candidate: nn.Module, x: torch.Tensor, batch_size: int = 256, *, y: torch.Tensor | None = None) -> Parity:
    """Logits of ``candidate`` vs ``reference`` on ``x`` (both in eval mode, no grad, CPU).

    All of ``x`` goes through both models in length-sorted batches; token inputs also go through
    :func:`text_cases` (one sentence at a time at three lengths, and a padded batch of mixed lengths),
    each reported in ``cases`` and counted in the overall numbers. ``y``: the labels of ``x``; a
    tagging split's per-token labels ``(N, L)`` make a tagger's ``argmax_agreement`` count the tagged
    tokens only (see :class:`Parity`).
    """
    from distil.engine.evaluate import predict_logits

    x = x.cpu()
    y = y.cpu() if y is not None and y.dim() == 2 else None  # per-token labels only; a class per sample changes nothing
    reference = reference.cpu()
    ref = predict_logits(reference, x, batch_size).float()
    out = predict_logits(candidate, x, batch_size).float()
    diff, same, every = _compare(ref, out, x, y)
    agree, tokens = [same], [every] if every is not None else []
    cases = []
    for name, index in _case_rows(x).items():
        batch = trim(x[index])
        labels = y[index][:, : batch.shape[1]] if y is not None else None
        with torch.inference_mode():
            r, o = reference.eval()(batch).float(), candidate.eval()(batch).float()
        case_diff, case_same, case_every = _compare(r, o, batch, labels)
        agree.append(case_same)
        diff = max(diff, case_diff)
        case = {
            "case": name,
            "sentences": len(batch),
            "tokens": sorted({int(n) for n in lengths(batch)}),
            "max_abs_diff": case_diff,
            "argmax_agreement": _mean([case_same]),
        }
        if case_every is not None:
            tokens.append(case_every)
            case["token_agreement"] = _mean([case_every])
        cases.append(case)
    over = None if every is None else ("tagged tokens" if y is not None else "all tokens")
    return Parity(max_abs_diff=diff, argmax_agreement=_mean(agree), samples=len(x), cases=tuple(cases),
                  token_agreement=_mean(tokens) if over else None, agreement_over=over)  # fmt: skip


def check_parity(step: str, result: Parity, *, atol: float | None = None, min_agreement: float = 0.0) -> Parity:
    """Raise :class:`ParityError`, naming ``step``, if ``result`` is past either tolerance."""
    worst = result.worst
    where = f" (largest on the {worst['case']} sentence{'s' if worst['sentences'] > 1 else ''}, {_tokens(worst['tokens'])}: {worst['max_abs_diff']:.3g})" if worst else ""
    if atol is not None and not result.max_abs_diff <= atol:
        raise ParityError(f"{step}: parity check failed: max |onnxruntime − torch| = {result.max_abs_diff:.3g} > tolerance {atol:g} on {result.samples} held-out inputs{where}")
    if not result.argmax_agreement >= min_agreement:
        raise ParityError(f"{step}: parity check failed: argmax agreement {result.argmax_agreement:.2%} < {min_agreement:.2%} on {result.samples} held-out inputs{where}")
    return result


def _tokens(counts: list[int]) -> str:
    return f"{counts[0]} tokens" if len(counts) == 1 else f"{counts[0]}–{counts[-1]} tokens"


def quantize_onnx(source: str | Path, path: str | Path, calibration: torch.Tensor, *, fmt: str = "qdq", per_channel: bool = True, batch_size: int = 64) -> Path:
    """ONNX Runtime static int8 of ``source`` into ``path``: weights int8, activations uint8 (calibrated on ``calibration``)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if fmt not in FORMATS:
        raise ExportError(f"onnx-int8 format {fmt!r} is not one of {', '.join(FORMATS)}")
    batches = [calibration[i : i + batch_size].cpu().float().contiguous().numpy() for i in range(0, len(calibration), batch_size)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.items, None)
            return None if batch is None else {INPUT: batch}

    path = Path(path)

    def write(tmp: Path) -> None:
        prepared = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            with _quiet():
                quant_pre_process(str(source), str(prepared))
                quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                                per_channel=per_channel, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)  # fmt: skip
        finally:
            prepared.unlink(missing_ok=True)

    try:
        atomic_write(path, write)
    except Exception as err:
        raise ExportError(f"onnx-int8: onnxruntime quantization of {Path(source).name} failed: {_first_line(err)}") from None
    return path


#: The ops whose weights ONNX Runtime's dynamic quantization makes int8 (activations are quantized per
#: call): the matrix products of Linear layers and attention, the LSTM cells, and the embedding tables
#: (``Gather`` of an int8 table, then dequantized rows: most of a small text model's bytes).
DYNAMIC_OPS = ("MatMul", "Gemm", "LSTM", "Gather")


def quantize_onnx_dynamic(source: str | Path, path: str | Path, *, per_channel: bool = False, ops: tuple[str, ...] = DYNAMIC_OPS) -> Path:
    """ONNX Runtime dynamic int8 of ``source`` into ``path``: int8 weights for ``ops``, no calibration.

    The form for text models: their input is integer ids (nothing to calibrate), and their weights
    are embedding tables, matrix products and LSTM cells.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = Path(path)

    def write(tmp: Path) -> None:
        with _quiet():
            quantize_dynamic(str(source), str(tmp), op_types_to_quantize=list(ops), per_channel=per_channel, weight_type=QuantType.QInt8)

    try:
        atomic_write(path, write)
    except Exception as err:  # noqa: BLE001  the quantizer raises many kinds
        raise ExportError(f"onnx-int8 (dynamic): onnxruntime quantization of {Path(source).name} failed: {_first_line(err)}") from None
    return path
