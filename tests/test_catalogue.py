"""Training cost that follows the batch, not the catalogue (issue 27).

Each change computes the same thing another way, so each test builds both ways from the same
parameters and compares them: row-sparse AdaGrad against the dense one, TWIN's query-side
scoring against the item cache, ETA / SDIM / SDIM-linear tables of the batch's items
against tables of every item. The world is a catalogue much larger than the batch reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from twin_study.data import SampleBuilder, SyntheticConfig, generate
from twin_study.models import ModelConfig, build_model, merged_topk
from twin_study.models import gsu as gsu_mod
from twin_study.models.gsu import compact_items, key_side_costs
from twin_study.models.lifelong import sdim_linear as sdim_linear_mod
from twin_study.models.unique import SORT_BELOW, unique_ids
from twin_study.training.train import TrainConfig, make_optimizers, train_step

L, K = 300, 30


@pytest.fixture(scope="module")
def ds():
    # 40,000 items against ~20 requests x 300 slots: the batch reads a few percent of them.
    return generate(SyntheticConfig(n_users=20, n_items=40_000, n_authors=4_000, history_len=L,
                                    history_min=20, requests_per_user=4, seed=11))  # fmt: skip


@pytest.fixture(scope="module")
def batches(ds):
    b = SampleBuilder(ds, L)
    idx = ds.split_indices("train")
    return [b.build(idx[i : i + 60]) for i in range(0, 180, 60)]


def model(ds, module: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(ModelConfig(long_module=module, long_len=L, k=K, **kw), ds)


# --------------------------------------------------------------- row-sparse AdaGrad


@pytest.mark.parametrize("module", ["twin", "avg_pool", "sdim_linear", "sim_hard"])
def test_row_sparse_gradients_equal_dense_gradients(ds, batches, module):
    """The same parameters and batch: the tables' row-sparse gradients, summed, equal the
    dense ones (float rounding: duplicate rows are summed in another order)."""
    m = model(ds, module).train()
    grads = []
    for sparse in (True, False):
        m.emb.sparse_grads = sparse
        m.zero_grad(set_to_none=True)
        m.cache_step()
        F.binary_cross_entropy_with_logits(m(batches[0]), batches[0].label).backward()
        assert m.emb.item_emb["item"].weight.grad.is_sparse == sparse
        grads.append({n: p.grad.to_dense() for n, p in m.named_parameters()
                      if p.grad is not None})  # fmt: skip
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        torch.testing.assert_close(g, grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_sparse_adagrad_step_equals_the_dense_step():
    """Given the same gradients, RowSparseAdagrad on row-sparse gradients leaves the same table
    and accumulator as torch's AdaGrad on dense ones, step after step (no weight decay); on
    dense gradients it is torch's update bit for bit."""
    from twin_study.training.optim import RowSparseAdagrad

    g = torch.Generator().manual_seed(0)
    init = torch.randn(1000, 8, generator=g)
    tables = [torch.nn.Parameter(init.clone()) for _ in range(3)]
    opts = [RowSparseAdagrad([tables[0]], lr=0.2), torch.optim.Adagrad([tables[1]], lr=0.2),
            RowSparseAdagrad([tables[2]], lr=0.2)]  # fmt: skip
    for _ in range(5):
        rows = torch.randint(0, 1000, (300,), generator=g)  # duplicates included
        vals = torch.randn(300, 8, generator=g)
        sparse = torch.sparse_coo_tensor(rows[None], vals, (1000, 8))
        dense = sparse.to_dense()
        tables[0].grad, tables[1].grad, tables[2].grad = sparse, dense, dense.clone()
        for o in opts:
            o.step()
    torch.testing.assert_close(tables[0], tables[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(opts[0].state[tables[0]]["sum"], opts[1].state[tables[1]]["sum"])
    assert torch.equal(tables[2], tables[1])  # dense gradients: torch's update exactly
    with pytest.raises(ValueError, match="lr > 0"):
        RowSparseAdagrad([tables[0]], lr=0.0)


def test_training_with_sparse_gradients_follows_the_dense_run(ds, batches):
    """End to end, a few AdaGrad + Adam steps: the same losses either way. (Parameters are
    compared above per step; across steps, AdaGrad's first update of a row is lr * sign(g),
    so a row whose gradient is ~1e-10 either way can move by a rounding-sized amount.)"""
    losses = []
    for sparse in (True, False):
        m = model(ds, "twin").train()
        opts = make_optimizers(m, TrainConfig())
        m.emb.sparse_grads = sparse
        losses.append([train_step(m, b, opts) for b in batches])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


def test_make_optimizers_turns_sparse_gradients_on_only_under_adagrad(ds):
    m = model(ds, "twin")
    make_optimizers(m, TrainConfig(optimizer="adagrad+adam"))
    assert m.emb.sparse_grads
    make_optimizers(m, TrainConfig(optimizer="adam"))  # Adam decays every row: dense
    assert not m.emb.sparse_grads


def test_an_untouched_row_keeps_its_value_and_accumulator(ds, batches):
    m = model(ds, "twin").train()
    opts = make_optimizers(m, TrainConfig())
    w = m.emb.item_emb["item"].weight
    read = torch.unique(torch.cat([batches[0].hist_item.flatten(), batches[0].target]))
    untouched = torch.ones(len(w), dtype=torch.bool)
    untouched[read] = False
    before = w.detach().clone()
    train_step(m, batches[0], opts)
    assert torch.equal(w.detach()[untouched], before[untouched])
    assert not torch.equal(w.detach()[read], before[read])
    state = opts[0].state[w]["sum"]
    assert torch.count_nonzero(state[untouched]) == 0


# --------------------------------------------------------- TWIN's query-side scoring


def full_scores(rows, x) -> torch.Tensor:
    """(B, heads, L) scores assembled from a fast-path ``rows`` function, -inf past n."""
    out = torch.full((len(x.target), 4, x.length), float("-inf"))
    for r, n in enumerate(x.n_valid().tolist()):
        samples = torch.nonzero(x.req == r).flatten()
        if n and len(samples):
            out[samples, :, :n] = rows(r, n, samples).transpose(0, 1)
    return out


def side_rows(m, x, side: str):
    """The fast path's per-request scoring on one key side (slots are the same on all)."""
    if side == "query":
        return m.gsu.query_rows(x)
    if side == "batch":
        keys, cx = m.gsu.batch_keys(x)
        assert keys.shape[0] < m.emb.n_items, "the batch cache must be smaller than the catalogue"
        qh = m.esu.query(m.emb.inherent(x.target))  # from the item ids, not cx's rows
        return m.gsu.score_rows(cx, keys, qh)
    return m.gsu.score_rows(x)


@pytest.mark.parametrize("other", ["query", "batch"])
@pytest.mark.parametrize("module", ["twin", "twin_no_bias"])
def test_query_side_selects_what_the_item_cache_selects(ds, batches, module, other):
    """Both paths select exactly the merged top-k of their own scores, and their scores
    agree to float rounding: any difference between the two selections is a near-tie that
    rounding broke the other way, never a different ranking."""
    m = model(ds, module)
    agree = total = 0
    with torch.no_grad():
        for b in batches:
            x = m.gsu_input(b)
            picks, scores = {}, {}
            for side in ("cache", other):
                m.gsu.key_side = side
                if side != "cache":
                    m.gsu.cache.age = -1  # forget the cache: this side must not need it
                picks[side] = m.gsu.select(x, K)
                assert m.gsu.last_side == side
                scores[side] = full_scores(side_rows(m, x, side), x)
                ref_idx, ref_ok = merged_topk(scores[side], x.sample_valid(), K)
                idx, ok = picks[side]
                assert torch.equal(ok, ref_ok), side
                for i in range(len(idx)):  # exact, up to exactly tied scores
                    assert same_selection(scores[side][i], idx[i][ok[i]], ref_idx[i][ref_ok[i]])
            fin = torch.isfinite(scores["cache"])
            torch.testing.assert_close(scores[other][fin], scores["cache"][fin],
                                       rtol=1e-5, atol=1e-5)  # fmt: skip
            for (iq, okq), (ic, okc) in [(picks[other], picks["cache"])]:
                agree += sum(set(iq[i][okq[i]].tolist()) == set(ic[i][okc[i]].tolist())
                             for i in range(len(iq)))  # fmt: skip
            total += len(x.target)
    print(f"{agree} of {total} samples select the same set of behaviours on both paths")


def same_selection(scores: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> bool:
    """Slot sets a and b hold behaviours with the same score vectors (exact ties swap)."""
    sa = sorted(map(tuple, scores[:, a].T.tolist()))
    sb = sorted(map(tuple, scores[:, b].T.tolist()))
    return sa == sb


def test_key_side_costs_follow_the_catalogue_or_the_batch():
    small = key_side_costs(1_000, 144, 4, 16, pairs=10**6, n_queries=256, n_slots=10**5)
    big = key_side_costs(10**7, 144, 4, 16, pairs=10**6, n_queries=256, n_slots=10**5)
    assert big["rebuild"] // (10**7 + 1) == small["rebuild"] // 1_001  # grows with the catalogue
    assert big["batch"] < big["rebuild"] and small["rebuild"] <= small["batch"]
    assert big["query"] == small["query"]  # the query side never sees the catalogue
    assert big["batch"] == (10**5) * 144 * 64 + 10**6 * 64  # the batch's slots, not V


def test_auto_chooses_by_cost_and_rebuilds_only_when_that_pays(ds, batches):
    m = model(ds, "twin").train()
    opts = make_optimizers(m, TrainConfig())
    x = m.gsu_input(batches[0])
    cost, cheaper = m.gsu.skip_costs(x)
    assert cost[cheaper] < cost["rebuild"], "this world must favour skipping the rebuild"
    train_step(m, batches[0], opts)
    assert m.gsu.last_side == cheaper and m.gsu.cache.age < 0, "a 40,000-item rebuild ran"
    # Evaluation keeps the parameters still: the work of skipping adds up (ski rental) until
    # a rebuild is cheaper, and from then on the fresh cache is read for free.
    m.eval()
    m.prepare_eval()
    sides = []
    with torch.no_grad():
        for _ in range(200):
            m.gsu.select(x, K)
            sides.append(m.gsu.last_side)
    n_skip = -(-cost["rebuild"] // cost[cheaper]) - 1  # calls before a rebuild is cheaper
    assert 1 <= n_skip < len(sides) - 1
    assert sides == [cheaper] * n_skip + ["cache"] * (len(sides) - n_skip)
    # A parameter update makes the cache stale again.
    m.train()
    train_step(m, batches[1], opts)
    assert not m.gsu.cache.is_fresh(*m.gsu._src)


def test_a_small_catalogue_still_reads_the_cache(ds, batches):
    small = generate(SyntheticConfig(n_users=20, n_items=500, n_authors=50, history_len=L,
                                     history_min=20, seed=2))  # fmt: skip
    m = model(small, "twin").train()
    opts = make_optimizers(m, TrainConfig())
    b = SampleBuilder(small, L).build(small.split_indices("train")[:60])
    train_step(m, b, opts)
    assert m.gsu.last_side == "cache"


def test_a_stale_cache_keeps_its_meaning(ds, batches):
    """cache_refresh > 0 models the serving cache's lag: it is read, never bypassed."""
    m = model(ds, "twin", cache_refresh=2).train()
    opts = make_optimizers(m, TrainConfig())
    keys = []
    for b in batches:
        train_step(m, b, opts)
        assert m.gsu.last_side == "cache"
        keys.append(m.gsu.cache.keys.clone())
    assert torch.equal(keys[0], keys[1]) and not torch.equal(keys[1], keys[2])


def test_a_frozen_retriever_builds_its_cache_once(ds, batches):
    torch.manual_seed(1)
    src = build_model(ModelConfig(long_module="twin", long_len=L, k=K), ds)
    torch.manual_seed(0)
    m = build_model(ModelConfig(long_module="twin_no_paracon", long_len=L, k=K), ds,
                    gsu_source=src)  # fmt: skip
    m.gsu.key_side = "cache"
    opts = make_optimizers(m.train(), TrainConfig())
    train_step(m, batches[0], opts)
    built = m.gsu.cache.built_from
    train_step(m, batches[1], opts)
    assert m.gsu.cache.built_from == built and m.gsu.cache.is_fresh(*m.gsu._src)


# ----------------------------------------------- distinct ids without a sort


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_unique_ids_is_torch_unique_exactly(dtype):
    g = torch.Generator().manual_seed(0)
    for n, shape in ((50, (SORT_BELOW + 7,)), (10**5, (64, 300)), (10**6, (3, 5000)),
                     (7, (2,)), (10**5, (64, 300))):  # fmt: skip
        pool = torch.randint(0, n, (max(n // 10, 1),), generator=g)  # a batch reads a few items
        ids = pool[torch.randint(0, len(pool), shape, generator=g)].to(dtype)
        uniq, inv = unique_ids(ids, n)
        ref_u, ref_inv = torch.unique(ids, sorted=True, return_inverse=True)
        assert torch.equal(uniq, ref_u) and uniq.dtype == dtype
        assert torch.equal(inv, ref_inv) and inv.shape == ids.shape
        assert torch.equal(uniq[inv], ids)


def test_unique_ids_names_bad_ids():
    ids = torch.arange(SORT_BELOW + 1)
    with pytest.raises(IndexError, match=r"ids must lie in \[0, 100\), got \[0, 4096\]"):
        unique_ids(ids, 100)
    with pytest.raises(TypeError, match="integer ids"):
        unique_ids(ids.float(), SORT_BELOW + 1)
    uniq, inv = unique_ids(ids, SORT_BELOW + 1)  # the failed call left the marks as they were
    assert torch.equal(uniq, ids) and torch.equal(inv, ids)


# ----------------------------------------------- ETA / SDIM tables of the batch's items


@pytest.fixture
def no_compaction(monkeypatch):
    def off(x, n_items):
        return None, x

    def use():
        monkeypatch.setattr(gsu_mod, "compact_items", off)
        monkeypatch.setattr(sdim_linear_mod, "compact_items", off)

    return use


def test_compact_items_renumbers_every_slot(ds, batches):
    m = model(ds, "eta")
    x = m.gsu_input(batches[0])
    items, cx = compact_items(x, ds.items.n_items)
    assert items is not None and len(items) < ds.items.n_items
    assert torch.equal(items[cx.hist_item], x.hist_item)
    assert torch.equal(items[cx.target], x.target)
    small = compact_items(x, 100)
    assert small[0] is None and small[1] is x


@pytest.mark.parametrize("module", ["eta", "sdim"])
def test_hashed_gsus_select_the_same_with_a_table_of_the_batch(ds, batches, module,
                                                               no_compaction):  # fmt: skip
    """Signatures are signs of projections, so a projection within rounding of zero may flip
    between the two products on another CPU; samples reading such an item are left out of the
    exact comparison (and must be few)."""
    m = model(ds, module)
    got = [m.gsu.select(m.gsu_input(b), K) for b in batches]
    near_zero = (m.gsu.projected().abs() < 1e-4).any(1)  # (n_items + 1,) may flip
    no_compaction()
    compared = 0
    for b, (idx, ok) in zip(batches, got, strict=True):
        ref_idx, ref_ok = m.gsu.select(m.gsu_input(b), K)
        safe = ~(near_zero[b.hist_item].any(1)[b.req] | near_zero[b.target])  # (B,)
        assert torch.equal(ok[safe], ref_ok[safe])
        assert torch.equal(idx[safe][ok[safe]], ref_idx[safe][ref_ok[safe]])
        compared += int(safe.sum())
    assert compared >= 0.5 * sum(len(b.target) for b in batches)


def test_sdim_linear_output_and_gradients_with_a_table_of_the_batch(ds, batches, no_compaction):
    outs = []
    for compact in (True, False):
        if not compact:
            no_compaction()
        m = model(ds, "sdim_linear").train()
        loss = F.binary_cross_entropy_with_logits(m(batches[0]), batches[0].label)
        loss.backward()
        grads = {n: p.grad.to_dense() for n, p in m.named_parameters() if p.grad is not None}
        outs.append((loss, grads))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    assert outs[0][1].keys() == outs[1][1].keys()
    for name, g in outs[0][1].items():
        torch.testing.assert_close(g, outs[1][1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_project_items_of_a_subset_equals_rows_of_the_full_projection(ds):
    m = model(ds, "twin")
    w = torch.randn(24, m.emb.H)
    items = torch.tensor([0, 5, 39_999, 17, 5])
    full = m.emb.project_items(w)
    torch.testing.assert_close(m.emb.project_items(w, items=items), full[items],
                               rtol=1e-5, atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("cap", [None, 100])
def test_inherent_mean_reads_only_the_behaviours_on_a_large_catalogue(ds, batches, cap,
                                                                      monkeypatch):  # fmt: skip
    """Avg-Pooling's mean on a catalogue much larger than the histories, with row-sparse
    gradients: the counts of the batch's own items times their K_h (default), or one
    embedding_bag over the same distinct rows (a count matrix over the memory cap); both equal
    the mean of the gathered rows."""
    from twin_study.models import embedding

    if cap is not None:
        monkeypatch.setattr(embedding, "DENSE_COUNTS_MAX", cap)
    m = model(ds, "avg_pool")
    m.emb.sparse_grads = True
    x = m.gsu_input(batches[0])
    n = x.n_valid()
    mean = m.emb.inherent_mean(x.hist_item, n)
    mean.sum().backward()
    assert m.emb.item_emb["item"].weight.grad.is_sparse
    ref = torch.stack([m.emb.inherent(x.hist_item[r, : int(n[r])]).mean(0) if n[r] else
                       torch.zeros(m.emb.H) for r in range(len(n))])  # fmt: skip
    torch.testing.assert_close(mean, ref.detach(), rtol=1e-5, atol=1e-5)


def test_training_through_run_on_a_large_catalogue_is_finite(ds):
    """Every Table-4 module trains a few steps on the 40,000-item world through ``fit``."""
    from twin_study.training.train import fit

    for module in ("avg_pool", "din", "sim_hard", "eta", "sdim", "twin"):
        m = model(ds, module)
        cfg = TrainConfig(epochs=1, batch_size=64, max_train_samples=192, progress=False)
        res = fit(m, ds, cfg)
        assert np.isfinite([h["train_loss"] for h in res.history]).all(), module


def test_kmeans_on_a_sample_assigns_every_item():
    """SIM Cluster's k-means: fitted on a seeded sample beyond ``fit_max`` items, then every
    item assigned; below it, the plain fit on every item (the study's worlds)."""
    from twin_study.models.pretrained import kmeans_codes

    x = np.random.default_rng(0).normal(size=(3001, 8)).astype(np.float32)
    full = kmeans_codes(x, 12, seed=0)
    again = kmeans_codes(x, 12, seed=0, fit_max=3000)
    np.testing.assert_array_equal(full, again)  # at or below the cap: the unchanged path
    sampled = kmeans_codes(x, 12, seed=0, fit_max=500)
    assert sampled.shape == (3001,) and sampled[0] == 0
    assert set(np.unique(sampled[1:])) <= set(range(1, 13)) and len(np.unique(sampled[1:])) > 6
    np.testing.assert_array_equal(sampled, kmeans_codes(x, 12, seed=0, fit_max=500))


def test_the_catalogue_bench_table_relates_each_module_to_its_smallest_catalogue():
    import pandas as pd

    from twin_study.analysis import throughput as tp

    rows = [("twin", 2e4, 200.0, 1), ("twin", 1e6, 150.0, 2), ("din", 1e6, 90.0, 2),
            ("din", 2e4, 100.0, 1)]  # fmt: skip
    df = pd.DataFrame([{"long_module": m, "L": 1000, "n_items": v, "samples_per_s": s,
                        "peak_rss_mb": p} for m, v, s, p in rows])  # fmt: skip
    wide = tp.catalogue_side_by_side(df)
    got = {(r.long_module, r.n_items): r.vs_smallest for r in wide.itertuples()}
    assert got == {("twin", 2e4): 1.0, ("twin", 1e6): 0.75, ("din", 1e6): 0.9, ("din", 2e4): 1.0}
    assert "0.75x" in tp.format_catalogue(wide)
    with pytest.raises(ValueError, match="catalogues"):
        tp.catalogue_throughput(["twin"], [100], [10])


def test_catalogue_size_argument_of_the_bench():
    import argparse

    from twin_study.bench import catalogue_size

    assert catalogue_size("1e6") == 1_000_000 and catalogue_size("20_000") == 20_000
    for bad in ("5", "1.5e2x", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="catalogue"):
            catalogue_size(bad)


def test_a_userlog_of_a_million_items_loads_and_trains(tmp_path):
    """A sparse log: 10^6 behaviours on 10^6 distinct items (one behaviour each), as a public
    log's long tail looks. It loads, and a TWIN trains on it through ``fit`` with row-sparse
    gradients and query-side scoring (no 10^6-row cache, no dense table update)."""
    import pandas as pd

    from twin_study.data.registry import load_dataset

    rng = np.random.default_rng(0)
    n_users, per_user = 2_000, 500
    n = n_users * per_user
    log = pd.DataFrame({
        "user": np.repeat(np.arange(n_users), per_user),
        "item": rng.permutation(n) + 10_000_000,  # raw ids far from 0..n: renumbered
        "ts": np.tile(np.arange(per_user), n_users) * 60,
        "click": rng.integers(0, 2, n),
    })  # fmt: skip
    log["cat"] = log["item"] % 37
    log.to_csv(tmp_path / "log.csv", index=False)
    spec = {"user": "user", "item": "item", "time": "ts", "time_unit": "s", "label": "click",
            "item_features": {"category": "cat"}}  # fmt: skip
    ds = load_dataset("userlog", path=str(tmp_path / "log.csv"), spec=spec, min_history=1)
    assert ds.items.n_items == n
    m = build_model(ModelConfig(long_module="twin", long_len=400, k=50), ds).train()
    opts = make_optimizers(m, TrainConfig())
    batches = SampleBuilder(ds, 400).batches(ds.split_indices("train"), 128, shuffle=True, seed=0)
    losses = [train_step(m, next(batches), opts) for _ in range(3)]
    assert np.isfinite(losses).all()
    assert m.emb.sparse_grads and m.gsu.last_side in ("batch", "query")
    assert m.gsu.cache.keys.numel() == 0, "a 10^6-row item cache was built"


def test_a_fitted_model_leaves_with_dense_gradients(ds):
    """fit's AdaGrad turns sparse gradients on; the returned model has them off again, so a
    later plain optimizer (02's cache-staleness runs use Adam) can train it."""
    from twin_study.training.train import fit

    m = model(ds, "twin")
    fit(m, ds, TrainConfig(epochs=1, batch_size=64, max_train_samples=128, progress=False))
    assert not m.emb.sparse_grads
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    b = SampleBuilder(ds, L).build(ds.split_indices("train")[:40])
    assert np.isfinite(train_step(m.train(), b, [opt]))


def test_a_catalogue_probe_that_fails_is_a_row_not_a_crash(monkeypatch):
    """A probe killed for memory (or timed out) at the largest catalogue leaves a row with its
    error and NaN rates; the other probes' rows are kept and the table still formats."""
    from twin_study.analysis import throughput as tp

    def probe(**kw):
        if kw["n_items"] > 10**6:
            raise RuntimeError("train probe failed:\nKilled")
        return {"long_module": kw["long_module"], "impl": "fast", "L": kw["L"],
                "n_items": kw["n_items"], "samples_per_s": 100.0, "peak_rss_mb": 5.0,
                "distinct_items": 7.0}  # fmt: skip

    monkeypatch.setattr(tp, "train_probe_subprocess", probe)
    df = tp.catalogue_throughput(["twin"], [1000], [20_000, 10**7], progress=False)
    assert df.loc[df.n_items == 10**7, "error"].item() == "Killed"
    assert np.isnan(df.loc[df.n_items == 10**7, "samples_per_s"].item())
    text = tp.format_catalogue(tp.catalogue_side_by_side(df))
    assert "nan" in text and "100" in text and "distinct V=2e4" in text


def test_distinct_items_counts_each_item_once_and_skips_padding():
    from twin_study.analysis.throughput import distinct_items

    assert distinct_items(torch.tensor([[3, 3, 0, 5], [5, 9, 0, 0]])) == 3


def test_the_catalogue_bar_is_read_from_the_measurements():
    from twin_study.analysis import throughput as tp

    rows = [("twin", 2e4, 200.0, 10.0), ("twin", 1e6, 160.0, 40.0), ("din", 2e4, 100.0, 10.0),
            ("din", 1e6, float("nan"), float("nan"))]  # fmt: skip
    df = pd.DataFrame([{"long_module": m, "L": 10_000, "n_items": v, "samples_per_s": s,
                        "peak_rss_mb": 1.0, "distinct_items": d}
                       for m, v, s, d in rows])  # fmt: skip
    bar = tp.catalogue_bar(tp.catalogue_side_by_side(df)).set_index("long_module")
    assert bar.loc["twin", "meets_bar"] and bar.loc["twin", "ratio"] == pytest.approx(0.8)
    assert not bar.loc["din", "meets_bar"]  # a failed probe is below the bar
    text = tp.describe_catalogue_bar(tp.catalogue_side_by_side(df))
    assert "1 of 2 modules" in text and "twin 0.80x" in text and "din nanx" in text
