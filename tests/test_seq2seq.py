"""The LSTM attention encoder–decoder, its decoders, the per-token KD terms and the teacher-translation cache."""

import math

import pytest
import torch

from distil.engine.seq2seq import fit_seq2seq, term_values, token_nll
from distil.engine.teacher_store import TeacherStore
from distil.engine.trainer import TrainSettings
from distil.losses import LOSSES
from distil.models.seq2seq import LstmSeq2Seq, reverse_within_length
from distil.models.seq2seq_decode import BOS_ID, EOS_ID, beam_search, decode, greedy, length_penalty
from distil.translation.teacher_translations import teacher_targets


def model(bidirectional=True, seed=0):
    torch.manual_seed(seed)
    return LstmSeq2Seq(20, 22, embed=8, hidden=12, bidirectional=bidirectional, dropout=0.0).eval()


def test_reverse_within_length_leaves_padding_in_place():
    x = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    assert reverse_within_length(x, torch.tensor([3, 2])).tolist() == [[7, 6, 5, 0], [9, 8, 0, 0]]
    assert reverse_within_length(reverse_within_length(x, torch.tensor([3, 2])), torch.tensor([3, 2])).equal(x)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_changes_nothing(bidirectional):
    m = model(bidirectional)
    src = torch.tensor([[4, 5, 6, 7, 0, 0]])
    tgt = torch.tensor([[BOS_ID, 9, 10]])
    alone = m(src[:, :4], tgt)
    padded = m(torch.cat([src, torch.tensor([[8, 9, 10, 11, 12, 13]])]), torch.cat([tgt, tgt]))[:1]
    assert torch.allclose(alone, padded, atol=1e-6)


def test_decoders_agree_and_do_not_depend_on_the_batch():
    m = model()
    src = torch.tensor([[4, 5, 6, 0], [7, 8, 9, 10], [11, 12, 0, 0]])
    assert torch.equal(beam_search(m, src, beam=1), greedy(m, src))
    batched = decode(m, src, beam=3, batch_size=2)
    for i in range(3):
        alone = decode(m, src[i : i + 1, : int((src[i] != 0).sum())], beam=3)
        assert batched[i, : alone.shape[1]].tolist() == alone[0].tolist()
    out = greedy(m, src)
    assert out.shape[1] <= 2 * 4 + 10  # the length limit
    m.out.bias.data[0] = m.out.bias.data[BOS_ID] = 1e4  # padding and [BOS] are never generated, however likely
    for row in torch.cat([greedy(m, src), beam_search(m, src, beam=3)]).tolist():
        body = row[: row.index(EOS_ID)] if EOS_ID in row else row
        assert 0 not in body and BOS_ID not in body


@torch.no_grad()
def _logp(m, src, ids):
    tgt = torch.cat([torch.tensor([[BOS_ID]]), ids.unsqueeze(0)], 1)
    logp = torch.log_softmax(m(src, tgt[:, :-1]), -1)
    return float(logp[0, torch.arange(len(ids)), ids].sum())


def test_beam_search_finds_a_likelier_translation_than_greedy_on_a_trained_model():
    torch.manual_seed(0)
    src = torch.randint(4, 20, (40, 5))
    tgt = torch.cat([torch.full((40, 1), BOS_ID), (src + 2).flip(1), torch.full((40, 1), EOS_ID)], 1)
    m = model()
    fit_seq2seq(m, (src, tgt), (src[:10], tgt[:10]), [LOSSES["CE"]() * 1.0], TrainSettings(epochs=3, batch_size=20, optimizer="adamw", lr=0.01, weight_decay=0.0))
    g, b = greedy(m, src[:20]), beam_search(m, src[:20], beam=4, alpha=0.0)
    scores = [(_logp(m, src[i : i + 1], g[i][g[i] != 0]), _logp(m, src[i : i + 1], b[i][b[i] != 0])) for i in range(20)]
    assert sum(sb for _, sb in scores) >= sum(sg for sg, _ in scores) - 1e-4


def test_length_penalty_is_gnmts():
    assert length_penalty(torch.tensor(1), 0.0).item() == 1.0
    assert length_penalty(torch.tensor(7), 1.0).item() == pytest.approx(2.0)
    assert length_penalty(torch.tensor(13), 0.5).item() == pytest.approx(math.sqrt(3.0))


def test_word_kd_terms_read_only_real_target_tokens():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    y = torch.tensor([[1, 3, 0], [4, 0, 0]])
    terms = [LOSSES["KD"](T=2.0) * 0.5, LOSSES["CE"]() * 0.5]
    values = term_values(terms, s, t, y)
    rows = y != 0
    p_t, log_p_s = torch.softmax(t[rows] / 2, -1), torch.log_softmax(s[rows] / 2, -1)
    kl = (p_t * (p_t.log() - log_p_s)).sum(-1).mean()  # per target token, averaged over the 3 real ones
    ce = torch.nn.functional.cross_entropy(s[rows], y[rows])
    assert values["kd"].item() == pytest.approx(0.5 * 4 * kl.item(), rel=1e-5)
    assert values["ce"].item() == pytest.approx(0.5 * ce.item(), rel=1e-5)
    s2 = s.clone()
    s2[~rows] = 100.0  # padding positions: any logits, same loss
    assert all(term_values(terms, s2, t, y)[k].item() == pytest.approx(v.item()) for k, v in values.items())
    assert term_values([LOSSES["KD"](T=1.0) * 1.0], s, s, y)["kd"].item() == pytest.approx(0.0, abs=1e-6)


def test_fit_lowers_the_validation_loss_and_keeps_the_best_epoch():
    torch.manual_seed(1)
    src = torch.randint(4, 20, (80, 4))
    tgt = torch.cat([torch.full((80, 1), BOS_ID), src + 2, torch.full((80, 1), EOS_ID)], 1)
    m = model(seed=1)
    before = token_nll(m, src[:16], tgt[:16])
    result = fit_seq2seq(m, (src, tgt), (src[:16], tgt[:16]), [LOSSES["CE"]() * 1.0], TrainSettings(epochs=3, batch_size=16, optimizer="adamw", lr=0.01, weight_decay=0.0))
    after = token_nll(m, src[:16], tgt[:16])
    assert after == pytest.approx(-result.best_val_accuracy, rel=1e-5) and after < before


def test_teacher_translations_are_computed_once_then_read_from_the_cache(tmp_path):
    m = model()
    src = torch.tensor([[4, 5, 6, 0], [7, 8, 9, 10]])
    store = TeacherStore(tmp_path)
    first, info = teacher_targets(m, src, beam=3, alpha=0.6, max_length=12, store=store)
    assert not info["cached"] and first[:, 0].eq(BOS_ID).all()
    assert all(EOS_ID in row.tolist() for row in first) and first.shape[1] <= 12
    again, info2 = teacher_targets(m, src, beam=3, alpha=0.6, max_length=12, store=store)
    assert info2["cached"] and info2["key"] == info["key"] and torch.equal(first, again)
    _other, info3 = teacher_targets(m, src, beam=2, alpha=0.6, max_length=12, store=store)
    assert info3["key"] != info["key"] and not info3["cached"]
