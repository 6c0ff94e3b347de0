"""Loading weights never unpickles: safetensors, or PyTorch state_dicts through torch.load(weights_only=True)."""

import ast
import json
import pathlib
from pathlib import Path

import pytest
import torch
from test_run import TINY, config_file, run_cli
from torch import nn

from distil.errors import ModelError
from distil.models import build_model
from distil.weights import file_sha256, load_weights, save_weights

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 8, 8)


def cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("cnn", input_shape=SHAPE, num_classes=10, widths=(8, 16)).eval()


def outputs(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(0)))


def test_state_dict_pt_gives_the_same_model_as_safetensors(tmp_path):
    trained = cnn(seed=1)
    save_weights(trained, tmp_path / "w.safetensors")
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    from_safetensors = load_weights(cnn(seed=2), tmp_path / "w.safetensors")
    from_pt = load_weights(cnn(seed=3), tmp_path / "w.pt")
    assert torch.equal(outputs(from_pt), outputs(from_safetensors))
    assert torch.equal(outputs(from_pt), outputs(trained))


@pytest.mark.parametrize("key", ["state_dict", "model"])
def test_training_checkpoint_of_a_data_parallel_model_loads(tmp_path, key):
    """``{"epoch": .., key: DataParallel(model).state_dict()}``: the usual key is found, ``module.`` stripped."""
    trained = cnn(seed=1)
    wrapped = nn.DataParallel(trained).state_dict()
    assert all(k.startswith("module.") for k in wrapped)
    torch.save({"epoch": 7, "optimizer": {"lr": 0.1}, key: wrapped}, tmp_path / "ckpt.pth")
    assert torch.equal(outputs(load_weights(cnn(seed=2), tmp_path / "ckpt.pth")), outputs(trained))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's import warns about torch.jit
def test_torch_compile_prefix_is_stripped(tmp_path):
    trained = cnn(seed=1)
    state = torch.compile(trained).state_dict()  # an OptimizedModule's keys start with _orig_mod.
    assert all(k.startswith("_orig_mod.") for k in state)
    torch.save(state, tmp_path / "compiled.pt")
    assert torch.equal(outputs(load_weights(cnn(seed=2), tmp_path / "compiled.pt")), outputs(trained))


class _Trap:
    """Unpickling this touches a file: the test sees whether anything was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "unpickled"
    torch.save({"conv.weight": torch.zeros(2), "trap": _Trap(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="contains pickled Python objects") as err:
        load_weights(cnn(0), tmp_path / "evil.pt")
    assert "evil.pt" in str(err.value) and "torch.save(model.state_dict())" in str(err.value)
    assert not marker.exists()


def test_whole_pickled_module_is_refused_by_the_cli(tmp_path):
    teacher = build_model("mlp", input_shape=SHAPE, num_classes=10, hidden=[64])
    torch.save(teacher, tmp_path / "teacher.pt")  # the whole nn.Module, not its state_dict
    raw = {**TINY, "teacher": {**TINY["teacher"], "weights": "teacher.pt"}}
    result = run_cli("run", config_file(tmp_path, raw), "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "teacher.pt" in text and "contains pickled Python objects" in text and "safetensors.torch.save_file" in text
    assert "Traceback" not in result.output and not (tmp_path / "out" / "summary.json").exists()


def test_mismatched_pt_names_the_keys(tmp_path):
    state = {f"module.{k}": v for k, v in cnn(1).state_dict().items() if not k.startswith("fc")}
    state["module.extra.weight"] = torch.zeros(3)
    first = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    state[first] = torch.zeros(1, 1, 1, 1)
    torch.save(state, tmp_path / "w.bin")
    with pytest.raises(ModelError) as err:
        load_weights(cnn(0), tmp_path / "w.bin")
    message = str(err.value)
    assert "w.bin does not fit the model" in message
    assert "missing in file: fc." in message and "not in model: extra.weight" in message
    assert f"shape mismatch: {first.removeprefix('module.')}: file (1, 1, 1, 1)" in message


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("w.ckpt", b"anything", "unknown extension '.ckpt'"),
        ("w.pt", b"not a zip, not a pickle", "is not a PyTorch checkpoint"),
        ("w.safetensors", None, "is not a safetensors file"),
    ],
)
def test_unreadable_files_are_model_errors(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is None:
        torch.save(cnn(1).state_dict(), path)  # a torch file under a safetensors name
    else:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=expected) as err:
        load_weights(cnn(0), path)
    assert str(path) in str(err.value)


def test_pt_without_a_state_dict_is_refused(tmp_path):
    torch.save({"epoch": 3, "best": torch.tensor(0.9), "lr": 0.1}, tmp_path / "w.pt")
    with pytest.raises(ModelError, match=r"no state_dict .* under state_dict, model_state_dict, model"):
        load_weights(cnn(0), tmp_path / "w.pt")


def test_convert_weights_then_eval_both(tmp_path):
    """`distil convert-weights` writes the same tensors as safetensors; `distil eval` reads either alike."""
    from distil.config import validate_config
    from distil.data import load_dataset

    cfg = validate_config(TINY)
    data = load_dataset("digits", val_size=cfg.data.val_size, seed=cfg.seed)
    student = cfg.student.build(data, seed=5)
    torch.save({"model": nn.DataParallel(student).state_dict()}, tmp_path / "student.pt")
    converted = run_cli("convert-weights", tmp_path / "student.pt", tmp_path / "student.safetensors")
    assert converted.exit_code == 0, converted.output
    info = json.loads(converted.output)
    assert info["sha256"] == file_sha256(tmp_path / "student.safetensors")
    config = config_file(tmp_path)
    results = [run_cli("eval", config, "--weights", tmp_path / f"student.{ext}") for ext in ("pt", "safetensors")]
    assert all(r.exit_code == 0 for r in results), [r.output for r in results]
    assert json.loads(results[0].output)["accuracy"] == json.loads(results[1].output)["accuracy"]
    bad = run_cli("convert-weights", tmp_path / "student.pt", tmp_path / "student.pt2")
    assert bad.exit_code == 2 and "expected a .safetensors file name" in bad.output


UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _calls(tree: ast.AST, module: str, function: str):
    for node in ast.walk(tree):
        func = node.func if isinstance(node, ast.Call) else None
        if isinstance(func, ast.Attribute) and func.attr == function and isinstance(func.value, ast.Name) and func.value.id == module:
            yield node


def _keyword(call: ast.Call, name: str):
    return next((k.value.value for k in call.keywords if k.arg == name and isinstance(k.value, ast.Constant)), None)


def test_source_never_unpickles():
    """Every torch.load passes weights_only=True, np.load never allows pickle, and no pickle-like module is imported."""
    files = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))
    assert len(files) > 50
    problems, loads = [], 0
    for file in files:
        tree = ast.parse(file.read_text(), filename=str(file))
        where = file.relative_to(ROOT)
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            problems += [f"{where}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in UNPICKLERS]
            if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
                problems.append(f"{where}:{node.lineno}: from torch import load")
        for call in _calls(tree, "torch", "load"):
            loads += 1
            if _keyword(call, "weights_only") is not True:
                problems.append(f"{where}:{call.lineno}: torch.load without weights_only=True")
        for module in ("np", "numpy"):
            for call in _calls(tree, module, "load"):
                if _keyword(call, "allow_pickle") is not False:
                    problems.append(f"{where}:{call.lineno}: np.load without allow_pickle=False")
    assert not problems, problems
    assert loads >= 1  # the scan sees the one torch.load there is (weights.py)
