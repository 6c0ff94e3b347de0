"""Parallel pairs: the user's files, the Bible source, the seeded split, subword vocabularies and token tensors."""

import json

import pytest

from distil.data.text.parallel import TextPairs, bible_pairs, build_parallel, read_pairs_file, split_pairs
from distil.data.text.subwords import BOS_ID, EOS_ID, UNK_ID, learn_vocab
from distil.data.tokens import PAD_ID
from distil.errors import DataError
from distil.models.seq2seq_decode import BOS_ID as MODEL_BOS
from distil.models.seq2seq_decode import EOS_ID as MODEL_EOS


def test_tsv_jsonl_and_two_files_read_the_same_pairs(tmp_path):
    (tmp_path / "p.tsv").write_text("the house\tla casa\n\nthe  dog \tel perro\n")
    (tmp_path / "p.jsonl").write_text(json.dumps({"source": "the house", "target": "la casa"}) + "\n" + json.dumps({"source": "the dog", "target": "el perro"}) + "\n")
    (tmp_path / "en.txt").write_text("the house\nthe dog\n")
    (tmp_path / "es.txt").write_text("la casa\nel perro\n")
    for pairs in (read_pairs_file(tmp_path / "p.tsv"), read_pairs_file(tmp_path / "p.jsonl"), read_pairs_file(tmp_path / "en.txt", tmp_path / "es.txt")):
        assert pairs.source == ["the house", "the dog"] and pairs.target == ["la casa", "el perro"]
    assert read_pairs_file(tmp_path / "p.tsv").refs == ["p.tsv:1", "p.tsv:3"]


def test_bad_pairs_files_say_where_and_what(tmp_path):
    (tmp_path / "en.txt").write_text("a\nb\nc\n")
    (tmp_path / "es.txt").write_text("x\ny\n")
    with pytest.raises(DataError, match="has 3 lines but .*es.txt has 2"):
        read_pairs_file(tmp_path / "en.txt", tmp_path / "es.txt")
    (tmp_path / "e.tsv").write_text("a\tb\n \tc\n")
    with pytest.raises(DataError, match=r"e.tsv:2: empty source sentence"):
        read_pairs_file(tmp_path / "e.tsv")
    (tmp_path / "c.tsv").write_text("a\tb\tc\n")
    with pytest.raises(DataError, match="expected 2 tab-separated columns"):
        read_pairs_file(tmp_path / "c.tsv")
    (tmp_path / "k.jsonl").write_text('{"source": "a"}\n')
    with pytest.raises(DataError, match=r"k.jsonl:1: expected an object with keys"):
        read_pairs_file(tmp_path / "k.jsonl")
    with pytest.raises(DataError, match="1 source sentences but 2 target"):
        TextPairs(["a"], ["b", "c"], ["1"], "x")


def test_split_keeps_a_repeated_sentence_in_one_split_and_is_seeded():
    source = [f"s{i % 50}" for i in range(200)]  # every sentence 4 times
    pairs = TextPairs(source, [f"t{i}" for i in range(200)], [str(i) for i in range(200)], "x")
    splits = split_pairs(pairs, 20, 20, seed=3)
    seen = [set(p.source) for p in splits.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert len(splits["train"]) == 160  # every copy of a training sentence kept
    assert len(splits["test"]) == len(splits["val"]) == 5  # 5 sentences (of 4 copies each), each scored once
    assert split_pairs(pairs, 20, 20, seed=3)["test"].refs == splits["test"].refs
    assert split_pairs(pairs, 20, 20, seed=4)["test"].refs != splits["test"].refs
    with pytest.raises(DataError, match="leave pairs for training"):
        split_pairs(pairs, 100, 100, seed=0)


def test_bible_pairs_filter_by_words():
    pairs = bible_pairs(max_words=5)
    assert all(len(s.split()) <= 5 and len(t.split()) <= 5 for s, t in zip(pairs.source, pairs.target))
    assert ("Jesus wept.", "Y lloró Jesús.") in set(zip(pairs.source, pairs.target)) and "John 11:35" in pairs.refs


def test_vocabulary_is_learnt_on_training_text_and_unknown_characters_are_counted():
    vocab = learn_vocab(["la casa es grande", "el perro es pequeño", "la casa del perro"] * 5, 60)
    assert (MODEL_BOS, MODEL_EOS) == (BOS_ID, EOS_ID)  # the models' constants are the vocabulary's
    tokens = vocab.encode(["la casa", "el perro üx"], max_length=16, target=True)
    assert tokens.ids[0, 0] == BOS_ID and tokens.ids[0, tokens.lengths[0] - 1] == EOS_ID
    assert tokens.ids[0, tokens.lengths[0]:].eq(PAD_ID).all()
    assert tokens.unknown == 2 and (tokens.ids == UNK_ID).sum() == 2  # ü and x never appear in training
    assert vocab.decode(tokens.ids[:1]) == ["la casa"]  # detokenized: spacing restored
    cut = vocab.encode(["la casa es grande la casa es grande"], max_length=6, target=True)
    assert cut.truncated == 1 and cut.ids.shape[1] == 6 and cut.ids[0, -1] == EOS_ID


def test_build_parallel_tokenizes_every_split_with_the_training_vocabulary():
    pairs = TextPairs([f"word{i} house" for i in range(60)], [f"palabra{i} casa" for i in range(60)], [str(i) for i in range(60)], "x")
    data = build_parallel(pairs, val=10, test=10, seed=0, vocab_size=64, max_length=16)
    assert {k: len(v[0]) for k, v in data.tensors.items()} == {"test": 10, "val": 10, "train": 40}
    # the vocabularies are those of the training split alone (the test side never shapes them)
    assert data.source_vocab.json == learn_vocab(data.splits["train"].source, 64).json
    assert data.target_vocab.json == learn_vocab(data.splits["train"].target, 64).json
    assert data.source_vocab.json != learn_vocab(pairs.source, 64).json
    assert data.tensors["train"][1][:, 0].eq(BOS_ID).all()
    assert data.describe()["sizes"] == {"test": 10, "val": 10, "train": 40}
