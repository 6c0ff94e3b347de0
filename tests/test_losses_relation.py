"""Relational losses — SP, RKD, PKT, CC — against loop re-implementations, and their invariants."""

import math

import numpy as np
import pytest
import torch
from loss_helpers import feat, student_and_teacher_grads

from distil.losses import CC, PKT, RKD, SP


def rows(x):
    return [np.asarray(r, dtype=np.float64).ravel() for r in x.numpy()]


def unit(v):
    n = math.sqrt(float(v @ v))
    return v / max(n, 1e-12)


def huber(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


# --- the re-implementations: loops over samples, no matrices -----------------------------------


def loop_sp(s, t):
    def gram_rows(x):
        g = [[float(a @ b) for b in x] for a in x]
        return [unit(np.array(r)) for r in g]

    gs, gt = gram_rows(rows(s)), gram_rows(rows(t))
    b = len(gs)
    return sum(float(((rs - rt) ** 2).sum()) for rs, rt in zip(gs, gt)) / b**2


def loop_rkd(s, t, wd=25.0, wa=50.0):
    def relations(x):
        b = len(x)
        d = [[math.sqrt(float((x[j] - x[i]) @ (x[j] - x[i]))) for j in range(b)] for i in range(b)]
        pairs = [d[i][j] for i in range(b) for j in range(b) if i != j]
        mean = sum(pairs) / len(pairs) if pairs else 0.0
        dist = [[d[i][j] / max(mean, 1e-12) for j in range(b)] for i in range(b)]

        def e(i, j):
            return (x[j] - x[i]) / d[i][j] if d[i][j] > 0 else 0 * x[i]

        ang = [[[float(e(i, j) @ e(i, k)) for k in range(b)] for j in range(b)] for i in range(b)]
        return dist, ang

    (ds, as_), (dt, at) = relations(rows(s)), relations(rows(t))
    b = len(ds)
    dist_loss = sum(huber(ds[i][j], dt[i][j]) for i in range(b) for j in range(b)) / b**2
    angle_loss = sum(huber(as_[i][j][k], at[i][j][k]) for i in range(b) for j in range(b) for k in range(b)) / b**3
    return wd * dist_loss + wa * angle_loss


def loop_pkt(s, t, eps=1e-7):
    def conditional(x):
        b = len(x)
        k = [[0.5 * (float(unit(x[i]) @ unit(x[j])) + 1) for j in range(b)] for i in range(b)]
        return [[k[i][j] / sum(k[i][m] for m in range(b) if m != i) if j != i else 0.0 for j in range(b)] for i in range(b)]

    ps, pt = conditional(rows(s)), conditional(rows(t))
    b = len(ps)
    total = sum(pt[i][j] * math.log((pt[i][j] + eps) / (ps[i][j] + eps)) for i in range(b) for j in range(b) if j != i)
    return total / b


def loop_cc(s, t, gamma=0.4, order=2):
    def corr(x):
        x = [unit(r) for r in x]
        return [
            [sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * float(a @ c) ** p for p in range(order + 1)) for c in x]
            for a in x
        ]

    cs, ct = corr(rows(s)), corr(rows(t))
    b = len(cs)
    return sum((cs[i][j] - ct[i][j]) ** 2 for i in range(b) for j in range(b)) / b**2


GOLDEN = [(SP, loop_sp), (RKD, loop_rkd), (PKT, loop_pkt), (CC, loop_cc)]
IDS = ["SP", "RKD", "PKT", "CC"]


@pytest.mark.parametrize(("cls", "reference"), GOLDEN, ids=IDS)
def test_golden_value_with_different_feature_shapes(cls, reference):
    s, t = feat(5, 7, seed=1), feat(5, 2, 3, 3, seed=2)  # widths 7 and 18
    assert cls()(s, t).item() == pytest.approx(reference(s, t), rel=1e-5)
    assert cls()(t, s).item() == pytest.approx(reference(t, s), rel=1e-5)


def test_non_default_parameters_golden():
    s, t = feat(4, 6, seed=3), feat(4, 5, seed=4)
    assert RKD(distance_weight=1.0, angle_weight=0.0)(s, t).item() == pytest.approx(loop_rkd(s, t, 1.0, 0.0), rel=1e-5)
    assert RKD(distance_weight=0.0, angle_weight=2.0)(s, t).item() == pytest.approx(loop_rkd(s, t, 0.0, 2.0), rel=1e-5)
    assert CC(gamma=1.5, order=4)(s, t).item() == pytest.approx(loop_cc(s, t, 1.5, 4), rel=1e-5)


def test_rkd_huber_regime_is_exercised():
    # a far-off student makes some |ψ_s − ψ_t| > 1, the linear part of smooth-L1
    s, t = feat(4, 3, seed=5), feat(4, 3, seed=6)
    s[0] *= 30
    assert RKD()(s, t).item() == pytest.approx(loop_rkd(s, t), rel=1e-5)


def test_sp_by_hand():
    # s = [[1,0],[0,1]]: G = I, rows stay; t = [[1,0],[1,0]]: G = all ones, rows → [1/√2, 1/√2]
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    r = 1 / math.sqrt(2)
    per_row = (1 - r) ** 2 + r**2
    assert SP()(s, t).item() == pytest.approx(2 * per_row / 4, rel=1e-5)


def test_cc_taylor_expansion_approaches_the_gaussian_kernel():
    x = feat(4, 5, seed=7)
    xn = torch.nn.functional.normalize(x, dim=1)
    rbf = torch.exp(-0.4 * torch.cdist(xn, xn) ** 2)
    torch.testing.assert_close(CC(gamma=0.4, order=12).correlation(x), rbf, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("cls", [SP, RKD, PKT, CC], ids=IDS)
def test_zero_when_equal_and_invariant_to_feature_scale(cls):
    t = feat(6, 4, seed=8)
    assert cls()(t, t).item() == pytest.approx(0.0, abs=1e-12)
    assert cls()(3.0 * t, t).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("cls", [SP, RKD, PKT, CC], ids=IDS)
def test_gradient_reaches_student_never_teacher(cls):
    _, grad, t_grad = student_and_teacher_grads(cls(), feat(4, 6, seed=9), feat(4, 2, 2, 2, seed=10))
    assert grad is not None and grad.abs().sum() > 0
    assert t_grad is None or torch.count_nonzero(t_grad) == 0


@pytest.mark.parametrize("cls", [SP, RKD, PKT, CC], ids=IDS)
@pytest.mark.parametrize("batch", [1, 2])
def test_small_batches_are_finite(cls, batch):
    value, grad, _ = student_and_teacher_grads(cls(), feat(batch, 6, seed=11), feat(batch, 3, seed=12))
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    if batch == 1:  # a single sample has no relations to match
        assert value.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("cls", [SP, RKD, PKT, CC], ids=IDS)
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_constant_features_are_finite(cls, fill):
    const = torch.full((3, 2, 2, 2), fill, dtype=torch.float64)
    for s, t in [(const, const), (const, feat(3, 5, seed=13)), (feat(3, 5, seed=14), const)]:
        value, grad, _ = student_and_teacher_grads(cls(), s, t)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_rkd_with_duplicate_samples_is_finite():
    s = feat(4, 3, seed=15)
    s[1] = s[0]
    value, grad, _ = student_and_teacher_grads(RKD(), s, feat(4, 3, seed=16))
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    assert value.item() == pytest.approx(loop_rkd(s, feat(4, 3, seed=16)), rel=1e-5)


def test_batches_must_match():
    with pytest.raises(ValueError, match="same size"):
        SP()(torch.zeros(3, 4), torch.zeros(4, 4))
