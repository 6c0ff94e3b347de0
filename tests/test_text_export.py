"""Compress and export of text models (issue #15): ONNX with dynamic batch and length for the text
students, parity on real sentences of several lengths, ONNX Runtime dynamic int8, torch int8 of LSTM
and Linear layers, clear refusals, and `distil run` / `distil compress` end to end on a tiny text run.

Sentences are a tiny CSV tokenized by the packaged MiniLM tokenizer; lengths vary from 3 to ~30 tokens.
"""

import json
import random
from pathlib import Path

import onnx
import pytest
import torch
import yaml
from text_helpers import tagged_sentences
from torch import nn
from typer.testing import CliRunner

from distil import load_dataset, train
from distil.cli import app
from distil.compress import quantize
from distil.compress.export import (
    ExportError,
    OnnxModel,
    ParityError,
    check_parity,
    export_onnx,
    parity,
    quantize_onnx_dynamic,
    text_cases,
)
from distil.compress.quantize import QuantizeError
from distil.data.tokens import IGNORE, PAD_ID, lengths, trim
from distil.engine.evaluate import accuracy
from distil.models import build_model

GOOD = ["wonderful", "brilliant", "delightful", "moving", "superb", "charming"]
BAD = ["dreadful", "boring", "awful", "tedious", "clumsy", "terrible"]
FILLER = ["the", "film", "story", "cast", "was", "and", "its", "music", "ending", "plot", "really", "quite", "overall", "for", "me"]
MAX_LENGTH = 32
SMALL = {  # small students: seconds to train and export
    "lstm": {"embed_dim": 16, "hidden_size": 12, "mlp_hidden": 8},
    "bilstm": {"embed_dim": 16, "hidden_size": 8, "mlp_hidden": 8},
    "textcnn": {"embed_dim": 16, "maps": 6},
    "boe": {"embed_dim": 16},
    "text_transformer": {"width": 16, "heads": 2, "depth": 1},
}
runner = CliRunner()


def sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """Labelled sentences of 1 to 20 filler words around one polar word: lengths spread widely."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(FILLER) for _ in range(rng.randint(1, 20))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(GOOD if label == "pos" else BAD))
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text-export")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTIL_DATA_CACHE", str(tmp / "data-cache"))
        return load_dataset("text_csv", path=write_csv(tmp / "s.csv", sentences(240, 0)), val_size=0.2, max_length=MAX_LENGTH, seed=0)


def small(arch: str, data, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    options = {**SMALL[arch], "min_count": 1, **kwargs}
    return build_model(arch, input_shape=data.input_shape, num_classes=len(data.class_names), vocab_size=data.text.vocab_size,
                       token_counts=data.text.token_counts, seed=0, **options).eval()  # fmt: skip


@pytest.fixture(scope="module")
def trained_lstm(data):
    model = small("lstm", data)
    train(model, data, epochs=10, batch_size=16, lr=0.02, optimizer="adamw", weight_decay=0.0)
    return model.eval()


def input_dims(path: Path) -> list[str | int]:
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


# ------------------------------------------------------------------------------------------------ export and parity


def test_the_data_has_sentences_of_several_lengths(data):
    n = lengths(data.test.x)
    assert n.min() <= 6 and n.max() >= 20  # what the parity cases below rely on
    cases = text_cases(data.test.x)
    assert list(cases) == ["short", "median", "long", "mixed"]
    assert cases["short"].shape[1] < cases["median"].shape[1] < cases["long"].shape[1]
    mixed = cases["mixed"]
    assert len(set(lengths(mixed).tolist())) > 3 and bool((mixed == PAD_ID).any())  # a padded batch of mixed lengths


@pytest.mark.parametrize("arch", list(SMALL))
def test_text_students_export_with_dynamic_batch_and_length(arch, data, tmp_path):
    model = small(arch, data)
    path = export_onnx(model, data.input_shape, tmp_path / f"{arch}.onnx", exporter="auto", example=data.train.x[:8])
    assert input_dims(path) == ["batch", "length"]
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    onnx_model = OnnxModel(path)
    checked = check_parity(f"onnx ({arch})", parity(model, onnx_model, data.test.x), atol=1e-4, min_agreement=1.0)
    assert [c["case"] for c in checked.cases] == ["short", "median", "long", "mixed"]
    assert all(c["max_abs_diff"] < 1e-4 and c["argmax_agreement"] == 1.0 for c in checked.cases)
    one_token = torch.tensor([[data.test.x[0, 0].item()]])  # length 1, batch 1: neither axis was traced at 1
    torch.testing.assert_close(onnx_model(one_token), model(one_token), atol=1e-4, rtol=1e-4)


def test_export_without_example_finds_token_models_by_their_embedding(data, tmp_path):
    """What the serve helper calls: export_onnx(model, (max_length,), path, exporter=...)."""
    model = small("textcnn", data)
    path = export_onnx(model, data.input_shape, tmp_path / "m.onnx", exporter="torchscript")
    assert input_dims(path) == ["batch", "length"]
    x = trim(data.test.x[:5])
    torch.testing.assert_close(OnnxModel(path)(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["textcnn", "text_transformer"])
def test_dynamo_exporter_keeps_the_length_dynamic_for_cnn_and_transformer(arch, data, tmp_path):
    model = small(arch, data)
    path = export_onnx(model, data.input_shape, tmp_path / "m.onnx", exporter="dynamo", example=data.train.x[:8])
    assert input_dims(path) == ["batch", "length"]
    check_parity("onnx", parity(model, OnnxModel(path), data.test.x), atol=1e-4)


def test_dynamo_export_of_a_bilstm_is_a_clear_error(data, tmp_path):
    """torch.export fixes nn.LSTM's sequence length (torch 2.13); the exporter then makes the input static."""
    with pytest.raises(ExportError, match=r"dynamo.*RNNClassifier.*fixed (length|an axis).*torchscript"):
        export_onnx(small("bilstm", data), data.input_shape, tmp_path / "m.onnx", exporter="dynamo", example=data.train.x[:8])
    assert not list(tmp_path.iterdir())  # nothing left behind


class SpectralStudent(nn.Module):
    """A token model with an op ONNX has no export for (singular values)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(30522, 4, padding_idx=PAD_ID)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.linalg.svdvals(self.embedding(x))[:, :1].expand(-1, 4))


class FixedLengthStudent(nn.Module):
    """A token model whose output silently depends on the traced length (a Python int): exports, fails parity."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(30522, 4, padding_idx=PAD_ID)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(x).sum(1) / float(x.shape[1]))


def test_a_model_the_exporter_cannot_take_is_a_clear_message(data, tmp_path):
    with pytest.raises(ExportError, match=r"onnx export \(torchscript\) of SpectralStudent failed: .*svd"):
        export_onnx(SpectralStudent(), data.input_shape, tmp_path / "m.onnx", exporter="auto")
    assert not list(tmp_path.iterdir())


def test_parity_on_several_lengths_catches_a_length_baked_into_the_graph(data, tmp_path):
    model = FixedLengthStudent().eval()
    path = export_onnx(model, data.input_shape, tmp_path / "m.onnx", exporter="torchscript", example=data.train.x[:8])
    result = parity(model, OnnxModel(path), data.test.x)
    with pytest.raises(ParityError, match=r"onnx \(fixed\): parity check failed: .* \(largest on the \w+ sentences?, \d+"):
        check_parity("onnx (fixed)", result, atol=1e-3)


def test_export_with_atol_checks_outputs_at_a_second_length(data, tmp_path):
    """What `distil serve` runs at start-up: the export, then the file against PyTorch on the traced
    sentences and at another batch and length; a length baked into the graph fails there."""
    example = data.train.x[:4]
    path = export_onnx(small("textcnn", data), data.input_shape, tmp_path / "ok.onnx", exporter="torchscript", example=example, atol=1e-4)
    assert input_dims(path) == ["batch", "length"]
    differ = r"FixedLengthStudent: at batch 5 × length \d+ the file's outputs differ from PyTorch's by up to .* \(tolerance 0.0001\)"
    with pytest.raises(ExportError, match=differ):
        fixed = FixedLengthStudent().eval()
        export_onnx(fixed, data.input_shape, tmp_path / "fixed.onnx", exporter="torchscript", example=example, atol=1e-4)
    assert not (tmp_path / "fixed.onnx").exists()


# ------------------------------------------------------------------------------------------------ int8


def test_onnx_dynamic_int8_is_smaller_and_as_accurate(trained_lstm, data, tmp_path):
    fp32 = export_onnx(trained_lstm, data.input_shape, tmp_path / "m.onnx", exporter="auto", example=data.train.x[:8])
    int8 = quantize_onnx_dynamic(fp32, tmp_path / "m.int8.onnx")
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    assert int8.stat().st_size < fp32.stat().st_size
    reference = accuracy(trained_lstm, data.test.x, data.test.y)
    assert reference >= 0.8
    assert abs(accuracy(OnnxModel(int8), data.test.x, data.test.y) - reference) <= 0.05
    check_parity("onnx-int8", parity(trained_lstm, OnnxModel(int8), data.test.x), min_agreement=0.95)


def test_torch_dynamic_int8_quantizes_the_lstm_and_saves_its_int8_weights(trained_lstm, data):
    model = quantize.dynamic_int8(trained_lstm)
    assert not any(type(m) is nn.LSTM for m in model.modules())
    check_parity("int8 (dynamic)", parity(trained_lstm, model, data.test.x), min_agreement=0.95)
    tensors = quantize.int8_tensors(model)
    assert any(k.startswith("layers.0.fwd.") and k.endswith(".int8") for k in tensors)


@pytest.mark.parametrize("fn", [lambda m, x: quantize.static_int8(m, x), lambda m, x: quantize.prepare_qat(m, x)])
def test_static_and_qat_int8_refuse_token_inputs_clearly(fn, trained_lstm, data):
    with pytest.raises(QuantizeError, match=r"RNNClassifier reads token ids.*use mode dynamic"):
        fn(trained_lstm, data.train.x[:32])


# ------------------------------------------------------------------------------------------------ end to end


def run_config(tmp: Path) -> Path:
    raw = {
        "name": "text-export",
        "seed": 0,
        "data": {"name": "text_csv", "path": str(write_csv(tmp / "train.csv", sentences(200, 1))), "val_size": 0.2, "max_length": MAX_LENGTH},
        "teacher": {"arch": "textcnn", "kwargs": {"embed_dim": 24, "maps": 12, "min_count": 1}, "epochs": 6, "batch_size": 16, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0},
        "student": {"arch": "bilstm", "kwargs": {**SMALL["bilstm"], "hidden_size": 64, "min_count": 1},  # LSTM weights outweigh the 244 KB id → row index
                    "epochs": 6, "batch_size": 16, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0},
        "scratch": False,
        "measure": {"latency_repeats": 3, "throughput_repeats": 1},
        "compress": {
            "steps": ["onnx", "onnx-int8", "int8", "prune", "onnx"],
            "int8": {"mode": "dynamic"},
            "prune": {"method": "magnitude", "sparsity": 0.5, "epochs": 1, "batch_size": 16},
            "onnx": {"samples": 200},
        },
    }
    path = tmp / "text.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTIL_CACHE", str(tmp / "teacher-cache"))
        patch.setenv("DISTIL_DATA_CACHE", str(tmp / "data-cache"))
        result = runner.invoke(app, ["run", str(run_config(tmp)), "--out", str(tmp / "out")])
    assert result.exit_code == 0, result.output
    return tmp / "out", result.output


def test_run_with_a_compress_section_exports_and_quantizes_a_text_student(text_run):
    out, output = text_run
    summary = json.loads((out / "summary.json").read_text())
    rows = {m["name"]: m for m in summary["models"]}
    assert list(rows) == ["teacher", "student_kd", "student_kd.onnx", "student_kd.onnx-int8", "student_kd.int8", "student_kd.pruned", "student_kd.pruned.onnx"]
    assert [s["status"] for s in summary["compress"]["steps"]] == ["ok"] * 5
    onnx_row, int8_row = rows["student_kd.onnx"], rows["student_kd.onnx-int8"]
    assert onnx_row["onnx"]["exporter"] == "torchscript"  # auto, for token inputs
    assert [c["case"] for c in onnx_row["parity"]["cases"]] == ["short", "median", "long", "mixed"]
    assert onnx_row["parity"]["max_abs_diff"] < 1e-3 and onnx_row["accuracy"] == rows["student_kd"]["accuracy"]
    assert int8_row["onnx_int8"]["mode"] == "dynamic" and int8_row["size_bytes"] < onnx_row["size_bytes"]
    assert abs(int8_row["accuracy"] - rows["student_kd"]["accuracy"]) <= 0.05
    assert rows["student_kd.int8"]["runtime"] == "torch-int8"
    for row in rows.values():  # batch-1 latency on the typical (median-length) test sentence, and with the tokenizer
        assert row["latency_ms_b1"] > 0 and row["tokenize_ms_b1"] > 0
        assert row["latency_ms_b1_text"] == pytest.approx(row["latency_ms_b1"] + row["tokenize_ms_b1"], abs=2e-4)
    assert input_dims(out / "compressed" / "student_kd.onnx") == ["batch", "length"]
    assert "compress: onnx of student_kd (bilstm)" in output


def test_compress_skips_a_step_that_fails_under_on_error_skip(text_run):
    out, _ = text_run
    result = runner.invoke(app, ["compress", str(out), "--steps", "onnx,int8,onnx-int8", "compress.onnx.exporter=dynamo", "compress.int8.mode=static", "compress.on_error=skip"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["compress"]["steps"]
    assert [(s["step"], s["status"]) for s in steps] == [("onnx", "failed"), ("int8", "failed"), ("onnx-int8", "failed")]
    assert "the exporter fixed" in steps[0]["error"] and "torchscript" in steps[0]["error"]
    assert "reads token ids" in steps[1]["error"] and steps[1]["arch"] == "bilstm"
    assert not [m for m in summary["models"] if "source" in m]
    assert not list((out / "compressed").glob("*.onnx"))


def test_compress_stops_with_exit_2_naming_the_step_and_the_model(text_run):
    out, _ = text_run
    result = runner.invoke(app, ["compress", str(out), "--steps", "int8", "compress.int8.mode=qat"])
    assert result.exit_code == 2, result.output
    assert "compress step 'int8' on student_kd (bilstm)" in result.output and "reads token ids" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------------------------------ taggers (B, L, C)

TAGGERS = {
    "bilstm_tagger": {"embed_dim": 16, "hidden_size": 8, "layers": 1},
    "lstm_tagger": {"embed_dim": 16, "hidden_size": 12, "delay": 2},
    "cnn_tagger": {"embed_dim": 16, "width": 16, "layers": 2},
    "transformer_tagger": {"width": 16, "heads": 2, "depth": 1},
}


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tagged")
    (tmp / "train.txt").write_text("\n".join(tagged_sentences(160, 0)) + "\n", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTIL_DATA_CACHE", str(tmp / "data-cache"))
        return load_dataset("tagged_text", path=tmp / "train.txt", val_size=0.2, max_length=MAX_LENGTH, seed=0)


def tagger(arch: str, data) -> nn.Module:
    torch.manual_seed(0)
    return build_model(arch, input_shape=data.input_shape, num_classes=len(data.class_names), vocab_size=data.text.vocab_size,
                       token_counts=data.text.token_counts, seed=0, task="tag", **TAGGERS[arch]).eval()  # fmt: skip


@pytest.mark.parametrize("arch", list(TAGGERS))
def test_taggers_export_with_a_length_axis_on_both_ends(arch, tagged, tmp_path):
    model = tagger(arch, tagged)
    path = export_onnx(model, tagged.input_shape, tmp_path / "m.onnx", exporter="auto", example=tagged.train.x[:8])
    assert input_dims(path) == ["batch", "length"]
    out = onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in out] == ["batch", "length", len(tagged.class_names)]
    checked = check_parity(f"onnx ({arch})", parity(model, OnnxModel(path), tagged.test.x), atol=1e-4, min_agreement=1.0)
    assert [c["case"] for c in checked.cases] == ["short", "median", "long", "mixed"]
    assert checked.cases[-1]["sentences"] > 3


class OffAtUntagged(nn.Module):
    """A tagger's copy with another argmax at the ids that only ever sit at untagged tokens ([CLS], [SEP], …)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__()
        untagged = set(x[(y[:, : x.shape[1]] == IGNORE) & (x != PAD_ID)].tolist()) - set(x[y[:, : x.shape[1]] != IGNORE].tolist())
        self.model, self.ids = model, torch.tensor(sorted(untagged))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x).clone()
        where = torch.isin(x, self.ids)
        out[where] = out[where].roll(1, -1)
        return out


def test_tagger_parity_counts_the_tagged_tokens_when_labels_are_given(tagged):
    model = tagger("cnn_tagger", tagged)
    x, y = tagged.test.x, tagged.test.y
    assert bool((y == IGNORE).logical_and(x != PAD_ID).any())  # [CLS]/[SEP] and later pieces are real, untagged tokens
    off = OffAtUntagged(model, x, y).eval()
    with_labels = parity(model, off, x, y=y)
    assert with_labels.agreement_over == "tagged tokens" and with_labels.argmax_agreement == 1.0
    assert with_labels.token_agreement < 1.0  # the all-token figure, reported beside it
    assert all(c["argmax_agreement"] == 1.0 and c["token_agreement"] < 1.0 for c in with_labels.cases)
    assert {"agreement_over", "token_agreement"} <= set(with_labels.as_dict())
    without = parity(model, off, x)
    assert without.agreement_over == "all tokens" and without.argmax_agreement == without.token_agreement < 1.0
    assert parity(model, model, x, y=y).token_agreement == 1.0


def test_tagger_dynamic_int8_keeps_token_accuracy(tagged, tmp_path):
    model = tagger("bilstm_tagger", tagged)
    train(model, tagged, epochs=8, batch_size=16, lr=0.02, optimizer="adamw", weight_decay=0.0)
    model.eval()
    fp32 = export_onnx(model, tagged.input_shape, tmp_path / "m.onnx", exporter="auto", example=tagged.train.x[:8])
    int8 = quantize_onnx_dynamic(fp32, tmp_path / "m.int8.onnx")
    reference = accuracy(model, tagged.test.x, tagged.test.y)  # token accuracy over the tagged tokens
    assert reference >= 0.8
    assert abs(accuracy(OnnxModel(int8), tagged.test.x, tagged.test.y) - reference) <= 0.03
    torch_int8 = quantize.dynamic_int8(model)
    assert abs(accuracy(torch_int8, tagged.test.x, tagged.test.y) - reference) <= 0.03


def test_run_of_a_tagger_with_a_compress_section(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTIL_DATA_CACHE", str(tmp_path / "data-cache"))
    (tmp_path / "train.txt").write_text("\n".join(tagged_sentences(160, 1)) + "\n", encoding="utf-8")
    raw = {
        "name": "tagger-export",
        "seed": 0,
        "data": {"name": "tagged_text", "path": str(tmp_path / "train.txt"), "val_size": 0.2, "max_length": MAX_LENGTH},
        "teacher": {"arch": "cnn_tagger", "kwargs": TAGGERS["cnn_tagger"], "epochs": 6, "batch_size": 16, "optimizer": "adamw", "lr": 0.02, "weight_decay": 0.0},
        "student": {"arch": "bilstm_tagger", "kwargs": {**TAGGERS["bilstm_tagger"], "hidden_size": 64},
                    "epochs": 6, "batch_size": 16, "optimizer": "adamw", "lr": 0.02, "weight_decay": 0.0},
        "scratch": False,
        "measure": {"latency_repeats": 3, "throughput_repeats": 1},
        "compress": {"steps": ["onnx", "onnx-int8", "int8", "prune"], "int8": {"mode": "dynamic"},
                     "prune": {"method": "magnitude", "sparsity": 0.5, "epochs": 1, "batch_size": 16}},
    }
    (tmp_path / "tag.yaml").write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(tmp_path / "tag.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rows = {m["name"]: m for m in json.loads((tmp_path / "out" / "summary.json").read_text())["models"]}
    assert list(rows) == ["teacher", "student_kd", "student_kd.onnx", "student_kd.onnx-int8", "student_kd.int8", "student_kd.pruned"]
    student = rows["student_kd"]["accuracy"]  # token accuracy
    assert rows["student_kd.onnx"]["accuracy"] == student and rows["student_kd.onnx"]["parity"]["max_abs_diff"] < 1e-3
    assert abs(rows["student_kd.onnx-int8"]["accuracy"] - student) <= 0.03
    assert rows["student_kd.onnx-int8"]["size_bytes"] < rows["student_kd.onnx"]["size_bytes"]
