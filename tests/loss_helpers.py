"""Shared helpers of the loss tests: fixed random features and gradients on both sides."""

import numpy as np
import torch


def feat(*shape, seed=0):
    return torch.tensor(np.random.default_rng(seed).normal(size=shape), dtype=torch.float64)


def student_and_teacher_grads(loss, student, teacher, **kw):
    s = student.clone().requires_grad_(True)
    t = teacher.clone().requires_grad_(True)
    value = loss(s, t, **kw)
    value.backward()
    return value, s.grad, t.grad


def assert_no_teacher_grad(grad):
    assert grad is None or torch.count_nonzero(grad) == 0
