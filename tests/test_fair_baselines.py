"""Issue 10, fair baselines: SIM Soft / Cluster get the pre-trained model's K_h of every item,
ETA / SDIM hash K_h (the features TWIN's keys see), each with the old choice as an option."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from twin_study.data import SampleBuilder, SyntheticConfig, generate
from twin_study.models import ModelConfig, build_model, registry
from twin_study.models.lifelong.sim_cluster import cluster_codes
from twin_study.models.pretrained import kmeans_codes, pretrained_vectors
from twin_study.training import TrainConfig, run
from twin_study.training.experiment import prerequisites

L = 200


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=30, n_items=1500, n_authors=200, history_len=250,
                                    history_min=30, requests_per_user=3, seed=4))  # fmt: skip


def cfg(module: str, **kw) -> ModelConfig:
    return ModelConfig(long_module=module, long_len=L, k=20, n_clusters=10, gsu_chunk=128, **kw)


def all_inherent(model) -> torch.Tensor:
    with torch.no_grad():
        return model.emb.inherent(torch.arange(model.emb.n_items + 1))


def test_sim_vectors_are_the_pretrained_models_inherent_features(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path))
    train = TrainConfig(epochs=1, batch_size=128, progress=False)
    soft = run(ds, cfg("sim_soft"), train)
    (din_cfg, din_train), = prerequisites(cfg("sim_soft"), train)  # fmt: skip
    pre = run(ds, din_cfg, din_train)
    assert pre.cached and pre.model.cfg.long_module == "din"
    torch.testing.assert_close(soft.model.gsu.table[:, 0], all_inherent(pre.model))
    assert soft.model.gsu.table.shape[-1] == pre.model.emb.H
    # The old choice is one option away and reuses the same pre-training run.
    old_cfg = cfg("sim_soft", sim_vectors="item_id")
    assert prerequisites(old_cfg, train) == [(din_cfg, din_train)]
    old = run(ds, old_cfg, train)
    torch.testing.assert_close(old.model.gsu.table[:, 0], pre.model.emb.item_emb["item"].weight)
    # SIM Cluster clusters the same K_h table.
    cluster = run(ds, cfg("sim_cluster"), train)
    want = kmeans_codes(pretrained_vectors(pre.model), 10, cluster.model.cfg.hash_seed)
    assert np.array_equal(cluster.model.gsu.codes.numpy(), want)


def test_sim_cluster_takes_its_codes_and_runs_no_kmeans(ds):
    """The model gets SIM Cluster's k-means codes (``cluster_codes``, once per run in its
    prerequisite's ``provide``); built from vectors alone it says what it needs instead of
    clustering them."""
    vectors = np.random.default_rng(0).normal(size=(ds.items.n_items + 1, 8))
    extras = cluster_codes(cfg("sim_cluster"), vectors)
    assert list(extras) == ["cluster_codes"]
    want = kmeans_codes(vectors, 10, cfg("sim_cluster").hash_seed)
    assert np.array_equal(extras["cluster_codes"], want)
    model = build_model(cfg("sim_cluster"), ds, **extras)
    assert np.array_equal(model.gsu.codes.numpy(), want)
    with pytest.raises(ValueError, match=r"sim_cluster needs .*cluster_codes=.*kmeans_codes"):
        build_model(cfg("sim_cluster"), ds, item_vectors=vectors)
    din = build_model(cfg("din"), ds)
    soft = registry.get("sim_soft").prerequisite.provide(cfg("sim_soft"), din)
    assert list(soft) == ["item_vectors"]
    np.testing.assert_array_equal(soft["item_vectors"], pretrained_vectors(din))


def change_one_author(model) -> np.ndarray:
    """Redraw author 1's embedding; returns the ids of that author's items."""
    with torch.no_grad():
        model.emb.item_emb["author"].weight[1] = -3 * model.emb.item_emb["author"].weight[1]
    return np.flatnonzero(model.emb.code_author.numpy() == 1)


@pytest.mark.parametrize("module", ["eta", "sdim"])
def test_hashes_see_the_author_embedding(ds, module):
    table = {"eta": lambda m: m.gsu.signatures(), "sdim": lambda m: m.gsu.buckets()}[module]
    torch.manual_seed(0)
    model = build_model(cfg(module), ds)
    assert model.gsu.proj.shape[0] == model.emb.H  # projects K_h, not the id embedding
    before = table(model).clone()
    items = change_one_author(model)
    after = table(model)
    assert not torch.equal(before[items], after[items])
    others = np.setdiff1d(np.arange(1, ds.items.n_items + 1), items)
    assert torch.equal(before[others], after[others])
    # hash_input="item_id" (the old choice) ignores the author.
    torch.manual_seed(0)
    old = build_model(cfg(module, hash_input="item_id"), ds)
    assert old.gsu.proj.shape[0] == old.emb.item_emb["item"].embedding_dim
    before = table(old).clone()
    change_one_author(old)
    assert torch.equal(before, table(old))


@pytest.mark.parametrize("module", ["eta", "sdim", "sdim_linear"])
def test_hash_inputs_change_the_model_but_stay_deterministic(ds, module):
    batch = SampleBuilder(ds, L).build(ds.split_indices("train")[:30])
    outs = []
    for source in ("inherent", "inherent", "item_id"):
        torch.manual_seed(0)
        m = build_model(cfg(module, hash_input=source), ds).eval()
        with torch.no_grad():
            outs.append(m(batch))
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])


@pytest.mark.parametrize("field", ["sim_vectors", "hash_input"])
def test_unknown_vector_source_is_a_clear_error(field):
    bad = dataclasses.replace(ModelConfig(), **{field: "author"})
    with pytest.raises(ValueError, match=f"unknown {field} 'author'"):
        bad.validate()
