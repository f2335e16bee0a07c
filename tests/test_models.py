"""Model tests, one or more per bug class of ../shared/CONVENTIONS.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from twin_study.data import SampleBuilder, SyntheticConfig, generate
from twin_study.models import ModelConfig, build_model, merged_topk, registry
from twin_study.models.gsu import CpGSU, live_scores
from twin_study.training import TrainConfig, run
from twin_study.training.train import predict

L = 300


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=40, n_items=2000, n_authors=300, history_len=400,
                                    history_min=30, requests_per_user=4, seed=3))  # fmt: skip


@pytest.fixture(scope="module")
def batch(ds):
    return SampleBuilder(ds, L).build(ds.split_indices("train")[:40])


def twin(ds, **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(long_module=kw.pop("long_module", "twin"), long_len=L, k=20,
                                   **kw), ds)  # fmt: skip


def reference_merge(scores: np.ndarray, valid: np.ndarray, k: int) -> list[int]:
    """Plain-Python walk over the heads' ranked lists (paper §4.3)."""
    s = np.where(valid[None, :], scores, -np.inf)
    ranked = [list(np.argsort(-row, kind="stable")) for row in s]
    out: list[int] = []
    for r in range(s.shape[1]):
        for h in range(len(ranked)):
            i = ranked[h][r]
            if i not in out:
                out.append(i)
            if len(out) == k:
                return out
    return out


def test_merged_topk_matches_reference_walk_and_is_unique():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(8, 4, 50, generator=g)
    valid = torch.ones(8, 50, dtype=torch.bool)
    idx, v = merged_topk(scores, valid, 10)
    assert idx.shape == (8, 10) and v.all()
    for b in range(8):
        assert len(set(idx[b].tolist())) == 10
        assert idx[b].tolist() == reference_merge(scores[b].numpy(), valid[b].numpy(), 10)


def test_merged_topk_when_heads_agree_still_returns_k_unique():
    scores = torch.arange(30.0).expand(2, 4, 30).clone()  # all heads rank identically
    idx, _ = merged_topk(scores, torch.ones(2, 30, dtype=torch.bool), 7)
    assert sorted(idx[0].tolist()) == list(range(23, 30))


def test_padding_never_retrieved_while_enough_valid():
    scores = torch.zeros(3, 4, 20)
    scores[:, :, 10:] = 100.0  # padding would win if it were not masked
    valid = torch.zeros(3, 20, dtype=torch.bool)
    valid[:, :10] = True
    idx, v = merged_topk(scores, valid, 10)
    assert v.all() and (idx < 10).all()
    # With fewer valid behaviours than k, all valid ones are kept and the rest marked invalid.
    idx, v = merged_topk(scores, valid, 15)
    assert v.sum(1).tolist() == [10, 10, 10]
    assert set(idx[0][v[0]].tolist()) == set(range(10))


def test_k_greater_than_L_is_a_clear_error():
    with pytest.raises(ValueError, match="k = 200 > long_len = 100"):
        ModelConfig(long_len=100, k=200).validate()


def test_batch_windows_and_masks_align(ds, batch):
    log, s = ds.log, ds.samples
    for r in range(batch.hist_item.shape[0]):
        b = int((batch.req == r).nonzero()[0])
        i = int(batch.sample_idx[b])
        start, end = log.user_ptr[s.user[i]], s.hist_end[i]
        n = min(end - start, L)
        assert int(batch.hist_len[r]) == n
        # slot 0 is the last behaviour before the request, slot n-1 the n-th most recent
        expect = log.item[end - n : end][::-1]
        assert batch.hist_item[r, :n].tolist() == expect.tolist()
        assert (batch.hist_item[r, n:] == 0).all() and (batch.hist_pos[r, n:] == -1).all()
        assert (log.time[batch.hist_pos[r, :n].numpy()] <= s.time[i]).all()  # no future
        assert batch.mask(50)[r].sum() == min(n, 50)


def test_cross_bias_changes_ranking_per_behaviour_and_trains(ds, batch):
    model = twin(ds, beta_init=1.0)  # the default 0 starts the bias silent (next test)
    att, emb = model.esu, model.emb
    # Same item, different cross codes -> different scores (a per-user constant could not).
    codes = torch.tensor([[[9, 1, 0]], [[0, 0, 15]]])  # (2, 1, J)
    bias = att.cross_bias(emb.cross(codes))
    assert not torch.allclose(bias[0], bias[1])
    # The table path used by the GSU equals the embedding path used by the ESU.
    table = att.lookup_bias(att.cross_bias_tables(emb), codes)
    torch.testing.assert_close(table, bias)
    # Gradients reach W^c and beta through the ESU.
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.label)
    loss.backward()
    assert att.W_c.grad is not None and att.W_c.grad.abs().sum() > 0
    assert att.beta.grad is not None and att.beta.grad.abs().sum() > 0


def test_split_projection_equals_block_diagonal_full_projection(ds):
    model = twin(ds)
    att, emb = model.esu, model.emb
    k_c = emb.cross(torch.tensor([[3, 1, 7], [5, 0, 2]]))  # (2, J, 8)
    J = att.J
    for a in range(att.heads):
        W = torch.block_diag(*[att.W_c[a, j][:, None] for j in range(J)])  # (J*8, J)
        full = (k_c.flatten(-2) @ W) @ att.beta[a]
        torch.testing.assert_close(att.cross_bias(k_c)[:, a], full)


def test_silent_bias_at_init_still_learns(ds, batch):
    """With beta = 0 at init the bias is zero and W^c's first gradient is zero (it is scaled
    by beta); beta's is not, so after one step both train."""
    model = twin(ds)
    assert model.esu.beta.abs().sum() == 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(2):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(batch), batch.label).backward()
        assert model.esu.beta.grad.abs().sum() > 0
        assert (model.esu.W_c.grad.abs().sum() > 0) == (step == 1)
        opt.step()


def test_every_twin_parameter_receives_a_gradient(ds, batch):
    model = twin(ds, beta_init=1.0)
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.label)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} received no gradient"
        if "emb.user_emb" in name or "item_emb" in name or "cross_emb" in name:
            continue  # sparse rows: only the looked-up ones are non-zero
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    names = {n for n, _ in model.named_parameters()}
    for n in ("esu.W_q.weight", "esu.W_h.weight", "esu.W_c", "esu.beta", "esu.W_v.weight"):
        assert n in names  # per-head projections are registered parameters, not a Python list


def test_no_uninitialised_parameters(ds):
    model = twin(ds)
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
        assert p.abs().max() < 100, name


def test_fresh_cache_equals_live_scores(ds, batch):
    model = twin(ds).eval()
    model.prepare_eval()
    x = model.gsu_input(batch)
    cached, _ = model.gsu.scores(x)
    torch.testing.assert_close(cached, live_scores(model.emb, model.esu, x), rtol=1e-5, atol=1e-5)


def test_stale_cache_differs_after_training_steps(ds, batch):
    model = twin(ds, cache_refresh=1000)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        model.cache_step()
        loss = F.binary_cross_entropy_with_logits(model(batch), batch.label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert isinstance(model.gsu, CpGSU) and model.gsu.cache.age == 3
    x = model.gsu_input(batch)
    with torch.no_grad():
        assert not torch.allclose(model.gsu.scores(x)[0], live_scores(model.emb, model.esu, x))


def test_values_are_projected_for_k_finalists_only(ds, batch, monkeypatch):
    model = twin(ds, impl="reference")
    seen = []
    model.esu.W_v.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    model(batch)
    assert seen == [(len(batch.target), 20, model.emb.H + model.emb.C)]
    # The fast path pools K before projecting it; what it reads is still the finalists only:
    # per request, at most (its candidates) x k rows -- never the L behaviours.
    model = twin(ds)
    rows = []
    for name in ("attend", "forward_grouped"):
        method = getattr(type(model.esu), name)

        def spy(att, *args, _method=method):
            if att is model.esu:
                rows.append(args[-3].shape[1])  # K: (samples or requests, rows, H + C)
            return _method(att, *args)

        monkeypatch.setattr(type(model.esu), name, spy)
    model(batch)
    per_request = int(torch.bincount(batch.req).max())
    assert len(rows) == 1 and 20 <= rows[0] <= 20 * per_request < L


@pytest.mark.parametrize("module", ["eta", "sdim"])
def test_hash_gsus_are_deterministic(ds, batch, module):
    a, b = twin(ds, long_module=module), twin(ds, long_module=module)
    torch.testing.assert_close(a.gsu.proj, b.gsu.proj)  # fixed projections, not redrawn
    a.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(batch), a(batch))


def test_empty_history_gives_finite_output(ds):
    builder = SampleBuilder(ds, L)
    batch = builder.build(ds.split_indices("train")[:5])
    batch.hist_len[:] = 0  # as if the users had no behaviour before the request
    batch.hist_item[:] = 0
    for module in ("twin", "din", "avg_pool", "sim_hard"):
        out = twin(ds, long_module=module)(batch)
        assert torch.isfinite(out).all(), module


def test_every_module_trains_through_the_entry_point(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path))
    cfg = TrainConfig(epochs=1, batch_size=128, progress=False)
    for module in registry.names():
        r = run(ds, ModelConfig(long_module=module, long_len=L, k=20, n_clusters=10,
                                gsu_chunk=128), cfg)  # fmt: skip
        auc = r.metrics["test"]["auc"]
        assert 0.0 < auc < 1.0 and auc != 0.5, (module, auc)  # exactly 0.5: a constant output
        assert np.isfinite(r.metrics["test"]["logloss"]), module
        # A collapsed model predicts one probability for everything; these must vary.
        prob = predict(r.model, ds, ds.split_indices("test")[:64], cfg)
        assert np.ptp(prob) > 1e-4, (module, np.ptp(prob))
    # The results cache: a repeated run is loaded, not retrained, and predicts the same.
    again = run(ds, ModelConfig(long_module="twin", long_len=L, k=20, n_clusters=10,
                                gsu_chunk=128), cfg)  # fmt: skip
    assert again.cached


def test_no_paracon_gsu_is_frozen_and_separate(ds, tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path))
    r = run(ds, ModelConfig(long_module="twin_no_paracon", long_len=L, k=20),
            TrainConfig(epochs=1, batch_size=128, progress=False))  # fmt: skip
    model = r.model
    assert all(not p.requires_grad for p in model.gsu_source.parameters())
    assert not torch.equal(model.gsu_source.esu.W_h.weight, model.esu.W_h.weight)
    # The GSU reads the auxiliary model's parameters: its scores are the auxiliary TWIN's own
    # alpha (fresh cache), not this model's.
    batch = SampleBuilder(ds, L).build(ds.split_indices("test")[:20])
    x = model.gsu_input(batch)
    aux, own = model.gsu_source, model
    with torch.no_grad():
        model.refresh_cache()
        scores, _ = model.gsu.scores(x)
        torch.testing.assert_close(scores, live_scores(aux.emb, aux.esu, x), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(scores, live_scores(own.emb, own.esu, x), atol=1e-2)


def test_learning_curve_subset_holds_whole_requests(ds):
    """The curve's validation subset: whole requests (a GSU pass serves all of a request's
    candidates), seeded, and the smallest prefix of the shuffled requests reaching n samples."""
    from twin_study.training.train import request_subset

    valid = ds.split_indices("valid")
    req = ds.samples.request
    n = len(valid) // 3
    sub = request_subset(ds, valid, n, seed=1)
    assert np.all(np.diff(sub) > 0) and np.isin(sub, valid).all()
    kept = np.unique(req[sub])
    assert np.array_equal(np.sort(sub), np.sort(valid[np.isin(req[valid], kept)]))  # whole
    assert len(sub) >= n and len(kept) < len(np.unique(req[valid]))
    assert np.array_equal(sub, request_subset(ds, valid, n, seed=1))  # seeded
    assert not np.array_equal(sub, request_subset(ds, valid, n, seed=2))
    # Minimal: it overshoots n by less than one request ...
    largest = max(np.sum(req[valid] == r) for r in kept)
    assert len(sub) < n + largest
    # ... and asking for everything returns everything.
    assert np.array_equal(request_subset(ds, valid, len(valid), seed=0), np.sort(valid))
