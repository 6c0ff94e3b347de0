"""How good a representation is without its classifier: a linear probe and k-NN on frozen features.

Self-supervised models are judged by what a simple classifier can read from their embedding (the
input of the model's last ``nn.Linear``, the ``embedding`` tap), with the training labels:

- **linear probe** (the protocol of Zhang et al. 2016 and every SSL paper since): multinomial logistic
  regression on the frozen, standardized training features, full-batch L-BFGS with an L2 penalty
  ``λ/2 ‖W‖²``; accuracy on the test features. :func:`install_probe` writes the fitted classifier
  (standardization folded in) into the model's last ``nn.Linear``, so the model classifies as the
  probe does and can be exported and served like any student.
- **k-NN** (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination",
  the weighted vote DINO also reports): cosine similarity to every training feature, the ``k`` nearest
  vote for their labels with weight ``exp(sim / T)``; k = 20, T = 0.07.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from distil.data.tokens import trim
from distil.engine.evaluate import INFERENCE_BATCH
from distil.engine.taps import Taps, embedding_tap, find_module, split_path


def embeddings(model: nn.Module, x: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """The input of ``model``'s last ``nn.Linear`` for every row of ``x`` (eval mode, no autograd), flattened."""
    tap = embedding_tap(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), Taps(model, [tap]) as tapped:
            parts = [tapped.forward(trim(x[i : i + batch_size]))[tap].flatten(1).float() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(parts).clone()  # an ordinary tensor, not an inference one


@dataclass
class LinearProbe:
    """A fitted multinomial logistic regression on standardized features: ``logits = W (f − μ)/σ + b``."""

    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return ((features - self.mean) / self.std) @ self.weight.t() + self.bias

    def accuracy(self, features: torch.Tensor, y: torch.Tensor) -> float:
        return int((self.logits(features).argmax(1) == y).sum()) / len(y)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W', b')`` with the standardization folded in: ``W' f + b'`` equals :meth:`logits`."""
        weight = self.weight / self.std
        return weight, self.bias - weight @ self.mean


def fit_linear_probe(features: torch.Tensor, y: torch.Tensor, num_classes: int, *, l2: float = 1e-4, steps: int = 200) -> LinearProbe:
    """Logistic regression on ``features`` (N, D) and labels ``y``: mean cross-entropy + ``l2/2 ‖W‖²``, L-BFGS."""
    mean = features.mean(0)
    std = features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    linear = nn.Linear(z.shape[1], num_classes).to(z.device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(z), y) + 0.5 * l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return LinearProbe(linear.weight.detach(), linear.bias.detach(), mean, std)


def knn_accuracy(train: torch.Tensor, train_y: torch.Tensor, test: torch.Tensor, test_y: torch.Tensor, num_classes: int, *, k: int = 20, T: float = 0.07, chunk: int = 1024) -> float:
    """Weighted k-NN accuracy of ``test`` features against ``train`` features (cosine similarity)."""
    train_n = F.normalize(train, dim=1)
    k = min(k, len(train))
    correct = 0
    for i in range(0, len(test), chunk):
        sims, idx = (F.normalize(test[i : i + chunk], dim=1) @ train_n.t()).topk(k, dim=1)
        votes = torch.zeros(len(idx), num_classes, device=train.device).scatter_add_(1, train_y[idx], (sims / T).exp())
        correct += int((votes.argmax(1) == test_y[i : i + chunk]).sum())
    return correct / len(test)


def probe(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, num_classes: int) -> tuple[dict[str, float], LinearProbe]:
    """Linear-probe and k-NN test accuracy of ``model``'s embedding, and the fitted probe."""
    train_f, test_f = embeddings(model, train_x), embeddings(model, test_x)
    fitted = fit_linear_probe(train_f, train_y, num_classes)
    scores = {"probe_accuracy": fitted.accuracy(test_f, test_y), "knn_accuracy": knn_accuracy(train_f, train_y, test_f, test_y, num_classes)}
    return scores, fitted


@torch.no_grad()
def install_probe(model: nn.Module, fitted: LinearProbe) -> None:
    """Make the probe ``model``'s classifier: its last ``nn.Linear`` gets the folded weights."""
    path, _ = split_path(embedding_tap(model))
    head = find_module(model, path)
    weight, bias = fitted.folded()
    if not isinstance(head, nn.Linear) or head.weight.shape != weight.shape or head.bias is None:
        raise ValueError(f"the model's last linear layer {path!r} ({head}) cannot take the probe: it needs a Linear of shape {tuple(weight.shape)} with a bias")
    head.weight.copy_(weight.to(head.weight.dtype))
    head.bias.copy_(bias.to(head.bias.dtype))
