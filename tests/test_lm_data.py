"""Language-model text from the King James Bible: whole books held out, a BPE learnt on the training books
only, blocks that predict every token once, and clear errors."""

import pytest
import torch

from distil.data.text.lm import blocks, learn_bpe, load_lm_text
from distil.errors import DataError

pytest.importorskip("tokenizers")
SMALL = {"books": ["Gen", "Exod", "Ruth", "Jonah", "Mark"], "max_verses": 60, "context_length": 16, "vocab_size": 300}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_lm_text("kjv", test_books=["Ruth", "Mark"], val_books=["Jonah"], tokenizer_dir=tmp_path_factory.mktemp("tok"), **SMALL)


def test_whole_books_held_out(data):
    assert data.books == {"train": ["Gen", "Exod"], "val": ["Jonah"], "test": ["Ruth", "Mark"]}
    assert data.tokenizer.decode(data.test[0]).startswith("Now it came to pass in the")
    assert data.tokenizer.decode(data.train[0]).startswith("In the beginning God created")
    assert data.vocab_size == 300 and data.train.dtype == torch.int64 and data.train.shape[1] == 17


def test_tokenizer_learnt_on_the_training_books_only(data, tmp_path):
    from distil.data.text.lm import _verses

    train_lines = [v.text + "\n" for b in ("Gen", "Exod") for v in [x for x in _verses("kjv") if x.book == b][:60]]
    assert learn_bpe(train_lines, 300, data.tokenizer.folder.parent).sha256 == data.tokenizer.sha256
    with_test = train_lines + [v.text + "\n" for v in _verses("kjv") if v.book == "Ruth"][:60]
    assert learn_bpe(with_test, 300, tmp_path).sha256 != data.tokenizer.sha256


def test_blocks_predict_every_token_once():
    stream = list(range(1, 12))  # 11 tokens, L = 4: blocks [1..5], [5..9]; the tail 10, 11 is dropped
    b = blocks(stream, 4)
    assert b.tolist() == [[1, 2, 3, 4, 5], [5, 6, 7, 8, 9]]
    assert torch.equal(b[:, 1:].flatten(), torch.arange(2, 10))
    assert blocks([1, 2], 4).shape == (0, 5)


def test_counted_books_are_seeded(tmp_path):
    a = load_lm_text("kjv", test_books=2, val_books=1, seed=3, tokenizer_dir=tmp_path, **SMALL)
    b = load_lm_text("kjv", test_books=2, val_books=1, seed=3, tokenizer_dir=tmp_path, **SMALL)
    assert a.books == b.books and len(a.books["test"]) == 2 and not set(a.books["test"]) & set(a.books["val"])
    assert set(a.books["train"]) | set(a.books["val"]) | set(a.books["test"]) == set(SMALL["books"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"test_books": ["Ruht"]}, "data.test_books: unknown book"),
        ({"test_books": ["Ruth"], "val_books": ["Ruth"]}, "already held out"),
        ({"test_books": 9}, "data.test_books: 9 books asked"),
        ({"vocab_size": 100}, "data.vocab_size must be an integer ≥ 260"),
        ({"tokenizer": "hf:/nonexistent/folder"}, "data.tokenizer"),
    ],
)
def test_bad_settings_name_the_field(change, message, tmp_path):
    kwargs = {"test_books": ["Ruth"], "val_books": ["Jonah"], "tokenizer_dir": tmp_path, **SMALL, **change}
    with pytest.raises(DataError, match=message):
        load_lm_text("kjv", **kwargs)
