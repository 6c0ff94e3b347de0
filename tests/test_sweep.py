"""`distil sweep`: real sweeps on scikit-learn's digits (a trial takes about a second), resume, bad input."""

import copy
import csv
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from distil.cli import app
from distil.config import apply_override, validate_config
from distil.errors import ConfigError

TINY = {
    "name": "tiny-sweep",
    "seed": 3,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [64]}, "epochs": 3, "batch_size": 64, "lr": 0.1},
    "student": {"arch": "mlp", "kwargs": {"hidden": [8]}, "epochs": 2, "batch_size": 64, "lr": 0.1},
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
    "sweep": {
        "sampler": "random",
        "seed": 1,
        "params": {
            "distill.terms.KD.params.T": {"low": 1.0, "high": 8.0},
            "distill.terms.KD.weight": {"low": 0.5, "high": 0.95},
            "distill.terms.CE.weight": {"tied": "distill.terms.KD.weight", "scale": -1, "offset": 1},
            "student.lr": {"low": 0.02, "high": 0.3, "log": True},
        },
    },
}
runner = CliRunner()


def write_config(tmp_path: Path, raw: dict, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def sweep(config: Path, out: Path, trials: int, *overrides: str):
    return runner.invoke(app, ["sweep", str(config), *overrides, "--trials", str(trials), "--out", str(out)])


def journal_study(out: Path):
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))
    return optuna.load_study(study_name="distil-sweep", storage=storage)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """Two trials, then the same command with --trials 3 after a trial was left running by a 'killed' process."""
    tmp = tmp_path_factory.mktemp("sweep")
    config = write_config(tmp, TINY)
    out = tmp / "out"
    first = sweep(config, out, 2)
    assert first.exit_code == 0, first.output
    before = json.loads((out / "results.json").read_text())
    return tmp, config, out, first, before


def test_sweep_writes_trials_results_and_best(swept):
    _, _, out, result, summary = swept
    assert [r["trial"] for r in summary["rows"]] == [0, 1] and all(r["state"] == "complete" for r in summary["rows"])
    for row in summary["rows"]:
        trial = json.loads((out / row["dir"] / "summary.json").read_text())
        kd = next(m for m in trial["models"] if m["name"] == "student_kd")
        # the table's numbers are the trial's own: metric on validation, test accuracy beside it
        assert row["val_accuracy"] == pytest.approx(kd["val_accuracy"]) and row["test_accuracy"] == pytest.approx(kd["accuracy"])
        # a trial is base + overrides, and its run directory records exactly that config
        params = row["params"]
        assert params["distill.terms.CE.weight"] == pytest.approx(1 - params["distill.terms.KD.weight"])
        assert 1.0 <= params["distill.terms.KD.params.T"] <= 8.0 and 0.02 <= params["student.lr"] <= 0.3
        recorded = yaml.safe_load((out / row["dir"] / "config.yaml").read_text())
        terms = {t["loss"]: t for t in recorded["distill"]["terms"]}
        assert terms["KD"]["params"]["T"] == pytest.approx(params["distill.terms.KD.params.T"])
        assert recorded["student"]["lr"] == pytest.approx(params["student.lr"])
        assert recorded["scratch"] is False and recorded["sweep"] is None
        # the teacher was trained once, in the reference run, and every trial loaded it
        assert recorded["teacher"]["weights"] == str((out / "reference" / "teacher.safetensors").resolve())
        assert [m["method"] for m in trial["models"]] == ["loaded", "kd"]
    assert {m["name"] for m in json.loads((out / "reference" / "summary.json").read_text())["models"]} == {"teacher", "student_scratch"}
    best = max(summary["rows"], key=lambda r: r["val_accuracy"])
    assert summary["best"]["trial"] == best["trial"]
    with open(out / "results.csv") as f:
        assert [int(r["trial"]) for r in csv.DictReader(f)] == [0, 1]
    assert f"{best['trial']} (best)" in (out / "results.md").read_text()
    assert "val_accuracy" in result.output and "best: trial" in result.output


def test_best_yaml_is_the_best_trial_and_reruns_to_its_accuracy(swept, tmp_path):
    _, _, out, _, summary = swept
    best = summary["best"]
    raw = yaml.safe_load((out / "best.yaml").read_text())
    assert "sweep" not in raw and raw["student"]["lr"] == pytest.approx(best["params"]["student.lr"])
    config = validate_config(raw)
    specs = {s.loss: s for s in config.distill.term_specs()}
    assert specs["KD"].params["T"] == pytest.approx(best["params"]["distill.terms.KD.params.T"])
    assert specs["CE"].weight == pytest.approx(best["params"]["distill.terms.CE.weight"])
    run = runner.invoke(app, ["run", str(out / "best.yaml"), "scratch=false", "--out", str(tmp_path / "best")])
    assert run.exit_code == 0, run.output
    rerun = json.loads((tmp_path / "best" / "summary.json").read_text())
    # same config, seed, teacher weights: the same student, to the last digit
    assert next(m for m in rerun["models"] if m["name"] == "student_kd")["accuracy"] == best["test_accuracy"]


def test_resume_runs_only_missing_trials_and_requeues_an_interrupted_one(swept):
    _, config, out, _, before = swept
    # what a process killed mid-trial leaves in the journal: a trial still RUNNING
    from distil.config import load_config
    from distil.sweep.search import _distributions

    study = journal_study(out)
    killed = study.ask(_distributions(load_config(config).sweep))
    again = sweep(config, out, 3)
    assert again.exit_code == 0, again.output
    summary = json.loads((out / "results.json").read_text())
    states = {r["trial"]: r["state"] for r in summary["rows"]}
    assert states == {0: "complete", 1: "complete", killed.number: "interrupted", 3: "complete"}
    # the finished trials were kept as they were; the interrupted one's parameters ran again
    assert summary["rows"][:2] == before["rows"]
    rerun = summary["rows"][3]
    assert rerun["requeued_from"] == killed.number
    assert {k: rerun["params"][k] for k in killed.params} == pytest.approx(killed.params)
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-000", "trial-001", "trial-003"]
    # the same command once more: nothing to do
    noop = sweep(config, out, 3)
    assert noop.exit_code == 0 and len(json.loads((out / "results.json").read_text())["rows"]) == 4


def _bad(tmp_path: Path, path: str, param: dict) -> tuple[object, Path]:
    raw = copy.deepcopy(TINY)
    raw["sweep"]["params"] = {path: param}
    out = tmp_path / "out"
    return sweep(write_config(tmp_path, raw), out, 2), out


@pytest.mark.parametrize(
    "path, param, expected",
    [
        ("student.lr", {"low": 0.3, "high": 0.02}, "empty range: low 0.3 > high 0.02"),
        ("distill.terms.KD.params.T", {"low": 4.0, "high": 4.0}, "empty range: low = high = 4.0"),
        ("student.epochs", {"choices": []}, "empty choices"),
    ],
)
def test_empty_range_exits_2_and_writes_nothing(tmp_path, path, param, expected):
    result, out = _bad(tmp_path, path, param)
    assert result.exit_code == 2
    assert f"sweep.params.{path}" in result.output and expected in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "path, param, expected",
    [
        ("student.lrr", {"low": 0.01, "high": 0.1}, "student.lrr: unknown key (did you mean 'lr'?)"),
        ("distill.terms.KD.params.Tx", {"low": 1.0, "high": 4.0}, "loss KD has no argument 'Tx'"),
        # the inside value 3.59 is refused by an integer field: caught before any trial
        ("student.epochs", {"low": 1.0, "high": 8.0}, "student.epochs: Input should be a valid integer"),
        ("student.momentum", {"low": 0.5, "high": 1.5}, "student.momentum: Input should be less than 1"),
        ("teacher.lr", {"low": 0.01, "high": 0.1}, "trials share one teacher"),
    ],
)
def test_bad_path_or_value_exits_2_naming_it(tmp_path, path, param, expected):
    result, out = _bad(tmp_path, path, param)
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not out.exists()


def test_bad_input_leaves_an_existing_sweep_untouched(swept, tmp_path):
    _, config, out, _, _ = swept
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    raw = copy.deepcopy(TINY)
    raw["sweep"]["params"]["student.lr"] = {"low": 0.3, "high": 0.02}
    assert sweep(write_config(tmp_path, raw), out, 5).exit_code == 2
    # same space, another config: refused, saying what differs
    other = sweep(config, out, 5, "student.epochs=4")
    assert other.exit_code == 2 and "student.epochs: 2 → 4" in other.output
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_grid_sampler_visits_each_point_once(tmp_path):
    raw = copy.deepcopy(TINY)
    raw["teacher"]["epochs"] = 1
    raw["student"]["epochs"] = 1
    raw["sweep"] = {"sampler": "grid", "params": {"distill.terms.KD.params.T": {"choices": [1.0, 4.0]}, "distill.terms.KD.weight": {"low": 0.5, "high": 0.9, "step": 0.4}}}
    result = sweep(write_config(tmp_path, raw), tmp_path / "out", 9)
    assert result.exit_code == 0, result.output
    assert "the grid has 4 points" in result.output
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    points = sorted((r["params"]["distill.terms.KD.params.T"], r["params"]["distill.terms.KD.weight"]) for r in rows)
    assert points == [(1.0, 0.5), (1.0, 0.9), (4.0, 0.5), (4.0, 0.9)]


def test_overrides_address_a_term_by_its_loss():
    raw = copy.deepcopy(TINY)
    del raw["sweep"]
    apply_override(raw, "distill.terms.KD.params.T=2")
    apply_override(raw, "distill.terms.CE.weight=0.3")
    specs = {s.loss: s for s in validate_config(raw).distill.term_specs()}
    # the kd preset's terms, updated only where the overrides say
    assert (specs["KD"].weight, specs["KD"].params) == (0.9, {"T": 2}) and specs["CE"].weight == 0.3
    raw["distill"]["terms"] = [{"loss": "KD", "params": {"T": 8}}]
    apply_override(raw, "distill.terms.KD.weight=0.5")
    assert raw["distill"]["terms"] == [{"loss": "KD", "params": {"T": 8}, "weight": 0.5}]
    with pytest.raises(ConfigError, match="name a field of the entry"):
        apply_override(raw, "distill.terms.KD=1")


@pytest.mark.parametrize(
    "sweep_section, expected",
    [
        ({"metric": "accuracy", "params": {"student.lr": {"low": 0.01, "high": 0.1}}}, "choosing on the test split"),
        ({"params": {}}, "params: empty"),
        ({"params": {"student.lr": {"low": 0.01}}}, "a range needs both low and high"),
        ({"params": {"student.lr": {"low": 0.01, "high": 0.1, "choices": [1]}}}, "give exactly one of"),
        ({"params": {"student.lr": {"low": 0.0, "high": 0.1, "log": True}}}, "a log range needs low > 0"),
        ({"params": {"distill.terms.CE.weight": {"tied": "distill.terms.KD.weight"}}}, "not a sampled parameter"),
        ({"sampler": "grid", "params": {"student.lr": {"low": 0.01, "high": 0.1}}}, "the grid sampler needs a step"),
    ],
)
def test_sweep_section_is_validated(sweep_section, expected):
    raw = copy.deepcopy(TINY)
    raw["sweep"] = sweep_section
    with pytest.raises(ConfigError, match=expected):
        validate_config(raw)


def test_committed_example_config_validates():
    from distil.config import load_config

    config = load_config(Path(__file__).parents[1] / "configs" / "sweeps" / "mnist1d_kd.yaml")
    assert config.sweep is not None and config.sweep.metric == "val_accuracy"
    assert {"distill.terms.KD.params.T", "distill.terms.KD.weight", "student.lr"} <= set(config.sweep.params)
