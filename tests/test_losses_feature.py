"""Feature losses — FitNet, AT, NST, VID, FT, AB — against hand and numpy values, and their invariants."""

import math

import numpy as np
import pytest
import torch
from loss_helpers import assert_no_teacher_grad, feat, student_and_teacher_grads

from distil.losses import AB, AT, FT, NST, VID, FitNet


def np_normalize_rows(x, eps=1e-12):
    return x / np.maximum(np.sqrt((x**2).sum(axis=1, keepdims=True)), eps)


def np_block_mean(a, size):
    """Average (B, H, W) over equal blocks down to ``size`` (sizes divide evenly in these tests)."""
    b, h, w = a.shape
    fh, fw = h // size[0], w // size[1]
    return a.reshape(b, size[0], fh, size[1], fw).mean(axis=(2, 4))


# --- FitNet -----------------------------------------------------------------------------------


def test_fitnet_by_hand():
    s = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    t = torch.tensor([[[[1.0, 0.0], [3.0, 0.0]]]])
    assert FitNet()(s, t).item() == pytest.approx((0 + 2**2 + 0 + 4**2) / 4, rel=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        FitNet()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 4, 4))


# --- AT ---------------------------------------------------------------------------------------


def np_at(s, t):
    a_s, a_t = (s**2).mean(axis=1), (t**2).mean(axis=1)
    size = tuple(min(x, y) for x, y in zip(a_s.shape[1:], a_t.shape[1:]))
    a_s, a_t = np_block_mean(a_s, size), np_block_mean(a_t, size)
    q_s = np_normalize_rows(a_s.reshape(len(a_s), -1))
    q_t = np_normalize_rows(a_t.reshape(len(a_t), -1))
    return float(((q_s - q_t) ** 2).mean())


def test_at_by_hand():
    # student map [3², 4²] = [9, 16], ‖·‖ = √337; teacher map [1, 0] → [1, 0]
    s = torch.tensor([[[[3.0, 4.0]]]])
    t = torch.tensor([[[[1.0, 0.0]]]])
    r = math.sqrt(337)
    assert AT()(s, t).item() == pytest.approx(((9 / r - 1) ** 2 + (16 / r) ** 2) / 2, rel=1e-5)


def test_at_golden_with_different_channels_and_spatial_sizes():
    s, t = feat(3, 4, 4, 4, seed=1), feat(3, 6, 8, 8, seed=2)
    assert AT()(s, t).item() == pytest.approx(np_at(s.numpy(), t.numpy()), rel=1e-5)
    assert AT()(t, s).item() == pytest.approx(np_at(t.numpy(), s.numpy()), rel=1e-5)
    # 1-d feature maps (sequence models) work too
    assert torch.isfinite(AT()(feat(2, 3, 8, seed=3), feat(2, 5, 4, seed=4)))


def test_at_zero_when_equal_and_scale_invariant():
    t = feat(2, 4, 4, 4, seed=5)
    assert AT()(t, t).item() == 0.0
    assert AT()(3 * t, t).item() == pytest.approx(0.0, abs=1e-12)
    _, grad, t_grad = student_and_teacher_grads(AT(), feat(2, 3, 8, 8, seed=6), t)
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


# --- NST --------------------------------------------------------------------------------------


def np_nst(s, t, degree=2, c=0.0):
    total = 0.0
    for fs, ft in zip(s, t):
        fs = np_normalize_rows(fs.reshape(fs.shape[0], -1))
        ft = np_normalize_rows(ft.reshape(ft.shape[0], -1))

        def mean_k(x, y):
            return np.mean([[(xi @ yj + c) ** degree for yj in y] for xi in x])

        total += mean_k(ft, ft) + mean_k(fs, fs) - 2 * mean_k(ft, fs)
    return total / len(s)


def test_nst_golden_with_different_channels():
    s, t = feat(3, 4, 3, 3, seed=7), feat(3, 6, 3, 3, seed=8)
    assert NST()(s, t).item() == pytest.approx(np_nst(s.numpy(), t.numpy()), rel=1e-5)
    assert NST(degree=3, c=1.0)(s, t).item() == pytest.approx(np_nst(s.numpy(), t.numpy(), 3, 1.0), rel=1e-5)


def test_nst_pools_spatial_sizes_and_is_zero_when_equal():
    s, t = feat(2, 4, 8, 8, seed=9), feat(2, 5, 4, 4, seed=10)
    pooled = s.numpy().reshape(2, 4, 4, 2, 4, 2).mean(axis=(3, 5))
    assert NST()(s, t).item() == pytest.approx(np_nst(pooled, t.numpy()), rel=1e-5)
    assert NST()(t, t).item() == pytest.approx(0.0, abs=1e-12)
    _, grad, t_grad = student_and_teacher_grads(NST(), s, t)
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


# --- VID --------------------------------------------------------------------------------------


def test_vid_golden_with_per_channel_variance():
    s, t = feat(2, 3, 2, 2, seed=11), feat(2, 3, 2, 2, seed=12)
    vid = VID(channels=3).double()
    with torch.no_grad():
        vid.raw_var.copy_(torch.tensor([-1.0, 0.5, 2.0]))
    var = np.log1p(np.exp([-1.0, 0.5, 2.0])) + 1e-5  # softplus + eps
    nll = 0.5 * ((t.numpy() - s.numpy()) ** 2 / var[None, :, None, None] + np.log(var)[None, :, None, None])
    assert vid(s, t).item() == pytest.approx(float(nll.mean()), rel=1e-5)


def test_vid_starts_at_variance_five_and_trains_its_variance():
    vid = VID(channels=4)
    np.testing.assert_allclose(vid.variance().detach().numpy(), 5.0, rtol=1e-6)
    s, t = feat(2, 4, 3, 3, seed=13).float(), feat(2, 4, 3, 3, seed=14).float()
    value, grad, t_grad = student_and_teacher_grads(vid, s, t)
    assert grad.abs().sum() > 0 and vid.raw_var.grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)
    # at μ(s) = t only the log-variance term is left: ½·log 5, and no gradient to the student
    value, grad, _ = student_and_teacher_grads(VID(channels=4), t, t)
    assert value.item() == pytest.approx(0.5 * math.log(5.0), rel=1e-5)
    assert grad.abs().max() == 0


def test_vid_lazy_variance_is_created_in_place_from_the_first_batch():
    vid = VID()
    param = vid.raw_var
    optimizer = torch.optim.SGD(vid.parameters(), lr=1.0)  # built before the first forward, as a trainer does
    s, t = feat(2, 5, seed=15).float(), feat(2, 5, seed=16).float()
    vid(s, t).backward()
    assert vid.raw_var is param and vid.raw_var.shape == (5,)
    before = vid.raw_var.detach().clone()
    optimizer.step()
    assert not torch.equal(before, vid.raw_var.detach())
    with pytest.raises(ValueError, match="5 channels"):
        vid(feat(2, 6, seed=17).float(), feat(2, 6, seed=18).float())


# --- FT ---------------------------------------------------------------------------------------


def test_ft_by_hand_and_golden():
    # factors [3, 4] → [0.6, 0.8] and [0, 2] → [0, 1]: |0.6 − 0| + |0.8 − 1| = 0.8 over 2 elements
    assert FT()(torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]])).item() == pytest.approx(0.4, rel=1e-5)
    s, t = feat(3, 2, 3, 3, seed=19), feat(3, 2, 3, 3, seed=20)
    expected = np.abs(np_normalize_rows(s.numpy().reshape(3, -1)) - np_normalize_rows(t.numpy().reshape(3, -1))).mean()
    assert FT()(s, t).item() == pytest.approx(float(expected), rel=1e-5)
    assert FT()(2 * t, t).item() == pytest.approx(0.0, abs=1e-12)


# --- AB ---------------------------------------------------------------------------------------


def test_ab_by_hand():
    t = torch.tensor([[1.0, -1.0, 2.0, 0.0], [-1.0, -1.0, -1.0, -1.0]])
    s = torch.tensor([[0.5, 0.5, 2.0, -3.0], [-1.0, -1.0, -1.0, -1.0]])
    # row 0: t>0 at 0 (s=0.5: (1−0.5)² = 0.25) and 2 (s=2 ≥ 1: 0); t≤0 at 1 (s=0.5: (1+0.5)² = 2.25) and 3 (s=−3 ≤ −1: 0)
    # row 1: every teacher neuron off and every student response at −1 = −m: 0
    assert AB()(s, t).item() == pytest.approx((0.25 + 2.25 + 0.0) / 2, rel=1e-5)
    assert AB(margin=0.0)(s, t).item() == pytest.approx((0.0 + 0.5**2) / 2, rel=1e-5)


def test_ab_golden_and_zero_once_boundaries_agree_with_margin():
    s, t = feat(2, 3, 4, 4, seed=21), feat(2, 3, 4, 4, seed=22)
    sn, tn = s.numpy(), t.numpy()
    hinge = np.where(tn > 0, np.maximum(1 - sn, 0), np.maximum(1 + sn, 0)) ** 2
    assert AB()(s, t).item() == pytest.approx(float(hinge.reshape(2, -1).sum(1).mean()), rel=1e-5)
    assert AB()(torch.where(t > 0, 1.5, -1.5), t).item() == 0.0
    _, grad, t_grad = student_and_teacher_grads(AB(), s, t)
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


# --- all feature losses -----------------------------------------------------------------------


def losses():
    return [FitNet(), AT(), NST(), VID(), FT(), AB()]


@pytest.mark.parametrize("index", range(6), ids=["FitNet", "AT", "NST", "VID", "FT", "AB"])
def test_gradient_reaches_student_never_teacher(index):
    loss = losses()[index].double()
    _, grad, t_grad = student_and_teacher_grads(loss, feat(2, 3, 4, 4, seed=23), feat(2, 3, 4, 4, seed=24))
    assert grad is not None and grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


@pytest.mark.parametrize("index", range(6), ids=["FitNet", "AT", "NST", "VID", "FT", "AB"])
@pytest.mark.parametrize("batch", [1, 2])
def test_small_batches_are_finite(index, batch):
    value, grad, _ = student_and_teacher_grads(losses()[index].double(), feat(batch, 3, 4, 4, seed=25), feat(batch, 3, 4, 4, seed=26))
    assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("index", range(6), ids=["FitNet", "AT", "NST", "VID", "FT", "AB"])
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_constant_features_are_finite(index, fill):
    const = torch.full((2, 3, 4, 4), fill, dtype=torch.float64)
    for s, t in [(const, const), (const, feat(2, 3, 4, 4, seed=27)), (feat(2, 3, 4, 4, seed=28), const)]:
        value, grad, _ = student_and_teacher_grads(losses()[index].double(), s, t)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_zero_when_student_equals_teacher():
    t = feat(2, 3, 4, 4, seed=29)
    for loss in (FitNet(), AT(), NST(), FT()):
        assert loss(t, t).item() == pytest.approx(0.0, abs=1e-12), type(loss).__name__
