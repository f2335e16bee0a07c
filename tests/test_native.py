"""The native kernels against the torch code they replace.

* ``gsu_select.cpp`` computes ``select_per_request`` over ``table_rows`` scores: it must select
  the same behaviours (up to exact ties and float rounding at the cut), keep the same padding
  for short and empty histories, break exact ties towards the more recent slot and reject bad
  item ids;
* ``esu_attend.cpp`` computes ``attention._PooledAttention`` forward and backward: the same
  weights, pooled features and gradients, all-masked samples and column slices of K included;
* both step aside (torch path, one warning) when they cannot be built.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_fast_path import K, L, batch, ds, pair, same_selection  # noqa: F401 -- fixtures

from twin_study.models import native
from twin_study.models.topk import finish_selection, select_per_request

TABLE_GSUS = ["twin", "twin_no_bias", "twin_no_paracon", "sim_soft", "eta", "sdim"]


@pytest.fixture(scope="module")
def lib():
    got = native.load()
    if got is None:
        pytest.skip("no C++ compiler: the native kernel is not built here")
    return got


def _reference_scores(args: dict) -> torch.Tensor:
    """The scores the selection kernel ranks, recomputed in torch from its recorded inputs:
    (B, heads, L). select_by_table: key . query + bias + tiebreak * recency; select_by_codes:
    equal bucket ids counted + tiebreak * recency."""
    hist, req, L_ = args["hist_item"], args["req"], args["hist_item"].shape[1]
    rec = -torch.arange(L_, dtype=torch.float32) / (L_ + 1) * args["tiebreak"]
    if "codes" in args:  # (V, G) bucket ids, query (B, G)
        eq = args["codes"][hist[req]] == args["query"][:, None, :]  # (B, L, G)
        return (eq.sum(-1).float() + rec)[:, None, :]
    keys = args["table"][hist[req]]  # (B, L, heads, d)
    s = torch.einsum("blhd,bhd->bhl", keys.double(), args["query"].double()).float()
    if args["bias"] is not None:
        b_table, codes, strides = args["bias"]
        col = (codes * strides).sum(-1)[req]  # (B, L)
        s = s + b_table[:, col].permute(1, 0, 2)
    return s + rec


def _recording(monkeypatch, entry: str) -> list[dict]:
    """Record each call of native.<entry>: its arguments by name and what it returned."""
    real, calls = getattr(native, entry), []
    names = ["table", "hist_item", "n_valid", "query", "req", "k", "bias", "tiebreak"]
    if entry == "select_by_codes":
        names = ["codes", "hist_item", "n_valid", "query", "req", "k", "tiebreak"]

    def spy(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        args = {"bias": None, "tiebreak": 0.0, **dict(zip(names, a, strict=False)), **kw}
        out = real(*a, **kw)
        calls.append({**args, "out": out})
        return out

    monkeypatch.setattr(native, entry, spy)
    return calls


@pytest.mark.parametrize("module", TABLE_GSUS)
def test_kernel_selects_each_heads_top_k_exactly_up_to_ties(ds, batch, lib, module, monkeypatch):  # noqa: F811
    """On a model's own tables and queries, every (sample, head) row of the kernel's per-head
    lists is a top-k of the scores it ranks: its slots' scores, recomputed in torch, equal the
    k largest (a different slot only where two scores tie within float rounding), in order;
    the reported scores are those scores; padding is exact; the model's selection is the
    merge of exactly these lists. No row may differ."""
    model, _ = pair(ds, module)
    x = model.gsu_input(batch)
    calls = _recording(monkeypatch, "select_by_codes" if module == "sdim" else "select_by_table")
    idx, ok = model.gsu.select(x, K)
    assert len(calls) == 1, "the fast path did not go through the kernel"
    args = calls[0]
    top, vals = args["out"]
    s = _reference_scores(args)  # (B, heads, L)
    n = args["n_valid"][args["req"]]  # (B,)
    tol = 1e-5 * max(1.0, float(s.abs().max()))
    for b in range(len(top)):
        kk = min(top.shape[2], int(n[b]))
        at_slots = s[b].gather(1, top[b, :, :kk])  # (heads, kk)
        want = s[b, :, : int(n[b])].topk(kk, dim=1).values
        torch.testing.assert_close(at_slots, want, rtol=0, atol=tol, msg=f"row {b}")
        torch.testing.assert_close(vals[b, :, :kk], at_slots, rtol=0, atol=tol)
        assert (top[b, :, kk:] == torch.arange(kk, top.shape[2])).all()  # padding slots
        assert torch.isinf(vals[b, :, kk:]).all()
    t_idx, t_ok = finish_selection(top, vals, args["n_valid"], args["req"],
                                   0.0 if module == "sdim" else None)  # fmt: skip
    assert torch.equal(idx, t_idx) and torch.equal(ok, t_ok)
    monkeypatch.setenv(native.NATIVE_ENV, "0")  # the torch path keeps as many of each row
    assert torch.equal(ok, model.gsu.select(x, K)[1])


def _inputs(n_valid, L_, heads=2, d=16, cands=(3, 2, 9), seed=0):
    """Random keys and queries; each window holds distinct items (no exact ties)."""
    g = torch.Generator().manual_seed(seed)
    V = L_ + 1
    table = torch.randn(V, heads, d, generator=g)
    hist = torch.stack([torch.randperm(L_, generator=g) + 1 for _ in cands])
    req = torch.cat([torch.full((c,), r) for r, c in enumerate(cands)])
    req = req[torch.randperm(len(req), generator=g)]  # samples of a request need not be adjacent
    query = torch.randn(len(req), heads, d, generator=g)
    return table, hist, torch.tensor(n_valid), query, req


def test_kernel_per_head_lists_equal_topk_and_pad_short_histories(lib):
    """Per-head k best, best first (9 candidates: more than one vector of lanes), with bias and
    recency terms; a request with n < k valid slots gets padding slots n..k-1 at -inf."""
    L_, k = 300, 20
    table, hist, n_valid, query, req = _inputs([300, 7, 0], L_)
    codes = torch.randint(0, 5, (3, L_, 2))
    bias_table, strides = torch.randn(2, 25), torch.tensor([5, 1])
    top, vals = native.select_by_table(table, hist, n_valid, query, req, k,
                                       (bias_table, codes, strides), tiebreak=0.5)  # fmt: skip
    col = (codes * strides).sum(-1)  # (R, L)
    rec = (-torch.arange(L_, dtype=torch.float32) / (L_ + 1)) * 0.5
    for b, r in enumerate(req.tolist()):
        n = int(n_valid[r])
        for h in range(2):
            s = table[hist[r, :n], h] @ query[b, h] + bias_table[h, col[r, :n]] + rec[:n]
            kk = min(k, n)
            want = s.topk(kk).values
            torch.testing.assert_close(vals[b, h, :kk], want, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(s[top[b, h, :kk]], want, rtol=1e-5, atol=1e-5)
            assert top[b, h, kk:].tolist() == list(range(kk, k))  # padding slots
            assert torch.isinf(vals[b, h, kk:]).all()


def test_kernel_breaks_exact_ties_towards_the_more_recent_slot(lib):
    table = torch.ones(10, 1, 4)  # every item scores the same
    hist = torch.randint(1, 10, (1, 500))
    top, _ = native.select_by_table(table, hist, torch.tensor([500]), torch.ones(3, 1, 4),
                                    torch.zeros(3, dtype=torch.long), 25)  # fmt: skip
    assert (top == torch.arange(25)).all()


def test_kernel_rejects_item_ids_outside_the_table(lib):
    table, hist, n_valid, query, req = _inputs([50, 50, 50], 50)
    hist[1, 10] = 51  # V = 51 rows: ids 0..50
    with pytest.raises(IndexError, match="outside the table"):
        native.select_by_table(table, hist, n_valid, query, req, 5)


def test_kernel_matches_select_per_request_on_random_scores(lib):
    """The raw contract, against the torch path's own function, on a long window."""
    table, hist, n_valid, query, req = _inputs([2000, 1500, 30], 2000, heads=4, cands=(5, 5, 5))
    top, vals = native.select_by_table(table, hist, n_valid, query, req, 40)
    flat = table.flatten(1)

    def rows(r, n, samples):
        keys = flat[hist[r, :n]].view(n, 4, 16)
        return torch.bmm(query[samples].transpose(0, 1), keys.permute(1, 2, 0))

    t_top, _ = select_per_request(rows, n_valid, req, 2000, 40, heads=4)
    idx, ok = finish_selection(top, vals, n_valid, req)
    assert torch.equal(ok, t_top < n_valid[req][:, None])
    for b in range(len(req)):
        assert set(idx[b][ok[b]].tolist()) == set(t_top[b][ok[b]].tolist())


def test_no_compiler_or_switched_off_falls_back_to_torch(monkeypatch, tmp_path):
    monkeypatch.setenv(native.NATIVE_ENV, "1")  # on, as the CI leg with the kernels off is not
    monkeypatch.setattr(native.library, "_libs", {})
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.warns(UserWarning, match="using the torch path"):
        assert native.load("gsu") is None
    args = _inputs([10, 10, 10], 10)
    assert native.select_by_table(*args, 3) is None  # the caller then takes the torch path
    with pytest.warns(UserWarning, match="native esu kernel unavailable"):
        assert native.esu_forward(*_esu_inputs()[:4]) is None
    assert native.build_info()["failed"] == ["esu", "gsu"]
    with pytest.raises(RuntimeError, match="unavailable"):  # an op called directly says so
        native.ops.gsu_select(*args, None, None, None, 0.0, 3)
    monkeypatch.setattr(native.library, "_libs", {})
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    assert native.load("gsu") is None and native.library._libs == {}  # off: not even attempted
    assert native.build_info()["enabled"] is False


def test_scatter_add_without_the_kernel_adds_with_torch(monkeypatch):
    """rows_scatter_add is a backward: it must add even when the kernel went away after the
    forward (switched off, or no library)."""
    monkeypatch.setenv(native.NATIVE_ENV, "0")
    grads = [torch.zeros(5, 3), torch.zeros(2, 4)]
    indices = [torch.tensor([0, 4, 4]), torch.tensor([1, 1, 0])]
    d_out = torch.arange(21.0).view(3, 7)  # rows 0..6, 7..13, 14..20
    native.rows_scatter_add(grads, indices, d_out)
    assert grads[0][0].tolist() == [0, 1, 2] and grads[0][4].tolist() == [7 + 14, 8 + 15, 9 + 16]
    assert grads[1][1].tolist() == [3 + 10, 4 + 11, 5 + 12, 6 + 13]
    assert grads[1][0].tolist() == [17, 18, 19, 20] and grads[0][1:4].abs().sum() == 0


@pytest.mark.parametrize("groups", [16, 5, 20])
def test_code_kernel_scores_equal_the_one_hot_product(lib, groups):
    """select_by_codes (SDIM: equal bucket bytes counted) = select_by_table over the groups'
    one-hot table: the same slots with the same scores, for any number of groups (padding to
    16 bytes never collides); ids past a byte are left to the table kernel (None)."""
    g = torch.Generator().manual_seed(groups)
    V, n_b = 40, 8
    codes = torch.randint(0, n_b, (V, groups), generator=g)
    hist = torch.randint(0, V, (4, 300), generator=g)
    n_valid = torch.tensor([300, 250, 7, 0])
    req = torch.tensor([0, 0, 1, 1, 1, 2, 3, 0, 1, 1, 1, 1, 1, 1])  # 9 candidates in request 1
    target = torch.randint(0, V, (len(req),), generator=g)
    hot = torch.zeros(V, groups * n_b)
    hot.scatter_(1, codes + n_b * torch.arange(groups), 1.0)
    want = native.select_by_table(hot[:, None], hist, n_valid, hot[target][:, None], req, 50,
                                  tiebreak=1.0)  # fmt: skip
    got = native.select_by_codes(codes, hist, n_valid, codes[target], req, 50, tiebreak=1.0)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert native.select_by_codes(codes + 254, hist, n_valid, codes[target], req, 50) is None
    with pytest.raises(IndexError, match="outside"):
        native.select_by_codes(codes, hist + V, n_valid, codes[target], req, 50)


def test_kernel_skips_tensors_off_the_cpu(lib):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    args = [t.cuda() for t in _inputs([10, 10, 10], 10)]
    assert native.select_by_table(*args, 3) is None


def test_library_is_keyed_by_source_level_and_compiler_not_the_cpu_model(monkeypatch):
    a = native.library_path("gsu")
    assert a != native.library_path("esu")
    assert native.isa_target() in a.name  # the level is in the name, for a reader of the cache
    assert native.library_path("gsu", "x86-64") != native.library_path("gsu", "x86-64-v3")
    monkeypatch.setattr(native.library, "FLAGS", [*native.library.FLAGS, "-DX"])
    b = native.library_path("gsu")
    monkeypatch.setattr(native.library, "_compiler_version", lambda cxx: "another compiler")
    c = native.library_path("gsu")
    assert len({a, b, c}) == 3 and all(p.suffix == ".so" for p in (a, b, c))
    # Another CPU model of the same level shares the library: nothing of the model is keyed.
    flags = native.library.cpu_flags() | {"avx512f", "avx512bw", "avx512vl", "some_new_flag"}
    monkeypatch.setattr(native.library, "cpu_flags", lambda: flags)
    assert native.library_path("gsu") == c


# ------------------------------------------------------------------------------ the ESU


def _esu_inputs(B=6, n=37, Hv=29, width=19, heads=3, extra=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(B, n, Hv + extra, generator=g)  # the kernel reads a column slice of it
    q, bias = torch.randn(B, heads, width, generator=g), torch.randn(B, n, heads, generator=g)
    valid = torch.rand(B, n, generator=g) > 0.3
    valid[2] = False  # a sample without finalists: zero weights, zero output
    d_pooled = torch.randn(B, heads, Hv, generator=g)
    return K, q, bias, valid, d_pooled, Hv


@pytest.mark.parametrize("shape", [{}, {"n": 100, "Hv": 168, "width": 144, "heads": 4}])
def test_esu_kernel_equals_the_torch_attention_and_its_gradients(monkeypatch, shape):
    from twin_study.models.attention import pooled_attention

    if native.load("esu") is None:
        pytest.skip("no C++ compiler: the native kernel is not built here")
    K0, q0, bias0, valid, d_pooled, Hv = _esu_inputs(**shape)
    got = []
    calls = []
    real = native.ops.esu_attend_backward
    monkeypatch.setattr(native.ops, "esu_attend_backward", lambda *a: calls.append(1) or real(*a))
    for env in ("1", "0"):  # kernel, then torch
        monkeypatch.setenv(native.NATIVE_ENV, env)
        K, q, bias = (t.clone().requires_grad_() for t in (K0, q0, bias0))
        pooled, w = pooled_attention(K[..., :Hv], q, bias, valid)
        assert not w.requires_grad  # the weights are reported, not differentiated
        (pooled * d_pooled).sum().backward()
        got.append([p.detach() for p in (pooled, w, K.grad, q.grad, bias.grad)])
    assert len(calls) == 1  # the kernel's backward ran once (env "1"), the torch one after
    names = ["pooled", "w", "dK", "dq", "dbias"]
    for name, a, b in zip(names, got[0], got[1], strict=True):
        # Float32 sums in another order (the kernel's FMA / AVX-512 reductions vs torch's):
        # the absolute slack scales with the tensor's magnitude (dK and dq reach ~20 here, and
        # on an AVX-512 machine differed by 4e-5, 2e-6 of that).
        scale = max(1.0, float(b.abs().max()))
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale, msg=name)
    assert (got[0][1][2] == 0).all() and (got[0][0][2] == 0).all()  # nothing to attend to
    assert (got[0][1].sum(1)[[0, 1, 3]] - 1).abs().max() < 1e-5  # weights sum to one


def test_merge_heads_kernel_equals_the_torch_walk(lib):
    from twin_study.models.topk import merge_heads

    g = torch.Generator().manual_seed(3)
    for heads, k, L_ in [(4, 100, 10_000), (2, 7, 12), (4, 20, 20), (1, 5, 50)]:
        top = torch.stack([torch.stack([torch.randperm(L_, generator=g)[:k] for _ in range(heads)])
                           for _ in range(30)])  # fmt: skip
        top[0] = torch.arange(k)  # every head agrees: the walk takes one head's list
        assert torch.equal(native.merge_heads(top, L_), merge_heads(top, k))
    with pytest.raises(IndexError, match="outside"):
        native.merge_heads(top, 3)


def test_concat_lookup_kernel_equals_torch_values_and_gradients(monkeypatch):
    """embed_rows.cpp: one gather forward, one scatter-add backward; the same numbers as the
    torch path (index_selects + cat; index_add per column slice), repeated rows accumulating
    and strided index columns (one column of a code matrix) included."""
    from twin_study.models.embedding import concat_lookup

    if native.load("rows") is None:
        pytest.skip("no C++ compiler: the native kernel is not built here")
    g = torch.Generator().manual_seed(0)
    tables0 = [torch.randn(v, w, generator=g) for v, w in [(50, 64), (7, 8), (9, 8), (3, 5)]]
    codes = torch.randint(0, 9, (400, 2), generator=g)
    indices = [torch.randint(0, 50, (400,), generator=g), torch.randint(0, 7, (400,), generator=g),
               codes[:, 1], torch.zeros(400, dtype=torch.long)]  # fmt: skip
    d_out = torch.randn(400, 85, generator=g)
    got = []
    for env in ("1", "0"):  # kernel, then torch
        monkeypatch.setenv(native.NATIVE_ENV, env)
        tables = [t.clone().requires_grad_() for t in tables0]
        out = concat_lookup(tables, indices)
        (out * d_out).sum().backward()
        got.append([out, *(t.grad for t in tables)])
    want = torch.cat([t[i] for t, i in zip(tables0, indices, strict=True)], dim=-1)
    torch.testing.assert_close(got[0][0], want, rtol=0, atol=0)
    for a, b in zip(got[0], got[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert torch.allclose(got[0][4][0], d_out[:, 80:].sum(0), atol=1e-4)  # 400 rows into one
    for env in ("1", "0"):
        monkeypatch.setenv(native.NATIVE_ENV, env)
        with pytest.raises(IndexError):
            concat_lookup(tables0, [indices[0], indices[1], codes[:, 1] + 1, indices[3]])
        with pytest.raises((ValueError, RuntimeError)):  # an index of another length
            concat_lookup(tables0, [indices[0], indices[1][:7], indices[2], indices[3]])


def test_behaviours_equal_inherent_beside_cross(ds, monkeypatch):  # noqa: F811
    """FeatureEmbedder.behaviours (one concat_lookup) = [inherent(items), cross(codes)], values
    and gradients, on the kernel and on the torch path."""
    from twin_study.models import ModelConfig, build_model

    model = build_model(ModelConfig(long_module="twin", long_len=L, k=K), ds)
    emb = model.emb
    g = torch.Generator().manual_seed(1)
    items = torch.randint(0, emb.n_items + 1, (6, 11), generator=g)
    codes = torch.stack([torch.randint(0, e.num_embeddings, (6, 11), generator=g)
                         for e in emb.cross_emb], dim=-1)  # fmt: skip
    params = [p for p in emb.parameters() if p.requires_grad]
    for env in ("1", "0"):
        monkeypatch.setenv(native.NATIVE_ENV, env)
        K_ = emb.behaviours(items, codes)
        want = torch.cat([emb.inherent(items), emb.cross(codes).flatten(-2)], dim=-1)
        torch.testing.assert_close(K_, want, rtol=0, atol=0)
        w = torch.randn(K_.shape, generator=g)
        got = torch.autograd.grad((K_ * w).sum(), params, allow_unused=True)
        ref = torch.autograd.grad((want * w).sum(), params, allow_unused=True)
        for a, b in zip(got, ref, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_sdim_linear_kernel_equals_the_torch_bucket_sums(ds, batch, monkeypatch):  # noqa: F811
    """sdim_pool.cpp: SDIM's original aggregation (every behaviour whose bucket collides with
    the target's, per group) -- the same output and gradients as the torch loop over groups."""
    from twin_study.models import ModelConfig, build_model

    if native.load("sdim") is None:
        pytest.skip("no C++ compiler: the native kernel is not built here")
    torch.manual_seed(0)
    model = build_model(ModelConfig(long_module="sdim_linear", long_len=L, k=K), ds)
    x = model.gsu_input(batch)
    params = [p for p in model.pool.parameters() if p.requires_grad]
    params += [p for p in model.emb.parameters() if p.requires_grad]
    got, calls = [], []
    real = native.sdim_pool_forward
    monkeypatch.setattr(native, "sdim_pool_forward", lambda *a: calls.append(1) or real(*a))
    for env in ("1", "0"):  # kernel, then torch
        monkeypatch.setenv(native.NATIVE_ENV, env)
        calls.clear()
        out = model.pool(model.emb, x)
        assert bool(calls) == (env == "1")
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        grads = torch.autograd.grad((out * w).sum(), params, allow_unused=True)
        got.append([out, *grads])
    for a, b in zip(got[0], got[1], strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert got[0][0].abs().sum() > 0


def test_sdim_linear_kernel_rejects_ids_out_of_range(lib):
    sdim = native.load("sdim")
    codes = torch.randint(0, 8, (30, 4))
    hist = torch.randint(0, 30, (2, 50))
    inp = native.SdimPoolInput(codes, 8, hist + 30, torch.tensor([50, 10]), torch.tensor([1, 2]),
                               torch.tensor([0, 1]))  # fmt: skip
    with pytest.raises(IndexError, match="outside"):
        native.sdim_pool_forward(sdim, torch.randn(30, 6), inp)
    bad = native.SdimPoolInput(codes + 8, 8, hist, torch.tensor([50, 10]), torch.tensor([1, 2]),
                               torch.tensor([0, 1]))  # fmt: skip
    with pytest.raises(IndexError, match="bucket"):
        native.sdim_pool_forward(sdim, torch.randn(30, 6), bad)


def test_behaviours_without_cross_features():
    """A log without cross features (J = 0): K is K_h alone, on both paths."""
    from twin_study.data.schema import ItemTable
    from twin_study.models.embedding import FeatureEmbedder

    items = ItemTable(n_items=5, features={"cat": np.array([0, 1, 2, 0, 1, 2])},
                      vocab={"cat": 3}, names=None)  # fmt: skip
    emb = FeatureEmbedder(items, [], {}, {})
    it, codes = torch.randint(0, 6, (3, 4)), torch.zeros(3, 4, 0, dtype=torch.long)
    K_ = emb.behaviours(it, codes)
    assert K_.shape == (3, 4, emb.H) and torch.equal(K_, emb.inherent(it))
    K_.sum().backward()
    assert emb.item_emb["cat"].weight.grad is not None
