"""Training throughput of every lifelong module, fast path beside the reference path.

Each probe trains a few steps exactly as ``twin_study.training.fit`` takes them -- build the
batch, step the item cache, forward, BCE, backward, AdaGrad + Adam -- on synthetic data whose
histories have about L behaviours, in a **fresh Python process**, so that its peak resident
memory (VmHWM: Python, torch, data, model, optimiser state and the steps' tensors) is its own
and one probe's allocations cannot slow the next. Probes run one after another, the paths of
a module interleaved, so load from other processes hits both alike; the reported rate is
samples over the summed wall time of the timed steps (the warm-up step excluded).

``ModelConfig.impl`` selects the path: "fast" (the default everywhere) or "reference" (the
literal order of the paper's equations and a plain fancy-index batch builder), which select
the same behaviours and give the same loss and gradients (tests/test_fast_path.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import runtime
from ..data import SyntheticConfig, generate
from ..data.lifecycle import compress_log
from ..models import registry
from ..models.config import ModelConfig
from ..models.ctr import build_model
from ..models.lifelong.twin_v2 import TwinV2Options
from ..training.train import TrainConfig, builder_for, make_optimizers, peak_rss_mb, train_step
from .timing import resolve_device, sync

IMPLS = ("fast", "reference")


def _extras(module: str, ds, cfg: ModelConfig) -> dict:
    """What a module needs besides the data: its prerequisite's ``provide`` on an UNTRAINED
    auxiliary model. Throughput does not depend on the values, so SIM Soft / Cluster get an
    untrained DIN's item vectors (the width of the trained ones, which sets the scoring cost:
    H for K_h) and w/o Para-Con an untrained TWIN."""
    pre = registry.get(module).prerequisite
    if pre is None:
        return {}
    aux = build_model(ModelConfig(**{**cfg.to_dict(), "long_module": pre.module}), ds)
    return pre.provide(cfg, aux)


def train_probe(
    L: int,
    long_module: str = "twin",
    impl: str = "fast",
    batch_size: int = 256,
    steps: int = 3,
    warmup: int = 1,
    device: str = "cpu",
    threads: int = 1,
    seed: int = 0,
    n_items: int = 20_000,
) -> dict:
    """Training throughput of one module at history length L: ``warmup`` + ``steps`` steps,
    only the ``steps`` timed. Run it through ``train_probe_subprocess`` for its own peak.
    ``n_items``: the catalogue, with one author per 10 items (the generator's default ratio)."""
    registry.get(long_module)  # an unknown module fails before any data is generated
    runtime.configure(threads)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    # A batch holds whole requests (5 samples each); a user gives ~40 training samples.
    need = (warmup + steps) * (batch_size + 5)
    ds = generate(SyntheticConfig(n_users=-(-need // 32), history_len=L, history_min=min(200, L),
                                  n_items=n_items, n_authors=max(n_items // 10, 37),
                                  seed=seed))  # fmt: skip
    gen_s = time.perf_counter() - t0
    torch.manual_seed(seed)
    cfg_m = ModelConfig(long_module=long_module, long_len=L, k=min(100, L), impl=impl,
                        n_clusters=50)  # fmt: skip
    model = build_model(cfg_m, ds, **_extras(long_module, ds, cfg_m)).to(dev).train()
    cfg = TrainConfig(batch_size=batch_size, device=str(dev), progress=False, seed=seed)
    opts = make_optimizers(model, cfg)
    batches = builder_for(model, ds).batches(ds.split_indices("train"), batch_size,
                                             shuffle=True, seed=seed)  # fmt: skip
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    step_s, cpu_s, n_seen, distinct = [], [], 0, []
    for i in range(warmup + steps):
        sync(dev)
        t, c = time.perf_counter(), time.process_time()
        batch = next(batches).to(dev)
        train_step(model, batch, opts)
        sync(dev)
        if i >= warmup:
            step_s.append(time.perf_counter() - t)
            cpu_s.append(time.process_time() - c)
            n_seen += len(batch.label)
            distinct.append(distinct_items(batch.hist_item[:, :L]))
    return {
        "long_module": long_module, "impl": impl, "L": L, "n_items": n_items,
        "batch_size": batch_size,
        "steps": steps, "device": str(dev), "threads": torch.get_num_threads(),
        "samples_per_s": n_seen / sum(step_s), "step_s": step_s,
        # On the CPU clock: one thread's work is the process's CPU time, which another
        # process's load does not inflate (it still shares the caches and memory bandwidth).
        "samples_per_cpu_s": n_seen / sum(cpu_s) if dev.type == "cpu" else None,
        "peak_rss_mb": peak_rss_mb(), "generate_s": gen_s,
        "distinct_items": sum(distinct) / len(distinct),
        "cuda_peak_mb": torch.cuda.max_memory_allocated(dev) / 2**20
        if dev.type == "cuda" else None,
    }  # fmt: skip


def clustering_probe(n_behaviours: int = 100_000, d: int = 64, seed: int = 0) -> dict:
    """TWIN-V2's offline step for ONE user (issue 26: "10^5 behaviours in well under a second
    on one core"): a synthetic user with ``n_behaviours`` behaviours, clustered with
    ``TwinV2Options``' defaults on random d-dimensional item keys (d = heads x d_k = 64, the
    GSU keys TWIN-V2 clusters on; the time does not depend on what the keys mean). Returns
    the clustering seconds (one thread), the compression ratio and the mean cluster size."""
    if n_behaviours < 1 or d < 1:
        raise ValueError(f"need n_behaviours >= 1 and d >= 1, got {n_behaviours}, {d}")
    runtime.configure(1)
    ds = generate(SyntheticConfig(n_users=1, history_len=n_behaviours, history_min=n_behaviours,
                                  history_max=n_behaviours, requests_per_user=1,
                                  seed=seed))  # fmt: skip
    keys = np.random.default_rng(seed).normal(size=(ds.items.n_items + 1, d)).astype(np.float32)
    t0 = time.perf_counter()
    comp = compress_log(ds, keys, TwinV2Options().cluster_config(), progress=False)
    return {"behaviours": int(ds.log.n_behaviours), "d": d, "seconds": time.perf_counter() - t0,
            "ratio": comp.ratio, "mean_size": float(comp.size.mean())}  # fmt: skip


def distinct_items(hist_item: torch.Tensor) -> int:
    """Distinct items among a batch's behaviours (padding excluded): what a step's row-sparse
    work follows once the catalogue outgrows the batch (gathers, updates, keys of the batch's
    items), as the catalogue itself does while it is smaller."""
    return int(torch.unique(hist_item[hist_item > 0]).numel())


def train_probe_subprocess(timeout: float = 1800, **kwargs) -> dict:
    """``train_probe(**kwargs)`` in a fresh Python process; its peak RSS is the probe's alone.
    (Not ``ru_maxrss``: Linux carries a parent's peak into a child's across fork + exec.)"""
    cmd = [sys.executable, "-m", "twin_study.analysis.throughput", json.dumps(kwargs)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"train probe {kwargs} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def known_modules(modules: Iterable[str]) -> list[str]:
    """``modules`` as a list, or a ValueError naming those that are not lifelong modules."""
    modules = list(modules)
    unknown = sorted(set(modules) - set(registry.names()))
    if unknown:
        raise ValueError(f"unknown module(s) {unknown}; choose from {sorted(registry.names())}")
    return modules


def train_throughput(
    modules: Iterable[str],
    L_values: Sequence[int],
    impls: Sequence[str] = IMPLS,
    progress: bool = True,
    **probe: object,
) -> pd.DataFrame:
    """One probe per (L, module, path), the paths of a module back to back. ``probe``: the
    other ``train_probe`` arguments (batch_size, steps, threads, device, seed)."""
    modules = known_modules(modules)
    bad = sorted(set(impls) - set(IMPLS))
    if bad:
        raise ValueError(f"unknown impl(s) {bad}; choose from {list(IMPLS)}")
    jobs = [(L, m, i) for L in L_values for m in modules for i in impls]
    rows = []
    for L, m, i in tqdm(jobs, desc="training probes", disable=not progress):
        rows.append(train_probe_subprocess(L=L, long_module=m, impl=i, **probe))
    return pd.DataFrame(rows)


def catalogue_throughput(
    modules: Iterable[str],
    L_values: Sequence[int],
    catalogues: Sequence[int],
    progress: bool = True,
    **probe: object,
) -> pd.DataFrame:
    """Training throughput of every module's fast path against the catalogue size (issue 27):
    one probe per (L, catalogue, module), each in its own process, smallest catalogue first."""
    modules = known_modules(modules)
    if not catalogues or min(catalogues) < 100:
        raise ValueError(f"catalogues must be item counts >= 100, got {list(catalogues)}")
    jobs = [(L, V, m) for L in L_values for V in sorted(catalogues) for m in modules]
    rows = []
    for L, V, m in tqdm(jobs, desc="catalogue probes", disable=not progress):
        try:
            rows.append(train_probe_subprocess(L=L, long_module=m, impl="fast", n_items=V,
                                               **probe))  # fmt: skip
        except (RuntimeError, subprocess.TimeoutExpired) as err:
            # A probe that does not fit (killed for memory) or runs too long is a result
            # too: its row says so, and the others still run.
            why = str(err).strip().splitlines()[-1][:300] if str(err).strip() else repr(err)
            rows.append({"long_module": m, "impl": "fast", "L": L, "n_items": V,
                         "samples_per_s": float("nan"), "peak_rss_mb": float("nan"),
                         "distinct_items": float("nan"), "error": why})  # fmt: skip
    return pd.DataFrame(rows)


def catalogue_side_by_side(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (module, L, catalogue): samples/s (on the probe's CPU clock when it has
    one), peak RSS, and the speed relative to the same module at the smallest catalogue of the
    run (issue 27's bar: >= 0.75 at 10^6)."""
    cols = ["long_module", "L", "n_items", "samples_per_s", "peak_rss_mb", "distinct_items"]
    out = df[[c for c in cols if c in df]].copy()
    if "samples_per_cpu_s" in df and df["samples_per_cpu_s"].notna().any():
        # One thread per probe: its CPU time is the step's cost, untouched by other processes'
        # scheduling on a shared machine (the catalogue's ratios are what matters here).
        out["samples_per_s"] = df["samples_per_cpu_s"].where(df["samples_per_cpu_s"].notna(),
                                                              df["samples_per_s"])  # fmt: skip
    first = out.sort_values("n_items").groupby(["long_module", "L"])["samples_per_s"].first()
    out["vs_smallest"] = out["samples_per_s"] / [
        first[(m, L)] for m, L in zip(out.long_module, out.L, strict=True)
    ]
    return out.reset_index(drop=True)


def catalogue_bar(wide: pd.DataFrame, bar: float = 0.75) -> pd.DataFrame:
    """Issue 27's question on ``catalogue_side_by_side``'s rows, at the largest L of the run:
    for every catalogue above the smallest, each module's speed there over its speed at the
    smallest, whether that ratio is >= ``bar``, and the distinct items per batch at both (the
    row-sparse work a step cannot avoid). A probe that failed counts as below the bar."""
    at = wide[wide.L.max() == wide.L]
    small = at.n_items.min()
    rows = []
    for large in sorted(v for v in at.n_items.unique() if v > small):
        for m, g in at.groupby("long_module", sort=False):
            lo, hi = g[g.n_items == small].iloc[0], g[g.n_items == large].iloc[0]
            ratio = hi.samples_per_s / lo.samples_per_s
            rows.append({"long_module": m, "L": int(hi.L), "small": small, "large": large,
                         "ratio": ratio, "meets_bar": bool(ratio >= bar),
                         "distinct_small": lo.get("distinct_items"),
                         "distinct_large": hi.get("distinct_items")})  # fmt: skip
    return pd.DataFrame(rows)


def describe_catalogue_bar(wide: pd.DataFrame, bar: float = 0.75) -> str:
    """``catalogue_bar`` in words, one sentence per larger catalogue, from the numbers."""
    t = catalogue_bar(wide, bar)
    if t.empty:
        return "No catalogue probes above the smallest catalogue."
    out = []
    for large, g in t.groupby("large", sort=True):
        r = g.iloc[0]
        n_ok = int(g.meets_bar.sum())
        head = (f"At L = {r.L:,}, V = {large:,.0f} against V = {r.small:,.0f}: {n_ok} of "
                f"{len(g)} modules keep >= {bar:.2f}x their speed")  # fmt: skip
        parts = []
        for name, group in (("at or above", g[g.meets_bar]), ("below", g[~g.meets_bar])):
            if len(group):
                cells = ", ".join(f"{m} {x:.2f}x" for m, x in zip(group.long_module, group.ratio,
                                                                     strict=True))  # fmt: skip
                parts.append(f"{name}: {cells}")
        tail = ""
        if g.distinct_small.notna().any() and g.distinct_large.notna().any():
            tail = (f"; a batch reads {g.distinct_small.median():,.0f} distinct items at the "
                    f"small catalogue and {g.distinct_large.median():,.0f} at this one (median "
                    "over modules): the rows a step gathers and updates follow these, "
                    "not V")  # fmt: skip
        out.append(head + " (" + "; ".join(parts) + ")" + tail + ".")
    return " ".join(out)


def format_catalogue(wide: pd.DataFrame) -> str:
    """``catalogue_side_by_side`` as a text table: one row per (module, L), a column per
    catalogue size (samples/s, then the ratio to the smallest catalogue, then peak MB)."""
    parts = []
    for col, fmt in (("samples_per_s", "{:,.0f}"), ("vs_smallest", "{:.2f}x"),
                     ("peak_rss_mb", "{:,.0f} MB"), ("distinct_items", "{:,.0f}")):  # fmt: skip
        if col not in wide:
            continue
        t = wide.pivot_table(index=["long_module", "L"], columns="n_items", values=col,
                             sort=False, dropna=False)  # fmt: skip
        t.columns = [f"{col.split('_')[0]} V={v:.0e}".replace("e+0", "e") for v in t.columns]
        parts.append(t.map(fmt.format))
    return pd.concat(parts, axis=1).reset_index().to_string(index=False)


def side_by_side(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (module, L): samples/s and peak RSS of each path, the fast path's speed-up
    over the reference and its speed relative to TWIN's fast path at the same L."""
    wide = df.pivot_table(index=["long_module", "L"], columns="impl",
                          values=["samples_per_s", "peak_rss_mb"], sort=False)  # fmt: skip
    wide.columns = [f"{impl}_{col}" for col, impl in wide.columns]
    wide = wide.reset_index()
    if {"fast_samples_per_s", "reference_samples_per_s"} <= set(wide):
        wide["speedup"] = wide["fast_samples_per_s"] / wide["reference_samples_per_s"]
    if "fast_samples_per_s" in wide:
        twin = wide[wide.long_module == "twin"].set_index("L")["fast_samples_per_s"]
        wide["vs_twin"] = wide["fast_samples_per_s"] / wide["L"].map(twin)
    return wide


def format_side_by_side(wide: pd.DataFrame) -> str:
    """``side_by_side`` as the text table ``twin-study bench`` prints."""
    cols = {"long_module": ("module", str), "L": ("L", "{:,}".format),
            "fast_samples_per_s": ("fast samples/s", "{:,.0f}".format),
            "reference_samples_per_s": ("reference samples/s", "{:,.0f}".format),
            "speedup": ("speed-up", "{:.2f}x".format),
            "vs_twin": ("vs TWIN (fast)", "{:.2f}x".format),
            "fast_peak_rss_mb": ("fast peak MB", "{:,.0f}".format),
            "reference_peak_rss_mb": ("reference peak MB", "{:,.0f}".format)}  # fmt: skip
    keep = [c for c in cols if c in wide]
    table = pd.DataFrame({cols[c][0]: wide[c].map(cols[c][1]) for c in keep})
    return table.to_string(index=False)


if __name__ == "__main__":  # python -m twin_study.analysis.throughput '{"L": 1000}'
    if len(sys.argv) != 2:
        sys.exit("usage: python -m twin_study.analysis.throughput '<json kwargs of train_probe>'")
    print(json.dumps(train_probe(**json.loads(sys.argv[1]))))
