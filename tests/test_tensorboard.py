"""`logging.tensorboard: true`: per-epoch scalars under DIR/tensorboard/<model>, equal to metrics.jsonl."""

import copy
import json
import sys

import pytest
import yaml
from typer.testing import CliRunner

from distil.cli import app

TINY = {
    "name": "tiny-tb",
    "seed": 3,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [32]}, "epochs": 2, "batch_size": 64, "lr": 0.1},
    "student": {"arch": "mlp", "kwargs": {"hidden": [8]}, "epochs": 3, "batch_size": 64, "lr": 0.1},
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
    "logging": {"tensorboard": True},
}
runner = CliRunner()


def test_event_files_hold_the_metrics_of_every_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tmp_path / "tb.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    models = sorted({line["model"] for line in lines})
    assert sorted(p.name for p in (tmp_path / "out" / "tensorboard").iterdir()) == models == ["student_kd", "student_scratch", "teacher"]
    for model in models:
        events = EventAccumulator(str(tmp_path / "out" / "tensorboard" / model))
        events.Reload()
        mine = [line for line in lines if line["model"] == model]
        expected = {"loss": [m["loss"] for m in mine], "val_accuracy": [m["val_accuracy"] for m in mine], "lr": [m["lr"] for m in mine]}
        for term in mine[0]["terms"]:
            expected[f"terms/{term}"] = [m["terms"][term] for m in mine]
        assert sorted(events.Tags()["scalars"]) == sorted(expected)
        for tag, values in expected.items():
            scalars = events.Scalars(tag)
            assert [s.step for s in scalars] == [m["epoch"] for m in mine]
            assert [s.value for s in scalars] == pytest.approx(values, rel=1e-6)  # stored as float32


def test_missing_tensorboard_is_a_config_error_before_any_work(tmp_path, monkeypatch):
    # what an environment without the package looks like to `import`
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    config = tmp_path / "tb.yaml"
    config.write_text(yaml.safe_dump(TINY))
    result = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "logging.tensorboard needs the tensorboard package: pip install 'distil[tensorboard]'" in result.output
    assert not (tmp_path / "out").exists()


def test_off_by_default_writes_no_events(tmp_path):
    raw = copy.deepcopy(TINY)
    del raw["logging"]
    raw["teacher"]["epochs"] = raw["student"]["epochs"] = 1
    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert runner.invoke(app, ["run", str(config), "scratch=false", "--out", str(tmp_path / "out")]).exit_code == 0
    assert not (tmp_path / "out" / "tensorboard").exists()
