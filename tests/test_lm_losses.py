"""Token divergences of language-model distillation (FKL, RKL, GJSD, TVD, SKL, SRKL, TokenCE): hand-computed
values, zero at student == teacher, masking, limits, no gradient into the teacher."""

import math

import pytest
import torch
from loss_helpers import assert_no_teacher_grad, student_and_teacher_grads

from distil.losses import FKL, GJSD, LOSSES, RKL, SKL, SRKL, TVD, TokenCE

LN3 = math.log(3)
# One position, two tokens: teacher [ln3, 0] → p = [3/4, 1/4]; student [0, 0] → q = [1/2, 1/2].
# A second position (masked out in the tests that mask) with other values that must not count.
TEACHER = torch.tensor([[[LN3, 0.0], [0.0, 5.0]]], dtype=torch.float64)  # (B=1, L=2, V=2)
STUDENT = torch.tensor([[[0.0, 0.0], [3.0, 0.0]]], dtype=torch.float64)
FIRST = torch.tensor([[True, False]])


def kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b))


P, Q = [3 / 4, 1 / 4], [1 / 2, 1 / 2]
HAND = {
    "FKL": (FKL(), kl(P, Q)),  # 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812
    "RKL": (RKL(), kl(Q, P)),  # 0.5 ln(2/3) + 0.5 ln 2 = 0.143841
    "TVD": (TVD(), 0.25),
    "GJSD": (GJSD(beta=0.5), 0.5 * kl(P, [5 / 8, 3 / 8]) + 0.5 * kl(Q, [5 / 8, 3 / 8])),  # m = [5/8, 3/8]: 0.033822
    "SKL": (SKL(alpha=0.1), kl(P, [0.525, 0.475])),  # m = 0.1 p + 0.9 q: 0.107043
    "SRKL": (SRKL(alpha=0.1), kl(Q, [0.725, 0.275])),  # m = 0.1 q + 0.9 p: 0.113137
}
LITERAL = {"FKL": 0.130812036, "RKL": 0.143841036, "TVD": 0.25, "GJSD": 0.033822076, "SKL": 0.107042736, "SRKL": 0.113136722}


@pytest.mark.parametrize("name", list(HAND))
def test_hand_values_on_the_counted_position(name):
    loss, expected = HAND[name]
    assert float(loss(STUDENT, TEACHER, mask=FIRST)) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(LITERAL[name], rel=1e-7)
    # target = -100 marks the same position out, as a labelled batch does
    assert float(loss(STUDENT, TEACHER, target=torch.tensor([[1, -100]]))) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", list(HAND))
def test_zero_for_identical_distributions_and_positive_otherwise(name):
    loss = HAND[name][0]
    z = torch.randn(3, 5, 11, dtype=torch.float64)
    assert float(loss(z, z)) == pytest.approx(0.0, abs=1e-12)
    assert float(loss(z + torch.randn_like(z), z)) > 0


@pytest.mark.parametrize("name", list(HAND))
def test_mean_over_counted_positions_and_empty_mask(name):
    loss = HAND[name][0]
    s, t = torch.randn(2, 4, 7, dtype=torch.float64), torch.randn(2, 4, 7, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
    each = torch.stack([loss(s[b, i][None, None], t[b, i][None, None]) for b, i in mask.nonzero().tolist()])
    assert float(loss(s, t, mask=mask)) == pytest.approx(float(each.mean()), rel=1e-9)
    assert float(loss(s, t, mask=torch.zeros(2, 4, dtype=torch.bool))) == 0.0  # not 0/0


@pytest.mark.parametrize("name", list(HAND))
def test_no_gradient_into_the_teacher(name):
    s, t = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    _, s_grad, t_grad = student_and_teacher_grads(HAND[name][0], s, t)
    assert torch.count_nonzero(s_grad) > 0
    assert_no_teacher_grad(t_grad)


def test_jsd_limits_and_bound():
    s, t = torch.randn(4, 6, 9, dtype=torch.float64), torch.randn(4, 6, 9, dtype=torch.float64)
    # β → 0: JSD(β)/β → KL(p‖q); β → 1: JSD(β)/(1−β) → KL(q‖p)
    assert float(GJSD(beta=1e-6)(s, t)) / 1e-6 == pytest.approx(float(FKL()(s, t)), rel=1e-4)
    assert float(GJSD(beta=1 - 1e-6)(s, t)) / 1e-6 == pytest.approx(float(RKL()(s, t)), rel=1e-4)
    far = torch.tensor([[[30.0, -30.0]]], dtype=torch.float64)
    assert float(GJSD(beta=0.5)(far, -far)) == pytest.approx(math.log(2), rel=1e-6)  # disjoint supports: log 2
    with pytest.raises(ValueError, match="beta"):
        GJSD(beta=1.0)


def test_temperature_scales_like_kd():
    s, t = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    assert float(FKL(T=2.0)(s, t)) == pytest.approx(4 * float(FKL()(s / 2, t / 2)), rel=1e-9)


def test_token_ce_is_the_mean_nll_of_counted_targets():
    logits = torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5], [0.9, 0.1]]], dtype=torch.float64))
    target = torch.tensor([[1, 0, -100]])
    assert float(TokenCE()(logits, target=target)) == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, rel=1e-9)
    assert float(TokenCE()(logits, target=torch.full((1, 3), -100))) == 0.0


def test_registered_by_name():
    for name in ("FKL", "RKL", "GJSD", "TVD", "SKL", "SRKL", "TokenCE"):
        assert name in LOSSES and LOSSES[name].__doc__
