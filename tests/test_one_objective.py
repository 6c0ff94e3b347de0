"""One way to build an objective: the YAML path (`distil run`), a strategy, the Python API and
compress recovery all go through `build_objective`, seeded by the run's seed, so one config and seed
give one objective — the same connector weights and loss parameters, the same values."""

import copy

import pytest
import torch

from distil import losses
from distil.api import make_objective
from distil.compress.chain import recovery_objective
from distil.config import validate_config
from distil.engine.objective import TermSpec
from distil.engine.taps import Taps
from distil.session import RunSession
from distil.strategies import Context

RAW = {
    "seed": 3,
    "data": {"name": "digits", "val_size": 0.15},
    "teacher": {"arch": "cnn", "kwargs": {"widths": [16, 32, 64]}},
    "student": {"arch": "cnn", "kwargs": {"widths": [8, 16, 24], "convs_per_stage": 1}},
    # FitNet on the middle stage needs a connector (16 → 32 channels); CRD has heads of its own
    "distill": {"method": "fitnet", "terms": [{"loss": "CRD", "weight": 0.8, "student": "embedding", "params": {"nce_k": 16}}]},
    "compress": {"prune": {"temperature": 3.0, "alpha": 0.7}},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = validate_config(copy.deepcopy(RAW))
    data = cfg.data.load(cfg.seed)
    teacher = cfg.teacher.build(data, cfg.seed).eval()
    return cfg, data, teacher, RunSession(cfg, tmp_path_factory.mktemp("run"))


def state(objective) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in objective.state_dict().items()}


def assert_same(a, b) -> None:
    sa, sb = state(a), state(b)
    assert sa.keys() == sb.keys() and sa  # not vacuous: there are connector and CRD tensors
    for key in sa:  # bit for bit (CRD's normalising constants are NaN until its first batch)
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert a.names == b.names and [t.weight for t in a.terms] == [t.weight for t in b.terms]


def test_yaml_strategy_and_python_api_build_the_same_objective(setup):
    cfg, data, teacher, session = setup
    yaml_path = session.objective(cfg.student.build(data, cfg.seed), teacher, data)
    assert any(name.startswith("fitnet") for name in yaml_path.connectors)
    strategy_path = Context(session, data, teacher, cfg.data.augment.build()).objective(cfg.student.build(data, cfg.seed + 1), teacher)
    python_api = make_objective(teacher, cfg.student.build(data, 7), data, terms=cfg.distill.term_specs(), seed=cfg.seed)
    assert_same(yaml_path, strategy_path)
    assert_same(yaml_path, python_api)
    # and another seed gives other connectors: the seed is what decides them
    other = make_objective(teacher, cfg.student.build(data, 7), data, terms=cfg.distill.term_specs(), seed=cfg.seed + 1)
    connector = next(k for k in state(yaml_path) if k.startswith("connectors.") and k.endswith("weight"))
    assert not torch.equal(state(other)[connector], state(yaml_path)[connector])


def test_objective_building_is_independent_of_the_rng_state_before_it(setup):
    cfg, data, teacher, session = setup
    student = cfg.student.build(data, cfg.seed)
    first = session.objective(student, teacher, data)
    torch.rand(1000)  # whatever ran before must not change the connectors
    assert_same(first, session.objective(student, teacher, data))


def test_compress_recovery_is_the_python_api_objective_of_its_terms(setup):
    cfg, data, teacher, _ = setup
    student = cfg.student.build(data, cfg.seed)
    recovery = recovery_objective(cfg, student, teacher, data)
    same = make_objective(teacher, student, data, temperature=3.0, alpha=0.7, seed=cfg.seed)
    assert recovery.names == same.names == ["kd", "ce"]
    assert [t.weight for t in recovery.terms] == pytest.approx([0.7, 0.3])
    assert recovery.temperature == same.temperature == 3.0
    x, y = data.train.x[:16], data.train.y[:16]
    with torch.no_grad():
        s, t = {"logits": student(x)}, {"logits": teacher(x)}
        values = recovery(s, t, y)
        assert {k: v.item() for k, v in values.items()} == {k: v.item() for k, v in same(s, t, y).items()}


def test_spec_and_ready_term_give_the_same_objective(setup):
    cfg, data, teacher, _ = setup
    student = cfg.student.build(data, cfg.seed)
    from_spec = make_objective(teacher, student, data, terms=[TermSpec("FitNet", 100.0, student="middle_stage")], seed=5)
    from_term = make_objective(teacher, student, data, terms=[losses.FitNet().between("middle_stage") * 100.0], seed=5)
    assert_same(from_spec, from_term)
    x = data.train.x[:16]
    with torch.no_grad(), Taps(student, from_spec.student_taps) as ts, Taps(teacher, from_spec.teacher_taps) as tt:
        s, t = ts.forward(x), tt.forward(x)
        (name,) = from_spec.names
        value = from_spec(s, t, None)[name].item()
        assert value > 0 and value == pytest.approx(from_term(s, t, None)[name].item(), rel=1e-6)
