"""Function matching (Beyer et al. 2022): mixup / cutmix pairs drawn, applied, stored with the cached
views and replayed for teacher and student; the mixed labels; the ``fm`` preset; config errors."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from strategy_helpers import run_cli

from distil.config.data import AugmentConfig
from distil.data import AugmentViews, BatchAugment, Split
from distil.data.mix import Mix, Mixed, MixedBatches, MixParams, sample_beta
from distil.engine.methods import METHODS
from distil.engine.objective import Objective
from distil.engine.taps import LOGITS
from distil.engine.teacher_outputs import CacheSettings, teacher_outputs
from distil.engine.teacher_sources import OnlineTeacher, ViewCache
from distil.engine.trainer import TrainSettings, fit
from distil.losses import CE, KD
from distil.models import build_model

AUG = BatchAugment(crop_padding=2, hflip=True)
FM = Mixed(AUG, Mix(mixup=1.0, cutmix=1.0))
FP16_REL = 2.0**-11


def images(n=96, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, classes, (n,), generator=g))


def cnn(seed=0, classes=10):
    torch.manual_seed(seed)
    return build_model("cnn", input_shape=(1, 8, 8), num_classes=classes, widths=(8, 16), convs_per_stage=1).eval()


def by_hand(x, partner_x, lam, box):
    """One pair as the papers define it: mixup blends, cutmix pastes the partner's box."""
    if box[2] * box[3] > 0:
        out = x.clone()
        t, l, h, w = box.tolist()
        out[..., t : t + h, l : l + w] = partner_x[..., t : t + h, l : l + w]
        return out
    return lam * x + (1 - lam) * partner_x


@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_beta_draws_have_the_beta_moments_and_follow_the_generator(alpha):
    lam = sample_beta(alpha, 20_000, torch.Generator().manual_seed(0))
    assert lam.min() >= 0 and lam.max() <= 1
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)
    assert lam.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), abs=0.005)  # Var Beta(α, α)
    assert torch.equal(lam, sample_beta(alpha, 20_000, torch.Generator().manual_seed(0)))


def test_mixup_blends_each_input_with_a_partner_from_the_whole_training_set():
    pool = images(200).x
    mix = Mix(mixup=1.0)
    params = mix.sample(64, len(pool), (8, 8), torch.Generator().manual_seed(0))
    assert params.partner.max() >= 64  # partners come from the pool, not from the batch
    assert not params.cut.any() and (params.lam < 1).all()
    x = pool[:64]
    out = mix.apply(x, pool[params.partner], params)
    lam = params.lam[:, None, None, None]
    assert (out - (lam * x + (1 - lam) * pool[params.partner])).abs().max() <= 1e-6


def test_cutmix_pastes_the_partners_box_and_lambda_is_the_share_left():
    pool = images(200).x
    mix = Mix(cutmix=1.0)
    params = mix.sample(200, len(pool), (8, 8), torch.Generator().manual_seed(1))
    out = mix.apply(pool, pool[params.partner], params)
    top, left, h, w = params.box.unbind(1)
    assert ((top >= 0) & (left >= 0) & (top + h <= 8) & (left + w <= 8)).all()
    assert params.cut.sum() > 150  # a box of zero area is possible (λ ≈ 1), but rare
    assert torch.equal(params.lam, 1 - (h * w).float() / 64)
    for i in range(200):
        assert torch.equal(out[i], by_hand(pool[i], pool[params.partner[i]], params.lam[i], params.box[i]))


def test_cutmix_on_signals_pastes_a_segment():
    pool = torch.randn(50, 2, 40)
    mix = Mix(cutmix=1.0)
    params = mix.sample(50, 50, (1, 40), torch.Generator().manual_seed(2))
    out = mix.apply(pool, pool[params.partner], params)
    for i in range(50):
        t, l, h, w = params.box[i].tolist()
        expected = pool[i].clone()
        expected[:, l : l + w] = pool[params.partner[i], :, l : l + w]
        assert t == 0 and h == (1 if w else h) and torch.equal(out[i], expected)
        assert params.lam[i].item() == pytest.approx(1 - w / 40)


def test_mix_prob_and_cutmix_share():
    pool = images(100).x
    off = Mix(mixup=1.0, cutmix=1.0, prob=0.0)
    params = off.sample(100, 100, (8, 8), torch.Generator().manual_seed(0))
    assert (params.lam == 1).all() and torch.equal(off.apply(pool, pool[params.partner], params), pool)
    both = Mix(mixup=1.0, cutmix=1.0, prob=0.5, cutmix_share=0.25).sample(8000, 100, (8, 8), torch.Generator().manual_seed(0))
    mixed = (both.lam < 1) | both.cut
    assert mixed.float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert (both.cut.sum() / mixed.sum()).item() == pytest.approx(0.25, abs=0.03)


def test_mixed_labels_and_soft_cross_entropy():
    mix = Mix(mixup=1.0)
    y, yp = torch.tensor([0, 1, 2, -100, 4]), torch.tensor([3, 1, -100, 0, 4])
    lam = torch.tensor([0.25, 0.5, 0.7, 0.5, 1.0])
    q = mix.targets(y, yp, lam, 5)
    assert torch.equal(q[0], torch.tensor([0.25, 0, 0, 0.75, 0]))
    assert torch.equal(q[1], torch.tensor([0, 1.0, 0, 0, 0]))  # both labels the same class
    assert (q[2] == 0).all() and (q[3] == 0).all()  # a missing label on a mixed row: no label
    assert torch.equal(q[4], F.one_hot(torch.tensor(4), 5).float())
    s = torch.randn(5, 5)
    # Soft CE is λ·CE(y) + (1 − λ)·CE(y_partner), averaged over the labelled rows (0, 1, 4).
    per_row = [0.25 * F.cross_entropy(s[0], y[0]) + 0.75 * F.cross_entropy(s[0], yp[0]), F.cross_entropy(s[1], y[1]), F.cross_entropy(s[4], y[4])]
    assert CE()(s, target=q).item() == pytest.approx(torch.stack(per_row).mean().item(), rel=1e-6)
    hard = torch.tensor([0, 1, 2, 3, 4])
    for eps in (0.0, 0.1):
        assert CE(eps)(s, target=F.one_hot(hard, 5).float()).item() == pytest.approx(CE(eps)(s, target=hard).item(), rel=1e-6)


def test_view_cache_stores_pairs_and_the_teachers_logits_of_the_mixed_image():
    t, data = cnn(), images()
    cache = ViewCache(t, data.x, FM, views=3, top_k=10, batch_size=32)
    assert {"mix_partner", "mix_lam", "mix_box"} <= set(cache.views.table)
    assert cache.views.nbytes == 96 * 3 * FM.view_bytes + 96 * 8  # 3 + 14 bytes per view, the offsets
    index = torch.arange(len(data))
    reference = copy.deepcopy(t).eval()
    for k in range(3):
        view = torch.full_like(index, k)
        shown, pairs = cache.views.batch(data.x[index], index, view, source=data.x)
        params = cache.views.params(index, view)
        mixed = torch.stack([by_hand(data.x[i], data.x[pairs.partner[i]], pairs.lam[i], pairs.box[i]) for i in range(len(index))])
        assert (shown - AUG.apply(mixed, params.base)).abs().max() <= 1e-6
        with torch.no_grad():
            truth = reference(shown)
        got = cache(index, data.x, view)[LOGITS]
        assert ((got - truth).abs() <= FP16_REL * truth.abs() + 1e-5).all()
        # Consistency: the KD loss between a student equal to the teacher and the cached logits is zero
        # on the view it is shown, and not on the un-mixed image.
        fm = KD(T=1.0)
        assert fm(truth, got).item() < 1e-6
        with torch.no_grad():
            assert fm(reference(data.x), got).item() > 1e-3  # an untrained teacher: small logits


def test_views_with_pairs_are_replayed_deterministically():
    data = images(64)
    a, b = AugmentViews.draw(FM, 64, 4, seed=3, size=(8, 8)), AugmentViews.draw(FM, 64, 4, seed=3, size=(8, 8))
    assert all(torch.equal(a.table[k], b.table[k]) for k in a.table) and torch.equal(a.offset, b.offset)
    index = torch.tensor([5, 0, 63])
    for epoch in range(4):
        view = a.view_of(index, epoch)
        assert torch.equal(a.apply(data.x[index], index, view, source=data.x), b.apply(data.x[index], index, view, source=data.x))
    other = AugmentViews.draw(FM, 64, 4, seed=4, size=(8, 8))
    assert not torch.equal(other.table["mix_partner"], a.table["mix_partner"])


def test_training_with_pairs_cached_and_online():
    """The fm objective from cached pair views and from an online teacher; scratch learns the mixed labels."""
    data, val = images(128), images(32, seed=1)
    t = cnn()
    objective = Objective([KD(T=1.0) * 1.0])
    settings = TrainSettings(epochs=2, batch_size=64)
    outputs = teacher_outputs(t, data.x, FM, settings=CacheSettings(store=False, views=2), temperature=1.0)
    assert outputs.info["kind"] == "views" and isinstance(outputs, ViewCache)
    seen = []

    class Spy:
        views = outputs.views

        def __call__(self, index, x, view=None):
            seen.append((index, x, view))
            return outputs(index, x, view)

    cached = fit(cnn(1), data, val, objective, settings, seed=0, teacher=Spy(), augment=FM)
    index, x, view = seen[0]
    # The student's batch is the replayed view of epoch 1 (the same image the teacher's logits are of).
    assert torch.equal(x, outputs.views.apply(data.x[index], index, outputs.views.view_of(index, 0), source=data.x))
    online = fit(cnn(1), data, val, Objective([KD(T=1.0) * 1.0]), settings, seed=0, teacher=OnlineTeacher(t), augment=FM)
    scratch = fit(cnn(1), data, val, Objective([CE() * 1.0]), settings, seed=0, augment=FM)
    for result in (cached, online, scratch):
        assert len(result.history) == 2 and all(torch.isfinite(torch.tensor(r.loss)) for r in result.history)
    with pytest.raises(ValueError, match="two"):
        from distil.losses import DKD

        fit(cnn(1), data, val, Objective([DKD() * 1.0]), settings, seed=0, teacher=OnlineTeacher(t), augment=FM)


def test_online_pairs_draw_partners_from_the_whole_training_set():
    pool = images(300).x
    x, pairs = MixedBatches(FM).draw(pool[:16], pool, torch.Generator().manual_seed(0))
    assert isinstance(pairs, MixParams) and pairs.partner.max() >= 16 and x.shape == (16, 1, 8, 8)


def test_config_builds_the_mix_and_fm_preset():
    built = AugmentConfig(crop_padding=2, hflip=True, mixup=1.0, cutmix=0.5).build()
    assert isinstance(built, Mixed) and built.mix == Mix(1.0, 0.5) and built.base == AUG
    assert AugmentConfig(crop_padding=2).build() == BatchAugment(crop_padding=2)
    (term,) = METHODS["fm"].terms
    assert term.loss == "KD" and term.params == {"T": 1.0} and term.weight == 1.0


BASE = {
    "name": "fm-test",
    "data": {"name": "digits", "val_size": 0.1, "augment": {"crop_padding": 1, "mixup": 1.0, "cutmix": 1.0}},
    "teacher": {"arch": "cnn", "kwargs": {"widths": [8, 16], "convs_per_stage": 1}, "epochs": 1, "batch_size": 128},
    "student": {"arch": "cnn", "kwargs": {"widths": [4, 8], "convs_per_stage": 1}, "epochs": 1, "batch_size": 128},
    "distill": {"method": "fm"},
    "cache": {"views": 2, "store": False},
    "measure": {"latency_repeats": 1, "throughput_repeats": 1},
}


@pytest.mark.parametrize(
    "change, field",
    [
        ({"data": {**BASE["data"], "augment": {"mixup": -1}}}, "data.augment.mixup"),
        ({"data": {**BASE["data"], "augment": {"mix_prob": 0.5}}}, "mixup and cutmix are both 0"),
        ({"data": {**BASE["data"], "augment": {"cutmix": 1.0, "cutmix_share": 2}}}, "data.augment.cutmix_share"),
        ({"distill": {"method": "dkd"}}, "data.augment.mixup"),
    ],
)
def test_bad_mixing_config_exits_2_naming_the_field(tmp_path, change, field):
    result = run_cli(tmp_path, {**BASE, **change})
    assert result.exit_code == 2, result.output
    assert field in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_fm_run_end_to_end_with_a_fair_scratch(tmp_path):
    result = run_cli(tmp_path, BASE)
    assert result.exit_code == 0, result.output
    models = {m["name"]: m for m in json.loads((tmp_path / "out" / "summary.json").read_text())["models"]}
    assert set(models) == {"teacher", "student_scratch", "student_fm"}
    assert models["student_fm"]["teacher_outputs"]["kind"] == "views"
    assert all(0 <= m["accuracy"] <= 1 for m in models.values())
