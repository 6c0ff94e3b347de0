"""The teacher cache: exact (bitwise), pre-drawn views (documented fp16 tolerance), on disk, invalidated and repaired."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from distil.data import AugmentViews, BatchAugment, Split
from distil.engine.objective import Objective
from distil.engine.taps import LOGITS
from distil.engine.teacher_outputs import CacheSettings, plan_teacher_outputs, teacher_outputs
from distil.engine.teacher_sources import CachedTeacher, OnlineTeacher, ViewCache, decode_logits, encode_logits
from distil.engine.teacher_store import TeacherStore, read_mapped
from distil.engine.trainer import TrainSettings, fit
from distil.losses import CE, KD
from distil.models import build_model

AUG = BatchAugment(crop_padding=2, hflip=True)
FP16_REL = 2.0**-11  # fp16 keeps 11 significant bits: the view cache's rounding bound


def images(n=96, seed=0, classes=10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return Split(x, torch.randint(0, classes, (n,), generator=g))


def teacher(seed=0, classes=10):
    torch.manual_seed(seed)
    return build_model("cnn", input_shape=(1, 8, 8), num_classes=classes, widths=(8, 16), convs_per_stage=1).eval()


def reference_pass(model, x, batch_size, transform=None):
    """The teacher's own outputs, computed the way a user would (eval, no grad, same batches)."""
    model = model.eval().to(memory_format=torch.channels_last)
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch_size] if transform is None else transform(x[i : i + batch_size], i)) for i in range(0, len(x), batch_size)])


def test_exact_cache_is_bitwise_the_teacher_and_reloads_from_disk_bitwise(tmp_path):
    t, data = teacher(), images()
    store = TeacherStore(tmp_path)
    built = CachedTeacher(t, data.x, batch_size=32, store=store)
    assert not built.loaded
    assert torch.equal(built.logits, reference_pass(t, data.x, 32))
    again = CachedTeacher(t, data.x, batch_size=32, store=store)
    assert again.loaded and torch.equal(again.logits, built.logits)
    index = torch.tensor([5, 0, 77])
    assert torch.equal(again(index, data.x[index])[LOGITS], built.logits[index])


def test_exact_cache_with_features(tmp_path):
    t, data = teacher(), images()
    store = TeacherStore(tmp_path)
    CachedTeacher(t, data.x, taps=["stage1"], batch_size=32, store=store)
    cached = CachedTeacher(t, data.x, taps=["stage1"], batch_size=32, store=store)
    assert cached.loaded and set(cached.outputs) == {LOGITS, "stage1"}
    online = OnlineTeacher(t, ["stage1"])(torch.arange(32), data.x[:32])
    assert torch.equal(cached.outputs["stage1"][:32], online["stage1"])


def test_changed_teacher_or_data_gets_a_new_entry(tmp_path):
    t, data = teacher(), images()
    store = TeacherStore(tmp_path)
    CachedTeacher(t, data.x, store=store)
    changed = teacher()
    with torch.no_grad():
        changed.fc.weight[0, 0] += 1e-3
    other = CachedTeacher(changed, data.x, store=store)
    assert not other.loaded and torch.equal(other.logits, reference_pass(changed, data.x, 256))
    moved = data.x.clone()
    moved[3, 0, 0, 0] += 1e-3
    assert not CachedTeacher(t, moved, store=store).loaded
    assert CachedTeacher(t, data.x, store=store).loaded  # the first entry is still valid
    assert len(list(store.keys())) == 3


def test_settings_the_weights_do_not_hold_get_their_own_entry(tmp_path):
    """An ensemble's temperature and combination, a convolution's stride: the outputs change, the state dict does not."""
    from distil.models.ensemble import Ensemble

    data, store = images(), TeacherStore(tmp_path)
    members = [teacher(0), teacher(1)]
    runs = [CachedTeacher(Ensemble(members, T=t, combine=c).eval(), data.x, store=store) for t, c in ((1.0, "probs"), (4.0, "probs"), (1.0, "logits"))]
    assert not any(r.loaded for r in runs) and len(list(store.keys())) == 3
    assert not torch.allclose(runs[0].logits, runs[1].logits)
    assert CachedTeacher(Ensemble(members, T=4.0).eval(), data.x, store=store).loaded  # the same settings: read back
    strided = teacher(0)
    conv = next(m for m in strided.modules() if isinstance(m, torch.nn.Conv2d))
    conv.stride = (2, 2)
    assert not CachedTeacher(strided, data.x, store=store).loaded


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "no_manifest", "garbage"])
def test_corrupt_cache_is_detected_and_rebuilt(tmp_path, damage):
    t, data = teacher(), images()
    store = TeacherStore(tmp_path)
    first = CachedTeacher(t, data.x, store=store)
    path, manifest = store.paths(first.key)
    raw = bytearray(path.read_bytes())
    if damage == "flip_byte":
        raw[-5] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "no_manifest":
        manifest.unlink()
    else:
        path.write_bytes(b"\x00" * 3)
    with pytest.warns(RuntimeWarning, match="corrupt or incomplete"):
        rebuilt = CachedTeacher(t, data.x, store=store)
    assert not rebuilt.loaded
    assert torch.equal(rebuilt.logits, reference_pass(t, data.x, 256))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CachedTeacher(t, data.x, store=store).loaded  # the rebuilt entry is sound


def test_mapped_reader_rejects_a_tensor_past_the_end(tmp_path):
    t, data = teacher(), images()
    store = TeacherStore(tmp_path)
    path = store.paths(CachedTeacher(t, data.x, store=store).key)[0]
    assert torch.equal(read_mapped(path)[LOGITS], CachedTeacher(t, data.x).logits)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="past the end"):
        read_mapped(path)


def test_views_are_reproducible_and_cycle_through_every_view():
    a = AugmentViews.draw(AUG, 50, 4, seed=3)
    b = AugmentViews.draw(AUG, 50, 4, seed=3)
    assert set(a.table) == {"dy", "dx", "flip"} and all(torch.equal(a.table[k], b.table[k]) for k in a.table)
    index = torch.arange(50)
    seen = torch.stack([a.view_of(index, epoch) for epoch in range(4)], dim=1)
    assert torch.equal(seen.sort(dim=1).values, torch.arange(4).expand(50, 4))
    assert int(a.table["dy"].max()) <= 4 and a.nbytes == 50 * 4 * 3 + 50 * 8
    x = images(50).x
    view = a.view_of(index, 1)
    assert torch.equal(a.apply(x, index, view), AUG.apply(x, a.params(index, view)))


def _true_view_logits(t, x, views, k):
    def transform(xb, start):
        index = torch.arange(start, start + len(xb))
        return views.apply(xb, index, torch.full_like(index, k))

    return reference_pass(t, x, 32, transform)


def test_view_cache_full_logits_within_fp16_rounding(tmp_path):
    t, data = teacher(), images()
    cache = ViewCache(t, data.x, AUG, views=3, top_k=10, batch_size=32, store=TeacherStore(tmp_path))
    assert set(cache.tables) == {"values"}
    index = torch.arange(len(data))
    for k in range(3):
        truth = _true_view_logits(t, data.x, cache.views, k)
        got = cache(index, data.x, torch.full_like(index, k))[LOGITS]
        assert ((got - truth).abs() <= FP16_REL * truth.abs() + 1e-7).all()
        # The KD loss on the cached logits matches the loss on the teacher's to 1e-3 (relative).
        student = torch.randn_like(truth)
        exact, cached = KD(T=4)(student, truth), KD(T=4)(student, got)
        assert cached.item() == pytest.approx(exact.item(), rel=1e-3)
    reloaded = ViewCache(t, data.x, AUG, views=3, top_k=10, batch_size=32, store=TeacherStore(tmp_path))
    assert reloaded.loaded and torch.equal(reloaded.tables["values"], cache.tables["values"])


def test_view_cache_top_k_keeps_top_probabilities_and_residual_mass():
    t, data = teacher(), images()
    T, top_k = 4.0, 3
    cache = ViewCache(t, data.x, AUG, views=2, top_k=top_k, T=T, batch_size=32)
    index = torch.arange(len(data))
    truth = _true_view_logits(t, data.x, cache.views, 1)
    got = cache(index, data.x, torch.ones_like(index))[LOGITS]
    p_true, p_got = F.softmax(truth / T, dim=1), F.softmax(got / T, dim=1)
    top = truth.topk(top_k, dim=1).indices
    assert torch.allclose(p_got.gather(1, top), p_true.gather(1, top), atol=1e-3)
    rest_true = 1 - p_true.gather(1, top).sum(1)
    rest_got = 1 - p_got.gather(1, top).sum(1)
    assert torch.allclose(rest_got, rest_true, atol=1e-3)
    assert cache.nbytes == len(data) * 2 * (top_k * 4 + 2) + cache.views.nbytes


def test_encode_decode_round_trip():
    z = torch.tensor([[3.0, -1.0, 0.5, 2.0, -4.0]])
    enc = encode_logits(z, 2, T=2.0)
    out = decode_logits(enc["values"], enc["indices"], enc["rest"], 5)
    assert out[0, 0] == 3.0 and out[0, 3] == 2.0
    rest = 2.0 * (torch.logsumexp(z[0, [1, 2, 4]] / 2.0, 0) - math.log(3))
    assert torch.allclose(out[0, [1, 2, 4]], rest.expand(3), atol=1e-2)


def test_plan_falls_back_to_online_with_reasons():
    t, data = teacher(), images()
    settings = CacheSettings(store=False)
    assert plan_teacher_outputs(t, data.x, None, [LOGITS], settings).kind == "exact"
    assert plan_teacher_outputs(t, data.x, AUG, [LOGITS], settings).kind == "views"
    features = plan_teacher_outputs(t, data.x, AUG, ["stage1"], settings)
    assert features.kind == "online" and "features" in features.reason
    small = CacheSettings(store=False, max_bytes=100)
    assert plan_teacher_outputs(t, data.x, None, [LOGITS], small).kind == "online"
    assert plan_teacher_outputs(t, data.x, AUG, [LOGITS], small).kind == "online"
    assert plan_teacher_outputs(t, data.x, AUG, [LOGITS], CacheSettings(mode="online")).kind == "online"
    outputs = teacher_outputs(t, data.x, AUG, settings=settings)
    assert isinstance(outputs, ViewCache) and outputs.info["kind"] == "views" and outputs.info["bytes"] == outputs.nbytes


def test_training_replays_the_views():
    t, data = teacher(), images(128)
    outputs = teacher_outputs(t, data.x, AUG, settings=CacheSettings(store=False, views=2), temperature=4.0)
    seen = []

    class Spy:
        views = outputs.views

        def __call__(self, index, x, view=None):
            seen.append(view)
            return outputs(index, x, view)

    student = teacher(seed=1)
    objective = Objective([KD(T=4) * 0.9, CE() * 0.1])
    result = fit(student, data, images(32, seed=1), objective, TrainSettings(epochs=2, batch_size=64), seed=0, teacher=Spy(), augment=AUG)
    assert len(result.history) == 2 and all(v is not None for v in seen)
    assert torch.isfinite(torch.tensor(result.history[-1].loss))


def test_a_term_that_reads_every_teacher_logit_never_gets_the_view_cache():
    """A discriminator would tell the view cache's evened-out tail of logits from a student's: online instead."""
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 20))
    x = torch.randn(32, 1, 4, 4)
    settings = CacheSettings(store=False)
    assert plan_teacher_outputs(teacher, x, BatchAugment(crop_padding=1), {"logits"}, settings).kind == "views"
    plan = plan_teacher_outputs(teacher, x, BatchAugment(crop_padding=1), {"logits"}, settings, exact_logits=True)
    assert plan.kind == "online" and "exactly" in plan.reason
    assert plan_teacher_outputs(teacher, x, None, {"logits"}, settings, exact_logits=True).kind == "exact"  # no augmentation: the exact cache is exact


def test_store_evicts_least_recently_used_entries_past_its_disk_cap(tmp_path):
    import os

    entry = {"logits": torch.zeros(1000, 10)}  # 40,000 bytes of data + header and manifest
    store = TeacherStore(tmp_path, max_disk_bytes=10**9)
    for i, key in enumerate("abc"):
        store.save(key, entry)
        for path in store.paths(key):
            os.utime(path, (1000 + i, 1000 + i))  # a, b, c: oldest first
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert store.load("a") is not None  # a is used now: b is the least recently used
    store.max_disk_bytes = size  # room for three: saving d evicts exactly one, b
    store.save("d", entry)
    assert list(store.keys()) == ["a", "c", "d"]
    small = TeacherStore(tmp_path, max_disk_bytes=1)  # over the cap alone: the new entry is still kept
    small.save("e", entry)
    assert list(small.keys()) == ["e"] and small.load("e") is not None
