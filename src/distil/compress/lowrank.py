"""Low-rank factorization: each Linear and convolution replaced by a chain of smaller ones.

- **Linear** (Denton et al., 2014, "Exploiting Linear Structure Within Convolutional Networks for
  Efficient Evaluation", arXiv:1404.0736): the truncated SVD ``W ≈ U_r S_r V_rᵀ`` (``out × in``)
  becomes two Linears, ``in → r`` with weight ``√S_r V_rᵀ`` and ``r → out`` with weight ``U_r √S_r``
  and the bias. Multiply-adds per sample: ``r (in + out)`` instead of ``in · out``. A 1×1 convolution
  is a Linear over channels and is split the same way (two 1×1 convolutions).
- **Convolution, Tucker-2** (Kim et al., 2016, "Compression of Deep Convolutional Neural Networks for
  Fast and Low Power Mobile Applications", arXiv:1511.06530): the kernel ``W`` (``O × I × k × k``) is
  decomposed on its two channel modes by HOSVD — ``U_out`` (``O × r_out``), the leading left singular
  vectors of the mode-0 unfolding, and ``U_in`` (``I × r_in``) of the mode-1 unfolding — with the core
  ``C = W ×₀ U_outᵀ ×₁ U_inᵀ`` (``r_out × r_in × k × k``). It runs as three convolutions: 1×1
  ``I → r_in`` (weight ``U_inᵀ``), the ``k × k`` core ``r_in → r_out`` (the layer's stride, padding,
  dilation), 1×1 ``r_out → O`` (weight ``U_out``, the bias). Multiply-adds per output pixel:
  ``I r_in s² + r_in r_out k² + r_out O`` (``s²``: the 1×1 runs at the input's resolution) instead of
  ``I O k²``.
- **Convolution, spatial** (Jaderberg et al., 2014, "Speeding up Convolutional Neural Networks with Low
  Rank Expansions", arXiv:1405.3866, scheme 2): ``W`` rearranged as the ``(I·k_h) × (O·k_w)`` matrix
  ``M[(i, y), (o, x)] = W[o, i, y, x]`` and cut by truncated SVD to rank ``r``: a vertical ``k_h × 1``
  convolution ``I → r`` then a horizontal ``1 × k_w`` one ``r → O``. Multiply-adds per output pixel:
  ``r (I k_h s_w + O k_w)`` instead of ``I O k_h k_w``. 2-D convolutions only.

At full rank every form reproduces the layer exactly (up to float rounding). The rank comes from
``rank_ratio`` (``r = ⌈ratio · full⌉``), or ``energy`` — the smallest ``r`` whose leading singular
values hold that share of ``Σσ²`` — or a rank per layer; ranks may be rounded up to a multiple (SIMD
width). A layer is left as it is when its factorized form would not need fewer multiply-adds, or
saves less than ``min_saving`` of them (two or three layers where there was one cost more per call
than a few percent of arithmetic saves), or when it is a grouped convolution; :func:`factorize`
says which layers, and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from distil.compress.prune import replace_module
from distil.errors import ConfigError, DistilError

CONVS = (nn.Conv1d, nn.Conv2d)
#: How a k×k convolution is factorized (``compress.lowrank.conv``); 1×1 convolutions are always SVD-split.
CONV_FORMS = ("tucker2", "spatial")


class LowRankError(DistilError):
    """The model has no layer whose factorized form is cheaper."""


# --------------------------------------------------------------------------------------------- ranks


def energy_rank(singular_values: torch.Tensor, energy: float) -> int:
    """The smallest ``r`` with ``Σ_{i<r} σ_i² ≥ energy · Σ σ_i²`` (``singular_values`` in descending order)."""
    if not 0.0 < energy <= 1.0:
        raise ConfigError(f"compress.lowrank.energy must be in (0, 1], got {energy}")
    power = singular_values.double().pow(2)
    total = float(power.sum())
    if total == 0.0:
        return 1
    share = power.cumsum(0) / total
    # tolerance: the last share is 1 up to float rounding; never ask for more rank than exists
    return min(len(power), int((share < energy - 1e-12).sum().item()) + 1)


def ratio_rank(full: int, ratio: float) -> int:
    """``⌈ratio · full⌉``, at least 1."""
    if not 0.0 < ratio <= 1.0:
        raise ConfigError(f"compress.lowrank.rank_ratio must be in (0, 1], got {ratio}")
    return max(1, math.ceil(ratio * full - 1e-9))


def round_up(rank: int, multiple: int, full: int) -> int:
    """``rank`` rounded up to a multiple of ``multiple``, never above ``full``."""
    return min(full, multiple * math.ceil(rank / multiple)) if multiple > 1 else rank


@dataclass(frozen=True)
class RankRule:
    """How a layer's rank is chosen: a per-layer rank (``ranks``), else ``rank_ratio``, else ``energy``; then rounded up to ``multiple``."""

    energy: float = 0.9
    rank_ratio: float | None = None
    ranks: Mapping[str, int | Sequence[int]] = field(default_factory=dict)
    multiple: int = 1
    min_saving: float = 0.0

    def pick(self, name: str, mode: int, singular_values: torch.Tensor, full: int) -> int:
        """The rank of mode ``mode`` (0: output side, 1: input side) of layer ``name``."""
        if name in self.ranks:
            given = self.ranks[name]
            rank = given if isinstance(given, int) else list(given)[mode]
            return rank  # checked by check_ranks
        rank = ratio_rank(full, self.rank_ratio) if self.rank_ratio is not None else energy_rank(singular_values, self.energy)
        return round_up(rank, self.multiple, full)


# --------------------------------------------------------------------------------------------- layers


def _sqrt_split(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` with ``A @ B = U_r S_r V_rᵀ``: ``A = U_r √S_r`` (out × r), ``B = √S_r V_rᵀ`` (r × in)."""
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def _svd(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(matrix.detach().double(), full_matrices=False)
    return u, s, vh


def linear_macs(m: nn.Linear) -> int:
    return m.in_features * m.out_features


def factorize_linear(m: nn.Linear, rank: int) -> nn.Sequential:
    """``Linear(in, out)`` → ``Linear(in, r, bias=False)``, ``Linear(r, out)`` by truncated SVD (Denton et al., 2014)."""
    u, s, vh = _svd(m.weight)
    a, b = _sqrt_split(u, s, vh, rank)
    first = nn.Linear(m.in_features, rank, bias=False)
    second = nn.Linear(rank, m.out_features, bias=m.bias is not None)
    with torch.no_grad():
        first.weight.copy_(b)
        second.weight.copy_(a)
        if m.bias is not None:
            second.bias.copy_(m.bias)
    return _like(nn.Sequential(first, second), m)


def _conv(m: nn.Module, cin: int, cout: int, kernel: Sequence[int], *, stride=1, padding=0, dilation=1, bias: bool = False) -> nn.Module:
    """A convolution of ``m``'s type (1-D or 2-D) and padding mode."""
    return type(m)(cin, cout, tuple(kernel), stride=stride, padding=padding, dilation=dilation, bias=bias, padding_mode=m.padding_mode)


def _ones(m: nn.Module) -> tuple[int, ...]:
    return (1,) * (m.weight.dim() - 2)


def _like(new: nn.Module, old: nn.Module) -> nn.Module:
    return new.to(device=old.weight.device, dtype=old.weight.dtype).train(old.training)


def _stride_area(m: nn.Module) -> int:
    return math.prod(m.stride)


def conv_macs(m: nn.Module) -> int:
    """Multiply-adds per output pixel of a convolution (groups = 1)."""
    return m.in_channels * m.out_channels * math.prod(m.kernel_size)


def factorize_pointwise(m: nn.Module, rank: int) -> nn.Sequential:
    """A 1×1 convolution (a Linear over channels) → two 1×1 convolutions by truncated SVD (Denton et al., 2014)."""
    u, s, vh = _svd(m.weight.flatten(1))
    a, b = _sqrt_split(u, s, vh, rank)
    first = _conv(m, m.in_channels, rank, _ones(m), stride=m.stride)
    second = _conv(m, rank, m.out_channels, _ones(m), bias=m.bias is not None)
    with torch.no_grad():
        first.weight.copy_(b.view(first.weight.shape))
        second.weight.copy_(a.view(second.weight.shape))
        if m.bias is not None:
            second.bias.copy_(m.bias)
    return _like(nn.Sequential(first, second), m)


def tucker2_factors(weight: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """HOSVD of a kernel on its channel modes: ``((U_out, σ_out), (U_in, σ_in))`` of the mode-0 and mode-1 unfoldings."""
    w = weight.detach().double()
    u_out, s_out, _ = torch.linalg.svd(w.flatten(1), full_matrices=False)  # O × (I k k)
    u_in, s_in, _ = torch.linalg.svd(w.transpose(0, 1).flatten(1), full_matrices=False)  # I × (O k k)
    return (u_out, s_out), (u_in, s_in)


def factorize_tucker2(m: nn.Module, r_out: int, r_in: int) -> nn.Sequential:
    """``k×k`` convolution → 1×1 (``I → r_in``), ``k×k`` core (``r_in → r_out``), 1×1 (``r_out → O``) by HOSVD (Kim et al., 2016)."""
    (u_out, _), (u_in, _) = tucker2_factors(m.weight)
    u_out, u_in = u_out[:, :r_out], u_in[:, :r_in]
    core = torch.einsum("oi...,or,is->rs...", m.weight.detach().double(), u_out, u_in)  # W ×₀ U_outᵀ ×₁ U_inᵀ
    first = _conv(m, m.in_channels, r_in, _ones(m))
    middle = _conv(m, r_in, r_out, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation)
    last = _conv(m, r_out, m.out_channels, _ones(m), bias=m.bias is not None)
    with torch.no_grad():
        first.weight.copy_(u_in.t().reshape(first.weight.shape))
        middle.weight.copy_(core)
        last.weight.copy_(u_out.reshape(last.weight.shape))
        if m.bias is not None:
            last.bias.copy_(m.bias)
    return _like(nn.Sequential(first, middle, last), m)


def tucker2_macs(m: nn.Module, r_out: int, r_in: int) -> int:
    return m.in_channels * r_in * _stride_area(m) + r_in * r_out * math.prod(m.kernel_size) + r_out * m.out_channels


def spatial_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``M[(i, y), (o, x)] = W[o, i, y, x]``: the ``(I·k_h) × (O·k_w)`` matrix of Jaderberg et al.'s scheme 2."""
    o, i, kh, kw = weight.shape
    return weight.detach().double().permute(1, 2, 0, 3).reshape(i * kh, o * kw)


def factorize_spatial(m: nn.Conv2d, rank: int) -> nn.Sequential:
    """``k_h×k_w`` convolution → ``k_h×1`` (``I → r``) then ``1×k_w`` (``r → O``) by truncated SVD (Jaderberg et al., 2014)."""
    o, i, kh, kw = m.weight.shape
    u, s, vh = _svd(spatial_matrix(m.weight))
    a, b = _sqrt_split(u, s, vh, rank)  # a: (I·kh) × r, b: r × (O·kw)
    vertical = _conv(m, i, rank, (kh, 1), stride=(m.stride[0], 1), padding=(m.padding[0], 0), dilation=(m.dilation[0], 1))
    horizontal = _conv(m, rank, o, (1, kw), stride=(1, m.stride[1]), padding=(0, m.padding[1]), dilation=(1, m.dilation[1]), bias=m.bias is not None)
    with torch.no_grad():
        vertical.weight.copy_(a.t().reshape(rank, i, kh, 1))
        horizontal.weight.copy_(b.reshape(rank, o, kw).permute(1, 0, 2).reshape(o, rank, 1, kw))
        if m.bias is not None:
            horizontal.bias.copy_(m.bias)
    return _like(nn.Sequential(vertical, horizontal), m)


def spatial_macs(m: nn.Conv2d, rank: int) -> int:
    o, i, kh, kw = m.weight.shape
    return rank * (i * kh * m.stride[1] + o * kw)


# --------------------------------------------------------------------------------------------- plans


@dataclass
class Plan:
    """What :func:`factorize` does to one layer: its form and ranks, multiply-adds (per sample for a
    Linear, per output pixel for a convolution) before and after, or why it is left whole."""

    layer: str
    form: str
    ranks: tuple[int, ...]
    full: tuple[int, ...]
    macs: int
    macs_after: int
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"form": self.form, "rank": list(self.ranks), "full_rank": list(self.full), "macs": self.macs, "macs_after": self.macs_after}
        return out | ({"skipped": self.skipped} if self.skipped else {})


def _is_pointwise(m: nn.Module) -> bool:
    return all(k == 1 for k in m.kernel_size) and all(p == 0 for p in _tuple(m.padding)) and all(d == 1 for d in m.dilation)


def _tuple(v: Any) -> tuple:
    return v if isinstance(v, tuple) else (v,)


def full_ranks(m: nn.Module, conv_form: str = "tucker2") -> tuple[int, ...]:
    """The ranks a layer has: ``(min(out, in),)`` for a Linear or 1×1 convolution, ``(O, I)`` for Tucker-2, ``(min(I k_h, O k_w),)`` for spatial."""
    if isinstance(m, nn.Linear):
        return (min(m.in_features, m.out_features),)
    if _is_pointwise(m):
        return (min(m.in_channels, m.out_channels),)
    if conv_form == "spatial" and isinstance(m, nn.Conv2d):
        o, i, kh, kw = m.weight.shape
        return (min(i * kh, o * kw),)
    return (m.out_channels, m.in_channels)  # (the spatial form leaves 1-D convolutions whole: plan)


def plan(name: str, m: nn.Module, rule: RankRule, conv_form: str = "tucker2") -> Plan:
    """How ``m`` (named ``name``) would be factorized under ``rule``, and whether it pays."""
    if type(m) not in (nn.Linear, *CONVS):  # e.g. BiT's StdConv2d: its forward is not its raw weight's
        macs = linear_macs(m) if isinstance(m, nn.Linear) else conv_macs(m) // m.groups
        return Plan(name, "none", (), (), macs, macs, skipped=f"a custom layer ({type(m).__name__}): its forward is not a plain product with its weight")
    if isinstance(m, nn.Linear):
        u_s = _svd(m.weight)[1]
        full = full_ranks(m)
        r = rule.pick(name, 0, u_s, full[0])
        p = Plan(name, "svd", (r,), full, linear_macs(m), r * (m.in_features + m.out_features))
    elif m.groups != 1:
        return Plan(name, "none", (), (), conv_macs(m) // m.groups, conv_macs(m) // m.groups, skipped="grouped convolution")
    elif _is_pointwise(m):
        full = full_ranks(m)
        r = rule.pick(name, 0, _svd(m.weight.flatten(1))[1], full[0])
        p = Plan(name, "svd", (r,), full, conv_macs(m), r * (m.in_channels * _stride_area(m) + m.out_channels))
    elif conv_form == "spatial":
        if not isinstance(m, nn.Conv2d) or isinstance(m.padding, str):
            why = "the spatial form is for 2-D convolutions" if not isinstance(m, nn.Conv2d) else f"padding {m.padding!r} cannot be split by axis"
            return Plan(name, "none", (), (), conv_macs(m), conv_macs(m), skipped=why)
        full = full_ranks(m, "spatial")
        r = rule.pick(name, 0, _svd(spatial_matrix(m.weight))[1], full[0])
        p = Plan(name, "spatial", (r,), full, conv_macs(m), spatial_macs(m, r))
    else:
        (_, s_out), (_, s_in) = tucker2_factors(m.weight)
        r_out = rule.pick(name, 0, s_out, m.out_channels)
        r_in = rule.pick(name, 1, s_in, m.in_channels)
        p = Plan(name, "tucker2", (r_out, r_in), (m.out_channels, m.in_channels), conv_macs(m), tucker2_macs(m, r_out, r_in))
    if p.macs_after >= p.macs:
        p.skipped = f"not cheaper: {p.macs_after} multiply-adds factorized vs {p.macs}"
    elif p.macs_after > (1.0 - rule.min_saving) * p.macs:
        p.skipped = f"saves {1 - p.macs_after / p.macs:.0%} of {p.macs} multiply-adds, less than min_saving {rule.min_saving:.0%}"
    return p


def _build(m: nn.Module, p: Plan) -> nn.Module:
    forms: dict[str, Callable[..., nn.Module]] = {
        "svd": factorize_linear if isinstance(m, nn.Linear) else factorize_pointwise,
        "tucker2": factorize_tucker2,
        "spatial": factorize_spatial,
    }
    return forms[p.form](m, *p.ranks)


def layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers factorization acts on: every Linear and 1-D/2-D convolution, by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Linear, *CONVS))}


def check_ranks(model: nn.Module, ranks: Mapping[str, int | Sequence[int]], conv_form: str = "tucker2", field: str = "compress.lowrank.ranks") -> None:
    """Every per-layer rank names a layer of ``model`` and is within that layer's ranks (else :class:`ConfigError`)."""
    found = layers(model)
    for name, given in ranks.items():
        if name not in found:
            raise ConfigError(f"{field}.{name}: {type(model).__name__} has no Linear or convolution named {name!r} (layers: {', '.join(found) or 'none'})")
        full = full_ranks(found[name], conv_form)
        values = (given,) if isinstance(given, int) else tuple(given)
        if len(values) == 1 and len(full) == 2:
            values = values * 2
        if len(values) != len(full):
            raise ConfigError(f"{field}.{name}: expected {len(full)} rank{'s' if len(full) > 1 else ''} for this layer, got {list(values)}")
        for value, top in zip(values, full):
            if not 1 <= value <= top:
                what = " × ".join(str(f) for f in full)
                raise ConfigError(f"{field}.{name}: rank {value} is outside 1..{top}, the rank of {name} ({what})")


def normalized_ranks(model: nn.Module, ranks: Mapping[str, int | Sequence[int]], conv_form: str = "tucker2") -> dict[str, tuple[int, ...]]:
    """``ranks`` checked (:func:`check_ranks`), one int for a Tucker-2 layer meaning the same rank on both modes."""
    check_ranks(model, ranks, conv_form)
    found = layers(model)
    out = {}
    for name, given in ranks.items():
        values = (given,) if isinstance(given, int) else tuple(given)
        out[name] = values * len(full_ranks(found[name], conv_form)) if len(values) == 1 else values
    return out


def factorize(model: nn.Module, rule: RankRule, conv_form: str = "tucker2", only: Sequence[str] | None = None) -> list[Plan]:
    """Replace every layer of ``model`` whose factorized form is cheaper (in place); the plan of every layer.

    ``only``: restrict to these layer names. Raises :class:`LowRankError` when no layer pays.
    """
    if conv_form not in CONV_FORMS:
        raise ConfigError(f"compress.lowrank.conv must be one of {', '.join(CONV_FORMS)}, got {conv_form!r}")
    rule = RankRule(rule.energy, rule.rank_ratio, normalized_ranks(model, rule.ranks, conv_form), rule.multiple, rule.min_saving)
    plans = []
    for name, m in layers(model).items():
        if only is not None and name not in only:
            continue
        p = plan(name, m, rule, conv_form)
        plans.append(p)
        if p.skipped is None:
            replace_module(model, name, _build(m, p))
    if not any(p.skipped is None for p in plans):
        reasons = "; ".join(f"{p.layer}: {p.skipped}" for p in plans) or "no Linear or convolution"
        raise LowRankError(f"low-rank factorization leaves every layer of {type(model).__name__} whole ({reasons})")
    return plans


def model_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of one sample through every Linear and convolution of ``model`` (counted with forward hooks)."""
    total = 0

    def hook(m: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features * (output[0].numel() // m.out_features)
        else:
            total += (m.in_channels // m.groups) * math.prod(m.kernel_size) * output[0].numel()

    handles = [m.register_forward_hook(hook) for m in layers(model).values()]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example[:1])
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
