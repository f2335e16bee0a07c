"""When does learned retrieval win? (issue 10, part 6; notebook 06)

On the default synthetic world category predicts relevance perfectly: a relevant behaviour
is an engaged one by the target's author, and every item sits in its author's category, so
SIM Hard's category filter never drops one. Its only loss is recency: when more than k
same-category behaviours sit in the window it keeps the k most recent. That loss grows with
the window L, and it is the paper's argument against coarse retrieval. The generator's knob
``off_category_items`` (``SyntheticConfig``) files a share of the items under other
categories, so category predicts relevance less while clicks and the planted truth stay the
same; a GSU that learns what matters (TWIN) should not care, a category filter should.

The pieces, all on data with a planted truth:

* ``make_worlds``: one data set per knob value (otherwise identical);
* ``category_overlap``: the share of planted relevant behaviours that have the target's
  category (what the knob moves), and ``rule_recall``: SIM Hard's rule applied without a
  model (the k most recent same-category behaviours of the window), with the recall any k
  behaviours could reach (``ceiling``);
* ``grid``: train (or load from the results cache) every model at every L on every world
  with ``sweeps.sweep`` and measure each trained GSU's planted-relevance recall with
  ``consistency.consistency``: one tidy row per (world, L, model, seed);
* ``gap``: a model's lead over another, paired by seed, per (world, L);
* ``claims``: the readings checked on those numbers, as ``core.Claim``;
* ``budget_grid`` / ``budget_claims``: the same models on a world with more users, trained
  on more samples, with their learning curves: does the order change with the data budget?
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..claims import core
from ..data import load_dataset
from ..data.schema import Dataset
from ..training import experiment
from . import sweeps
from .consistency import consistency

KNOB = "off_category_items"  # the SyntheticConfig field, and the runs table's column


def make_worlds(params: Mapping[str, Any], knob_values: Iterable[float]) -> dict[float, Dataset]:
    """The synthetic data set generated with ``params`` at each knob value (sorted, unique),
    keyed by the value. Only the item categories differ between them."""
    values = sorted({float(x) for x in knob_values})
    if not values:
        raise ValueError("knob_values: give at least one value in [0, 1]")
    if KNOB in params:
        raise ValueError(f"{KNOB} is set per world by knob_values; drop it from the parameters")
    return {x: load_dataset("synthetic", **params, **{KNOB: x}) for x in values}


def _truth(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    if ds.relevant_ptr is None or ds.relevant_idx is None:
        raise ValueError(f"data set {ds.name!r} has no planted truth (relevant behaviours)")
    return ds.relevant_ptr, ds.relevant_idx


def category_overlap(ds: Dataset, split: str = "test") -> float:
    """Share of the planted relevant behaviours of ``split``'s samples whose item has the
    target's category (pooled over samples; NaN without any): 1 on the default world."""
    ptr, idx = _truth(ds)
    owner = np.repeat(np.arange(len(ds.samples)), np.diff(ptr))
    keep = np.isin(owner, ds.split_indices(split))
    if not keep.any():
        return float("nan")
    cat = ds.items.features["category"]
    same = cat[ds.log.item[idx[keep]]] == cat[ds.samples.item[owner[keep]]]
    return float(same.mean())


def rule_recall(ds: Dataset, sample_idx: np.ndarray, L: int, k: int) -> pd.DataFrame:
    """SIM Hard's retrieval without a model, per sample: of the planted relevant behaviours
    among the ``L`` most recent ones before the request, the share inside the ``k`` most
    recent behaviours of the target's category (``recall``), and the most any k behaviours
    could hold, ``min(k, n) / n`` (``ceiling``). Samples with no relevant behaviour in the
    window get NaN. Columns: ``sample, n_relevant, n_same_category, recall, ceiling``.

    This is exactly what the trained SIM Hard's GSU selects (tested), so it checks the model
    and gives the L-dependence without training anything."""
    if L < 1 or k < 1:
        raise ValueError(f"need L >= 1 and k >= 1, got L={L}, k={k}")
    ptr, idx = _truth(ds)
    cat = ds.items.features["category"]
    rows = []
    for s in np.asarray(sample_idx, dtype=np.int64):
        end = int(ds.samples.hist_end[s])
        start = max(int(ds.log.user_ptr[ds.samples.user[s]]), end - L)
        rel = idx[ptr[s] : ptr[s + 1]]
        rel = rel[(rel >= start) & (rel < end)]
        same = start + np.flatnonzero(cat[ds.log.item[start:end]] == cat[ds.samples.item[s]])
        kept = same[-k:]  # the most recent k of the target's category
        n = len(rel)
        rows.append({
            "sample": int(s), "n_relevant": n, "n_same_category": len(same),
            "recall": np.isin(rel, kept).sum() / n if n else np.nan,
            "ceiling": min(k, n) / n if n else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["sample", "n_relevant", "n_same_category", "recall",
                                       "ceiling"])  # fmt: skip


def gsu_recall(
    ds: Dataset,
    settings: Sequence[sweeps.Setting],
    seeds: Iterable[int],
    train,
    sample_idx: np.ndarray,
    runner: Callable | None = None,
) -> pd.DataFrame:
    """Planted-relevance recall of each trained model's GSU (its k behaviours) and of its own
    ESU over the whole window (the oracle's top k), mean over ``sample_idx`` (samples without
    a relevant behaviour in the window are left out). One row per (setting, seed): ``model,
    <tags>, seed, recall_gsu, recall_oracle``. The models come from ``runner`` (default
    ``training.run``, a results-cache hit after ``sweeps.sweep``)."""
    if runner is None:
        runner = experiment.run
    rows = []
    for s in settings:
        for seed in seeds:
            res = runner(ds, s.model, dataclasses.replace(train, seed=seed))
            k = s.model.k
            c = consistency(res.model, ds, sample_idx, [k], oracle_k=k, progress=False)
            rows.append({
                "model": s.label, **s.tags, "seed": seed,
                "recall_gsu": float(np.nanmean(c.relevant_recall_gsu)),
                "recall_oracle": float(np.nanmean(c.relevant_recall_oracle)),
            })  # fmt: skip
    return pd.DataFrame(rows)


def grid(
    worlds: Mapping[float, Dataset],
    modules: Sequence[str],
    L_values: Sequence[int],
    base,
    train,
    seeds: Sequence[int],
    sample_idx: Mapping[float, np.ndarray],
    progress: bool = False,
    runner: Callable | None = None,
) -> pd.DataFrame:
    """Every module at every L on every world, every seed: ``sweeps.sweep`` (AUC, GAUC,
    LogLoss; trained or read from the results cache) joined with ``gsu_recall`` on the
    ``sample_idx[knob]`` samples. One row per (knob, L, model, seed), with ``dataset``
    (the world's name), ``off_category_items``, ``long_len``, ``model``, ``seed``, the
    metrics, ``recall_gsu`` and ``recall_oracle``. ``runner`` (default ``training.run``,
    parallel per ``sweeps.sweep``'s ``jobs`` / ``dask`` defaults) is there for tests."""
    frames = []
    for x, ds in worlds.items():
        settings = [
            s
            for L in L_values
            for s in sweeps.module_settings(
                dataclasses.replace(base, long_len=int(L)).validate(),
                modules,
                long_len=int(L),
                **{KNOB: x},
            )
        ]
        runs = sweeps.sweep(ds, settings, seeds, train, progress=progress, runner=runner)
        rec = gsu_recall(ds, settings, seeds, train, sample_idx[x], runner=runner)
        frames.append(runs.merge(rec, on=["model", "long_len", KNOB, "seed"], validate="1:1"))
    return pd.concat(frames, ignore_index=True)


def gap(
    runs: pd.DataFrame,
    a: str = "TWIN",
    b: str = "SIM Hard",
    metric: str = "auc",
    by: Sequence[str] = (KNOB, "long_len"),
) -> pd.DataFrame:
    """``a`` minus ``b`` on ``metric``, paired by seed, for every combination of ``by``:
    columns ``by..., mean, std, n_seeds, values`` (the per-seed differences, for plotting the
    seeds themselves; std NaN with one seed)."""
    rows = []
    for key, g in runs.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        eff = core.paired(g, [{"model": a}], [{"model": b}], metric)
        rows.append({**dict(zip(by, key, strict=True)), "mean": eff.mean, "std": eff.std,
                     "n_seeds": eff.n, "values": eff.values.tolist()})  # fmt: skip
    return pd.DataFrame(rows, columns=[*by, "mean", "std", "n_seeds", "values"])


def claims(
    runs: pd.DataFrame,
    a: str = "TWIN",
    b: str = "SIM Hard",
    metric: str = "auc",
    z: float = 2.0,
) -> list[core.Claim]:
    """The section's readings, checked on ``runs`` (``grid`` output), paired by seed:

    * at each L, ``a``'s lead over ``b`` grows from the smallest knob value (category
      predicts relevance best) to the largest (difference in differences);
    * ``a`` beats ``b`` at the longest L on the default world (the smallest knob value);
    * ``a``'s GSU keeps more of the planted relevant behaviours than ``b``'s there;
    * ``b``'s GSU recall falls from the shortest L to the longest (the recency loss).

    A claim whose models or values were not run is left out. All are the study's own
    questions (kind STUDY), not the paper's; ``b``'s recall, where ``b`` is a rule without
    learned parameters (SIM Hard), is the same for every seed and becomes a CHECK that
    cannot fail (``core.Claim.of``; the notebook asserts it too)."""
    have = set(runs["model"])
    if not {a, b} <= have:
        return []
    knobs = sorted(runs[KNOB].unique())
    Ls = sorted(runs["long_len"].unique())
    lo_x, hi_x, lo_L, hi_L = knobs[0], knobs[-1], Ls[0], Ls[-1]
    dataset = str(runs.loc[runs[KNOB] == lo_x, "dataset"].iloc[0])
    out = []
    if hi_x != lo_x:
        for L in Ls:
            c = core.claim_gap_widens(runs[runs["long_len"] == L], a, b, KNOB, lo_x, hi_x,
                                          metric=metric, z=z, dataset="synthetic",
                                          kind=core.STUDY)  # fmt: skip
            grows = "grows as category predicts relevance less"
            c.claim = f"{a} − {b} ({metric.upper()}) {grows}, L = {L:,}"
            c.statement = (
                f"the worse category predicts relevance ({KNOB} {lo_x:g} → {hi_x:g}), the more "
                f"learned retrieval ({a}) gains over category retrieval ({b})"
            )
            out.append(c)
    at = {KNOB: lo_x, "long_len": hi_L}
    out.append(core.claim_better(
        runs, {"model": a, **at}, {"model": b, **at}, metric, z=z, dataset=dataset,
        kind=core.STUDY,
        claim=f"{a} > {b} ({metric.upper()}) at L = {hi_L:,}",
        statement=f"at L = {hi_L:,} coarse retrieval loses: {a} beats {b} even where category "
        "predicts relevance perfectly",
    ))  # fmt: skip
    out.append(core.claim_better(
        runs, {"model": a, **at}, {"model": b, **at}, "recall_gsu", z=z, dataset=dataset,
        kind=core.STUDY,
        claim=f"{a}'s GSU keeps more planted relevance than {b}'s at L = {hi_L:,}",
        statement="a learned GSU finds the behaviours that decide the click; a category filter "
        "keeps the most recent of its category",
    ))  # fmt: skip
    if hi_L != lo_L:
        out.append(core.claim_better(
            runs, {"model": b, KNOB: lo_x, "long_len": lo_L},
            {"model": b, KNOB: lo_x, "long_len": hi_L}, "recall_gsu", z=z, dataset=dataset,
            kind=core.STUDY,
            claim=f"{b}'s GSU recall falls from L = {lo_L:,} to {hi_L:,}",
            statement="the longer the window, the more same-category behaviours compete for "
            "the k slots, and the smaller the share of relevant ones a category filter keeps",
        ))  # fmt: skip
    return out


def verdict_markdown(
    summary: pd.DataFrame,
    gap_frame: pd.DataFrame,
    overlap: Mapping[float, float],
    found: Sequence[core.Claim],
    a: str = "TWIN",
    b: str = "SIM Hard",
    metric: str = "auc",
) -> str:
    """The section's reading in words, generated from the numbers: each GSU's recall at each
    L on the default world, ``a`` − ``b`` at every knob value and L, and the claims' verdicts.
    ``summary``: ``sweeps.summarize(runs, by=(KNOB, "long_len", "model"), metrics=(...,
    "recall_gsu"))``."""
    knobs = sorted(summary[KNOB].unique())
    Ls = sorted(summary["long_len"].unique())
    x0 = knobs[0]
    lines = []
    s0 = summary[summary[KNOB] == x0]
    per_model = []
    for m, g in s0.groupby("model", sort=False):
        g = g.set_index("long_len")["recall_gsu_mean"]
        per_model.append(f"{m} " + " → ".join(f"{g[L]:.2f}" for L in Ls if L in g))
    lines.append(
        f"**Recall on the world with {KNOB} = {x0:g}** (share of relevant behaviours in the "
        f"target's category {overlap[x0]:.2f}), L = " + " → ".join(f"{L:,}" for L in Ls)
        + ": " + "; ".join(per_model) + "."
    )  # fmt: skip
    name = metric.upper()
    for L in Ls:
        g = gap_frame[gap_frame["long_len"] == L].sort_values(KNOB)
        parts = []
        for r in g.itertuples():
            sd = f" ± {r.std:.4f}" if np.isfinite(r.std) else ""
            parts.append(f"{getattr(r, KNOB):g} ({overlap[getattr(r, KNOB)]:.2f}): "
                         f"{r.mean:+.4f}{sd}")  # fmt: skip
        lines.append(
            f"**{a} − {b} test {name}, L = {L:,}**, by {KNOB} (category/relevance overlap): "
            + "; ".join(parts) + "."
        )  # fmt: skip
    if found:
        lines.append(core.verdicts_line(found))
    return "\n\n".join(lines)


# --- the data budget -------------------------------------------------------------------------


def budget_grid(
    ds: Dataset,
    modules: Sequence[str],
    L: int,
    base,
    train,
    seeds: Sequence[int],
    at: int,
    progress: bool = False,
    runner: Callable | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Does more data change the order? Every module at L on ``ds`` (a world with more users
    than the grid's), one pass over ``train``'s budget there, with its learning curve.

    Returns (runs, curves): ``sweeps.sweep``'s rows (test metrics at the selected point) with
    each run's validation AUC and LogLoss on its curve at the point nearest ``at`` samples
    (the grid's budget: ``valid_auc_at``, ``valid_logloss_at``, ``samples_at``) and at its
    end (``..._end``, ``samples_end``), and ``valid_auc_gain`` = end - at; and
    ``sweeps.learning_curves``' rows. Comparing models at the same point of their own runs
    keeps the comparison inside one world and one validation subset."""
    cfg = dataclasses.replace(base, long_len=int(L)).validate()
    settings = sweeps.module_settings(cfg, modules, long_len=int(L))
    runs = sweeps.sweep(ds, settings, seeds, train, progress=progress, runner=runner)
    curves = sweeps.learning_curves(ds, settings, seeds, train, runner=runner)
    if curves.empty:
        raise ValueError("budget_grid needs learning curves: set train's eval_every > 0")
    points = []
    for (model, seed), g in curves.groupby(["model", "seed"], sort=False):
        g = g.sort_values("samples_seen")
        # The curve point nearest the grid's budget (points fall a batch past each multiple of
        # eval_every, so "the last one <= at" would read one interval early); ties: earlier.
        a = g.iloc[int((g["samples_seen"] - at).abs().to_numpy().argmin())]
        e = g.iloc[-1]
        points.append({
            "model": model, "seed": seed,
            "samples_at": int(a["samples_seen"]), "samples_end": int(e["samples_seen"]),
            "valid_auc_at": a["valid_auc"], "valid_auc_end": e["valid_auc"],
            "valid_logloss_at": a["valid_logloss"], "valid_logloss_end": e["valid_logloss"],
        })  # fmt: skip
    runs = runs.merge(pd.DataFrame(points), on=["model", "seed"], validate="1:1")
    runs["valid_auc_gain"] = runs["valid_auc_end"] - runs["valid_auc_at"]
    return runs, curves


def budget_claims(
    runs: pd.DataFrame, a: str = "TWIN", rivals: Sequence[str] = ("SIM Soft",), z: float = 2.0
) -> list[core.Claim]:
    """The budget section's readings, paired by seed, for each rival of ``a`` that was run:
    ``a`` gains more validation AUC than the rival from the grid's budget to the end of the
    longer run (a learner still climbing is the one more data helps), and ``a`` beats the
    rival on test AUC at the end. The study's own questions (kind STUDY)."""
    out = []
    have = set(runs["model"])
    if a not in have or runs.empty:
        return out
    at, end = int(runs["samples_at"].min()), int(runs["samples_end"].max())
    dataset = str(runs["dataset"].iloc[0])
    for b in (r for r in rivals if r in have):
        out.append(core.claim_better(
            runs, a, b, "valid_auc_gain", z=z, dataset=dataset, kind=core.STUDY,
            claim=f"{a} gains more than {b} from {at:,} to {end:,} samples (validation AUC)",
            statement="the joint learner's curve is the steeper one: more data narrows or "
            "reverses a lead that a pre-trained or fixed retrieval has early",
        ))  # fmt: skip
        out.append(core.claim_better(
            runs, a, b, "auc", z=z, dataset=dataset, kind=core.STUDY,
            claim=f"{a} > {b} (test AUC) after {end:,} samples",
            statement=f"with {end:,} training samples {a} leads {b}",
        ))  # fmt: skip
    return out
