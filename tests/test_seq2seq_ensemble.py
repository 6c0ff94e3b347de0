"""An ensemble of translation teachers (Hinton 2015 §3 per target token): its averaged distributions, its
beam search (each member with its own decoder state), and the beam cache keyed by every member."""

import copy
import math

import pytest
import torch
from test_seq2seq_transformer import SRC, TGT, _best_by_enumeration, decode_step_by_step, transformer

from distil.config.translation import Seq2SeqConfig
from distil.engine.seq2seq import term_values
from distil.engine.teacher_store import TeacherStore
from distil.losses import LOSSES
from distil.models.ensemble import Ensemble, ensemble_logits
from distil.models.seq2seq import LstmSeq2Seq
from distil.models.seq2seq_decode import EOS_ID, beam_search, decode, greedy
from distil.models.seq2seq_ensemble import Seq2SeqEnsemble
from distil.translation.teacher_translations import teacher_targets


def lstm(seed=0, tgt_vocab=22):
    torch.manual_seed(seed)
    return LstmSeq2Seq(20, tgt_vocab, embed=8, hidden=12, bidirectional=True, dropout=0.0).eval()


def test_averaged_probabilities_by_hand():
    # member 1: p = (1/2, 1/2); member 2: p = (3/4, 1/4)
    z = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    assert ensemble_logits(z, torch.tensor([0.5, 0.5])).exp().tolist() == pytest.approx([0.625, 0.375])
    assert ensemble_logits(z, torch.tensor([0.75, 0.25])).exp().tolist() == pytest.approx([0.5625, 0.4375])  # 3/4·1/2 + 1/4·3/4
    # at T = 2 the members are softmax(z/T): (1/2, 1/2) and (3/4, 1/4) again for z₂ = (2 ln 3, 0); the logits are T·log p̄
    hot = torch.tensor([[0.0, 0.0], [2 * math.log(3.0), 0.0]])
    assert (ensemble_logits(hot, torch.tensor([0.5, 0.5]), T=2.0) / 2).exp().tolist() == pytest.approx([0.625, 0.375])
    assert ensemble_logits(z, torch.tensor([0.5, 0.5]), combine="logits").tolist() == pytest.approx([math.log(3.0) / 2, 0.0])
    # per target token: (members, B, T, V) → (B, T, V), each position its own mean
    z4 = torch.stack([z[0].expand(2, 3, 2), z[1].expand(2, 3, 2)])
    assert ensemble_logits(z4, torch.tensor([0.5, 0.5])).exp()[1, 2].tolist() == pytest.approx([0.625, 0.375])


@torch.no_grad()
def test_two_real_members_average_their_distributions_at_every_target_position():
    a, b = lstm(0), transformer(1)
    ens = Seq2SeqEnsemble([a, b], [1.0, 3.0])
    expected = 0.25 * torch.softmax(a(SRC, TGT), -1) + 0.75 * torch.softmax(b(SRC, TGT), -1)
    assert torch.allclose(ens(SRC, TGT).exp(), expected, atol=1e-6)
    hot = ens.at_temperature(2.0)  # word-level KD's soft targets at T: softmax(logits / T) = the mean of the tempered members
    expected = 0.25 * torch.softmax(a(SRC, TGT) / 2, -1) + 0.75 * torch.softmax(b(SRC, TGT) / 2, -1)
    assert torch.allclose(torch.softmax(hot(SRC, TGT) / 2, -1), expected, atol=1e-6)
    assert isinstance(hot, Seq2SeqEnsemble) and hot.members[0] is a  # the members shared, not copied


@torch.no_grad()
def test_decoding_step_by_step_gives_the_teacher_forced_logits():
    """Each member keeps its own state (LSTM (h, c), Transformer key/value cache) inside the ensemble's one tuple."""
    ens = Seq2SeqEnsemble([lstm(0), transformer(1)])
    stepped, state = decode_step_by_step(ens, SRC, TGT)
    assert torch.allclose(stepped, ens(SRC, TGT), atol=1e-5)
    assert [tuple(s.shape) for s in state] == [(1, 3, 12), (1, 3, 12), (2, 3, 2, 6, 8), (2, 3, 2, 6, 8)]


@pytest.mark.parametrize("make", [lstm, transformer])
@torch.no_grad()
def test_an_ensemble_of_one_member_is_that_member(make):
    m = make(3)
    ens = Seq2SeqEnsemble([m])
    assert torch.allclose(ens(SRC, TGT), torch.log_softmax(m(SRC, TGT), -1), atol=1e-6)
    y = TGT[:, 1:]
    terms = [LOSSES["KD"](T=2.0) * 0.5, LOSSES["CE"]() * 0.5]  # word-level KD: the same soft targets, so the same loss
    s = torch.randn(3, 5, 22, generator=torch.Generator().manual_seed(0))
    alone, in_ensemble = term_values(terms, s, m(SRC, TGT[:, :-1]), y), term_values(terms, s, ens.at_temperature(2.0)(SRC, TGT[:, :-1]), y)
    assert in_ensemble["kd"].item() == pytest.approx(alone["kd"].item(), rel=1e-5) and in_ensemble["ce"].item() == alone["ce"].item()
    assert torch.equal(greedy(ens, SRC), greedy(m, SRC))
    assert torch.equal(decode(ens, SRC, beam=4, batch_size=2), decode(m, SRC, beam=4, batch_size=2))


@torch.no_grad()
def test_two_identical_members_search_as_one():
    for m in (lstm(4), transformer(5)):
        ens = Seq2SeqEnsemble([m, copy.deepcopy(m)])
        assert torch.equal(ens(SRC, TGT), Seq2SeqEnsemble([m])(SRC, TGT))  # (p + p) / 2 = p exactly
        assert torch.equal(beam_search(ens, SRC, beam=5), beam_search(m, SRC, beam=5))


def test_a_beam_as_wide_as_every_prefix_finds_the_ensembles_likeliest_output():
    """Exhaustive beam on an LSTM + Transformer ensemble = the best output by the log of the averaged probabilities."""
    torch.manual_seed(2)
    a, b = LstmSeq2Seq(20, 8, embed=8, hidden=12, dropout=0.0).eval(), transformer(seed=3, tgt_vocab=8)
    for m, scale in ((a, 2.0), (b, 3.0)):
        for p in m.parameters():
            p.data *= scale
        m.out.bias.data[EOS_ID] = -1e4  # every output 3 tokens long: 6³ candidates
    ens = Seq2SeqEnsemble([a, b])
    src = torch.tensor([[4, 5, 6]])
    best = _best_by_enumeration(ens, src, 3)
    assert best != greedy(ens, src, max_len=3)[0].tolist() and best != _best_by_enumeration(a, src, 3)  # (seeds picked so that greedy misses it)
    assert beam_search(ens, src, beam=36, alpha=0.0, max_len=3)[0].tolist() == best


def test_the_beam_cache_key_covers_every_member_and_the_combination(tmp_path):
    store = TeacherStore(tmp_path)
    src = torch.tensor([[4, 5, 6, 0], [7, 8, 9, 10]])
    a, b = lstm(0), transformer(1)
    first, info = teacher_targets(Seq2SeqEnsemble([a, b]), src, beam=3, alpha=0.6, max_length=12, store=store)
    again, info2 = teacher_targets(Seq2SeqEnsemble([a, b]), src, beam=3, alpha=0.6, max_length=12, store=store)
    assert not info["cached"] and info2["cached"] and torch.equal(first, again)
    changed = copy.deepcopy(b)
    changed.out.bias.data[5] += 1.0  # the second member's weights
    keys = {
        info["key"],
        teacher_targets(Seq2SeqEnsemble([a, changed]), src, beam=3, alpha=0.6, max_length=12, store=store)[1]["key"],
        teacher_targets(Seq2SeqEnsemble([a, b], [2.0, 1.0]), src, beam=3, alpha=0.6, max_length=12, store=store)[1]["key"],
        teacher_targets(Seq2SeqEnsemble([a, b], combine="logits"), src, beam=3, alpha=0.6, max_length=12, store=store)[1]["key"],
        teacher_targets(a, src, beam=3, alpha=0.6, max_length=12, store=store)[1]["key"],
    }
    assert len(keys) == 5


def test_members_that_differ_only_in_heads_do_not_share_a_beam_cache(tmp_path):
    store = TeacherStore(tmp_path)
    src = torch.tensor([[4, 5, 6, 0]])
    two = Seq2SeqConfig(arch="transformer", hidden=16, heads=2, ffn=32, layers=1, dropout=0.0).build(20, 22, 0)
    four = Seq2SeqConfig(arch="transformer", hidden=16, heads=4, ffn=32, layers=1, dropout=0.0).build(20, 22, 0)
    four.load_state_dict(two.state_dict())  # the same weights fit both: only the heads differ
    keys = {teacher_targets(m.eval(), src, beam=2, alpha=0.6, max_length=8, store=store)[1]["key"] for m in (two, four)}
    assert len(keys) == 2


def test_an_ensemble_cannot_be_exported_as_one_encoder_and_step(tmp_path):
    from distil.compress.export import ExportError
    from distil.compress.seq2seq_export import export_seq2seq

    with pytest.raises(ExportError, match="export its members one by one"):
        export_seq2seq(Seq2SeqEnsemble([lstm(0), lstm(1)]), tmp_path / "ens", torch.tensor([[4, 5, 6]]))
    assert not (tmp_path / "ens").exists()


def test_export_and_serve_pick_the_ensembles_sequence_level_student():
    from distil.config.translation import served_student

    def row(name, method, role="student"):
        return {"name": name, "method": method, "role": role}

    single = [row("teacher", "trained", "teacher"), row("student_data", "data"), row("student_seq_kd", "seq_kd"), row("student_seq_word_kd", "seq_word_kd")]
    assert served_student(single)["name"] == "student_seq_kd"
    ensemble = [*single[:2], row("student_ensemble_word_kd", "ensemble→word_kd"), row("student_ensemble_seq_kd", "ensemble→seq_kd"), row("student_ensemble_seq_word_kd", "ensemble→seq_word_kd")]
    assert served_student(ensemble)["name"] == "student_ensemble_seq_kd"
    assert served_student([*ensemble, row("student_seq_kd", "seq_kd")])["name"] == "student_ensemble_seq_kd"  # with baseline: true
    assert served_student(single[:2])["name"] == "student_data" and served_student(single[:1]) is None


def test_the_image_ensemble_is_the_same_maths():
    torch.manual_seed(0)
    members = [torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)]
    x = torch.randn(5, 4)
    ens = Ensemble(members, [1.0, 3.0], T=2.0)
    assert torch.equal(ens(x), ensemble_logits(torch.stack([m(x) for m in members]), torch.tensor([0.25, 0.75]), T=2.0))
    with pytest.raises(ValueError, match="at least one member"):
        Seq2SeqEnsemble([])


def test_the_shipped_ensemble_config_pairs_the_two_shipped_teachers():
    from distil.config.translation import load_translation_config

    ensemble = load_translation_config("configs/translation/bible_en_es_ensemble.yaml")
    lstm_run, transformer_run = (load_translation_config(f"configs/translation/{n}.yaml") for n in ("bible_en_es", "bible_en_es_transformer"))
    (_, teacher, seed0), (name, member, seed1) = ensemble.teacher_members()
    assert teacher == lstm_run.teacher and ensemble.student == lstm_run.student and ensemble.data == lstm_run.data
    assert Seq2SeqConfig(**member.model_dump(exclude={"seed"})) == transformer_run.teacher and (name, seed0, seed1) == ("teacher_1", 0, 1)
