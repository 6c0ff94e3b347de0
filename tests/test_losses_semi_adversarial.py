"""ECL, Adversarial, FixMatch and CoMatchGraph against hand-computed values, their invariants, gradient
routing (the discriminator's and the student's gradients kept apart), and each inside an objective."""

import math

import pytest
import torch
import torch.nn.functional as F
from loss_helpers import assert_no_teacher_grad, feat, student_and_teacher_grads

from distil.engine.objective import TermSpec, build_objective
from distil.engine.taps import Taps
from distil.losses import ECL, LOSSES, Adversarial, CoMatchGraph, FixMatch, build_loss, list_losses
from distil.models import build_model


def softplus(x):
    return math.log1p(math.exp(x))


# --- ECL --------------------------------------------------------------------------------------

# Two samples, each a (1, 2) map: flattened, sample 0 has h_s = [1, 2], h_t = [1, 0] and sample 1
# h_s = [0, −1], h_t = [3, 4].
#   sample 0: ‖h_s − h_t‖² = 0 + 4 = 4,    ‖h_t‖² = 1,  ‖h_s‖₁ = 3
#   sample 1: ‖h_s − h_t‖² = 9 + 25 = 34,  ‖h_t‖² = 25, ‖h_s‖₁ = 1
ECL_S = torch.tensor([[[1.0, 2.0]], [[0.0, -1.0]]], dtype=torch.float64)
ECL_T = torch.tensor([[[1.0, 0.0]], [[3.0, 4.0]]], dtype=torch.float64)


def test_ecl_by_hand_at_t_0_half_and_1():
    # t = 0: (1−t)² = 1, denominator ‖h_t‖: 4/1 + 3 = 7 and 34/5 + 1 = 7.8
    assert ECL(threshold=0.0)(ECL_S, ECL_T).item() == pytest.approx((7.0 + 7.8) / 2, rel=1e-5)
    # t = 0.5: (1−t)² = t² = 0.25: 0.25·4/√(0.25·1 + 0.25) = 1/√0.5 = √2, 0.25·34/√(0.25·25 + 0.25) = 8.5/√6.5
    half = (math.sqrt(2) + 3 + 8.5 / math.sqrt(6.5) + 1) / 2
    assert ECL(threshold=0.5)(ECL_S, ECL_T).item() == pytest.approx(half, rel=1e-5)
    assert ECL()(ECL_S, ECL_T).item() == pytest.approx(half, rel=1e-5)  # 0.5 is the default
    # l1_weight scales only the L1 term: 3·0.5 and 1·0.5
    assert ECL(l1_weight=0.5)(ECL_S, ECL_T).item() == pytest.approx((math.sqrt(2) + 1.5 + 8.5 / math.sqrt(6.5) + 0.5) / 2, rel=1e-5)
    # t = 1: (1−t)² = 0, only the L1 term: (3 + 1)/2
    assert ECL(threshold=1.0)(ECL_S, ECL_T).item() == pytest.approx(2.0, rel=1e-5)


def test_ecl_at_t_1_is_the_students_mean_l1_norm_whatever_the_teacher():
    s = feat(3, 2, 4, 4, seed=1)
    expected = s.abs().flatten(1).sum(1).mean().item()
    for seed in (2, 3):
        assert ECL(threshold=1.0)(s, feat(3, 2, 4, 4, seed=seed)).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.0])
def test_ecl_distance_part_vanishes_when_student_equals_teacher(threshold):
    t = feat(2, 3, 4, seed=4)
    assert ECL(threshold, l1_weight=0.0)(t, t).item() == 0.0
    assert ECL(threshold)(t, t).item() == pytest.approx(t.abs().flatten(1).sum(1).mean().item(), rel=1e-6)


def test_ecl_zero_teacher_at_t_0_is_finite_thanks_to_eps():
    s, t = torch.tensor([[1.0, 2.0]], dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    # the denominator √(0 + 0) is clamped to √eps = 1e-6: 5 / 1e-6 + 3
    value, grad, _ = student_and_teacher_grads(ECL(threshold=0.0), s, t)
    assert value.item() == pytest.approx(5e6 + 3, rel=1e-5)
    assert torch.isfinite(grad).all()


def test_ecl_gradient_reaches_student_never_teacher():
    _, grad, t_grad = student_and_teacher_grads(ECL(0.2), feat(2, 3, 4, 4, seed=5), feat(2, 3, 4, 4, seed=6))
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)
    with pytest.raises(ValueError, match="same shape"):
        ECL()(torch.zeros(2, 3), torch.zeros(2, 4))


# --- Adversarial ------------------------------------------------------------------------------


def constant_discriminator(loss, b):
    """D's weights all zero and its last bias b: every input gets the logit b."""
    with torch.no_grad():
        for p in loss.discriminator.parameters():
            p.zero_()
        loss.discriminator[2].bias.fill_(b)
    return loss


def first_coordinate_discriminator(loss):
    """One hidden unit reading x_0 (weight 1, bias 0), output weight 1, bias 0: D(x) = LeakyReLU₀.₂(x_0)."""
    with torch.no_grad():
        for p in loss.discriminator.parameters():
            p.zero_()
        loss.discriminator[0].weight[0, 0] = 1.0
        loss.discriminator[2].weight[0, 0] = 1.0
    return loss


def test_adversarial_by_hand_with_a_constant_discriminator():
    b = 0.7
    loss = constant_discriminator(Adversarial(t_dim=3).double(), b)
    s, t = feat(4, 3, seed=7), feat(4, 3, seed=8)
    sig = 1 / (1 + math.exp(-b))
    # L_D = −log σ(b) − log(1 − σ(b)), L_G = −log σ(b), whatever the inputs
    l_d, l_g = -math.log(sig) - math.log(1 - sig), -math.log(sig)
    assert loss(s, t).item() == pytest.approx(l_g + l_d, rel=1e-5)
    assert loss.last == pytest.approx({"generator": l_g, "discriminator": l_d, "d_accuracy": 0.5}, rel=1e-5)  # b > 0: all say "teacher"


def test_adversarial_by_hand_with_a_discriminator_reading_one_coordinate():
    loss = first_coordinate_discriminator(Adversarial(t_dim=2, hidden=3).double())
    t = torch.tensor([[2.0, 9.0], [1.0, -9.0]], dtype=torch.float64)
    s = torch.tensor([[-1.0, 5.0], [3.0, 0.0]], dtype=torch.float64)
    # D(t) = [2, 1]; D(s) = [0.2·(−1), 3] = [−0.2, 3]. With −log σ(d) = softplus(−d), −log(1 − σ(d)) = softplus(d):
    l_d = (softplus(-2) + softplus(-1)) / 2 + (softplus(-0.2) + softplus(3)) / 2
    l_g = (softplus(0.2) + softplus(-3)) / 2
    assert loss(s, t).item() == pytest.approx(l_g + l_d, rel=1e-5)
    # right: both teacher rows (logit > 0) and the first student row (≤ 0); wrong: the second student row
    assert loss.last == pytest.approx({"generator": l_g, "discriminator": l_d, "d_accuracy": 0.75}, rel=1e-5)


def test_adversarial_with_T_reads_the_softmax():
    torch.manual_seed(0)
    loss = Adversarial(t_dim=5, T=2.0).double()
    raw = Adversarial(t_dim=5).double()
    raw.load_state_dict(loss.state_dict())
    s, t = feat(3, 5, seed=9), feat(3, 5, seed=10)
    expected = raw(F.softmax(s / 2, dim=1), F.softmax(t / 2, dim=1)).item()
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-6)


def test_adversarial_routes_l_g_to_the_student_and_l_d_to_the_discriminator():
    torch.manual_seed(0)
    loss = Adversarial(t_dim=6, hidden=8).double()
    s0, t0 = feat(4, 2, 3, seed=11), feat(4, 2, 3, seed=12)  # feature maps: flattened to 6 values
    value, s_grad, t_grad = student_and_teacher_grads(loss, s0, t0)
    assert_no_teacher_grad(t_grad)
    params = list(loss.discriminator.parameters())
    d_grads = [p.grad.clone() for p in params]
    # separately: L_G through the ordinary D (gradient wanted for the student only) and L_D on detached inputs
    s = s0.clone().requires_grad_(True)
    d_s = loss.discriminator(s.flatten(1)).squeeze(1)
    l_g = F.binary_cross_entropy_with_logits(d_s, torch.ones_like(d_s))
    (want_s,) = torch.autograd.grad(l_g, [s])
    d_t, d_f = loss.discriminator(t0.flatten(1)).squeeze(1), loss.discriminator(s0.flatten(1)).squeeze(1)
    l_d = F.binary_cross_entropy_with_logits(d_t, torch.ones_like(d_t)) + F.binary_cross_entropy_with_logits(d_f, torch.zeros_like(d_f))
    want_d = torch.autograd.grad(l_d, params)
    assert value.item() == pytest.approx((l_g + l_d).item(), rel=1e-10)
    torch.testing.assert_close(s_grad, want_s)
    for got, want in zip(d_grads, want_d):
        torch.testing.assert_close(got, want)
    assert all(g.abs().sum() > 0 for g in d_grads) and s_grad.abs().sum() > 0


def test_adversarial_training_moves_the_student_towards_the_teacher():
    """One optimiser over the student tensor and D: the simultaneous updates close the gap between the means."""
    torch.manual_seed(0)
    t = torch.randn(64, 2) + 2
    s = torch.nn.Parameter(torch.randn(64, 2) - 2)
    loss = Adversarial(t_dim=2, hidden=16)
    optimizer = torch.optim.Adam([s, *loss.parameters()], lr=0.05)
    gap = (t.mean(0) - s.detach().mean(0)).norm().item()
    for _ in range(200):
        optimizer.zero_grad()
        loss(s, t).backward()
        optimizer.step()
    assert (t.mean(0) - s.detach().mean(0)).norm().item() < 0.5 * gap
    assert 0.0 <= loss.last["d_accuracy"] <= 1.0 and math.isfinite(loss.last["generator"])


def test_adversarial_needs_matching_inputs():
    loss = Adversarial(t_dim=4)
    with pytest.raises(ValueError, match="same shape"):
        loss(torch.zeros(2, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="t_dim"):
        loss(torch.zeros(2, 5), torch.zeros(2, 5))


# --- FixMatch ---------------------------------------------------------------------------------

# Teacher logits with exact probabilities: row 0 [log 98, 0, 0] → p = [0.98, 0.01, 0.01] (kept, ŷ = 0),
# row 1 [0, log 3, 0] → [0.2, 0.6, 0.2] (dropped at 0.95), row 2 [0, 0, log 198] → [0.005, 0.005, 0.99] (kept, ŷ = 2).
FM_T = torch.tensor([[math.log(98), 0.0, 0.0], [0.0, math.log(3), 0.0], [0.0, 0.0, math.log(198)]], dtype=torch.float64)
# student: row 0 uniform → log softmax = −log 3 everywhere; row 2 [0, log 2, 0] → [−log 4, −log 2, −log 4]
FM_S = torch.tensor([[0.0, 0.0, 0.0], [5.0, -5.0, 1.0], [0.0, math.log(2), 0.0]], dtype=torch.float64)


def test_fixmatch_hard_by_hand():
    loss = FixMatch()
    # row 0: CE to class 0 = log 3; row 1 masked; row 2: CE to class 2 = log 4; mean over all 3 rows
    assert loss(FM_S, FM_T).item() == pytest.approx((math.log(3) + math.log(4)) / 3, rel=1e-5)
    assert loss.last == pytest.approx({"mask_rate": 2 / 3})


def test_fixmatch_soft_by_hand():
    loss = FixMatch(soft=True)
    # row 0: −Σ p·(−log 3) = log 3; row 2: 0.005·log 4 + 0.005·log 2 + 0.99·log 4
    row2 = 0.995 * math.log(4) + 0.005 * math.log(2)
    assert loss(FM_S, FM_T).item() == pytest.approx((math.log(3) + row2) / 3, rel=1e-5)


def test_fixmatch_temperature_sharpens_the_mask():
    # at T = 0.5, p ∝ p²: row 1 becomes [0.04, 0.36, 0.04]/0.44 ≈ 0.82, still dropped;
    # at T = 0.25, p ∝ p⁴: its confidence is 0.1296/0.1328 ≈ 0.976 ≥ 0.95, kept (ŷ = 1)
    assert FixMatch(T=0.5)(FM_S, FM_T).item() == pytest.approx((math.log(3) + math.log(4)) / 3, rel=1e-5)
    loss = FixMatch(T=0.25)
    ce_row1 = F.cross_entropy(FM_S[1:2], torch.tensor([1])).item()
    assert loss(FM_S, FM_T).item() == pytest.approx((math.log(3) + ce_row1 + math.log(4)) / 3, rel=1e-5)
    assert loss.last["mask_rate"] == 1.0


def test_fixmatch_is_zero_when_no_row_is_confident_and_mean_ce_at_threshold_zero():
    s, t = feat(5, 4, seed=13), feat(5, 4, seed=14) * 0.1  # small logits: no probability near 0.95
    loss = FixMatch()
    value, grad, t_grad = student_and_teacher_grads(loss, s, t)
    assert value.item() == 0.0 and loss.last["mask_rate"] == 0.0 and grad.abs().max() == 0
    value, grad, t_grad = student_and_teacher_grads(FixMatch(threshold=0.0), s, t)
    assert value.item() == pytest.approx(F.cross_entropy(s, t.argmax(1)).item(), rel=1e-6)
    assert grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


# --- CoMatchGraph -----------------------------------------------------------------------------


def identity_projector(loss):
    with torch.no_grad():
        for layer in (loss.projector[0], loss.projector[2]):
            layer.weight.copy_(torch.eye(layer.weight.shape[0], dtype=layer.weight.dtype))
            layer.bias.zero_()
    return loss


# Unit, non-negative embeddings (so the identity projector's ReLU changes nothing): z_0·z_1 = 0.6, z_0·z_2 = 0,
# z_1·z_2 = 0.8; at T = 0.2 the similarities are 3, 0 and 4.
CM_S = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64)
# p_0 = p_1 = [0.9, 0.1] (logits [log 9, 0]), p_2 = [0.1, 0.9]: W_01 = 0.81 + 0.01 = 0.82, W_02 = W_12 = 0.09 + 0.09 = 0.18
CM_T = torch.tensor([[math.log(9), 0.0], [math.log(9), 0.0], [0.0, math.log(9)]], dtype=torch.float64)


def test_comatch_graph_by_hand_at_the_default_threshold():
    loss = identity_projector(CoMatchGraph(s_dim=2, proj_dim=2).double())
    # τ = 0.8 keeps W_01 = W_10 = 0.82 only: rows 0 and 1 become one-hot on each other, row 2 has no edge (skipped).
    # −log Q_01 = −log(e³ / (e³ + e⁰)) = log(1 + e⁻³);  −log Q_10 = −log(e³ / (e³ + e⁴)) = log(1 + e)
    expected = (math.log1p(math.exp(-3)) + math.log1p(math.e)) / 2
    assert loss(CM_S, CM_T).item() == pytest.approx(expected, rel=1e-5)


def test_comatch_graph_by_hand_with_every_edge_kept():
    loss = identity_projector(CoMatchGraph(s_dim=2, proj_dim=2, threshold=0.1).double())
    # rows of W normalised: row 0 (0.82, 0.18) over (1, 2), row 1 (0.82, 0.18) over (0, 2), row 2 (0.5, 0.5) over (0, 1)
    lse0, lse1, lse2 = math.log(math.exp(3) + 1), math.log(math.exp(3) + math.exp(4)), math.log(1 + math.exp(4))
    row0 = -(0.82 * (3 - lse0) + 0.18 * (0 - lse0))
    row1 = -(0.82 * (3 - lse1) + 0.18 * (4 - lse1))
    row2 = -(0.5 * (0 - lse2) + 0.5 * (4 - lse2))
    assert loss(CM_S, CM_T).item() == pytest.approx((row0 + row1 + row2) / 3, rel=1e-5)


def test_comatch_graph_skips_rows_and_is_zero_but_connected_when_none_is_kept():
    # three confident, different pseudo-labels: every W_ij ≈ 0 < 0.8, no row kept
    t = torch.eye(3, dtype=torch.float64) * 20
    s = feat(3, 4, seed=15)
    loss = CoMatchGraph(s_dim=4).double()
    value, grad, t_grad = student_and_teacher_grads(loss, s, t)
    assert value.item() == 0.0 and value.requires_grad
    assert grad is not None and grad.abs().max() == 0
    assert_no_teacher_grad(t_grad)
    # kept rows get gradient to the student and the projector, never the teacher
    loss = CoMatchGraph(s_dim=2, threshold=0.5).double()
    value, grad, t_grad = student_and_teacher_grads(loss, CM_S, CM_T)
    assert grad.abs().sum() > 0 and loss.projector[0].weight.grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)


def test_comatch_graph_needs_two_samples_and_logits():
    loss = CoMatchGraph(s_dim=4)
    with pytest.raises(ValueError, match="at least 2"):
        loss(torch.zeros(1, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="same size"):
        loss(torch.zeros(2, 4), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="s_dim"):
        loss(torch.zeros(2, 5), torch.zeros(2, 3))
    assert CoMatchGraph(s_dim=4).hidden == 4 and CoMatchGraph(s_dim=4, hidden=7).projector[0].out_features == 7


# --- all four ---------------------------------------------------------------------------------

NAMES = ["ECL", "Adversarial", "FixMatch", "CoMatchGraph"]


def test_registered_by_name_with_docstrings_and_flags():
    docs = list_losses()
    for name in NAMES:
        assert LOSSES[name].name == name.lower() and docs[name]
        assert not LOSSES[name].uses_target and LOSSES[name].uses_teacher and not LOSSES[name].uses_index
    assert {n for n in NAMES if LOSSES[n].needs_same_shape} == {"ECL", "Adversarial"}
    assert "design notes" in ECL.__doc__ and "not a peer-reviewed" in ECL.__doc__
    assert isinstance(build_loss("ECL", threshold=0.2), ECL) and build_loss("ECL", threshold=0.2).threshold == 0.2
    assert build_loss("Adversarial", t_dim=7, hidden=5).discriminator[0].weight.shape == (5, 7)
    assert build_loss("FixMatch", threshold=0.7, soft=True).soft
    assert build_loss("CoMatchGraph", s_dim=8, proj_dim=16).projector[2].out_features == 16


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("ECL", {"threshold": 1.5}, "threshold must be in [0, 1], got 1.5"),
        ("ECL", {"threshold": -0.1}, "threshold must be in [0, 1], got -0.1"),
        ("ECL", {"l1_weight": -1.0}, "l1_weight must be ≥ 0, got -1.0"),
        ("ECL", {"eps": 0.0}, "eps must be > 0"),
        ("Adversarial", {"t_dim": 0}, "t_dim must be ≥ 1, got 0"),
        ("Adversarial", {"t_dim": 4, "hidden": 0}, "hidden must be ≥ 1, got 0"),
        ("Adversarial", {"t_dim": 4, "T": 0.0}, "temperature T must be > 0 or None, got 0.0"),
        ("FixMatch", {"threshold": 1.01}, "threshold must be in [0, 1], got 1.01"),
        ("FixMatch", {"T": -1.0}, "temperature T must be > 0, got -1.0"),
        ("CoMatchGraph", {"s_dim": 4, "threshold": 2.0}, "threshold must be in [0, 1], got 2.0"),
        ("CoMatchGraph", {"s_dim": 4, "T": 0.0}, "temperature T must be > 0, got 0.0"),
        ("CoMatchGraph", {"s_dim": 4, "proj_dim": 0}, "proj_dim must be ≥ 1, got 0"),
        ("CoMatchGraph", {"s_dim": 0}, "s_dim must be ≥ 1, got 0"),
    ],
)
def test_bad_arguments_name_the_argument(name, params, message):
    with pytest.raises(ValueError) as err:
        build_loss(name, **params)
    assert message in str(err.value)


def test_each_works_inside_an_objective():
    torch.manual_seed(0)
    student = build_model("cnn", input_shape=(1, 8, 8), num_classes=5, widths=[4, 6], convs_per_stage=1, seed=1)
    teacher = build_model("cnn", input_shape=(1, 8, 8), num_classes=5, widths=[8, 12], convs_per_stage=1, seed=2)
    x = torch.randn(6, 1, 8, 8)
    specs = [
        TermSpec("ECL", 1.0, student="embedding", params={"l1_weight": 0.01}),
        TermSpec("Adversarial", 0.1),
        TermSpec("FixMatch", 1.0, params={"threshold": 0.0}),
        TermSpec("CoMatchGraph", 1.0, student="embedding", teacher="logits", params={"threshold": 0.0}),
    ]
    objective = build_objective(specs, student, teacher, x, n_data=6, seed=0)
    ecl, adversarial, fixmatch, comatch = objective.names
    # ECL compares the embeddings (6 vs 12 wide) elementwise: a connector on the student side; the logits
    # agree in shape (5 classes), so Adversarial has none, and the two others read shapes as they are
    assert set(objective.connectors) == {ecl}
    assert comatch.endswith(">logits") and objective.terms[3].loss.s_dim == 6
    assert objective.terms[1].loss.t_dim == 5 and objective.temperature == 1.0  # Adversarial's T=None is not a temperature
    teacher.eval()
    with torch.no_grad(), Taps(teacher, objective.teacher_taps) as tapped:
        t_out = tapped.forward(x)
    with Taps(student, objective.student_taps) as tapped:
        values = objective(tapped.forward(x), t_out, None)
    assert set(values) == {ecl, adversarial, fixmatch, comatch} and all(torch.isfinite(v) for v in values.values())
    sum(values.values()).backward()
    for module in (objective.connectors[ecl], objective.terms[1].loss.discriminator, objective.terms[3].loss.projector):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
