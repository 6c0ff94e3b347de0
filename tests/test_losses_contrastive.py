"""CRD: the NCE loss against a loop re-implementation of the paper's formula, and its two memories."""

import math

import numpy as np
import pytest
import torch
from loss_helpers import feat

from distil.losses import CRD, Loss


def unit(v):
    return v / np.sqrt(v @ v)


def embed(x, linear):
    w, b = linear.weight.detach().numpy(), linear.bias.detach().numpy()
    return [unit(w @ r.ravel() + b) for r in x.numpy()]


def paper_nce(exp_scores, z, k, n):
    """−mean_i [log h⁺/(h⁺ + K/N) + Σ_k log (K/N)/(h⁻_k + K/N)], h = exp(score/T) / Z — the paper's form, with N."""
    c = k / n
    total = 0.0
    for row in exp_scores:
        h = [e / z for e in row]
        total += math.log(h[0] / (h[0] + c)) + sum(math.log(c / (hk + c)) for hk in h[1:])
    return -total / len(exp_scores)


def bank_reference(crd, s, t, index, neg, z=None):
    """Scores against the memories as they were before the step; returns loss, the Z's and the embeddings."""
    v_s, v_t = embed(s, crd.embed_s), embed(t, crd.embed_t)
    mem_s, mem_t = crd.memory_s.numpy().copy(), crd.memory_t.numpy().copy()
    n, k, T = mem_s.shape[0], neg.shape[1], crd.T
    rows = [[int(index[i])] + [int(j) for j in neg[i]] for i in range(len(v_s))]
    e_s = [[math.exp(mem_t[r] @ v_s[i] / T) for r in rows[i]] for i in range(len(v_s))]  # student vs teacher memory
    e_t = [[math.exp(mem_s[r] @ v_t[i] / T) for r in rows[i]] for i in range(len(v_t))]  # teacher vs student memory
    if z is None:  # fixed from the first batch: N · mean exp(score/T)
        z = (np.mean(e_s) * n, np.mean(e_t) * n)
    return paper_nce(e_s, z[0], k, n) + paper_nce(e_t, z[1], k, n), z, v_s, v_t


def make_bank(**kw):
    torch.manual_seed(0)
    params = dict(s_dim=5, t_dim=3, feat_dim=4, n_data=10, nce_k=3, T=0.5, momentum=0.5) | kw
    return CRD(**params).double().train()


def test_bank_golden_over_two_steps_with_momentum_update():
    crd = make_bank()
    negatives = iter([torch.tensor([[0, 1, 9], [3, 3, 8]]), torch.tensor([[7, 5, 4], [1, 6, 0]])])
    drawn = []
    crd.draw_negatives = lambda index: drawn.append(next(negatives)) or drawn[-1]
    s1, t1, i1 = feat(2, 5, seed=1), feat(2, 3, seed=2), torch.tensor([7, 2])
    expected, z, v_s, v_t = bank_reference(crd, s1, t1, i1, np.array([[0, 1, 9], [3, 3, 8]]))
    old_s, old_t = crd.memory_s.numpy().copy(), crd.memory_t.numpy().copy()
    assert crd(s1, t1, index=i1).item() == pytest.approx(expected, rel=1e-5)
    # rows 7 and 2 moved to normalise(½·old + ½·v); every other row is untouched
    for i, row in enumerate([7, 2]):
        np.testing.assert_allclose(crd.memory_s[row].numpy(), unit(0.5 * old_s[row] + 0.5 * v_s[i]), rtol=1e-6)
        np.testing.assert_allclose(crd.memory_t[row].numpy(), unit(0.5 * old_t[row] + 0.5 * v_t[i]), rtol=1e-6)
    untouched = [r for r in range(10) if r not in (7, 2)]
    np.testing.assert_array_equal(crd.memory_s[untouched].numpy(), old_s[untouched])
    # the second step reads the updated memory and keeps the first step's Z
    s2, t2, i2 = feat(2, 5, seed=3), feat(2, 3, seed=4), torch.tensor([2, 9])
    expected2, _, _, _ = bank_reference(crd, s2, t2, i2, np.array([[7, 5, 4], [1, 6, 0]]), z=z)
    assert crd(s2, t2, index=i2).item() == pytest.approx(expected2, rel=1e-5)
    assert len(drawn) == 2


def test_queue_golden_first_step_and_fifo_update():
    torch.manual_seed(1)
    crd = CRD(s_dim=6, t_dim=4, feat_dim=3, memory="queue", queue_size=5, T=0.2).double().train()
    s, t = feat(3, 6, seed=5), feat(3, 4, seed=6)
    v_s, v_t = embed(s, crd.embed_s), embed(t, crd.embed_t)
    q_s, q_t = crd.memory_s.numpy().copy(), crd.memory_t.numpy().copy()
    T, k = 0.2, 5
    # positive: the other side's current embedding; negatives: the whole queue of the other side
    e_s = [[math.exp(v_s[i] @ v_t[i] / T)] + [math.exp(v_s[i] @ q / T) for q in q_t] for i in range(3)]
    e_t = [[math.exp(v_t[i] @ v_s[i] / T)] + [math.exp(v_t[i] @ q / T) for q in q_s] for i in range(3)]
    expected = paper_nce(e_s, np.mean(e_s) * k, k, k) + paper_nce(e_t, np.mean(e_t) * k, k, k)
    assert crd(s, t).item() == pytest.approx(expected, rel=1e-5)
    # FIFO: slots 0..2 now hold this batch, 3..4 the old rows, and the pointer moved on
    np.testing.assert_allclose(crd.memory_s[:3].numpy(), np.stack(v_s), rtol=1e-6)
    np.testing.assert_allclose(crd.memory_t[:3].numpy(), np.stack(v_t), rtol=1e-6)
    np.testing.assert_array_equal(crd.memory_s[3:].numpy(), q_s[3:])
    assert crd.queue_ptr.item() == 3
    # the next batch of 3 wraps around: slots 3, 4, 0
    s2 = feat(3, 6, seed=7)
    crd(s2, feat(3, 4, seed=8))
    v2 = np.stack(embed(s2, crd.embed_s))
    np.testing.assert_allclose(crd.memory_s[[3, 4, 0]].numpy(), v2, rtol=1e-6)
    np.testing.assert_allclose(crd.memory_s[[1, 2]].numpy(), np.stack(v_s)[[1, 2]], rtol=1e-6)
    assert crd.queue_ptr.item() == 1


def test_bank_memory_is_per_sample_and_queue_memory_is_fixed_size():
    bank = CRD(8, 4, feat_dim=16, n_data=1000, nce_k=10)
    assert bank.memory_s.shape == bank.memory_t.shape == (1000, 16)
    for n_data in (10, 100_000):
        queue = CRD(8, 4, feat_dim=16, n_data=n_data, nce_k=10, memory="queue", queue_size=32).train()
        for step in range(4):
            index = torch.randint(0, n_data, (12,))
            assert torch.isfinite(queue(torch.randn(12, 8), torch.randn(12, 4), index=index))
        assert queue.memory_s.shape == queue.memory_t.shape == (32, 16)
    assert CRD(8, 4, nce_k=64, memory="queue").memory_s.shape == (64, 128)  # queue_size defaults to nce_k
    # a batch larger than the queue keeps its last queue_size embeddings
    small = CRD(8, 4, feat_dim=16, memory="queue", queue_size=5).double().train()
    x = feat(7, 8, seed=9)
    small(x, feat(7, 4, seed=10))
    v = np.stack(embed(x, small.embed_s))
    np.testing.assert_allclose(small.memory_s[[2, 3, 4, 0, 1]].numpy(), v[2:], rtol=1e-6)


@pytest.mark.parametrize("memory", ["bank", "queue"])
def test_memory_and_normaliser_update_only_in_training_mode(memory):
    torch.manual_seed(2)
    crd = CRD(5, 3, feat_dim=4, n_data=20, nce_k=6, memory=memory, queue_size=6)
    before = {k: v.clone() for k, v in crd.state_dict().items()}
    s, t, index = torch.randn(4, 5), torch.randn(4, 3), torch.tensor([0, 5, 9, 19])
    crd.eval()
    assert torch.isfinite(crd(s, t, index=index))
    for key, value in crd.state_dict().items():
        assert torch.equal(value, before[key]) or (value.isnan().all() and before[key].isnan().all()), key
    crd.train()
    crd(s, t, index=index)
    assert not torch.equal(crd.memory_s, before["memory_s"]) and not torch.equal(crd.memory_t, before["memory_t"])
    assert torch.isfinite(crd.log_z).all()
    fixed = crd.log_z.clone()
    crd(torch.randn(4, 5), torch.randn(4, 3), index=index)
    assert torch.equal(crd.log_z, fixed)


def test_gradient_reaches_student_and_both_heads_never_the_teacher():
    crd = make_bank()
    s, t = feat(3, 5, seed=11).requires_grad_(True), feat(3, 3, seed=12).requires_grad_(True)
    crd(s, t, index=torch.tensor([1, 4, 8])).backward()
    assert s.grad.abs().sum() > 0
    assert t.grad is None or torch.count_nonzero(t.grad) == 0
    for name, p in crd.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {n for n, _ in crd.named_parameters()} == {"embed_s.weight", "embed_s.bias", "embed_t.weight", "embed_t.bias"}
    assert {n for n, _ in crd.named_buffers()} == {"memory_s", "memory_t", "queue_ptr", "log_z"}


def test_feature_maps_are_flattened_and_negatives_avoid_the_positive():
    crd = CRD(s_dim=2 * 3 * 3, t_dim=7, feat_dim=8, n_data=5, nce_k=200).train()
    assert torch.isfinite(crd(torch.randn(2, 2, 3, 3), torch.randn(2, 7), index=torch.tensor([0, 4])))
    index = torch.tensor([0, 2, 4])
    neg = crd.draw_negatives(index)
    assert neg.shape == (3, 200) and neg.min() >= 0 and neg.max() < 5
    assert not (neg == index.unsqueeze(1)).any()


@pytest.mark.parametrize("memory", ["bank", "queue"])
@pytest.mark.parametrize("batch", [1, 2])
def test_small_batches_are_finite(memory, batch):
    crd = CRD(5, 3, feat_dim=4, n_data=10, nce_k=4, memory=memory).train()
    s = torch.randn(batch, 5, requires_grad=True)
    value = crd(s, torch.randn(batch, 3), index=torch.arange(batch))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_constant_features_are_finite(fill):
    crd = CRD(5, 3, feat_dim=4, n_data=10, nce_k=4).train()
    s = torch.full((3, 5), fill, requires_grad=True)
    value = crd(s, torch.full((3, 3), fill), index=torch.tensor([0, 1, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("memory", ["bank", "queue"])
def test_loss_stays_finite_while_training(memory):
    torch.manual_seed(3)
    n, b = 64, 16
    x = torch.randn(n, 10)
    teacher = torch.nn.Linear(10, 6)
    student = torch.nn.Linear(10, 4)
    crd = CRD(4, 6, feat_dim=8, n_data=n, nce_k=16, memory=memory, queue_size=16).train()
    optimizer = torch.optim.SGD([*student.parameters(), *crd.parameters()], lr=0.1)
    for step in range(8):
        index = torch.randperm(n)[:b]
        with torch.no_grad():
            t = teacher(x[index])
        loss = crd(student(x[index]), t, index=index)
        assert torch.isfinite(loss), step
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(crd.memory_s).all() and torch.isfinite(crd.memory_t).all()


def test_bank_needs_indices_and_a_dataset_size():
    assert CRD.uses_index and not Loss.uses_index
    crd = CRD(5, 3, n_data=10, nce_k=4)
    with pytest.raises(ValueError, match="index"):
        crd(torch.randn(2, 5), torch.randn(2, 3))
    with pytest.raises(ValueError, match="n_data"):
        CRD(5, 3)
    with pytest.raises(ValueError, match="memory"):
        CRD(5, 3, n_data=10, memory="ring")
