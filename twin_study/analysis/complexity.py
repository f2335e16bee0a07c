"""What TWIN's feature split saves in CP-GSU scoring: the measurements.

The analytic counts (FLOPs and compulsory bytes, by hand) are in ``analysis.cost_model``; the
timers and the peak-memory probe in ``analysis.timing``. This module

* checks the hand-derived counts against the model's own ``TwinAttention.scoring_flops`` and
  ``torch.utils.flop_counter`` on the package's real code paths (``counter_check``);
* times the package's real code paths (``live_scores`` of a raw-MHTA model vs
  ``CpGSU.scores`` reading the cache), the key side alone, and a whole ``CTRModel`` forward
  split into its stages; measures peak memory and this machine's matmul / memory roofs;
* TWIN training steps in a subprocess, for an honest peak RSS, are ``analysis.throughput``'s
  (``train_probe``).

Conventions of the counts: see ``analysis.cost_model``; of peak memory: ``analysis.timing``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..data import SyntheticConfig, generate
from ..data.batching import Batch
from ..models.config import ModelConfig
from ..models.ctr import CTRModel, build_model
from ..models.gsu import live_scores
from .cost_model import F32, I64, METHODS, Dims, analytic_cost, model_flops
from .timing import peak_allocated, sync, time_calls

LONG_MODULE = {"raw": "twin_raw", "twin": "twin"}


# ------------------------------------------------------------------------------ counting


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs ``torch.utils.flop_counter.FlopCounterMode`` sees in ``fn()`` (matmuls only)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def counter_check(models: dict[str, CTRModel], L: int, B: int, seed: int = 0) -> pd.DataFrame:
    """Model-reported, hand-derived and FlopCounterMode matmul FLOPs of the package's real code
    paths for one request of L behaviours and B candidates (like with like: matmul FLOPs only;
    the element-wise adds the counter ignores are listed separately)."""
    raw, twin = models["raw"], models["twin"]
    dims = Dims.of(twin)
    batch = random_batch(twin, L, B, 1, seed)
    x = twin.gsu_input(batch)
    twin.gsu.ensure_fresh()  # the cache is built by the projector, not per request
    k_h, k_c = raw.emb.inherent(x.hist_item), raw.emb.cross(x.hist_cross)
    hand_raw, hand_twin = analytic_cost("raw", L, B, dims), analytic_cost("twin", L, B, dims)
    n_rows = twin.gsu.cache.keys.shape[0]
    tables = list(twin.emb.item_emb.values())
    table_rows = sum(e.num_embeddings * e.embedding_dim for e in tables)
    cases = [
        ("TwinAttention.raw_keys: [K_h, K_c] W^k of L rows",
         raw.esu.scoring_flops(L, B, dims.vocab)["keys"], hand_raw["flops_keys"], 0,
         lambda: raw.esu.raw_keys(k_h, k_c)),
        ("live_scores, raw MHTA (query + keys + dot)",
         model_flops(raw.esu, L, B, dims.vocab)["matmul"], hand_raw["flops_matmul"], 0,
         lambda: live_scores(raw.emb, raw.esu, x)),
        ("CpGSU.scores, TWIN (query + tables + dot)",
         model_flops(twin.esu, L, B, dims.vocab)["matmul"], hand_twin["flops_matmul"],
         hand_twin["flops_other"], lambda: twin.gsu.scores(x)),
        # one product per feature table (FeatureEmbedder.project_items): the item-id table,
        # then each small table, whose projections are gathered and added per item
        ("ItemKeyCache.rebuild: K_h W^h of every item (per refresh)",
         None, 2 * table_rows * dims.hd, n_rows * dims.hd * (len(tables) - 1),
         lambda: twin.gsu.cache.rebuild(twin.emb, twin.esu)),
    ]  # fmt: skip
    rows = [{"path": name, "model": m, "hand": h, "counter": counted_flops(fn),
             "other_flops_not_counted": o} for name, m, h, o, fn in cases]  # fmt: skip
    return pd.DataFrame(rows).set_index("path")


# ------------------------------------------------------------------------------ set-up


def build_models(
    heads: int = 4,
    d_k: int = 16,
    id_dim: int = 64,
    small_dim: int = 8,
    n_items: int = 20_000,
    device: str | torch.device = "cpu",
    seed: int = 0,
    impl: str = "reference",
) -> dict[str, CTRModel]:
    """A raw-MHTA and a TWIN CTR model (eval mode) on the synthetic data set's schema.

    ``impl="reference"`` by default: the cost analyses time the paper's algorithm as written
    (``CpGSU.scores`` then ``merged_topk``, which the stage clock splits); the fast path's
    fused scoring and top-k are timed by ``measure_fast_select`` and the training probes.

    Only the item table and the cross-feature schema matter for scoring cost, so the data set is
    tiny; histories of any length come from ``random_batch``. ``long_len`` is set far above any
    L so the batch's width decides L.
    """
    ds = generate(SyntheticConfig(n_users=8, n_items=n_items, n_authors=min(2000, n_items),
                                  history_len=200, history_min=50, requests_per_user=1,
                                  seed=seed))  # fmt: skip
    models = {}
    for m in METHODS:
        torch.manual_seed(seed)
        cfg = ModelConfig(long_module=LONG_MODULE[m], long_len=10**7, heads=heads, d_k=d_k,
                          id_dim=id_dim, small_dim=small_dim, impl=impl)  # fmt: skip
        models[m] = build_model(cfg, ds).to(device).eval()
    return models


def random_batch(model: CTRModel, L: int, B: int, R: int = 1, seed: int = 0) -> Batch:
    """R requests with full histories of L random behaviours and B candidates in all (spread
    evenly over the requests), on the model's device. Cost does not depend on the values."""
    if not 1 <= R <= B:
        raise ValueError(f"need 1 <= R <= B, got R = {R}, B = {B}")
    g = torch.Generator().manual_seed(seed)
    e = model.emb
    n = e.n_items
    cross = [torch.randint(0, m.num_embeddings, (R, L), generator=g) for m in e.cross_emb]
    batch = Batch(
        sample_idx=torch.arange(B), user=torch.zeros(B, dtype=torch.long),
        target=torch.randint(1, n + 1, (B,), generator=g), label=torch.zeros(B),
        req=torch.arange(B) * R // B,  # request of each candidate
        hist_item=torch.randint(1, n + 1, (R, L), generator=g),  # (R, L)
        hist_cross=torch.stack(cross, dim=-1),  # (R, L, J)
        hist_len=torch.full((R,), L), hist_end=torch.full((R,), L),
    )  # fmt: skip
    return batch.to(next(model.parameters()).device)


# ------------------------------------------------------------------------------ measuring


def machine_peaks(device: torch.device, repeats: int = 5, n: int = 2048, mbytes: int = 128) -> dict:
    """This machine's fp32 matmul rate (an n x n torch.mm), copy bandwidth (a ``mbytes`` MiB
    copy: read + write) and gather bandwidth (random 256-byte rows, like the item cache)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    src = torch.empty(mbytes * 2**20 // F32, device=device).uniform_()
    dst = torch.empty_like(src)
    rows = mbytes * 2**20 // (64 * F32)
    table = torch.randn(rows, 64, device=device)  # rows of 64 fp32 = one cache row (heads x d_k)
    idx = torch.randint(0, rows, (rows // 2,), device=device)
    t = time_calls({"mm": lambda: torch.mm(a, b), "copy": lambda: dst.copy_(src),
                    "gather": lambda: table.index_select(0, idx)}, device, repeats)  # fmt: skip
    med = {k: float(np.median(v)) for k, v in t.items()}
    return {
        "matmul_flops_per_s": 2 * n**3 / med["mm"],
        "copy_bytes_per_s": 2 * src.numel() * F32 / med["copy"],
        "gather_bytes_per_s": (2 * len(idx) * 64 * F32 + len(idx) * I64) / med["gather"],
    }


def measure_scoring(
    models: dict[str, CTRModel],
    L_values: Sequence[int],
    B_values: Sequence[int],
    train_batch: int = 256,
    per_request: int = 5,
    repeats: int = 3,
    memory: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """Wall time (median of ``repeats``) and peak memory of CP-GSU scoring, raw vs TWIN, for one
    request with B candidates and for a training batch (``train_batch`` samples,
    ``per_request`` candidates per request), with the analytic FLOPs and bytes of each call.

    raw: ``live_scores`` of the raw-MHTA model (projects all L behaviours, chunk by chunk);
    twin: ``CpGSU.scores`` (gathers K_h W^h from the item cache, built before timing).
    """
    raw, twin = models["raw"], models["twin"]
    device = next(twin.parameters()).device
    dims = Dims.of(twin)
    twin.gsu.ensure_fresh()
    settings = [("request", B, 1) for B in B_values]
    if train_batch:
        settings.append(("train batch", train_batch, -(-train_batch // per_request)))
    rows = []
    for L in L_values:
        for setting, B, R in settings:
            x = twin.gsu_input(random_batch(twin, L, B, R, seed))
            fns = {"raw": lambda x=x: live_scores(raw.emb, raw.esu, x),
                   "twin": lambda x=x: twin.gsu.scores(x)}  # fmt: skip
            # The memory run doubles as the warm-up call (allocations do not change with it).
            peaks = {m: peak_allocated(fn, device) / 2**20 if memory else None
                     for m, fn in fns.items()}  # fmt: skip
            times = time_calls(fns, device, repeats, warmup=0 if memory else 1)
            for m in fns:
                c = analytic_cost(m, L, B, dims, R)
                t = float(np.median(times[m]))
                rows.append({"setting": setting, "L": L, "B": B, "R": R, "method": m,
                             "time_s": t, "time_min_s": min(times[m]), "peak_mb": peaks[m],
                             "flops": c["flops"], "bytes": c["bytes"],
                             "intensity": c["flops"] / c["bytes"],
                             "flops_per_s": c["flops"] / t})  # fmt: skip
            del x, fns
    return pd.DataFrame(rows)


def side_by_side(scoring: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, L, B): raw and TWIN next to each other, with their ratios."""
    cols = ["time_s", "flops", "peak_mb"]
    wide = scoring.pivot_table(index=["setting", "L", "B", "R"], columns="method", values=cols,
                               sort=False)  # fmt: skip
    wide.columns = [f"{m}_{c}" for c, m in wide.columns]
    wide["speedup"] = wide["raw_time_s"] / wide["twin_time_s"]
    wide["flop_ratio"] = wide["raw_flops"] / wide["twin_flops"]
    return wide.reset_index()


def format_side_by_side(wide: pd.DataFrame) -> str:
    """``side_by_side`` as the text table ``twin-study bench`` prints (ms, GFLOP, MiB)."""
    cols = {"setting": ("setting", str), "L": ("L", "{:,}".format), "B": ("B", "{:,}".format),
            "R": ("R", str), "raw_time_s": ("raw ms", lambda v: f"{1e3 * v:.2f}"),
            "twin_time_s": ("TWIN ms", lambda v: f"{1e3 * v:.2f}"),
            "speedup": ("speed-up", lambda v: f"{v:.2f}x"),
            "raw_flops": ("raw GFLOP", lambda v: f"{v / 1e9:.4f}"),
            "twin_flops": ("TWIN GFLOP", lambda v: f"{v / 1e9:.4f}"),
            "flop_ratio": ("FLOP ratio", lambda v: f"{v:.1f}x"),
            "raw_peak_mb": ("raw MiB", lambda v: f"{v:.1f}"),
            "twin_peak_mb": ("TWIN MiB", lambda v: f"{v:.1f}")}  # fmt: skip
    keep = [c for c in cols if c in wide]
    table = pd.DataFrame({cols[c][0]: wide[c].map(cols[c][1]) for c in keep})
    return table.to_string(index=False)


def roofline(scoring: pd.DataFrame, peaks: dict) -> pd.DataFrame:
    """Attained FLOP/s of each scoring call against its roof min(peak, intensity x bandwidth)."""
    df = scoring.copy()
    df["roof_flops_per_s"] = np.minimum(peaks["matmul_flops_per_s"],
                                        df["intensity"] * peaks["copy_bytes_per_s"])  # fmt: skip
    df["roofline_fraction"] = df["flops_per_s"] / df["roof_flops_per_s"]
    return df


def measure_fast_select(
    models: dict[str, CTRModel],
    scoring: pd.DataFrame,
    peaks: dict,
    repeats: int = 3,
    k: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """TWIN's fast path at every point of ``scoring``, against the roof of the scoring.

    ``fast scoring``: ``CpGSU.score_rows`` for every request (the cached keys' gather, the
    product with the candidates' queries, the cross bias; one request at a time, nothing
    else); ``fast select``: ``CpGSU.fast_select``, the same scoring fused with the merged
    top-k. FLOPs and compulsory bytes are the scoring's (``analytic_cost``), so for ``fast
    select`` the fraction understates how close it runs to a roof that counted the top-k.
    """
    twin = models["twin"]
    device = next(twin.parameters()).device
    twin.gsu.ensure_fresh()
    rows = []
    points = scoring[scoring.method == "twin"][["setting", "L", "B", "R", "flops", "bytes"]]
    for p in points.itertuples(index=False):
        x = twin.gsu_input(random_batch(twin, p.L, p.B, p.R, seed))
        kk = min(k, p.L)

        def score_all(x=x) -> None:
            score = twin.gsu.score_rows(x)
            for r, samples in enumerate(torch.argsort(x.req).split(
                    torch.bincount(x.req, minlength=x.n_req).tolist())):  # fmt: skip
                score(r, x.length, samples)

        with torch.no_grad():
            t = time_calls({"fast scoring": score_all,
                            "fast select": lambda x=x, kk=kk: twin.gsu.fast_select(x, kk)},
                           device, repeats)  # fmt: skip
        roof = min(peaks["matmul_flops_per_s"], p.flops / p.bytes * peaks["copy_bytes_per_s"])
        for method, times in t.items():
            time_s = float(np.median(times))
            rows.append({**p._asdict(), "method": method, "time_s": time_s,
                         "flops_per_s": p.flops / time_s, "roof_flops_per_s": roof,
                         "roofline_fraction": p.flops / time_s / roof})  # fmt: skip
    return pd.DataFrame(rows)


def measure_key_side(
    models: dict[str, CTRModel], L_values: Sequence[int], repeats: int = 3, seed: int = 0
) -> pd.DataFrame:
    """The paper's bottleneck in time, one request: the projection of L rows against the cache
    gather that replaces it, alone and with what each needs around it.

    raw_projection: [K_h, K_c] W^k on already gathered features (the matmul alone);
    raw_key_side: embedding gathers + projection; twin_gather: ``cache.keys[items]``;
    twin_key_side: gather + the J cross-bias lookups (tables built per call, as CpGSU does).
    """
    raw, twin = models["raw"], models["twin"]
    device = next(twin.parameters()).device
    twin.gsu.ensure_fresh()
    rows = []
    for L in L_values:
        b = random_batch(twin, L, 1, 1, seed)
        items, codes = b.hist_item, b.hist_cross
        k_h, k_c = raw.emb.inherent(items), raw.emb.cross(codes)
        fns = {
            "raw_projection": lambda k_h=k_h, k_c=k_c: raw.esu.raw_keys(k_h, k_c),
            "raw_key_side": lambda i=items, c=codes: raw.esu.raw_keys(raw.emb.inherent(i),
                                                                      raw.emb.cross(c)),
            "twin_gather": lambda i=items: twin.gsu.cache.keys[i],
            "twin_key_side": lambda i=items, c=codes: (
                twin.gsu.cache.keys[i],
                twin.esu.lookup_bias(twin.esu.cross_bias_tables(twin.emb), c)),
        }  # fmt: skip
        t = time_calls(fns, device, repeats)
        rows.append({"L": L, **{f"{k}_s": float(np.median(v)) for k, v in t.items()}})
    df = pd.DataFrame(rows)
    df["projection_time_reduction"] = 1 - df["twin_gather_s"] / df["raw_projection_s"]
    df["key_side_time_reduction"] = 1 - df["twin_key_side_s"] / df["raw_key_side_s"]
    return df


# ------------------------------------------------------------------------------ stages


@contextmanager
def _stage_clock(model: CTRModel, clock: dict[str, float]) -> Iterator[None]:
    """Time the stages of the model's own forward by wrapping its GSU and attention calls on
    this instance (restored on exit): ``gsu.select`` (scores + top-k), ``gsu.scores`` and
    ``_attend`` (ESU over the k finalists, or the short-term branch)."""
    device = next(model.parameters()).device
    gsu, attend = model.gsu, model._attend

    def timed(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            sync(device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(device)
            clock[name] += time.perf_counter() - t0
            return out

        return wrapper

    gsu.scores = timed("gsu_scores", gsu.scores)
    gsu.select = timed("gsu_select", gsu.select)
    esu, short = timed("esu", attend), timed("short_term", attend)
    model._attend = lambda att, *a: (esu if att is model.esu else short)(att, *a)
    try:
        yield
    finally:
        del gsu.scores, gsu.select, model._attend


STAGES = ("CP-GSU scoring", "top-k merge", "ESU", "short-term", "embeddings + MLP")


def stage_times(
    model: CTRModel, batch: Batch, repeats: int = 3, warmup: int = 1
) -> dict[str, float]:
    """Seconds of each stage of a whole forward (the request path): CP-GSU scoring, top-k
    merge, ESU over the k finalists, short-term branch, and the rest (target and user
    embeddings, MLP), plus ``total``; from the repeat with the median total, so the stages add
    up to it. The clock's own cost is inside the stages it wraps."""
    device = next(model.parameters()).device
    runs: list[dict[str, float]] = []
    with torch.no_grad():
        for _ in range(warmup):
            model(batch)
        for _ in range(repeats):
            clock: dict[str, float] = defaultdict(float)
            with _stage_clock(model, clock):
                sync(device)
                t0 = time.perf_counter()
                model(batch)
                sync(device)
                total = time.perf_counter() - t0
            parts = {
                STAGES[0]: clock["gsu_scores"],
                STAGES[1]: clock["gsu_select"] - clock["gsu_scores"],
                STAGES[2]: clock["esu"],
                STAGES[3]: clock["short_term"],
            }
            parts[STAGES[4]] = total - sum(parts.values())
            runs.append({**parts, "total": total})
    runs.sort(key=lambda r: r["total"])
    return runs[len(runs) // 2]


def measure_stages(
    models: dict[str, CTRModel],
    L_values: Sequence[int],
    B: int,
    R: int = 1,
    repeats: int = 3,
    memory: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """``stage_times`` (and the forward's peak memory) for raw and TWIN at each L."""
    rows = []
    for L in L_values:
        for m, model in models.items():
            if m == "twin":
                model.gsu.ensure_fresh()
            batch = random_batch(model, L, B, R, seed)
            device = next(model.parameters()).device
            # The memory run doubles as the warm-up call.
            peak = peak_allocated(partial(model, batch), device) / 2**20 if memory else None
            t = stage_times(model, batch, repeats, warmup=0 if memory else 1)
            rows.append({"L": L, "B": B, "R": R, "method": m, **t, "peak_mb": peak})
    df = pd.DataFrame(rows)
    for s in STAGES:
        df[f"share {s}"] = df[s] / df["total"]
    return df


def pick(df: pd.DataFrame, col: str, **where) -> float | None:
    """The value of ``col`` in the one row of ``df`` matching ``where`` (column = value);
    None when there is none (a grid without that point)."""
    rows = df.loc[(df[list(where)] == pd.Series(where)).all(axis=1), col]
    if len(rows) > 1:
        raise ValueError(f"{len(rows)} rows match {where}")
    return float(rows.iloc[0]) if len(rows) and pd.notna(rows.iloc[0]) else None


def L_tag(L: int) -> str:
    """10000 -> "1e4" (powers of ten), other lengths as they are: keys of results.json."""
    e = len(str(int(L))) - 1
    return f"1e{e}" if 10**e == L else str(int(L))
