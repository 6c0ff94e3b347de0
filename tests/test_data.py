"""distil.data: real datasets load with the documented splits and normalization; every mistake is a
DataError that names the file or field and what exists; batched augmentation does exactly what its
parameters say."""

import gzip
import json
import os
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distil.data import AugmentParams, BatchAugment, Dataset, RawData, Split, list_datasets, load_dataset, register_dataset
from distil.data.idx import parse_idx
from distil.data.registry import DATASETS
from distil.data.sources import fashion_mnist
from distil.data.unlabeled import load_unlabeled
from distil.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="needs Debian's dataset-fashion-mnist (apt-get install it)")
FASHION_FILES = [f"{spec.name}.gz" for spec in fashion_mnist.FILES]


@pytest.fixture(autouse=True)
def isolated_places(tmp_path, monkeypatch):
    """No test reads or writes the real ~/.cache or follows a DISTIL_DATA set outside."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DISTIL_DATA", raising=False)


@pytest.fixture(scope="module")
def fashion() -> Dataset:
    return load_dataset("fashion_mnist", path=FASHION, val_size=5000, seed=0)


def fashion_copy(directory: Path, skip: tuple[str, ...] = ()) -> Path:
    """``directory`` holding links to the system's four files (cheaper than copying 30 MB)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in FASHION_FILES:
        if name not in skip:
            os.symlink(FASHION / name, directory / name)
    return directory


def raw_rows(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Counter:
    """The 8-bit images behind normalized ``x``, as a multiset of byte strings (one per sample)."""
    pixels = torch.round((x * std[0] + mean[0]) * 255).to(torch.uint8).flatten(1).numpy()
    return Counter(row.tobytes() for row in pixels)


# --- Fashion-MNIST ------------------------------------------------------------------------------------


@needs_fashion
def test_fashion_mnist_splits_shapes_and_classes(fashion):
    assert (len(fashion.train), len(fashion.val), len(fashion.test)) == (55000, 5000, 10000)
    assert fashion.input_shape == (1, 28, 28)
    assert fashion.train.x.shape == (55000, 1, 28, 28) and fashion.train.x.dtype == torch.float32
    assert fashion.train.y.dtype == torch.int64
    assert fashion.num_classes == 10 and fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert fashion.test.y.bincount().tolist() == [1000] * 10
    assert fashion.train.y.min() == 0 and fashion.train.y.max() == 9
    assert fashion.source == str(FASHION)
    summary = json.loads(json.dumps(fashion.describe()))
    assert summary["sizes"] == {"train": 55000, "val": 5000, "test": 10000} and summary["input_shape"] == [1, 28, 28]


@needs_fashion
def test_fashion_mnist_is_normalized_with_train_statistics(fashion):
    assert abs(fashion.train.x.mean().item()) < 1e-4
    assert abs(fashion.train.x.std().item() - 1) < 1e-4
    # Known statistics of Fashion-MNIST's pixels (in [0, 1]); val/test use the train ones, so are only near 0/1.
    assert fashion.mean[0] == pytest.approx(0.286, abs=2e-3) and fashion.std[0] == pytest.approx(0.353, abs=2e-3)
    assert abs(fashion.test.x.mean().item()) < 0.02 and abs(fashion.test.x.std().item() - 1) < 0.02


@needs_fashion
def test_fashion_mnist_validation_split_is_seeded_and_disjoint(fashion):
    same = load_dataset("fashion_mnist", path=FASHION, val_size=5000, seed=0)
    other = load_dataset("fashion_mnist", path=FASHION, val_size=5000, seed=1)
    assert torch.equal(same.val.x, fashion.val.x) and torch.equal(same.val.y, fashion.val.y)
    assert not torch.equal(other.val.x, fashion.val.x)
    # The seed chooses validation samples only: the test samples are the same (normalized with
    # slightly different train statistics).
    assert torch.equal(other.test.y, fashion.test.y)
    assert raw_rows(other.test.x, other.mean, other.std) == raw_rows(fashion.test.x, fashion.mean, fashion.std)
    # train + val is exactly the original 60 000 training images: nothing lost, nothing in both.
    raw = fashion_mnist.load_fashion_mnist(FASHION)
    original = Counter(row.tobytes() for row in raw.train_x.reshape(60000, -1))
    assert raw_rows(fashion.train.x, fashion.mean, fashion.std) + raw_rows(fashion.val.x, fashion.mean, fashion.std) == original


@needs_fashion
def test_fashion_mnist_altered_file_is_an_md5_error(tmp_path):
    directory = fashion_copy(tmp_path / "fm", skip=("train-labels-idx1-ubyte.gz",))
    labels = bytearray(gzip.decompress((FASHION / "train-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10  # still a valid IDX file: only the md5 can tell
    (directory / "train-labels-idx1-ubyte").write_bytes(labels)  # uncompressed names are accepted too
    with pytest.raises(DataError, match="md5") as error:
        load_dataset("fashion_mnist", path=directory)
    message = str(error.value)
    assert "train-labels-idx1-ubyte" in message and "9018921c3c673c538a1fc5bad174d6f9" in message and "Delete" in message


@needs_fashion
def test_fashion_mnist_truncated_gzip_is_named(tmp_path):
    directory = fashion_copy(tmp_path / "fm", skip=("t10k-labels-idx1-ubyte.gz",))
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes((FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes()[:1000])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*gzip.*md5"):
        load_dataset("fashion_mnist", path=directory)


@needs_fashion
def test_fashion_mnist_explicit_path_missing_a_file_does_not_fall_back(tmp_path):
    directory = fashion_copy(tmp_path / "fm", skip=("t10k-images-idx3-ubyte.gz",))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte") as error:
        load_dataset("fashion_mnist", path=directory)
    assert str(directory) in str(error.value) and "train-images-idx3-ubyte.gz" in str(error.value)  # says what is there
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("fashion_mnist", path=tmp_path / "nowhere")


@needs_fashion
def test_fashion_mnist_search_order_starts_at_distil_data(tmp_path, monkeypatch):
    fashion_copy(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv("DISTIL_DATA", str(tmp_path / "data"))
    assert fashion_mnist.search_dirs()[:2] == [tmp_path / "data", tmp_path / "data" / "fashion-mnist"]
    assert fashion_mnist.search_dirs()[-1] == fashion_mnist.SYSTEM_DIR
    assert load_dataset("fashion_mnist", val_size=100).source == str(tmp_path / "data" / "fashion-mnist")


@needs_fashion
def test_fashion_mnist_download_is_verified_into_the_cache(tmp_path, monkeypatch):
    mirror = fashion_copy(tmp_path / "mirror")
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "not-installed")
    monkeypatch.setattr(fashion_mnist, "BASE_URL", mirror.as_uri() + "/")  # file:// keeps the test offline
    data = load_dataset("fashion_mnist", val_size=100)
    cache = tmp_path / "home" / ".cache" / "distil" / "fashion-mnist"
    assert data.source == str(cache) and len(data.test) == 10000
    assert sorted(p.name for p in cache.iterdir()) == sorted(FASHION_FILES)  # no temporary files left


def test_fashion_mnist_failed_download_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "not-installed")
    monkeypatch.setattr(fashion_mnist, "BASE_URL", (tmp_path / "no-server").as_uri() + "/")
    with pytest.raises(DataError) as error:
        load_dataset("fashion_mnist")
    message = str(error.value)
    assert str(tmp_path / "not-installed") in message and ".cache/distil/fashion-mnist" in message
    assert "apt-get install dataset-fashion-mnist" in message and "DISTIL_DATA" in message
    cache = tmp_path / "home" / ".cache" / "distil" / "fashion-mnist"
    assert not cache.exists() or not any(cache.iterdir())  # a failed download leaves nothing behind


def test_idx_parser_checks_magic_and_length():
    good = bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([7, 8, 9])
    assert parse_idx(good, "f", ndim=1).tolist() == [7, 8, 9]
    with pytest.raises(DataError, match="f: not an IDX file"):
        parse_idx(b"\x1f\x8b" + good[2:], "f")
    with pytest.raises(DataError, match="1 dimension.s., expected 3"):
        parse_idx(good, "f", ndim=3)
    with pytest.raises(DataError, match="should be 11 bytes, but it is 10"):
        parse_idx(good[:-1], "f")


# --- MNIST-1D, digits ---------------------------------------------------------------------------------


def test_mnist1d_shape_sizes_and_global_rng_untouched():
    np.random.seed(123)
    random.seed(123)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    small = load_dataset("mnist1d", val_size=20, num_samples=200)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist() and np.random.get_state()[2] == numpy_state[2]
    assert random.getstate() == python_state
    assert small.input_shape == (1, 40) and small.train.x.shape[1:] == (1, 40)
    assert (len(small.train), len(small.val), len(small.test)) == (140, 20, 40)  # the package's own 80/20 split
    assert small.class_names == tuple("0123456789") and small.source == "generated: mnist1d seed=42 num_samples=200"
    larger = load_dataset("mnist1d", val_size=20, num_samples=400)
    assert len(larger.train) + len(larger.val) + len(larger.test) == 400


def test_mnist1d_generation_seed_changes_the_data():
    a = load_dataset("mnist1d", num_samples=100, generation_seed=1)
    b = load_dataset("mnist1d", num_samples=100, generation_seed=1)
    c = load_dataset("mnist1d", num_samples=100, generation_seed=2)
    assert torch.equal(a.test.x, b.test.x) and not torch.equal(a.test.x, c.test.x)
    with pytest.raises(DataError, match="num_samples must be an int >= 20"):
        load_dataset("mnist1d", num_samples=5)
    with pytest.raises(DataError, match="takes no path"):
        load_dataset("mnist1d", path="/tmp")


def test_digits_sizes_and_fixed_test_split():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=1)
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert a.input_shape == (1, 8, 8) and a.train.x.shape[1:] == (1, 8, 8) and a.num_classes == 10
    assert len(a.test) == round(0.2 * 1797) and len(a.val) == round(0.1 * (1797 - len(a.test)))
    # The test split is carved once, the same for every run seed (normalized with that run's train statistics).
    assert torch.equal(a.test.y, b.test.y)
    assert torch.allclose(a.test.x * a.std[0] + a.mean[0], b.test.x * b.std[0] + b.mean[0], atol=1e-6)
    assert not torch.equal(a.val.x, b.val.x)
    assert a.mean[0] == pytest.approx(0.3056, abs=2e-3)  # statistics of the 0..16 values / 16


# --- image folders ------------------------------------------------------------------------------------


def write_images(root: Path, classes: dict[str, int], size=(6, 5), start=0) -> None:
    from PIL import Image

    for k, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            value = 40 * k + 10 * i + start
            pixels = np.full((size[1], size[0]), value, dtype=np.uint8)
            pixels[0, 0] = 255
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_folder_of_pngs_loads_classes_in_name_order(tmp_path):
    write_images(tmp_path / "imgs", {"dog": 5, "cat": 5})
    (tmp_path / "imgs" / "cat" / "notes.txt").write_text("not an image, ignored")
    data = load_dataset("folder", path=tmp_path / "imgs", val_size=2)
    assert data.class_names == ("cat", "dog") and data.num_classes == 2
    assert data.input_shape == (1, 5, 6)  # H x W of the first image (6 wide, 5 high)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)
    # Raw pixels come back after undoing the normalization: each image is its class's value ramp.
    all_x = torch.cat([data.train.x, data.val.x, data.test.x]) * data.std[0] + data.mean[0]
    all_y = torch.cat([data.train.y, data.val.y, data.test.y])
    values = sorted(zip(all_y.tolist(), torch.round(all_x[:, 0, 1, 1] * 255).int().tolist()))
    assert values == [(0, 40 + 10 * i) for i in range(5)] + [(1, 10 * i) for i in range(5)]  # cat (written second) is class 0


def test_folder_options_and_train_test_layout(tmp_path):
    write_images(tmp_path / "split" / "train", {"a": 3, "b": 3})
    write_images(tmp_path / "split" / "test", {"a": 2, "b": 1}, size=(8, 8))
    data = load_dataset("folder", path=tmp_path / "split", val_size=1, channels=3, image_size=4)
    assert data.input_shape == (3, 4, 4) and data.train.x.shape[1:] == (3, 4, 4) and len(data.mean) == 3
    assert (len(data.train) + len(data.val), len(data.test)) == (6, 3)
    assert data.test.y.tolist() == [0, 0, 1]
    with pytest.raises(DataError, match="channels must be 1"):
        load_dataset("folder", path=tmp_path / "split", channels=2)


def test_folder_mistakes_name_the_folder_or_file(tmp_path):
    write_images(tmp_path / "imgs", {"a": 2, "b": 2})
    (tmp_path / "imgs" / "c").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'imgs' / 'c'} has no images"):
        load_dataset("folder", path=tmp_path / "imgs")
    (tmp_path / "imgs" / "c" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: cannot be read as an image"):
        load_dataset("folder", path=tmp_path / "imgs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_dataset("folder", path=tmp_path / "empty")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("folder")


# --- npz ----------------------------------------------------------------------------------------------


def test_npz_uint8_is_scaled_and_test_arrays_are_used(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 4, 4), dtype=np.uint8)
    y = np.arange(50) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:7], y_test=y[:7])
    data = load_dataset("npz", path=tmp_path / "d.npz", val_size=10)
    assert data.input_shape == (1, 4, 4) and data.class_names == ("0", "1", "2")
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 7)
    restored = torch.cat([data.train.x, data.val.x]) * data.std[0] + data.mean[0]
    assert restored.min() >= -1e-6 and restored.max() <= 1 + 1e-6  # pixels / 255
    assert data.source == str(tmp_path / "d.npz")


def test_npz_float_signals_are_taken_as_is(tmp_path):
    x = np.linspace(-3, 3, 40 * 10, dtype=np.float64).reshape(40, 10)
    np.savez(tmp_path / "s.npz", x=x, y=np.arange(40) % 2)
    data = load_dataset("npz", path=tmp_path / "s.npz", val_size=4)
    assert data.input_shape == (1, 10) and data.mean[0] == pytest.approx(x.mean(), abs=0.2)


def test_npz_mistakes_list_what_the_file_has(tmp_path):
    np.savez(tmp_path / "no_y.npz", x=np.zeros((4, 2)), labels=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match=r"missing array 'y'; the file has: labels, x"):
        load_dataset("npz", path=tmp_path / "no_y.npz")
    np.savez(tmp_path / "float_y.npz", x=np.zeros((4, 2)), y=np.array([0.0, 1.5, 1, 0]))
    with pytest.raises(DataError, match="'y' has dtype float64; labels must be integers"):
        load_dataset("npz", path=tmp_path / "float_y.npz")
    np.savez(tmp_path / "from_one.npz", x=np.zeros((4, 2)), y=np.array([1, 2, 1, 2]))
    with pytest.raises(DataError, match=r"classes \[0\] have no sample"):
        load_dataset("npz", path=tmp_path / "from_one.npz")
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}] * 4, dtype=object), y=np.zeros(4, dtype=int))
    with pytest.raises(DataError, match="without unpickling"):
        load_dataset("npz", path=tmp_path / "objects.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(DataError, match="cannot be read as .npz"):
        load_dataset("npz", path=tmp_path / "text.npz")


# --- the registry and load_dataset's checks -----------------------------------------------------------


def test_unknown_dataset_and_option_list_what_exists():
    known = "known datasets: digits, fashion_mnist, folder, mnist1d, mr, mr_reviews, npz, pos, spoken_words, tagged_text, text_csv, text_folder, text_jsonl, transfer, tweets"
    with pytest.raises(DataError, match=rf"unknown dataset 'fashion-mnist' \(did you mean 'fashion_mnist'\?\); {known}"):
        load_dataset("fashion-mnist")
    with pytest.raises(DataError, match="no option 'num_sample'.*'num_samples'.*it accepts: num_samples, generation_seed"):
        load_dataset("mnist1d", num_sample=100)
    with pytest.raises(DataError, match="no option 'channels'; it accepts: size"):
        load_dataset("digits", channels=1)
    assert set(list_datasets()) >= {"fashion_mnist", "mnist1d", "digits", "folder", "npz"}
    assert all(isinstance(d, str) and d for d in list_datasets().values())


def test_val_size_must_leave_both_parts():
    for bad in (0, -1, 0.0, 1.0, True, "10"):
        with pytest.raises(DataError, match="val_size"):
            load_dataset("digits", val_size=bad)
    with pytest.raises(DataError, match=r"val_size=1438 asks for 1438.*has 1438 training samples"):
        load_dataset("digits", val_size=1438)
    assert len(load_dataset("digits", val_size=0.25).val) == round(0.25 * 1438)


def test_user_loader_is_checked_and_normalized():
    @register_dataset("test_toy", "a toy for the tests")
    def toy(path, *, classes: int = 2, shift: float = 0.0):
        x = np.arange(30 * 2 * 3, dtype=np.float32).reshape(30, 2, 3) + shift
        y = np.arange(30) % classes
        return RawData(x, y, None, None, tuple(str(k) for k in range(2)), (2, 3))

    try:
        data = load_dataset("test_toy", val_size=3, shift=5.0)
        assert list_datasets()["test_toy"] == "a toy for the tests"
        assert data.source == f"loader {__name__}.test_user_loader_is_checked_and_normalized.<locals>.toy"
        assert len(data.mean) == 2  # one per channel
        assert torch.allclose(data.train.x.mean(dim=(0, 2)), torch.zeros(2), atol=1e-5)
        with pytest.raises(DataError, match=r"train_y has labels \[2\] outside 0..1"):
            load_dataset("test_toy", classes=3)
        with pytest.raises(DataError, match="already registered"):
            register_dataset("test_toy", "another")(lambda path: None)
        with pytest.raises(DataError, match=r"options \['seed'\] named like load_dataset's own arguments"):
            register_dataset("test_seeded", "unreachable option")(lambda path, seed=0: None)
    finally:
        DATASETS.pop("test_toy")


# --- loaders imported by "package.module:loader" -------------------------------------------------------

SOURCES = "distil_test_sources"
SOURCES_CODE = '''"""Digits-like data for the tests: 8x8 images whose bright quadrant is the class."""
import numpy as np

from distil.data import RawData

NOT_A_LOADER = 3


def load_blocks(path, *, samples: int = 120, noise: float = 0.1):
    """Blocks: 8x8 images, 4 classes (the bright quadrant)."""
    y = np.arange(samples) % 4
    x = np.random.default_rng(0).normal(0.0, noise, (samples, 1, 8, 8)).astype(np.float32)
    for k in range(4):
        row, col = divmod(k, 2)
        x[y == k, 0, 4 * row:4 * row + 4, 4 * col:4 * col + 4] += 1.0
    return RawData(x, y, None, None, ("top left", "top right", "bottom left", "bottom right"), (1, 8, 8))


def load_without_path(*, samples: int = 10):
    return load_blocks(None, samples=samples)
'''


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """A real loader module, importable as SOURCES from a directory on sys.path (not a registered dataset)."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / f"{SOURCES}.py").write_text(SOURCES_CODE)
    monkeypatch.syspath_prepend(str(folder))
    yield f"{SOURCES}:load_blocks"
    sys.modules.pop(SOURCES, None)


def test_imported_loader_is_used_like_a_registered_one(sources):
    data = load_dataset(sources, val_size=10, seed=1, samples=100)
    assert data.name == sources and data.input_shape == (1, 8, 8) and data.num_classes == 4
    assert (len(data.train), len(data.val), len(data.test)) == (70, 10, 20)  # the carved 20 % test split
    assert data.source == f"loader {SOURCES}.load_blocks"
    assert torch.allclose(data.train.x.mean(), torch.zeros(()), atol=1e-5)  # normalized like any dataset
    assert sources not in list_datasets() and all(e.loader.__module__ != SOURCES for e in DATASETS.values())  # not registered
    transfer = load_unlabeled(sources, data, samples=30, noise=0.2)  # a transfer set looks it up the same way
    assert transfer.x.shape == (30, 1, 8, 8) and transfer.y is None


def test_imported_loader_from_a_yaml_config(sources, tmp_path):
    from distil.config import load_config

    config = tmp_path / "blocks.yaml"
    config.write_text(
        f"data: {{name: '{sources}', val_size: 12, options: {{samples: 80}}}}\nteacher: {{arch: mlp}}\nstudent: {{arch: mlp}}\n"
    )
    cfg = load_config(config)
    d = cfg.data
    data = load_dataset(d.name, path=d.path, val_size=d.val_size, seed=cfg.seed, **d.options)
    assert data.name == sources and len(data.train) + len(data.val) + len(data.test) == 80 and len(data.val) == 12


def test_distil_run_on_an_imported_loader(sources, tmp_path):
    from typer.testing import CliRunner

    from distil.cli import app

    raw = {
        "name": "blocks",
        "data": {"name": sources, "options": {"samples": 200}},
        "teacher": {"arch": "mlp", "kwargs": {"hidden": [16]}, "epochs": 1, "batch_size": 32},
        "student": {"arch": "mlp", "kwargs": {"hidden": [8]}, "epochs": 1, "batch_size": 32},
        "scratch": False,
        "measure": {"latency_repeats": 1, "throughput_repeats": 1},
    }
    (tmp_path / "blocks.yaml").write_text(json.dumps(raw))  # JSON is YAML
    result = CliRunner().invoke(app, ["run", str(tmp_path / "blocks.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dataset"] == sources
    assert [m["name"] for m in summary["models"]] == ["teacher", "student_kd"]


MISTAKES = {
    "module missing": ("no_such_sources_xyz:load", {}, r"'no_such_sources_xyz:load': cannot import module 'no_such_sources_xyz'.*sys.path"),
    "attribute missing": (
        f"{SOURCES}:load_blokcs",
        {},
        rf"'{SOURCES}:load_blokcs': module '{SOURCES}' has no attribute 'load_blokcs'; its public callables, closest first: load_blocks",
    ),
    "not callable": (
        f"{SOURCES}:NOT_A_LOADER",
        {},
        r"'.*:NOT_A_LOADER' must name a callable loader\(path: Path \| None, \*\*options\) -> distil.data.RawData \| distil.data.RawText, got int 3",
    ),
    "no path parameter": (
        f"{SOURCES}:load_without_path",
        {},
        rf"'{SOURCES}:load_without_path' must name a callable loader\(path.*, but {SOURCES}.load_without_path takes no positional path",
    ),
    "bad option": (
        f"{SOURCES}:load_blocks",
        {"sample": 5},
        rf"'{SOURCES}:load_blocks' has no option 'sample' \(did you mean 'sample' -> 'samples'\?\); it accepts: samples, noise",
    ),
    "wrong form": (f"{SOURCES}:", {}, rf"'{SOURCES}:': expected the form 'package.module:loader' \(one ':'\)"),
}


@pytest.mark.parametrize("spec, options, match", MISTAKES.values(), ids=MISTAKES.keys())
def test_imported_loader_mistakes_are_data_errors(sources, spec, options, match):
    with pytest.raises(DataError, match=f"^dataset {match}"):
        load_dataset(spec, **options)


def test_imported_loader_module_that_raises(tmp_path, monkeypatch):
    (tmp_path / "broken_sources_xyz.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(DataError, match=r"'broken_sources_xyz:load': importing module 'broken_sources_xyz' raised RuntimeError: boom"):
        load_dataset("broken_sources_xyz:load")


def test_registered_names_cannot_look_like_imports():
    with pytest.raises(DataError, match=r"without spaces or ':'"):
        register_dataset("mine:blocks", "ambiguous")
    with pytest.raises(DataError, match=r"or name your own loader as 'package.module:loader'"):
        load_dataset("blocks")


def test_split_to_subset_and_unlabeled():
    split = Split(torch.arange(12.0).view(6, 2), torch.arange(6))
    part = split.subset(torch.tensor([4, 1]))
    assert part.x.tolist() == [[8.0, 9.0], [2.0, 3.0]] and part.y.tolist() == [4, 1] and len(part) == 2
    assert split.to("cpu").x.device.type == "cpu"
    unlabeled = Split(torch.zeros(3, 2))
    assert unlabeled.y is None and unlabeled.subset(torch.tensor([0])).y is None
    with pytest.raises(DataError, match="Split.y must have shape"):
        Split(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))


# --- batched augmentation -----------------------------------------------------------------------------


def arange_images(n=3, c=2, h=4, w=5) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).view(n, c, h, w)


def params(dy, dx, flip) -> AugmentParams:
    return AugmentParams(torch.tensor(dy), torch.tensor(dx), torch.tensor(flip))


def test_crop_takes_the_window_at_the_drawn_offsets():
    x = arange_images(2, 1, 3, 3)
    out = BatchAugment(crop_padding=1).apply(x, params([0, 2], [1, 0], [False, False]))
    # Sample 0, dy=0 dx=1: one row of padding above, columns unshifted. Sample 1, dy=2 dx=0: up one, right one.
    assert out[0, 0].tolist() == [[0, 0, 0], [0, 1, 2], [3, 4, 5]]
    assert out[1, 0].tolist() == [[0, 12, 13], [0, 15, 16], [0, 0, 0]]
    centred = BatchAugment(crop_padding=1).apply(x, params([1, 1], [1, 1], [False, False]))
    assert torch.equal(centred, x)  # offset == padding means unshifted


def test_hflip_and_crop_with_flip_match_slicing():
    x = arange_images()
    flipped = BatchAugment(hflip=True).apply(x, params([0, 0, 0], [0, 0, 0], [True, False, True]))
    assert torch.equal(flipped[0], x[0].flip(-1)) and torch.equal(flipped[1], x[1]) and torch.equal(flipped[2], x[2].flip(-1))
    both = BatchAugment(crop_padding=2, hflip=True)
    out = both.apply(x, params([0, 3, 4], [4, 1, 2], [True, False, False]))
    padded = F.pad(x, (2, 2, 2, 2))
    assert torch.equal(out[0], padded[0, :, 0:4, 4:9].flip(-1))
    assert torch.equal(out[1], padded[1, :, 3:7, 1:6]) and torch.equal(out[2], padded[2, :, 4:8, 2:7])


def test_signals_shift_along_length_and_flip_reverses_it():
    x = torch.arange(3 * 2 * 6, dtype=torch.float32).view(3, 2, 6)
    out = BatchAugment(crop_padding=2, hflip=True).apply(x, params([0, 0, 0], [0, 2, 4], [False, True, False]))
    padded = F.pad(x, (2, 2))
    assert torch.equal(out[0], padded[0, :, 0:6]) and torch.equal(out[1], x[1].flip(-1)) and torch.equal(out[2], padded[2, :, 4:10])


def test_disabled_augment_is_the_identity():
    x = arange_images()
    off = BatchAugment()
    assert not off.enabled and off(x, torch.Generator().manual_seed(0)) is x
    assert off.apply(x, params([0, 0, 0], [0, 0, 0], [False] * 3)) is x
    assert BatchAugment(crop_padding=1).enabled and BatchAugment(hflip=True).enabled


def test_augment_is_seeded_and_params_are_in_range():
    x = torch.randn(64, 3, 8, 8)
    augment = BatchAugment(crop_padding=3, hflip=True)
    a = augment(x, torch.Generator().manual_seed(5))
    b = augment(x, torch.Generator().manual_seed(5))
    c = augment(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == x.shape
    drawn = augment.sample(10000, torch.Generator().manual_seed(0))
    assert drawn.dy.dtype == torch.int64 and drawn.flip.dtype == torch.bool and len(drawn) == 10000
    assert drawn.dy.min() == 0 and drawn.dy.max() == 6 and drawn.dx.min() == 0 and drawn.dx.max() == 6
    assert 0.45 < drawn.flip.float().mean() < 0.55
    # Replaying stored params gives the same view as the call that drew them.
    g = torch.Generator().manual_seed(9)
    replay = augment.sample(64, torch.Generator().manual_seed(9))
    assert torch.equal(augment(x, g), augment.apply(x, replay))


def test_augment_batch_of_one_and_bad_inputs():
    x = arange_images(1, 1, 3, 3)
    out = BatchAugment(crop_padding=1, hflip=True)(x, torch.Generator().manual_seed(0))
    assert out.shape == (1, 1, 3, 3)
    with pytest.raises(DataError, match=r"\(N, C, H, W\) or \(N, C, L\)"):
        BatchAugment(hflip=True)(torch.zeros(4, 10), torch.Generator())
    with pytest.raises(DataError, match="crop_padding must be an int >= 0"):
        BatchAugment(crop_padding=-1)
    with pytest.raises(DataError, match="params are for 2 samples but the batch has 1"):
        BatchAugment(hflip=True).apply(x, params([0, 0], [0, 0], [True, True]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_on_cuda_with_a_cpu_generator_matches_cpu():
    x = torch.randn(32, 3, 8, 8)
    augment = BatchAugment(crop_padding=2, hflip=True)
    on_gpu = augment(x.cuda(), torch.Generator().manual_seed(1))
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), augment(x, torch.Generator().manual_seed(1)))
