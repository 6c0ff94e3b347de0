"""Pinned presets: every ``distil methods`` preset computes the values in ``tests/golden/presets.json``.

Each preset's objective is built on a seeded pair of tiny CNNs and run once, as a training step runs
it, on one fixed batch (``tests/make_golden_presets.py`` says exactly how). Pinned per preset: the
term names, loss classes and their arguments (T, alpha, beta, ...), weights and scheduled weights,
taps and their shapes, connectors, the objective's temperature, and each term's value (rtol 1e-5).
A new preset without golden values fails, as does a changed default, weight, tap group, schedule or
loss formula; after a deliberate change, regenerate with
``DISTIL_THREADS=1 .venv/bin/python tests/make_golden_presets.py`` and review the JSON's diff.

Beyond the fixture: with the student equal to the teacher, every term that compares the two is zero
(VID keeps its variance term, ½·log σ²; an adversarial term keeps its discriminator's loss, at least
2·log 2); DKD's warm-up scales its value linearly.
"""

import copy
import json
import math
from dataclasses import replace

import pytest
import torch
from make_golden_presets import FIXTURE, SETUP, batch, models, preset_record, step_values

from distil.engine.methods import METHODS, Method
from distil.engine.objective import build_objective
from distil.engine.taps import Taps

RTOL, ATOL = 1e-5, 1e-8
GOLDEN = json.loads(FIXTURE.read_text())


def assert_matches(record: dict, golden: dict) -> None:
    """Everything but the values equal; the values (each term's and the total) within RTOL."""

    def without_values(r: dict) -> dict:
        return {**r, "total": None, "terms": [{**t, "value": None} for t in r["terms"]]}

    assert without_values(record) == without_values(golden)
    got = {t["name"]: t["value"] for t in record["terms"]} | {"total": record["total"]}
    want = {t["name"]: t["value"] for t in golden["terms"]} | {"total": golden["total"]}
    assert got == pytest.approx(want, rel=RTOL, abs=ATOL)


def test_every_preset_has_golden_values():
    assert GOLDEN["setup"] == SETUP, "the generator's setup changed: regenerate tests/golden/presets.json"
    assert sorted(GOLDEN["presets"]) == sorted(METHODS)


@pytest.mark.parametrize("name", list(METHODS))
def test_preset_matches_golden(name):
    assert_matches(preset_record(name), GOLDEN["presets"][name])


def test_a_changed_temperature_breaks_the_golden_check(monkeypatch):
    """The check is sharp: KD at T=3 instead of 4 differs in its arguments and, beyond tolerance, in its value."""
    kd = METHODS["kd"]
    terms = tuple(replace(t, params={"T": 3.0}) if t.loss == "KD" else t for t in kd.terms)
    monkeypatch.setitem(METHODS, "kd", Method(kd.description, terms))
    record, golden = preset_record("kd"), GOLDEN["presets"]["kd"]
    with pytest.raises(AssertionError):
        assert_matches(record, golden)
    (got,) = [t for t in record["terms"] if t["loss"] == "KD"]
    (want,) = [t for t in golden["terms"] if t["loss"] == "KD"]
    assert got["params"] == {"T": 3.0} and want["params"] == {"T": 4.0}
    assert abs(got["value"] - want["value"]) > 100 * RTOL * abs(want["value"])


def equal_pair_values(name: str) -> tuple[dict[str, float], dict[str, float]]:
    """The preset's term values when the teacher is an exact copy of the student (both in eval mode,
    so their BatchNorms agree), and each term's weight."""
    student, _ = models()
    teacher = copy.deepcopy(student)
    x, y, index = batch()
    objective = build_objective(METHODS[name].terms, student, teacher, x[: SETUP["probe"]], n_data=SETUP["n_data"], seed=0)
    student.eval(), teacher.eval(), objective.eval()
    with torch.no_grad(), Taps(student, objective.student_taps) as s, Taps(teacher, objective.teacher_taps) as t:
        values = objective(s.forward(x), t.forward(x), y, index=index, progress=SETUP["progress"])
    weights = dict(zip(objective.names, (term.weight for term in objective.terms)))
    return {k: v.item() for k, v in values.items()}, weights


@pytest.mark.parametrize("name", [m for m in METHODS if "CRD" not in {t.loss for t in METHODS[m].terms} and m != "scratch"])
def test_a_student_equal_to_its_teacher_has_nothing_left_to_learn(name):
    values, weights = equal_pair_values(name)
    teacher_terms = {k: v for k, v in values.items() if k != "ce"}
    assert teacher_terms  # every preset but scratch reads the teacher
    for term, value in teacher_terms.items():
        if term.startswith("vid"):  # σ² = 5 at initialisation: the NLL's floor is ½·log 5, not 0
            assert value == pytest.approx(weights[term] * 0.5 * math.log(5.0), rel=1e-6)
        elif term.startswith("adversarial"):  # D's own loss is never 0: on equal inputs L_D ≥ 2·log 2 (at D = 0), L_G ≥ 0
            assert value >= weights[term] * 2 * math.log(2.0) * (1 - 1e-6), (term, value)
        else:  # exactly 0, but for DIST's 1 − ρ: ρ = ‖a‖² / (‖a‖² + 1e-8) in fp32 leaves ~3e-6
            assert abs(value) < 1e-5, (term, value)


def test_dkd_is_warmed_up_linearly():
    """DKD's weight ramps over the first 10 % of training: off at the start, half at 5 %, full after."""
    student, teacher = models()
    x, y, index = batch()
    objective = build_objective(METHODS["dkd"].terms, student, teacher, x[: SETUP["probe"]], n_data=SETUP["n_data"], seed=0)
    at = {p: step_values(objective, student, teacher, x, y, index, p) for p in (0.0, 0.05, 0.1, 0.5)}
    assert set(at[0.0]) == {"ce"}  # a term whose weight is 0 is not computed at all
    assert at[0.05]["dkd"].item() == pytest.approx(0.5 * at[0.5]["dkd"].item(), rel=1e-6)
    assert at[0.1]["dkd"].item() == pytest.approx(at[0.5]["dkd"].item(), rel=1e-6)
    assert all(v["ce"].item() == pytest.approx(at[0.5]["ce"].item(), rel=1e-6) for v in at.values())
