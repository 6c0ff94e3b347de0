"""Response (logit) losses — CE, KD, DKD, DIST, LSKD, LogitMSE — against hand and numpy values; the registry."""

import math

import numpy as np
import pytest
import torch
from loss_helpers import assert_no_teacher_grad, student_and_teacher_grads

from distil.losses import CE, DIST, DKD, KD, LOSSES, LSKD, LogitMSE, Term, build_loss, list_losses

LN2, LN3 = math.log(2), math.log(3)

# 2×3 logits chosen so that the softmaxes are simple fractions:
# teacher row 0 = [0, ln2, 0] → [1/4, 1/2, 1/4];   row 1 = [ln3, 0, 0] → [3/5, 1/5, 1/5]
# student row 0 = [0, 0, 0]   → [1/3, 1/3, 1/3];   row 1 = [ln2, ln2, 0] → [2/5, 2/5, 1/5]
TEACHER = torch.tensor([[0.0, LN2, 0.0], [LN3, 0.0, 0.0]], dtype=torch.float64)
STUDENT = torch.tensor([[0.0, 0.0, 0.0], [LN2, LN2, 0.0]], dtype=torch.float64)
P_T = [[1 / 4, 1 / 2, 1 / 4], [3 / 5, 1 / 5, 1 / 5]]
P_S = [[1 / 3, 1 / 3, 1 / 3], [2 / 5, 2 / 5, 1 / 5]]
LABELS = torch.tensor([1, 0])


def rng_logits(b=4, c=5, seed=0, scale=2.0):
    g = np.random.default_rng(seed)
    return torch.tensor(g.normal(size=(b, c)) * scale, dtype=torch.float64)


def np_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def kl_rows(p, q):
    """Σ_k p_k log(p_k / q_k) for each row, by loops."""
    return [sum(pk * math.log(pk / qk) for pk, qk in zip(pr, qr) if pk > 0) for pr, qr in zip(p, q)]


# --- KD ---------------------------------------------------------------------------------------


def test_kd_at_T1_is_kl_teacher_to_student_by_hand():
    # row 0: ¼·ln(¾) + ½·ln(3/2) + ¼·ln(¾) = ½·ln(9/8);  row 1: ⅗·ln(3/2) + ⅕·ln(½) + ⅕·ln(1)
    by_hand = (0.5 * math.log(9 / 8) + 0.6 * math.log(1.5) - 0.2 * math.log(2)) / 2
    assert by_hand == pytest.approx(sum(kl_rows(P_T, P_S)) / 2, rel=1e-12)
    assert KD(T=1)(STUDENT, TEACHER).item() == pytest.approx(by_hand, rel=1e-5)


def test_kd_gradient_is_T_times_prob_difference_over_batch():
    # T = 1, by hand: (p_s − p_t) / B
    _, grad, t_grad = student_and_teacher_grads(KD(T=1), STUDENT, TEACHER)
    expected = [[(ps - pt) / 2 for ps, pt in zip(rs, rt)] for rs, rt in zip(P_S, P_T)]
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-12)
    assert_no_teacher_grad(t_grad)
    # any T: T·(softmax(s/T) − softmax(t/T)) / B — the T² factor makes the gradient O(1/T), not O(1/T²)
    s, t = rng_logits(seed=1), rng_logits(seed=2)
    for T in (1.0, 4.0, 20.0):
        _, grad, _ = student_and_teacher_grads(KD(T=T), s, t)
        expected = T * (np_softmax(s.numpy() / T) - np_softmax(t.numpy() / T)) / s.shape[0]
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-12)


def test_kd_zero_loss_and_zero_gradient_when_student_equals_teacher():
    z = rng_logits(seed=3)
    value, grad, t_grad = student_and_teacher_grads(KD(T=4), z, z)
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.count_nonzero(grad.abs() > 1e-12) == 0
    assert_no_teacher_grad(t_grad)


def test_ce_with_label_smoothing_by_hand():
    # target q = 0.9·onehot + 0.1/3; CE = −Σ q_k log p_s,k, averaged over the 2 rows
    eps = 0.1
    rows = []
    for p, y in zip(P_S, LABELS.tolist()):
        q = [(1 - eps) * (k == y) + eps / 3 for k in range(3)]
        rows.append(-sum(qk * math.log(pk) for qk, pk in zip(q, p)))
    # row 0 is uniform: −log ⅓ = ln 3 whatever the smoothing
    assert rows[0] == pytest.approx(LN3)
    assert CE(label_smoothing=eps)(STUDENT, None, target=LABELS).item() == pytest.approx(sum(rows) / 2, rel=1e-5)
    assert CE()(STUDENT, None, target=LABELS).item() == pytest.approx((LN3 - math.log(2 / 5)) / 2, rel=1e-5)


def test_alpha_mixing_through_term_weights():
    alpha, T = 0.9, 1.0
    terms = [KD(T=T) * alpha, CE() * (1 - alpha)]
    assert [t.weight for t in terms] == [pytest.approx(0.9), pytest.approx(0.1)]
    assert [t.name for t in terms] == ["kd", "ce"]
    assert isinstance(terms[0], Term) and terms[0].student == "logits"
    total = sum(t.weight * t.loss(STUDENT, TEACHER, target=LABELS) for t in terms)
    kd = sum(kl_rows(P_T, P_S)) / 2
    ce = -(math.log(P_S[0][1]) + math.log(P_S[1][0])) / 2
    assert total.item() == pytest.approx(alpha * kd + (1 - alpha) * ce, rel=1e-5)
    # the weights compose: (KD * 2) * 0.5 is KD * 1.0
    assert ((KD() * 2) * 0.5).weight == 1.0


# --- DKD --------------------------------------------------------------------------------------


def np_dkd(s, t, y, alpha, beta, T):
    total = 0.0
    for zs, zt, label in zip(s, t, y):
        ps, pt = np_softmax(zs / T), np_softmax(zt / T)
        bs, bt = [ps[label], 1 - ps[label]], [pt[label], 1 - pt[label]]
        tckd = sum(b_t * math.log(b_t / b_s) for b_t, b_s in zip(bt, bs))
        others = [k for k in range(len(zs)) if k != label]
        qs, qt = np_softmax(zs[others] / T), np_softmax(zt[others] / T)
        nckd = sum(a * math.log(a / b) for a, b in zip(qt, qs))
        total += alpha * tckd + beta * nckd
    return total / len(s) * T**2


def test_dkd_golden_value():
    s, t, y = rng_logits(seed=4), rng_logits(seed=5), torch.tensor([0, 3, 4, 1])
    for alpha, beta, T in [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0)]:
        expected = np_dkd(s.numpy(), t.numpy(), y.numpy(), alpha, beta, T)
        assert DKD(alpha, beta, T)(s, t, target=y).item() == pytest.approx(expected, rel=1e-5)
    assert DKD.uses_target and DKD().alpha == 1.0 and DKD().beta == 8.0 and DKD().T == 4.0


def test_dkd_recovers_kd_with_beta_one_minus_teacher_target_prob():
    # KD = TCKD + (1 − p_y^t)·NCKD for one sample
    s, t, y = rng_logits(1, 6, seed=6), rng_logits(1, 6, seed=7), torch.tensor([2])
    p_target = np_softmax(t.numpy()[0] / 4.0)[2]
    assert DKD(alpha=1.0, beta=1 - p_target, T=4.0)(s, t, target=y).item() == pytest.approx(KD(T=4.0)(s, t).item(), rel=1e-5)


def test_dkd_zero_when_equal_and_gradient_only_to_student():
    z, y = rng_logits(seed=8), torch.tensor([0, 1, 2, 3])
    assert DKD()(z, z, target=y).item() == pytest.approx(0.0, abs=1e-12)
    _, grad, t_grad = student_and_teacher_grads(DKD(), rng_logits(seed=9), z, target=y)
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


# --- DIST -------------------------------------------------------------------------------------


def np_pearson(a, b, eps=1e-8):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (np.sqrt((a * a).sum()) * np.sqrt((b * b).sum()) + eps))


def np_dist(s, t, beta, gamma, tau):
    ys, yt = np_softmax(s / tau), np_softmax(t / tau)
    inter = 1 - np.mean([np_pearson(ys[i], yt[i]) for i in range(ys.shape[0])])
    intra = 1 - np.mean([np_pearson(ys[:, j], yt[:, j]) for j in range(ys.shape[1])])
    return tau**2 * (beta * inter + gamma * intra)


def test_dist_golden_value():
    s, t = rng_logits(seed=10), rng_logits(seed=11)
    for beta, gamma, tau in [(1.0, 1.0, 1.0), (2.0, 0.5, 4.0)]:
        assert DIST(beta, gamma, tau)(s, t).item() == pytest.approx(np_dist(s.numpy(), t.numpy(), beta, gamma, tau), rel=1e-5)


def test_dist_both_correlation_terms_vanish_when_equal():
    z = rng_logits(seed=12)
    # not exactly 0: ρ(a, a) = ‖a‖² / (‖a‖² + 1e-8), and a column of probabilities has ‖a‖² ~ 0.04
    assert DIST(beta=1.0, gamma=0.0)(z, z).item() == pytest.approx(0.0, abs=1e-6)
    assert DIST(beta=0.0, gamma=1.0)(z, z).item() == pytest.approx(0.0, abs=1e-6)
    _, grad, t_grad = student_and_teacher_grads(DIST(), rng_logits(seed=13), z)
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


# --- LSKD -------------------------------------------------------------------------------------


def np_lskd(s, t, T):
    def z(x):
        return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, ddof=1, keepdims=True) + 1e-7)

    return T**2 * sum(kl_rows(np_softmax(z(t) / T), np_softmax(z(s) / T))) / len(s)


def test_lskd_golden_value_and_default_temperature():
    s, t = rng_logits(seed=14), rng_logits(seed=15, scale=5.0)
    assert LSKD().T == 2.0
    for T in (2.0, 1.0):
        assert LSKD(T)(s, t).item() == pytest.approx(np_lskd(s.numpy(), t.numpy(), T), rel=1e-5)


def test_lskd_zero_when_equal_and_invariant_to_logit_scale_and_shift():
    t = rng_logits(seed=16)
    assert LSKD()(t, t).item() == pytest.approx(0.0, abs=1e-12)
    assert LSKD()(3 * t + 7, t).item() == pytest.approx(0.0, abs=1e-10)
    assert KD()(3 * t + 7, t).item() > 0.1  # plain KD does ask for the magnitude
    _, grad, t_grad = student_and_teacher_grads(LSKD(), rng_logits(seed=17), t)
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


# --- LogitMSE ---------------------------------------------------------------------------------


def test_logit_mse_by_hand_and_for_regression_outputs():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert LogitMSE()(s, t).item() == pytest.approx((0 + 2**2 + 3**2 + 0) / 4, rel=1e-5)
    # a regression head: one output per sample
    assert LogitMSE()(torch.tensor([1.5, -1.0, 0.0]), torch.tensor([0.5, 1.0, 0.0])).item() == pytest.approx((1 + 4 + 0) / 3, rel=1e-5)
    z = rng_logits(seed=18)
    assert LogitMSE()(z, z).item() == 0.0
    _, grad, t_grad = student_and_teacher_grads(LogitMSE(), rng_logits(seed=19), z)
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)
    with pytest.raises(ValueError, match="same shape"):
        LogitMSE()(torch.zeros(2, 3), torch.zeros(2, 4))


def test_kd_is_half_logit_mse_at_high_temperature():
    # Hinton et al. 2015: for zero-mean logits, T²·KL → ‖s − t‖² / (2K) per sample as T → ∞
    s, t = rng_logits(seed=20), rng_logits(seed=21)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    assert KD(T=1000.0)(s, t).item() == pytest.approx(LogitMSE()(s, t).item() / 2, rel=1e-2)


# --- all response losses: small batches, constant logits --------------------------------------

RESPONSE = [KD(), DKD(), DIST(), LSKD(), LogitMSE(), CE(label_smoothing=0.1)]


@pytest.mark.parametrize("loss", RESPONSE, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("batch", [1, 2])
def test_small_batches_are_finite(loss, batch):
    y = torch.arange(batch) % 5
    value, grad, _ = student_and_teacher_grads(loss, rng_logits(batch, 5, seed=22), rng_logits(batch, 5, seed=23), target=y)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


@pytest.mark.parametrize("loss", RESPONSE, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_constant_logits_are_finite(loss, fill):
    const = torch.full((3, 5), fill, dtype=torch.float64)
    y = torch.tensor([0, 2, 4])
    for s, t in [(const, const), (const, rng_logits(3, 5, seed=24)), (rng_logits(3, 5, seed=25), const)]:
        value, grad, _ = student_and_teacher_grads(loss, s, t, target=y)
        assert torch.isfinite(value) and torch.isfinite(grad).all()


# --- registry ---------------------------------------------------------------------------------

ALL_NAMES = [
    *("CE", "KD", "DKD", "DIST", "LSKD", "LogitMSE", "FitNet", "AT", "NST", "VID", "FT", "AB", "SP", "RKD", "PKT", "CC", "CRD"),
    *("InfoNCE", "BYOL", "BarlowTwins", "SEED", "DINO"),
]


def test_every_loss_is_registered_with_a_paper_docstring():
    assert set(ALL_NAMES) <= set(LOSSES)
    docs = list_losses()
    for name in ALL_NAMES:
        assert LOSSES[name].name == name.lower()
        assert docs[name], f"{name} has no docstring"
        if name != "CE":
            assert any(str(year) in docs[name] for year in range(2014, 2025)), docs[name]


def test_build_loss_builds_and_unknown_names_list_the_known_ones():
    assert isinstance(build_loss("KD", T=2), KD) and build_loss("KD", T=2).T == 2.0
    assert isinstance(build_loss("CRD", s_dim=4, t_dim=3, n_data=10, nce_k=4), LOSSES["CRD"])
    with pytest.raises(KeyError) as err:
        build_loss("nope")
    for name in ALL_NAMES:
        assert name in str(err.value)
    with pytest.raises(TypeError, match="DKD"):
        build_loss("DKD", temperature=3)


def test_only_crd_needs_indices_and_only_ce_dkd_need_labels():
    assert {n for n in ALL_NAMES if LOSSES[n].uses_index} == {"CRD"}
    assert {n for n in ALL_NAMES if LOSSES[n].uses_target} == {"CE", "DKD"}
