"""`distil run` with a compress section and `distil compress` end to end on digits (MLPs: seconds)."""

import copy
import json

import pytest
import yaml
from typer.testing import CliRunner

from distil.cli import app

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [64]}, "epochs": 4, "batch_size": 64, "lr": 0.1},
    "student": {"arch": "mlp", "kwargs": {"hidden": [32]}, "epochs": 4, "batch_size": 64, "lr": 0.1},
    "scratch": False,
    "measure": {"latency_repeats": 3, "throughput_repeats": 1},
    "compress": {
        # heavy pruning, so the KD recovery has something to win back
        "steps": ["prune", "int8", "onnx", "onnx-int8"],
        "prune": {"method": "magnitude", "sparsity": 0.95, "epochs": 3, "lr": 0.05},
        "int8": {"mode": "dynamic"},
        "onnx": {"exporter": "torchscript"},
    },
}
ROW_FIELDS = {"name", "role", "method", "runtime", "arch", "accuracy", "params", "nonzeros", "size_bytes", "latency_ms_b1", "latency_ms_b1_p95",
              "latency_ms_b256", "latency_ms_b256_p95", "throughput_b256", "weights", "sha256", "source"}  # fmt: skip
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def compressed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compress")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    result = invoke("run", tmp / "tiny.yaml", "--out", tmp / "out")
    assert result.exit_code == 0, result.output
    return tmp / "out", result


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_run_with_compress_section_writes_rows_and_files(compressed_run):
    out, result = compressed_run
    models = {m["name"]: m for m in summary_of(out)["models"]}
    assert list(models) == ["teacher", "student_kd", "student_kd.pruned", "student_kd.pruned.int8", "student_kd.pruned.onnx", "student_kd.pruned.onnx-int8"]
    assert [(m["method"], m["runtime"]) for m in list(models.values())[2:]] == [
        ("pruned", "torch"), ("int8", "torch-int8"), ("onnx", "onnxruntime"), ("onnx-int8", "onnxruntime"),
    ]  # fmt: skip
    for m in list(models.values())[2:]:
        assert ROW_FIELDS <= set(m)
        assert (out / m["weights"]).stat().st_size == m["size_bytes"]
    assert sorted(p.name for p in (out / "compressed").iterdir()) == [
        "student_kd.pruned.int8.onnx", "student_kd.pruned.int8.safetensors", "student_kd.pruned.onnx", "student_kd.pruned.safetensors",
    ]  # fmt: skip
    assert "student_kd.pruned.onnx-int8" in result.output and "onnxruntime" in result.output


def test_magnitude_pruning_keeps_its_zeros_and_recovery_wins_accuracy_back(compressed_run):
    out, _ = compressed_run
    pruned = next(m for m in summary_of(out)["models"] if m["method"] == "pruned")
    assert pruned["prune"]["weight_sparsity"] >= 0.95 - 1e-3
    assert pruned["nonzeros"] < 0.1 * pruned["params"]
    before = pruned["prune"]["accuracy_before_recovery"][0]
    assert pruned["accuracy"] > before + 0.05, (before, pruned["accuracy"])


def test_onnx_rows_passed_parity(compressed_run):
    out, _ = compressed_run
    models = {m["name"]: m for m in summary_of(out)["models"]}
    fp32 = models["student_kd.pruned"]
    onnx = models["student_kd.pruned.onnx"]
    assert onnx["parity"]["max_abs_diff"] <= 1e-3 and onnx["parity"]["argmax_agreement"] == 1.0
    assert onnx["accuracy"] == pytest.approx(fp32["accuracy"], abs=1e-9)
    assert models["student_kd.pruned.onnx-int8"]["parity"]["argmax_agreement"] >= 0.9
    assert models["student_kd.pruned.int8"]["parity"]["argmax_agreement"] >= 0.9


def test_compress_again_with_channel_pruning_replaces_the_chain(compressed_run):
    out, _ = compressed_run
    result = invoke("compress", out, "--steps", "prune", "--prune-method", "channels", "--sparsity", "0.5", "--epochs", "1")
    assert result.exit_code == 0, result.output
    models = summary_of(out)["models"]
    names = [m["name"] for m in models]
    assert names == ["teacher", "student_kd", "student_kd.pruned"]  # the old chain's rows and files are gone
    assert sorted(p.name for p in (out / "compressed").iterdir()) == ["student_kd.pruned.safetensors"]
    student, pruned = models[1], models[2]
    assert pruned["params"] < 0.6 * student["params"] and pruned["size_bytes"] < 0.6 * student["size_bytes"]
    assert pruned["prune"]["channels"] == {"layer1.linear": "32 → 16"}


@pytest.mark.parametrize("value", ["1.0", "-0.5"])
def test_sparsity_outside_range_exits_2_naming_the_field(compressed_run, value):
    out, _ = compressed_run
    result = invoke("compress", out, "--sparsity", value)
    assert result.exit_code == 2
    assert "compress.prune.sparsity" in result.output


def test_parity_failure_exits_2_and_leaves_nothing(compressed_run, monkeypatch):
    import torch

    from distil.compress import export

    real = export.export_onnx

    def broken(model, *args, **kwargs):  # an exporter that changes the model: parity must catch it
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.fc.bias.add_(torch.arange(10.0))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(export, "export_onnx", broken)
    out, _ = compressed_run
    result = invoke("compress", out, "--steps", "onnx")
    assert result.exit_code == 2
    assert "compress step 'onnx'" in result.output and "parity check failed" in result.output
    assert list((out / "compressed").iterdir()) == []
    summary = summary_of(out)
    assert not any(m.get("method") == "onnx" for m in summary["models"])
    assert summary["compress"]["steps"][-1]["status"] == "failed"

    skipped = invoke("compress", out, "--steps", "onnx", "--on-error", "skip")
    assert skipped.exit_code == 0 and "skipped" in skipped.output
    assert list((out / "compressed").iterdir()) == []


def test_bad_compress_input_exits_2(tmp_path, compressed_run):
    out, _ = compressed_run
    for args, message in [
        ((tmp_path, "--steps", "onnx"), "not a run directory"),
        ((out, "--steps", "prune,zip"), "unknown step 'zip'"),
        ((out, "--student", "student_nope"), "compress.student"),
        ((out, "compress.prune.sparsty=0.2"), "unknown key"),
        ((out, "student.epochs=3"), "compress.KEY=VALUE"),
    ]:
        result = invoke("compress", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)


def test_quantization_aware_training_with_kd(compressed_run):
    out, _ = compressed_run
    result = invoke("compress", out, "--steps", "int8", "compress.int8.mode=qat", "compress.int8.epochs=1")
    assert result.exit_code == 0, result.output
    row = summary_of(out)["models"][-1]
    assert (row["name"], row["runtime"], row["int8"]["mode"]) == ("student_kd.int8", "torch-int8", "qat")
    assert row["parity"]["argmax_agreement"] >= 0.9 and row["train_seconds"] > 0


def test_lowrank_then_channel_pruning_recovers_with_kd_and_states_speedups(compressed_run):
    out, _ = compressed_run
    result = invoke("compress", out, "--steps", "lowrank,prune,onnx", "--rank-ratio", "0.5", "--prune-method", "channels", "--sparsity", "0.5")
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in summary_of(out)["models"]}
    student, low = models["student_kd"], models["student_kd.lowrank"]
    info = low["lowrank"]
    # 64 → 32 at rank ⌈0.5 · 32⌉ = 16: 16 · (64 + 32) = 1536 < 2048 multiply-adds; 32 → 10 at rank 5 → 16 → 10 is not cheaper
    assert info["factorized"] == {"layer1.linear": {"form": "svd", "rank": [16], "full_rank": [32], "macs": 2048, "macs_after": 1536}}
    assert info["left_whole"] == {"fc": "not cheaper: 420 multiply-adds factorized vs 320"}
    assert info["macs"] == 2048 + 320 and info["macs_after"] == 1536 + 320
    assert low["params"] == student["params"] - 64 * 32 + 16 * (64 + 32)
    assert low["accuracy"] >= info["accuracy_before_recovery"] and low["train_seconds"] > 0
    # the factorized model is pruned further: the rank-16 space is already a multiple of 16, the 32 units are halved
    pruned = models["student_kd.lowrank.pruned"]
    assert pruned["prune"]["channels"] == {"layer1.linear.1": "32 → 16"}
    assert low["speedup"]["over"] == "student_kd" and pruned["speedup"]["over"] == "student_kd.lowrank"
    assert models["student_kd.lowrank.pruned.onnx"]["speedup"]["over"] == "student_kd.lowrank.pruned"
    assert all(r["speedup"]["b1"] > 0 and r["speedup"]["b256"] > 0 and r["speedup"]["claimed"] for r in models.values() if r.get("source"))


@pytest.mark.parametrize(
    "args, message",
    [
        (("--energy", "1.5"), "compress.lowrank.energy"),
        (("--energy", "0"), "compress.lowrank.energy"),
        (("--rank-ratio", "0"), "compress.lowrank.rank_ratio"),
        (("--energy", "0.8", "--rank-ratio", "0.5"), "give energy or rank_ratio, not both"),
        (("compress.lowrank.ranks={layer1.linear: 40}",), "compress.lowrank.ranks.layer1.linear: rank 40 is outside 1..32, the rank of layer1.linear (32)"),
        (("compress.lowrank.ranks={layer9: 4}",), "compress.lowrank.ranks.layer9"),
    ],
)
def test_bad_lowrank_input_exits_2_naming_the_field_and_writes_nothing(compressed_run, args, message):
    out, _ = compressed_run
    before = (out / "summary.json").read_text()
    result = invoke("compress", out, "--steps", "lowrank", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert (out / "summary.json").read_text() == before


def test_a_rank_rule_on_the_command_line_replaces_the_configs_other_rule(compressed_run, tmp_path):
    import shutil

    import yaml

    out, _ = compressed_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["compress"] = {**(config.get("compress") or {}), "lowrank": {"energy": 0.9}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    result = invoke("compress", run, "--steps", "lowrank", "--rank-ratio", "0.5")
    assert result.exit_code == 0, result.output
    assert summary_of(run)["models"][-1]["lowrank"]["factorized"]["layer1.linear"]["rank"] == [16]  # ⌈0.5 · 32⌉, not the energy's


def test_an_interrupted_chain_resumes_after_its_finished_steps(compressed_run, tmp_path, monkeypatch):
    """lowrank and prune finish, the onnx step fails (stop): `--resume` rebuilds the factorized, pruned model
    from its file and exports it; the rows equal those of the same chain run without interruption."""
    import shutil

    import torch

    from distil.compress import export

    src, _ = compressed_run
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    shutil.copytree(src, whole)
    shutil.copytree(src, cut)
    steps = ("--steps", "lowrank,prune,onnx", "--rank-ratio", "0.5", "--prune-method", "channels", "--sparsity", "0.5", "--epochs", "1")
    assert invoke("compress", whole, *steps).exit_code == 0

    real = export.export_onnx

    def broken(model, *args, **kwargs):
        model = copy.deepcopy(model)
        with torch.no_grad():
            model.fc.bias.add_(torch.arange(10.0))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(export, "export_onnx", broken)
    failed = invoke("compress", cut, *steps)
    assert failed.exit_code == 2 and "parity check failed" in failed.output
    monkeypatch.setattr(export, "export_onnx", real)
    assert [s["status"] for s in summary_of(cut)["compress"]["steps"]] == ["ok", "ok", "failed"]

    different = invoke("compress", cut, "--resume", "--steps", "lowrank,prune,onnx")  # other settings than the interrupted chain's
    assert different.exit_code == 2 and "compress.lowrank" in different.output and "differ" in different.output

    resumed = invoke("compress", cut, "--resume")  # alone: the interrupted chain's settings
    assert resumed.exit_code == 0, resumed.output
    assert "resumed after 2 finished step(s): lowrank, prune" in " ".join(resumed.output.split())
    a, b = summary_of(whole), summary_of(cut)
    assert [m["name"] for m in b["models"]] == [m["name"] for m in a["models"]]
    assert [m["accuracy"] for m in b["models"]] == [m["accuracy"] for m in a["models"]]
    assert b["models"][-1]["name"] == "student_kd.lowrank.pruned.onnx" and b["models"][-1]["parity"]["argmax_agreement"] == 1.0
    assert [s["status"] for s in b["compress"]["steps"]] == ["ok", "ok", "ok"] and b["compress"]["resumed"][0]["after_steps"] == 2

    again = invoke("compress", cut, "--resume")
    assert again.exit_code == 2 and "nothing to resume" in again.output


def test_resume_without_an_interrupted_chain_exits_2(tmp_path):
    raw = {**TINY, "compress": None}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert invoke("run", tmp_path / "c.yaml", "--out", tmp_path / "out").exit_code == 0
    result = invoke("compress", tmp_path / "out", "--resume")
    assert result.exit_code == 2 and "never compressed" in result.output
    assert not (tmp_path / "out" / "compressed").exists()
