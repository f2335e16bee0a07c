"""Issue 26, TWIN-V2's model (models/lifelong/twin_v2.py): cluster-aware attention over the
virtual items of ``data.lifecycle``, registered like every other module."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from twin_study.data import SampleBuilder, SyntheticConfig, generate, load_dataset
from twin_study.data.lifecycle import LifecycleSampleBuilder
from twin_study.data.synthetic import lifecycle_params
from twin_study.models import ModelConfig, build_model, registry
from twin_study.models.gsu import log_size
from twin_study.training import TrainConfig, run
from twin_study.training.train import builder_for, make_optimizers, train_step

L, K = 400, 20


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=16, n_items=500, n_authors=50, history_len=900,
                                    history_min=300, requests_per_user=3, seed=5))  # fmt: skip


def cfg(module: str = "twin_v2", impl: str = "fast", **options) -> ModelConfig:
    opts = {"block": 100, **options} if module == "twin_v2" else {}
    return ModelConfig(long_module=module, long_len=L, k=K, impl=impl, options=opts,
                       id_dim=16, mlp=(16,), gsu_chunk=128)  # fmt: skip


def pair(ds, **options):
    """TWIN and TWIN-V2 with the same parameters (the same state dict)."""
    torch.manual_seed(0)
    twin = build_model(cfg("twin"), ds)
    v2 = build_model(cfg(**options), ds)
    v2.load_state_dict(twin.state_dict())
    return twin, v2


def test_with_clusters_of_size_one_twin_v2_is_twin(ds):
    """cap = 1: every virtual item is one raw behaviour, ln 1 = 0. Same batches, the same
    GSU scores and selection, the same logits."""
    twin, v2 = pair(ds, cap=1)
    idx = ds.split_indices("train")[:40]
    raw = SampleBuilder(ds, L).build(idx)
    comp = builder_for(v2, ds).build(idx)
    assert torch.equal(comp.hist_item[:, :L], raw.hist_item[:, :L])
    assert bool((comp.hist_size[comp.mask()] == 1).all())
    s_twin, ok = twin.gsu_scores(raw)
    s_v2, ok2 = v2.gsu_scores(comp)
    torch.testing.assert_close(s_v2, s_twin)
    assert torch.equal(ok, ok2)
    sel_t = twin.gsu.select(twin.gsu_input(raw), K)
    sel_v = v2.gsu.select(v2.gsu_input(comp), K)
    assert torch.equal(sel_t[0][sel_t[1]].sort().values, sel_v[0][sel_v[1]].sort().values)
    with torch.no_grad():
        torch.testing.assert_close(v2(comp), twin(raw), rtol=1e-5, atol=1e-5)


def test_the_size_term_is_ln_n_in_both_stages(ds):
    twin, v2 = pair(ds, cap=20)
    batch = builder_for(v2, ds).build(ds.split_indices("train")[:40])
    assert int(batch.hist_size.max()) > 1  # some clusters hold several behaviours
    s_twin, _ = twin.gsu_scores(batch)  # plain alpha over the same virtual items
    s_v2, valid = v2.gsu_scores(batch)
    want = s_twin + log_size(batch.hist_size[:, :L])[batch.req][:, None, :]
    torch.testing.assert_close(s_v2, want)
    # Fast selection (native table kernel or per request) = the merged top-k of those scores.
    from twin_study.models.topk import merged_topk

    idx, ok = v2.gsu.select(v2.gsu_input(batch), K)
    ridx, rok = merged_topk(s_v2, valid, K)
    for b in range(len(idx)):
        got, ref = set(idx[b][ok[b]].tolist()), set(ridx[b][rok[b]].tolist())
        assert len(got ^ ref) <= 2, b  # equal up to an exact tie at the boundary


def test_fast_and_reference_paths_agree_with_sizes(ds):
    torch.manual_seed(1)
    fast = build_model(cfg(cap=20), ds)
    ref = build_model(cfg(cap=20, impl="reference"), ds)
    ref.load_state_dict(fast.state_dict())
    batch = builder_for(fast, ds).build(ds.split_indices("train")[:40])
    with torch.no_grad():  # the ESU over the same finalists: + ln n on both paths
        idx, valid = fast.gsu.select(fast.gsu_input(batch), K)
        q = fast.emb.inherent(batch.target)
        out_f, w_f = fast._attend(fast.esu, fast.esu.query(q), batch, idx, valid)
        out_r, w_r = ref._attend(ref.esu, ref.esu.query(q), batch, idx, valid)
        torch.testing.assert_close(out_f, out_r, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(w_f, w_r, rtol=1e-4, atol=1e-5)
        plain = dataclasses.replace(batch, hist_size=None)
        out_p, _ = fast._attend(fast.esu, fast.esu.query(q), plain, idx, valid)
        assert not torch.allclose(out_p, out_f)  # the sizes do change the attention
    # Without the size term (the ablation) the ESU ignores the sizes.
    ablation = build_model(cfg(cap=20, size_bias=False), ds)
    assert not ablation.esu.size_bias and fast.esu.size_bias


def test_clusters_are_rebuilt_on_schedule_and_after_training(ds):
    torch.manual_seed(2)
    model = build_model(cfg(cap=20, recluster_every=2), ds)
    builder = builder_for(model, ds)
    first = model.gsu.clusters(ds)
    assert model.gsu.clusters(ds) is first  # nothing changed: the same clusters
    opts = make_optimizers(model, TrainConfig())
    batches = builder.batches(ds.split_indices("train"), 32, shuffle=True)
    model.train()
    train_step(model, next(batches), opts)
    assert model.gsu.clusters(ds) is first  # one step: not due yet
    train_step(model, next(batches), opts)
    second = model.gsu.clusters(ds)
    assert second is not first  # due after recluster_every steps
    model.eval()
    assert model.gsu.clusters(ds) is second  # evaluation on the parameters it was built from


def test_twin_v2_trains_through_run_on_a_life_cycle_world(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path))
    params = {**lifecycle_params("lifecycle", "quick"), "n_users": 12}
    world = load_dataset("synthetic", **params)
    model = ModelConfig(long_module="twin_v2", long_len=600, k=K, id_dim=16, mlp=(16,),
                        options={"block": 200, "recluster_every": 20})  # fmt: skip
    train = TrainConfig(epochs=1, batch_size=64, max_train_samples=256, progress=False)
    res = run(world, model, train)
    assert np.isfinite(res.metrics["test"]["auc"])
    comp = res.model.gsu.clusters(world)
    assert 0 < comp.ratio < 0.5  # the life cycle is compressed
    assert registry.label("twin_v2") == "TWIN-V2" and "twin_v2" in registry.two_stage()


def test_bad_options_are_named(ds):
    with pytest.raises(ValueError, match=r"block \(400\) must be below long_len \(400\)"):
        build_model(cfg(block=400), ds)
    with pytest.raises(ValueError, match="engagement_feature 'watch' is not a cross feature"):
        build_model(cfg(engagement_feature="watch"), ds)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['gamma'\]"):
        cfg(gamma=3).validate()
    with pytest.raises(ValueError, match="cap"):
        build_model(cfg(cap=0), ds)


def test_a_life_cycle_batch_keeps_its_clusters_before_the_request(ds):
    """Leak-free through the model's own builder: every behaviour behind a slot of a sample's
    row lies before its history's end."""
    model = build_model(cfg(cap=20), ds)
    builder = builder_for(model, ds)
    assert isinstance(builder, LifecycleSampleBuilder)
    idx = ds.split_indices("test")[:30]
    pos, cluster = builder.slot_sources(idx)
    comp = builder.compressed
    _, _, rows = builder.request_rows(idx)
    end = ds.samples.hist_end[rows]
    for r in range(len(rows)):
        for c in cluster[r][cluster[r] >= 0]:
            assert comp.members(int(c)).max() < end[r]
    assert dataclasses.is_dataclass(registry.options_of(model.cfg))


def test_the_bench_times_one_users_clustering():
    """``twin-study bench --clustering N`` (issue 26): one user's N behaviours, one thread."""
    from twin_study.analysis.throughput import clustering_probe

    got = clustering_probe(3_000, d=8)
    assert got["behaviours"] == 3_000 and got["seconds"] > 0
    assert 0 < got["ratio"] < 1 and 1 < got["mean_size"] <= 20  # TwinV2Options' cap
    with pytest.raises(ValueError, match="n_behaviours >= 1"):
        clustering_probe(0)
