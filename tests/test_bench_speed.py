"""`distil bench speed --quick`: a real (tiny) run on scikit-learn digits writes the ratios and times."""

import json
import math

from typer.testing import CliRunner

from distil.bench.speed import AUGMENT, TensorImages, compose, normalize, random_crop, random_hflip
from distil.cli import app

KEYS = ("kd_over_student_noaug", "kd_over_student_aug", "reference_over_kd_noaug", "reference_over_kd_aug")


def test_bench_speed_quick_writes_ratios_times_and_accuracies(tmp_path):
    result = CliRunner().invoke(app, ["bench", "speed", "--quick", "--epochs", "1", "--reference-workers", "0", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    speed = json.loads((tmp_path / "speed.json").read_text())
    for key in KEYS:
        assert isinstance(speed[key], float) and speed[key] > 0 and math.isfinite(speed[key]), key
        assert key in result.output
    for name, kinds in (("noaug", {"student", "kd", "reference"}), ("aug", {"student", "kd", "reference", "kd_online"})):
        setting = speed["settings"][name]
        assert set(setting["epoch_seconds"]) == kinds
        assert all(len(v) == 1 and v[0] > 0 for v in setting["epoch_seconds"].values())
        assert all(0 <= a <= 1 for a in setting["test_accuracy"].values())
    assert speed["settings"]["noaug"]["teacher_outputs"]["kind"] == "exact"
    assert speed["settings"]["aug"]["teacher_outputs"]["kind"] == "views"
    assert "kd_over_student_aug" in (tmp_path / "speed.md").read_text()


def test_reference_dataset_transforms_one_sample_at_a_time():
    import torch

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    data = TensorImages(x, torch.tensor([0, 1]), compose(random_crop(AUGMENT.crop_padding), random_hflip, normalize))
    image, label = data[1]
    assert image.shape == (1, 4, 4) and label == 1
    assert set(image.flatten().tolist()) <= set(x[1].flatten().tolist()) | {0.0}


def test_bench_speed_times_function_matching_from_cached_pairs(tmp_path):
    result = CliRunner().invoke(app, ["bench", "speed", "--quick", "--inputs", "fm", "--epochs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    speed = json.loads((tmp_path / "speed.json").read_text())
    assert list(speed["settings"]) == ["fm"] and set(speed["settings"]["fm"]["epoch_seconds"]) == {"student", "kd"}
    assert speed["settings"]["fm"]["augment"] == {"crop_padding": 2, "hflip": True, "mixup": 1.0, "cutmix": 1.0, "mix_prob": 1.0}
    assert speed["settings"]["fm"]["teacher_outputs"]["kind"] == "views"
    assert speed["kd_over_student_fm"] > 0 and "kd_over_student_fm" in result.output


def test_bench_speed_refuses_unknown_inputs_before_any_work(tmp_path):
    result = CliRunner().invoke(app, ["bench", "speed", "--quick", "--inputs", "fm,bogus", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "bogus" in result.output and not (tmp_path / "out").exists()
