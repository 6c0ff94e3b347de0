"""Self-supervised losses — InfoNCE, BYOL, BarlowTwins, SEED, DINO: values derived by hand with hand-set
heads, the invariants each paper relies on, the state they update (SEED's queue, DINO's centre and
teacher head) only in training mode, gradients, building by name and inside an objective."""

import inspect
import math

import numpy as np
import pytest
import torch
from loss_helpers import assert_no_teacher_grad, feat, student_and_teacher_grads

from distil.engine.objective import TermSpec, build_objective
from distil.engine.taps import Taps
from distil.losses import BYOL, DINO, LOSSES, SEED, BarlowTwins, InfoNCE, Loss, build_loss
from distil.losses.self_supervised import _CosinePrototypes
from distil.models import build_model

R = 1 / math.sqrt(2)
SSL = ["InfoNCE", "BYOL", "BarlowTwins", "SEED", "DINO"]


def t64(rows):
    return torch.tensor(rows, dtype=torch.float64)


def set_linear(linear, weight, bias=None):
    with torch.no_grad():
        linear.weight.copy_(t64(weight))
        linear.bias.copy_(t64(bias) if bias is not None else torch.zeros_like(linear.bias))


def softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def log_softmax(xs):
    m = max(xs)
    lse = m + math.log(sum(math.exp(x - m) for x in xs))
    return [x - lse for x in xs]


def cross_entropy(p, log_q):
    return -sum(a * b for a, b in zip(p, log_q))


def gelu(x):
    return x * 0.5 * (1 + math.erf(x / math.sqrt(2)))


def unit_rows(x):
    return x / x.norm(dim=1, keepdim=True)


# --- InfoNCE ------------------------------------------------------------------------------------


def symmetric_ce(cos, T):
    """½ [mean over rows of −log softmax(row)_i + mean over columns of −log softmax(column)_j], logits cos/T."""
    b = len(cos)
    logits = [[c / T for c in row] for row in cos]
    rows = sum(-log_softmax(logits[i])[i] for i in range(b)) / b
    cols = sum(-log_softmax([logits[i][j] for i in range(b)])[j] for j in range(b)) / b
    return 0.5 * (rows + cols)


def test_infonce_golden_with_identity_projector():
    loss = InfoNCE(2, 2, hidden=None, T=0.5).double()
    set_linear(loss.proj, [[1, 0], [0, 1]])
    # unit rows: student (1,0), (0,1), (.6,.8); teacher (1,0), (r,r), (0,−1), r = 1/√2
    s, t = t64([[2, 0], [0, 3], [3, 4]]), t64([[5, 0], [1, 1], [0, -2]])
    cos = [[1, R, 0], [0, R, -1], [0.6, 1.4 * R, -0.8]]  # z_s z_tᵀ, the positives on the diagonal
    assert loss(s, t).item() == pytest.approx(symmetric_ce(cos, 0.5), rel=1e-5)


def test_infonce_golden_through_the_mlp_projector():
    loss = InfoNCE(2, 2, hidden=2, T=0.25).double()
    set_linear(loss.proj[0], [[1, 0], [0, 1]])
    set_linear(loss.proj[2], [[0, 1], [1, 0]], [1, 0])  # swap the two units, then add (1, 0)
    # (1,−1) → ReLU (1,0) → swap (0,1) + (1,0) = (1,1) → (r,r);  (−2,3) → (0,3) → (3,0) + (1,0) → (1,0)
    s, t = t64([[1, -1], [-2, 3]]), t64([[2, 0], [0, 7]])
    cos = [[R, R], [1, 0]]
    assert loss(s, t).item() == pytest.approx(symmetric_ce(cos, 0.25), rel=1e-5)


def test_infonce_is_lowest_for_aligned_embeddings():
    loss = InfoNCE(3, 3, hidden=None, T=0.2).double()
    set_linear(loss.proj, np.eye(3))
    t = feat(5, 3, seed=1)
    aligned = loss(2.5 * t, t).item()  # z_s = z_t: every row and column peaks on its diagonal
    for seed in range(4):
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(5))
        if torch.equal(perm, torch.arange(5)):
            continue
        assert loss(t[perm], t).item() > aligned
    # and moving the student toward the teacher lowers it
    noise = feat(5, 3, seed=2)
    values = [loss((1 - a) * noise + a * t, t).item() for a in (0.0, 0.5, 1.0)]
    assert values[0] > values[1] > values[2] == pytest.approx(aligned)
    assert loss(t[:1], t[:1]).item() == pytest.approx(0.0, abs=1e-12)  # one sample: no negatives


# --- BYOL ---------------------------------------------------------------------------------------


def test_byol_golden_with_a_linear_predictor_of_another_width():
    loss = BYOL(3, 2, hidden=None).double()
    set_linear(loss.predictor, [[1, 0, 0], [0, 1, 1]])
    s = t64([[1, 0, 0], [0, 1, 1], [3, 2, 2]])  # predictions (1,0), (0,2), (3,4)
    t = t64([[1, 1], [0, -3], [4, 3]])
    # cos: 1/√2; (0,2)·(0,−3)/(2·3) = −1; (12 + 12)/(5·5) = 0.96  →  mean of 2 − 2·cos
    expected = ((2 - 2 * R) + 4 + 0.08) / 3
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_byol_golden_through_the_batchnorm_predictor_in_training_mode():
    loss = BYOL(2, 2, hidden=2).double().train()
    linear1, bn, _, linear2 = loss.predictor
    set_linear(linear1, [[1, 0], [0, 1]])
    set_linear(linear2, [[1, 0], [0, 1]])
    with torch.no_grad():
        bn.weight.fill_(1.0)
        bn.bias.fill_(1.0)
    s, t = t64([[1, 2], [2, 2], [3, 5]]), t64([[1, 1], [1, 0], [0, 1]])
    # batch statistics, biased variance: column 0 = (1,2,3): mean 2, var 2/3; column 1 = (2,2,5): mean 3, var 2
    a, b = math.sqrt(2 / 3 + 1e-5), math.sqrt(2 + 1e-5)
    hidden = [[-1 / a, -1 / b], [0, -1 / b], [1 / a, 2 / b]]
    q = [[max(0.0, h + 1) for h in row] for row in hidden]  # + β = 1, ReLU; the last Linear is the identity
    tt = [[1, 1], [1, 0], [0, 1]]
    cos = [(qi[0] * ti[0] + qi[1] * ti[1]) / math.hypot(*qi) / math.hypot(*ti) for qi, ti in zip(q, tt)]
    expected = sum(2 - 2 * c for c in cos) / 3
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_byol_is_zero_for_positive_multiples_of_the_teacher():
    loss = BYOL(4, 4, hidden=None).double()
    set_linear(loss.predictor, np.eye(4))
    t = feat(6, 4, seed=3)
    scale = t64([[0.5], [1.0], [2.0], [3.0], [7.0], [0.1]])
    assert loss(scale * t, t).item() == pytest.approx(0.0, abs=1e-12)
    assert loss(-t, t).item() == pytest.approx(4.0, rel=1e-12)  # opposite: the maximum


def test_byol_batchnorm_predictor_needs_two_samples_in_training_mode():
    loss = BYOL(4, 3).train()
    with pytest.raises(ValueError, match="≥ 2 samples"):
        loss(torch.randn(1, 4), torch.randn(1, 3))
    assert torch.isfinite(loss.eval()(torch.randn(1, 4), torch.randn(1, 3)))
    assert torch.isfinite(BYOL(4, 3, hidden=None).train()(torch.randn(1, 4), torch.randn(1, 3)))


# --- Barlow Twins -------------------------------------------------------------------------------


def test_barlow_twins_golden():
    loss = BarlowTwins(2, 2, hidden=None, lambd=0.5).double()
    set_linear(loss.proj, [[1, 0], [0, 1]])
    s = t64([[1, 2], [2, 0], [3, 1]])
    t = t64([[0, 1], [0, 3], [3, 2]])
    # standardised columns (biased variance, ε = 1e-5):
    #   s₀ = (1,2,3): (−1, 0, 1)/√(2/3+ε)     s₁ = (2,0,1): (1, −1, 0)/√(2/3+ε)
    #   t₀ = (0,0,3): (−1,−1, 2)/√(2+ε)       t₁ = (1,3,2): (−1, 1, 0)/√(2/3+ε)
    # C_ij = Σ_b ẑ_s[b,i] ẑ_t[b,j] / 3:
    eps, v23, v2 = 1e-5, 2 / 3 + 1e-5, 2 + 1e-5
    c00 = (1 + 0 + 2) / (3 * math.sqrt(v23) * math.sqrt(v2))
    c01 = (1 + 0 + 0) / (3 * v23)
    c10 = (-1 + 1 + 0) / (3 * math.sqrt(v23) * math.sqrt(v2))
    c11 = (-1 - 1 + 0) / (3 * v23)
    expected = (1 - c00) ** 2 + (1 - c11) ** 2 + 0.5 * (c01**2 + c10**2)
    assert eps == loss.eps
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-5)


def test_barlow_twins_is_zero_when_the_cross_correlation_is_the_identity():
    loss = BarlowTwins(2, 2, hidden=None).double()
    set_linear(loss.proj, [[1, 0], [0, 1]])
    # whitened teacher: columns of mean 0, variance 1, uncorrelated
    t = t64([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    # C = I/(1+ε): (1 − 1/(1+ε))² per diagonal entry, ~2e-10; any affine map of each column too
    assert loss(t, t).item() < 1e-9
    assert loss(3 * t + 5, t).item() < 1e-9
    # the two dimensions swapped: C = [[0,1],[1,0]] → 2 on the diagonal + λ·2 off it
    assert loss(t[:, [1, 0]], t).item() == pytest.approx(2 + 2 * 5e-3, rel=1e-4)


def test_barlow_twins_needs_two_samples_and_sums_over_teacher_dimensions():
    loss = BarlowTwins(5, 3, hidden=None).double()
    with pytest.raises(ValueError, match="≥ 2 samples"):
        loss(feat(1, 5), feat(1, 3))
    # uncorrelated features: C ≈ 0, so the value is ≈ t_dim (not normalised by it)
    big = BarlowTwins(2, 6, hidden=None, lambd=0.0).double()
    with torch.no_grad():
        big.proj.weight.zero_()
    assert big(feat(8, 2, seed=4), feat(8, 6, seed=5)).item() == pytest.approx(6.0)


# --- SEED ---------------------------------------------------------------------------------------


def make_seed(**kw):
    loss = SEED(2, 2, hidden=None, queue_size=3, T_s=0.5, T_t=0.25, **kw).double().train()
    set_linear(loss.proj, [[1, 0], [0, 1]])
    with torch.no_grad():
        loss.queue.copy_(t64([[1, 0], [0, 1], [-1, 0]]))
    return loss


def test_seed_golden_and_fifo_queue():
    loss = make_seed()
    s, t = t64([[1, 1], [-1, 0]]), t64([[3, 4], [0, -2]])
    # z = (r,r), (−1,0); t = (.6,.8), (0,−1); anchors [t_i ; (1,0), (0,1), (−1,0)]
    teacher = [[1, 0.6, 0.8, -0.6], [1, 0, -1, 0]]  # t_i · anchors
    student = [[1.4 * R, R, R, -R], [0, -1, 0, 1]]  # z_i · anchors
    expected = (
        sum(cross_entropy(softmax([v / 0.25 for v in ti]), log_softmax([v / 0.5 for v in si])) for ti, si in zip(teacher, student)) / 2
    )
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-5)
    # FIFO: slots 0, 1 now hold this batch's unit teacher rows, slot 2 the oldest row
    torch.testing.assert_close(loss.queue, t64([[0.6, 0.8], [0, -1], [-1, 0]]))
    assert loss.queue_ptr.item() == 2
    # an eval forward reads the queue and changes nothing
    loss.eval()
    loss(t64([[1, 2], [3, 4]]), t64([[5, 6], [7, 8]]))
    torch.testing.assert_close(loss.queue, t64([[0.6, 0.8], [0, -1], [-1, 0]]))
    assert loss.queue_ptr.item() == 2
    # the next training batch wraps around: slots 2, 0
    loss.train()
    loss(t64([[1, 0], [0, 1]]), t64([[0, 5], [-3, -4]]))
    torch.testing.assert_close(loss.queue, t64([[-0.6, -0.8], [0, -1], [0, 1]]))
    assert loss.queue_ptr.item() == 1


def test_seed_batch_larger_than_the_queue_keeps_its_last_rows():
    loss = SEED(3, 4, queue_size=2).double().train()
    t = feat(5, 4, seed=6)
    loss(feat(5, 3, seed=7), t)
    # enqueued one by one from slot 0, rows 3 and 4 are the last written: slots 1 and 0
    torch.testing.assert_close(loss.queue[[1, 0]], unit_rows(t[3:]))
    assert loss.queue_ptr.item() == 1


def test_seed_equals_the_teacher_entropy_when_the_student_matches():
    torch.manual_seed(0)
    loss = SEED(3, 3, hidden=None, queue_size=5, T_s=0.3, T_t=0.3).double().train()
    set_linear(loss.proj, np.eye(3))
    queue = loss.queue.clone()
    t = feat(4, 3, seed=8)
    tn = unit_rows(t).tolist()
    entropy = 0.0
    for row in tn:
        anchors = [row, *queue.tolist()]
        p = softmax([sum(a * b for a, b in zip(row, anchor)) / 0.3 for anchor in anchors])
        entropy += -sum(pi * math.log(pi) for pi in p) / 4
    assert loss.eval()(2 * t, t).item() == pytest.approx(entropy, rel=1e-6)  # z = t/‖t‖, so p_s = p_t
    assert entropy >= 0
    for seed in range(3):  # cross-entropy ≥ entropy: any other student is worse
        assert loss(t + 0.3 * feat(4, 3, seed=10 + seed), t).item() > entropy


# --- DINO ---------------------------------------------------------------------------------------

V_S = [[3, 4], [1, 0], [0, -2]]  # the student's prototypes: unit rows (.6,.8), (1,0), (0,−1)
V_T = [[1, 1], [0, 1], [-1, 0]]  # the teacher's: unit rows (r,r), (0,1), (−1,0)


def make_dino(**kw):
    loss = DINO(2, hidden=2, out_dim=3, bottleneck=2, T_s=0.5, T_t=0.25, **kw).double().train()
    set_linear(loss.head[0], [[1, 0], [0, 1]])
    set_linear(loss.head[2], [[1, 0], [0, 1]])
    set_linear(loss.teacher_head[0], [[1, 0], [0, 1]])
    set_linear(loss.teacher_head[2], [[2, 0], [0, 2]], [0, 0.5])
    with torch.no_grad():
        loss.head[3].weight.copy_(t64(V_S))
        loss.teacher_head[3].weight.copy_(t64(V_T))
        loss.center.copy_(t64([0.5, -0.5, 0]))
    return loss


def cosines(z, prototypes):
    """[cos(z, v_k)]_k: z and every prototype divided by its norm, then dotted."""
    zn = math.hypot(*z)
    return [(z[0] * v[0] + z[1] * v[1]) / (zn * math.hypot(*v)) for v in prototypes]


def test_dino_golden_and_training_updates():
    loss = make_dino(center_momentum=0.9, head_momentum=0.75)
    s, t = t64([[1, 0], [0, 2]]), t64([[1, 1], [-1, 0]])
    # bottlenecks: z_s = GELU(s) elementwise; z_t = 2·GELU(t) + (0, 0.5); scores are cosines with the prototypes
    z_s = [[gelu(x) for x in row] for row in [[1, 0], [0, 2]]]
    z_t = [[2 * gelu(a), 2 * gelu(b) + 0.5] for a, b in [[1, 1], [-1, 0]]]
    h_s = [cosines(z, V_S) for z in z_s]
    h_t = [cosines(z, V_T) for z in z_t]
    # z_s = (gelu(1), 0) ∥ (1, 0) and (0, gelu(2)) ∥ (0, 1): cosines (.6, 1, 0) and (.8, 0, −1)
    assert h_s == [pytest.approx([0.6, 1, 0]), pytest.approx([0.8, 0, -1])]
    c = [0.5, -0.5, 0]
    expected = (
        sum(
            cross_entropy(softmax([(h - ck) / 0.25 for h, ck in zip(ht, c)]), log_softmax([h / 0.5 for h in hs]))
            for hs, ht in zip(h_s, h_t)
        )
        / 2
    )
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-6)
    # centre ← 0.9·c + 0.1·mean_i h_t(t_i)
    mean_h = [(h_t[0][k] + h_t[1][k]) / 2 for k in range(3)]
    torch.testing.assert_close(loss.center, t64([0.9 * c[k] + 0.1 * mean_h[k] for k in range(3)]))
    # teacher head ← 0.75·teacher + 0.25·student, MLP and prototypes (raw, not normalised)
    torch.testing.assert_close(loss.teacher_head[0].weight, t64([[1, 0], [0, 1]]))
    torch.testing.assert_close(loss.teacher_head[2].weight, t64([[1.75, 0], [0, 1.75]]))
    torch.testing.assert_close(loss.teacher_head[2].bias, t64([0, 0.375]))
    torch.testing.assert_close(loss.teacher_head[3].weight, 0.75 * t64(V_T) + 0.25 * t64(V_S))
    # the student head is the optimizer's
    torch.testing.assert_close(loss.head[2].weight, t64([[1, 0], [0, 1]]))
    torch.testing.assert_close(loss.head[3].weight, t64(V_S))


def test_dino_updates_nothing_in_evaluation_mode():
    loss = make_dino()
    before = {k: v.clone() for k, v in loss.state_dict().items()}
    s, t = feat(4, 2, seed=11), feat(4, 2, seed=12)
    first = loss.eval()(s, t)
    assert loss(s, t).item() == first.item()
    for key, value in loss.state_dict().items():
        assert torch.equal(value, before[key]), key
    loss.train()(s, t)
    assert not torch.equal(loss.center, before["center"])
    assert not torch.equal(loss.teacher_head[2].weight, before["teacher_head.2.weight"])
    assert not torch.equal(loss.teacher_head[3].weight, before["teacher_head.3.weight"])
    for key in ("head.0.weight", "head.2.weight", "head.3.weight"):
        assert torch.equal(loss.state_dict()[key], before[key]), key


def test_dino_with_equal_heads_and_temperatures_is_the_teacher_entropy():
    torch.manual_seed(1)
    loss = DINO(5, hidden=8, out_dim=6, bottleneck=4, T_s=0.2, T_t=0.2).double().eval()  # the teacher head starts as a copy
    t = feat(4, 5, seed=13)
    with torch.no_grad():
        z = loss.teacher_head[:3](t)
        scores = unit_rows(z) @ unit_rows(loss.teacher_head[3].weight).t()
        torch.testing.assert_close(loss.teacher_head(t), scores)
        p = torch.softmax(scores / 0.2, dim=1)  # centre 0
    entropy = -(p * p.log()).sum(dim=1).mean().item()
    assert loss(t, t).item() == pytest.approx(entropy, rel=1e-6)
    assert loss(t + 0.5 * feat(4, 5, seed=14), t).item() > entropy


def test_dino_scores_are_cosines_whatever_the_features_magnitude():
    torch.manual_seed(3)
    loss = DINO(16, hidden=32, out_dim=50, bottleneck=8).train()
    with torch.no_grad():  # random heads, the teacher's other than the student's
        for p in loss.parameters():
            p.normal_()
    s = (1e6 * torch.randn(6, 16)).requires_grad_()
    t = 1e6 * torch.randn(6, 16)
    for head in (loss.head, loss.teacher_head):
        scores = head(s.detach())
        assert torch.isfinite(scores).all() and scores.abs().max().item() <= 1 + 1e-6
    value = loss(s, t)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in loss.head.parameters())
    # logits within ±1/T: the cross-entropy is at most log K + 2/T_s
    assert value.item() <= math.log(50) + 2 / loss.T_s
    assert loss.center.abs().max().item() <= 1 + 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_dino_stays_finite_under_sgd_with_its_head_in_the_optimizer(seed):
    # lr 0.1 with momentum: the unbounded two-layer head this replaced reached NaN within ~30 steps
    torch.manual_seed(seed)
    student = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    loss = DINO(8).train()
    optimizer = torch.optim.SGD([*student.parameters(), *loss.parameters()], lr=0.1, momentum=0.9)
    x, t = torch.randn(32, 8), torch.randn(32, 8)
    for step in range(200):
        value = loss(student(x), t + 0.1 * torch.randn_like(t))
        assert torch.isfinite(value), f"step {step}: {value.item()}"
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in [*student.parameters(), *loss.parameters()])


def test_dino_needs_one_shape_and_takes_only_the_teacher_width():
    assert DINO.needs_same_shape and not any(LOSSES[n].needs_same_shape for n in SSL if n != "DINO")
    with pytest.raises(ValueError, match="same shape"):
        DINO(4)(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="t_dim=4"):
        DINO(4)(torch.randn(3, 5), torch.randn(3, 5))
    # the engine's connector maps the student to the teacher's width first: no s_dim to fill
    assert "s_dim" not in inspect.signature(DINO).parameters


# --- all five -----------------------------------------------------------------------------------


def small(name):
    torch.manual_seed(2)
    if name == "DINO":
        return DINO(6, hidden=8, out_dim=5).double().train()
    kw = {"queue_size": 7} if name == "SEED" else {}
    return LOSSES[name](s_dim=4, t_dim=6, hidden=8, **kw).double().train()


TRAINED = {
    "InfoNCE": {"proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias"},
    "BYOL": {f"predictor.{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")},
    "BarlowTwins": {f"proj.{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")},
    "SEED": {"proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias"},
    "DINO": {"head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias", "head.3.weight"},
}


@pytest.mark.parametrize("name", SSL)
def test_gradient_reaches_student_and_its_heads_never_the_teacher(name):
    loss = small(name)
    s = feat(5, 6 if name == "DINO" else 4, seed=15)
    value, s_grad, t_grad = student_and_teacher_grads(loss, s, feat(5, 6, seed=16))
    assert torch.isfinite(value) and value.dim() == 0
    assert s_grad.abs().sum() > 0
    assert_no_teacher_grad(t_grad)
    trained = {n for n, p in loss.named_parameters() if p.requires_grad}
    assert trained == TRAINED[name]
    for n, p in loss.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, n
        else:  # DINO's teacher head
            assert p.grad is None, n
    frozen = {n for n, p in loss.named_parameters() if not p.requires_grad}
    assert frozen == ({n.replace("head", "teacher_head", 1) for n in TRAINED["DINO"]} if name == "DINO" else set())
    assert all(not b.requires_grad for b in loss.buffers())


@pytest.mark.parametrize("name", SSL)
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_constant_features_are_finite(name, fill):
    loss = small(name)
    s = torch.full((3, 6 if name == "DINO" else 4), fill, dtype=torch.float64, requires_grad=True)
    value = loss(s, torch.full((3, 6), fill, dtype=torch.float64))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("name", SSL)
def test_heads_are_the_papers(name):
    layers = {
        "InfoNCE": [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear],
        "BYOL": [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU, torch.nn.Linear],
        "BarlowTwins": [torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU, torch.nn.Linear],
        "SEED": [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear],
        "DINO": [torch.nn.Linear, torch.nn.GELU, torch.nn.Linear, _CosinePrototypes],
    }[name]
    loss = build_loss(name, t_dim=16) if name == "DINO" else build_loss(name, s_dim=8, t_dim=16)
    head = loss.head if name == "DINO" else loss.predictor if name == "BYOL" else loss.proj
    assert [type(m) for m in head] == layers
    assert head[0].in_features == (16 if name == "DINO" else 8) and head[0].out_features == 256
    assert head[-1].out_features == (256 if name == "DINO" else 16)
    if name == "DINO":  # MLP to a 64-d bottleneck, then 256 prototypes without bias, the teacher's a copy
        assert head[2].out_features == 64 and head[3].in_features == 64
        assert head[3].weight.shape == (256, 64) and [n for n, _ in head[3].named_parameters()] == ["weight"]
        assert [type(m) for m in loss.teacher_head] == layers
        assert all(torch.equal(a, b) for a, b in zip(loss.head.parameters(), loss.teacher_head.parameters()))
    assert isinstance(loss, Loss) and loss.name == name.lower()
    if name != "DINO":
        one_linear = LOSSES[name](8, 16, hidden=None)
        assert isinstance(one_linear.predictor if name == "BYOL" else one_linear.proj, torch.nn.Linear)
    value = loss.train()(torch.randn(4, 16 if name == "DINO" else 8), torch.randn(4, 16))
    assert torch.isfinite(value) and value.dim() == 0


@pytest.mark.parametrize(
    ("name", "kw", "message"),
    [
        ("InfoNCE", {"T": 0.0}, r"temperature T .* got 0\.0"),
        ("InfoNCE", {"s_dim": 0}, r"s_dim .* got 0"),
        ("BYOL", {"hidden": 0}, r"hidden .* got 0"),
        ("BYOL", {"t_dim": 2.5}, r"t_dim .* got 2\.5"),
        ("BarlowTwins", {"lambd": -1.0}, r"lambd .* got -1\.0"),
        ("BarlowTwins", {"eps": 0.0}, r"eps .* got 0\.0"),
        ("SEED", {"queue_size": 0}, r"queue_size .* got 0"),
        ("SEED", {"T_t": -0.01}, r"T_t .* got -0\.01"),
        ("SEED", {"T_s": float("nan")}, r"T_s .* got nan"),
        ("DINO", {"head_momentum": 1.0}, r"head_momentum must be in \[0, 1\), got 1\.0"),
        ("DINO", {"center_momentum": -0.1}, r"center_momentum .* got -0\.1"),
        ("DINO", {"out_dim": 0}, r"out_dim .* got 0"),
        ("DINO", {"T_s": 0}, r"T_s .* got 0"),
        ("DINO", {"bottleneck": 0}, r"bottleneck .* got 0"),
        ("DINO", {"bottleneck": 2.5}, r"bottleneck .* got 2\.5"),
    ],
)
def test_bad_arguments_name_the_argument(name, kw, message):
    dims = {"t_dim": 6} if name == "DINO" else {"s_dim": 4, "t_dim": 6}
    with pytest.raises(ValueError, match=message):
        build_loss(name, **(dims | kw))


def test_features_of_another_width_than_built_for_are_rejected():
    with pytest.raises(ValueError, match="s_dim=8, t_dim=16"):
        InfoNCE(8, 16)(torch.randn(4, 9), torch.randn(4, 16))
    with pytest.raises(ValueError, match="same size"):
        SEED(8, 16)(torch.randn(4, 8), torch.randn(3, 16))
    # feature maps are flattened per sample
    assert torch.isfinite(BarlowTwins(2 * 3 * 3, 5).train()(torch.randn(4, 2, 3, 3), torch.randn(4, 5)))


@pytest.mark.parametrize("name", SSL)
def test_each_loss_trains_inside_an_objective(name):
    torch.manual_seed(0)
    student = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[8])
    teacher = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=[16]).eval()
    x = torch.randn(16, 1, 8, 8)
    params = {"queue_size": 32} if name == "SEED" else {}
    objective = build_objective([TermSpec(name, 1.0, student="embedding", params=params)], student, teacher, x[:4], n_data=16, seed=0)
    (loss,) = objective.losses
    (term,) = objective.names
    assert type(loss) is LOSSES[name] and term == f"{name.lower()}@fc:input"
    if name == "DINO":  # 8 → 16 wide through a connector, the loss built for the teacher's width
        assert set(objective.connectors) == {term} and loss.t_dim == 16
    else:  # the loss's own head bridges the widths
        assert not objective.connectors and (loss.s_dim, loss.t_dim) == (8, 16)
    heads = [p for p in loss.parameters() if p.requires_grad]
    assert heads and {id(p) for p in heads} <= {id(p) for p in objective.parameters()}
    trainable = [*student.parameters(), *(p for p in objective.parameters() if p.requires_grad)]
    optimizer = torch.optim.SGD(trainable, lr=0.05)
    before = [p.detach().clone() for p in heads]
    objective.train()
    with Taps(student, objective.student_taps) as ts, Taps(teacher, objective.teacher_taps) as tt:
        with torch.no_grad():
            t_out = tt.forward(x)
        values = objective(ts.forward(x), t_out, None)
    value = values[term]
    assert value.dim() == 0 and torch.isfinite(value)
    optimizer.zero_grad()
    value.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, heads))
