"""Token batches through the engine: trimming, buckets, length-ordered inference and teacher pass,
warm-up + linear decay, gradient clipping."""

import pytest
import torch
from torch import nn

from distil.data import Split
from distil.data.tokens import PAD_ID, bucketed_batches, concat, is_tokens, length_order, lengths, trim
from distil.engine.evaluate import predict_logits
from distil.engine.measure import timing_input
from distil.engine.objective import task_objective
from distil.engine.teacher_outputs import CacheSettings, teacher_outputs
from distil.engine.trainer import TrainSettings, fit, lr_factor

X = torch.tensor([[5, 6, 7, 0, 0, 0], [8, 0, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0]])


class MeanOfEmbeddings(nn.Module):
    """A masked bag of embeddings that records the widths of the batches it sees."""

    def __init__(self, vocab: int = 10, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 4)
        self.head = nn.Linear(4, classes)
        self.widths: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.widths.append(x.shape[1])
        mask = (x != PAD_ID).float()[..., None]
        return self.head((self.embed(x) * mask).sum(1) / mask.sum(1).clamp(min=1))


def test_lengths_trim_and_order():
    assert is_tokens(X) and not is_tokens(X.float()) and not is_tokens(torch.zeros(3, 2, dtype=torch.long)[None])
    assert lengths(X).tolist() == [3, 1, 2]
    assert trim(X).shape == (3, 3) and torch.equal(trim(X), X[:, :3])
    assert trim(X[1:2]).tolist() == [[8]]
    assert trim(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 1)  # all padding: one column stays
    assert length_order(X).tolist() == [1, 2, 0]
    assert length_order(X.float()) is None
    images = torch.randn(2, 1, 4, 4)
    assert trim(images) is images


def test_bucketed_batches_cover_every_index_once_with_similar_lengths():
    torch.manual_seed(0)
    n = 1000
    row_lengths = torch.randint(1, 60, (n,))
    batches = bucketed_batches(torch.randperm(n), row_lengths, 16, torch.Generator().manual_seed(1))
    assert sorted(torch.cat(batches).tolist()) == list(range(n))
    assert [len(b) for b in batches].count(16) >= n // 16 - 2
    # within a batch lengths are close: far less spread than a random batch (~55)
    spreads = [int(row_lengths[b].max() - row_lengths[b].min()) for b in batches if len(b) == 16]
    assert sorted(spreads)[len(spreads) // 2] <= 3


def test_concat_pads_token_tensors_to_the_widest():
    a, b = X[:, :3], torch.tensor([[1, 2, 3, 4, 5]])
    both = concat([a, b])
    assert both.shape == (4, 5) and both[0].tolist() == [5, 6, 7, 0, 0] and both[3].tolist() == [1, 2, 3, 4, 5]
    assert concat([torch.ones(2, 3), torch.zeros(1, 3)]).shape == (3, 3)


def test_predict_logits_on_tokens_equals_one_sentence_at_a_time():
    torch.manual_seed(0)
    model = MeanOfEmbeddings()
    x = torch.randint(1, 10, (40, 12))
    x[torch.arange(12)[None, :] >= torch.randint(1, 13, (40,))[:, None]] = PAD_ID
    batched = predict_logits(model, x, batch_size=7)
    model.widths.clear()
    one_by_one = torch.cat([model(trim(x[i : i + 1])) for i in range(40)]).detach()
    torch.testing.assert_close(batched, one_by_one)
    model.widths.clear()
    predict_logits(model, x, batch_size=7)
    assert model.widths == sorted(model.widths)  # visited shortest first, each batch cut to its longest


def test_exact_teacher_cache_on_tokens_matches_the_teacher_in_row_order():
    torch.manual_seed(0)
    teacher = MeanOfEmbeddings()
    x = torch.randint(1, 10, (30, 9))
    x[torch.arange(9)[None, :] >= torch.randint(1, 10, (30,))[:, None]] = PAD_ID
    cache = teacher_outputs(teacher, x, None, settings=CacheSettings(store=False))
    assert cache.info["kind"] == "exact"
    torch.testing.assert_close(cache.logits, predict_logits(teacher, x))


def test_training_on_tokens_sees_trimmed_batches_and_learns():
    torch.manual_seed(0)
    n = 256
    x = torch.randint(3, 10, (n, 20))
    x[torch.arange(20)[None, :] >= torch.randint(2, 21, (n,))[:, None]] = PAD_ID
    low, high = ((x >= 3) & (x <= 5)).sum(1), (x >= 6).sum(1)
    y = (low * 4 > high * 3).long()  # which half of the vocabulary dominates, weighted: linear in the mean embedding
    model = MeanOfEmbeddings(classes=2)
    settings = TrainSettings(epochs=10, batch_size=32, optimizer="adamw", lr=0.2, weight_decay=0.0, schedule="linear", warmup=0.1, clip_norm=1.0)
    result = fit(model, Split(x[:200], y[:200]), Split(x[200:], y[200:]), task_objective(), settings, seed=0)
    assert result.best_val_accuracy > 0.9
    training_widths = model.widths[: 7]  # the first epoch's batches
    assert max(training_widths) <= 20 and min(training_widths) < 20


def test_lr_factor_warmup_then_linear_decay():
    s = TrainSettings(schedule="linear", warmup=0.1)
    assert [round(lr_factor(t, s), 6) for t in (0.0, 0.05, 0.1, 0.55, 1.0)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    cosine = TrainSettings(schedule="cosine")
    assert lr_factor(0.5, cosine) == pytest.approx(0.5)


def test_clip_norm_bounds_every_step():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(8, 4) * 1000, torch.tensor([0, 1] * 4)
    settings = TrainSettings(epochs=1, batch_size=8, optimizer="sgd", lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant", clip_norm=0.5)
    fit(model, Split(x, y), Split(x[:0], y[:0]), task_objective(), settings, seed=0)
    moved = torch.cat([(model.state_dict()[k] - before[k]).flatten() for k in before]).norm()
    assert moved.item() == pytest.approx(0.5, rel=1e-4)  # one step of lr 1 with the gradient clipped to norm 0.5


def test_timing_input_is_the_median_length_test_sentence():
    class Data:
        input_shape = (6,)
        test = Split(X, torch.tensor([0, 1, 0]))

    assert timing_input(Data()).tolist() == [[1, 2]]  # lengths 3, 1, 2: the median is 2
    Data.test = Split(torch.randn(3, 1, 4, 4), torch.tensor([0, 1, 0]))
    Data.input_shape = (1, 4, 4)
    assert timing_input(Data()) == (1, 4, 4)
