"""Strategies are open like models and datasets: registered from Python, or named as
"package.module:Class" in YAML — both run end to end through `distil run` on digits."""

import json
import textwrap

import pytest
import yaml
from typer.testing import CliRunner

from distil.cli import app
from distil.config import STRATEGY_OPTIONS, StrategyOptions, validate_config
from distil.errors import ConfigError
from distil.experiment import run_experiment
from distil.strategies import Context, Strategy, register_strategy
from distil.strategies.registry import strategies

TRAIN = {"epochs": 1, "batch_size": 64, "lr": 0.1}
BASE = {
    "seed": 0,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "mlp", "kwargs": {"hidden": [32]}, **TRAIN},
    "student": {"arch": "mlp", "kwargs": {"hidden": [8]}, **TRAIN},
    "scratch": False,
    "measure": {"latency_repeats": 2, "throughput_repeats": 1},
}
runner = CliRunner()

# A user's strategy, as a module on sys.path: distil every student width it is given from the teacher.
WIDTHS_MODULE = textwrap.dedent(
    """
    from distil.config import StrategyOptions
    from distil.strategies import Strategy


    class Options(StrategyOptions):
        widths: list[int]


    class Widths(Strategy):
        Options = Options
        description = "one distilled student per hidden width"

        def prepare(self, ctx):
            students = [ctx.build(ctx.config.student, hidden=[w]) for w in ctx.options.widths]
            objectives = [ctx.objective(s, ctx.teacher) for s in students]

            def run(ctx):
                for w, student, objective in zip(ctx.options.widths, students, objectives):
                    ctx.distil(f"student_w{w}", f"widths[{w}]", student, ctx.config.student, ctx.teacher, objective)

            return run


    class NotAStrategy:
        Options = Options
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_strategies.py").write_text(WIDTHS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_strategies"


def test_strategy_by_module_path_in_yaml_runs_end_to_end(tmp_path, user_module):
    raw = {**BASE, "strategy": {"name": f"{user_module}:Widths", "widths": [4, 12]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    rows = {m["name"]: m for m in json.loads((tmp_path / "out" / "summary.json").read_text())["models"]}
    assert set(rows) == {"teacher", "student_w4", "student_w12"}
    assert rows["student_w12"]["params"] > rows["student_w4"]["params"]  # the widths reached the models
    assert rows["student_w4"]["teacher_outputs"]["kind"] == "exact"
    assert all(r["accuracy"] > 0.2 for r in rows.values())  # 10 classes: chance is 0.1


def test_strategy_options_of_a_module_path_are_validated(tmp_path, user_module):
    with pytest.raises(ConfigError, match=r"strategy.widths: required field is missing"):
        validate_config({**BASE, "strategy": {"name": f"{user_module}:Widths"}})
    with pytest.raises(ConfigError, match=r"strategy.width: unknown key \(did you mean 'widths'\?\)"):
        validate_config({**BASE, "strategy": {"name": f"{user_module}:Widths", "widths": [4], "width": 2}})


@pytest.mark.parametrize(
    "name, message",
    [
        ("my_strategies:Nope", r"strategy 'my_strategies:Nope': module 'my_strategies' has no attribute 'Nope'"),
        ("no_such_module_xyz:Widths", r"strategy 'no_such_module_xyz:Widths': cannot import module 'no_such_module_xyz'"),
        ("my_strategies:NotAStrategy", r"expected a subclass of distil.strategies.Strategy"),
    ],
)
def test_bad_strategy_module_path_exits_2_before_training(tmp_path, user_module, name, message):
    raw = {**BASE, "strategy": {"name": name, "widths": [4]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = runner.invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert not (tmp_path / "out" / "summary.json").exists()
    with pytest.raises(ConfigError, match=message):
        run_experiment(validate_config(raw), tmp_path / "out2")


class Repeat(StrategyOptions):
    times: int = 2


def test_strategy_registered_from_python(tmp_path, monkeypatch):
    monkeypatch.setattr("distil.strategies.registry.STRATEGIES", dict(strategies()))  # built-ins imported into the real registry first
    monkeypatch.setattr("distil.config.strategy.STRATEGY_OPTIONS", dict(STRATEGY_OPTIONS))

    @register_strategy("repeat_kd", "distil the student `times` times from the teacher, seeds run seed + k", options=Repeat)
    def prepare(ctx: Context):
        students = [ctx.build(ctx.config.student, ctx.seed + k) for k in range(ctx.options.times)]
        objectives = [ctx.objective(s, ctx.teacher) for s in students]

        def run(ctx: Context) -> None:
            for k, (student, objective) in enumerate(zip(students, objectives)):
                ctx.distil(f"student_repeat{k}", "repeat", student, ctx.config.student, ctx.teacher, objective, seed=ctx.seed + k)

        return run

    summary = run_experiment(validate_config({**BASE, "strategy": {"name": "repeat_kd", "times": 3}}), tmp_path / "out")
    rows = {m["name"]: m for m in summary["models"]}
    assert set(rows) == {"teacher", "student_repeat0", "student_repeat1", "student_repeat2"}
    assert len({rows[f"student_repeat{k}"]["sha256"] for k in range(3)}) == 3  # other seeds, other students
    listed = runner.invoke(app, ["strategies"])
    assert "repeat_kd" in listed.output
    with pytest.raises(ConfigError, match=r"strategy.time: unknown key \(did you mean 'times'\?\)"):
        validate_config({**BASE, "strategy": {"name": "repeat_kd", "time": 3}})


def test_strategy_class_registered_from_python(monkeypatch):
    monkeypatch.setattr("distil.strategies.registry.STRATEGIES", dict(strategies()))  # built-ins imported into the real registry first
    monkeypatch.setattr("distil.config.strategy.STRATEGY_OPTIONS", dict(STRATEGY_OPTIONS))

    @register_strategy("noop")
    class Noop(Strategy):
        class Options(StrategyOptions):
            note: str = ""

        def prepare(self, ctx):
            return lambda ctx: None

    cfg = validate_config({**BASE, "strategy": {"name": "noop", "note": "hi"}})
    assert isinstance(cfg.strategy, Noop.Options) and cfg.strategy.note == "hi"
