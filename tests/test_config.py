"""Config validation: typos and wrong types are errors that name the field and what it accepts."""

from pathlib import Path

import pytest
import yaml

from distil.config import load_config
from distil.errors import ConfigError

BASE = {
    "data": {"name": "digits", "val_size": 0.2},
    "teacher": {"arch": "mlp", "epochs": 2},
    "student": {"arch": "mlp", "kwargs": {"hidden": [16]}, "epochs": 2},
}


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_valid_config_gets_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.student.epochs == 2
    assert cfg.distill.method == "kd" and [(t.loss, t.weight) for t in cfg.distill.term_specs()] == [("KD", 0.9), ("CE", 0.1)]
    assert cfg.student.kwargs == {"hidden": [16]}
    assert cfg.scratch is True


def test_unknown_key_names_field_and_lists_accepted(tmp_path):
    raw = {**BASE, "student": {**BASE["student"], "epocs": 3}}
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, raw))
    msg = str(e.value)
    assert "student.epocs: unknown key" in msg
    assert "did you mean 'epochs'" in msg
    assert "batch_size" in msg  # lists the accepted keys


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(ConfigError, match=r"studnet: unknown key \(did you mean 'student'\?\)"):
        load_config(write(tmp_path, {**BASE, "studnet": {}}))


def test_wrong_type_names_field_and_value(tmp_path):
    raw = {**BASE, "student": {**BASE["student"], "epochs": "five"}}
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, raw))
    assert "student.epochs" in str(e.value) and "'five'" in str(e.value)


def test_out_of_range_and_missing(tmp_path):
    with pytest.raises(ConfigError, match=r"distill.method: .*unknown method 'fitnets' \(did you mean 'fitnet'\?\)"):
        load_config(write(tmp_path, {**BASE, "distill": {"method": "fitnets"}}))
    with pytest.raises(ConfigError, match="teacher: required field is missing"):
        load_config(write(tmp_path, {k: v for k, v in BASE.items() if k != "teacher"}))


def test_overrides_are_parsed_and_validated(tmp_path):
    path = write(tmp_path, BASE)
    cfg = load_config(path, ["student.epochs=5", "student.kwargs.hidden=[8, 8]", "distill.method=at"])
    assert cfg.student.epochs == 5 and cfg.student.kwargs["hidden"] == [8, 8] and cfg.distill.method == "at"
    with pytest.raises(ConfigError, match="student.epochs"):
        load_config(path, ["student.epochs=-1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(path, ["student.epochs"])


def test_relative_weights_resolve_next_to_config(tmp_path):
    raw = {**BASE, "teacher": {**BASE["teacher"], "weights": "t.safetensors"}}
    cfg = load_config(write(tmp_path, raw))
    assert Path(cfg.teacher.weights) == (tmp_path / "t.safetensors").resolve()


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_terms_update_the_method_or_extend_it(tmp_path):
    raw = {**BASE, "distill": {"method": "kd", "terms": [{"loss": "KD", "params": {"T": 2}}, {"loss": "AT", "weight": 500, "student": "stages"}]}}
    specs = load_config(write(tmp_path, raw)).distill.term_specs()
    assert [(s.loss, s.weight, dict(s.params), s.student) for s in specs] == [
        ("KD", 0.9, {"T": 2}, "logits"),
        ("CE", 0.1, {}, "logits"),
        ("AT", 500.0, {}, "stages"),
    ]


def test_bad_terms(tmp_path):
    with pytest.raises(ConfigError, match=r"distill.terms.0.loss: .*unknown loss 'ATT' \(did you mean 'AT'\?\)"):
        load_config(write(tmp_path, {**BASE, "distill": {"terms": [{"loss": "ATT"}]}}))
    with pytest.raises(ConfigError, match=r"distill.terms.0.weight: .*'heavy'"):
        load_config(write(tmp_path, {**BASE, "distill": {"terms": [{"loss": "AT", "weight": "heavy"}]}}))


def test_terms_for_another_method_only_update(tmp_path):
    raw = {**BASE, "distill": {"method": "kd", "terms": [{"loss": "KD", "params": {"T": 2}}, {"loss": "CRD", "params": {"nce_k": 64}}]}}
    cfg = load_config(write(tmp_path, raw)).distill
    assert [s.loss for s in cfg.term_specs()] == ["KD", "CE", "CRD"]
    assert [s.loss for s in cfg.term_specs("kd", extend=False)] == ["KD", "CE"]
    crd = cfg.term_specs("crd+kd", extend=False)
    assert [(s.loss, dict(s.params)) for s in crd] == [("CE", {}), ("KD", {"T": 2}), ("CRD", {"nce_k": 64})]
    assert [s.loss for s in cfg.term_specs("at", extend=False)] == ["CE", "AT"]


def test_a_runs_config_yaml_trains_the_same_objective_when_run_again():
    """A term's unset fields mean "the preset's value"; config.yaml must not fill them with defaults."""
    from distil.config import dump_config, validate_config

    raw = {
        "data": {"name": "digits"},
        "teacher": {"arch": "mlp"},
        "student": {"arch": "mlp"},
        "distill": {"method": "kd", "terms": [{"loss": "KD", "params": {"T": 2}}]},
    }
    config = validate_config(raw)
    again = validate_config(yaml.safe_load(yaml.safe_dump(dump_config(config))))
    specs = config.distill.term_specs()
    assert again.distill.term_specs() == specs
    kd = next(s for s in specs if s.loss == "KD")
    assert kd.params["T"] == 2 and kd.weight == 0.9  # the preset's α, not the field's default 1.0


def test_dumped_config_keeps_the_strategy_options_and_validates_again():
    from distil.config.files import dump_config, validate_config

    for path in sorted(Path("configs/strategies").glob("*.yaml")) + [Path("configs/text/mr/demo.yaml")]:
        cfg = load_config(path)
        raw = dump_config(cfg)
        assert raw["strategy"] == cfg.strategy.model_dump(mode="json"), path  # every option, not only the name
        assert dump_config(validate_config(raw, str(path))) == raw, path


@pytest.mark.parametrize("strategy", [{"name": "ensemble", "teachers": [{"arch": "mlp"}]}, {"name": "semi_supervised"}])
def test_transfer_include_train_false_is_refused_where_it_would_be_ignored(tmp_path, strategy):
    raw = {**BASE, "strategy": {**strategy, "transfer": {"name": "digits", "include_train": False}}}
    with pytest.raises(ConfigError, match=f"transfer.include_train: false is not possible with the {strategy['name']} strategy"):
        load_config(write(tmp_path, raw))
    raw["strategy"]["transfer"]["include_train"] = True  # what these strategies do anyway
    assert load_config(write(tmp_path, raw)).strategy.transfer.include_train


def test_overrides_address_list_entries_by_position():
    from distil.config import apply_override

    raw = {"strategy": {"name": "ensemble", "teachers": [{"arch": "mlp"}, {"arch": "cnn", "kwargs": {"width": 8}}]}, "methods": ["data", "fkl"]}
    apply_override(raw, "strategy.teachers.0.weights=a.safetensors")
    apply_override(raw, "strategy.teachers.-1.kwargs.width=16")
    apply_override(raw, "methods.1=rkl")
    assert raw["strategy"]["teachers"] == [{"arch": "mlp", "weights": "a.safetensors"}, {"arch": "cnn", "kwargs": {"width": 16}}]
    assert raw["methods"] == ["data", "rkl"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("strategy.teachers.2.weights=b.safetensors", r"strategy.teachers has 2 entries \(positions 0-1\), not 2"),
        ("strategy.teachers.mlp.weights=b.safetensors", r"strategy.teachers is a list; address an entry by its position, e.g. strategy.teachers.0.weights"),
        ("methods.0.kd_weight=2", r"methods.0 is 'data', not a mapping"),
        ("strategy.name.x=1", r"strategy.name is 'ensemble', not a section"),
        ("strategy.teachers.first=1", r"strategy.teachers is a list; give a position, e.g. strategy.teachers.0"),
        ("methods.--1.x=1", r"methods is a list; address an entry by its position"),
        ("empty.0.weights=a.safetensors", r"empty is empty; set the whole list"),
    ],
)
def test_a_bad_list_override_says_what_is_there(override, message):
    from distil.config import apply_override

    raw = {"strategy": {"name": "ensemble", "teachers": [{"arch": "mlp"}, {"arch": "cnn"}]}, "methods": ["data", "fkl"], "empty": []}
    with pytest.raises(ConfigError, match=message):
        apply_override(raw, override)


def test_an_ensemble_member_is_loaded_by_an_override(tmp_path):
    from distil.config.translation import load_translation_config

    source = Path(__file__).parents[1] / "configs" / "translation" / "bible_en_es_ensemble.yaml"
    config = load_translation_config(source, [f"strategy.teachers.0.weights={tmp_path / 'member1.safetensors'}", "strategy.teachers.0.layers=2"])
    member = config.strategy.teachers[0]
    assert (member.weights, member.layers, member.arch) == (str(tmp_path / "member1.safetensors"), 2, "transformer")
