"""What the data looks like: the numbers and tables behind ``notebooks/00_data.ipynb``.

Works on any data set of the shared schema (``summary``, ``category_shares``,
``history_lengths``); the functions about relevant behaviours need the ground truth that only
the synthetic generator plants (``Dataset.relevant_ptr/relevant_idx``, ``p_true`` and
``meta["target_from_interest"/"target_dormant"]``).

Vocabulary used throughout:

* a sample's **kind** is where its target came from: one of the user's *active* interests, a
  *dormant* interest (one the user stopped watching months before the request), or a random
  popular item;
* a behaviour's **rank** is its position in the visible history counted from the request:
  rank 0 is the last behaviour before the request. A model that sees the W most recent
  behaviours (DIN: 100, the short-term branch: 50) sees exactly the ranks ``< W``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from twin_study.data import available, load_dataset
from twin_study.data.batching import time_gap_bucket
from twin_study.data.schema import Dataset
from twin_study.data.synthetic import DAY, bayes_auc

KINDS = ("active interest", "dormant interest", "random")
SHORT_WINDOW = 50  # the short-term branch's window (most recent behaviours)
RECENT_WINDOW = 100  # DIN's window in the paper's comparison (most recent behaviours)
N_REL_EDGES = (0, 1, 2, 4, 8, 16, 32)  # left edges of the relevant-count buckets


def _need_truth(ds: Dataset) -> None:
    missing = [
        what
        for what, ok in (
            ("relevant_ptr/relevant_idx", ds.relevant_ptr is not None),
            ("p_true", ds.p_true is not None),
            ("meta['target_from_interest']", "target_from_interest" in ds.meta),
            ("meta['target_dormant']", "target_dormant" in ds.meta),
        )
        if not ok
    ]
    if missing:
        raise ValueError(
            f"data set {ds.name!r} has no planted ground truth ({', '.join(missing)} missing); "
            "only the synthetic generator provides it"
        )


def _engaged_bucket(ds: Dataset) -> int:
    return int(ds.meta["config"]["engaged_bucket"])


# --- any data set -------------------------------------------------------------------------


def history_lengths(ds: Dataset) -> np.ndarray:
    """(n_users,) number of logged behaviours per user."""
    return ds.log.lengths()


def visible_lengths(ds: Dataset) -> np.ndarray:
    """(S,) number of behaviours each sample sees (its history before the request)."""
    return ds.samples.hist_end - ds.log.user_ptr[ds.samples.user]


def category_shares(ds: Dataset, mask: np.ndarray | None = None) -> pd.Series:
    """Share of behaviours (those in ``mask``, default all) per item category, largest first;
    the index is the category code."""
    item = ds.log.item if mask is None else ds.log.item[mask]
    cat = ds.items.features["category"][item]
    counts = np.bincount(cat, minlength=ds.items.vocab["category"])[1:]  # code 0 = padding
    shares = pd.Series(counts / max(counts.sum(), 1), index=np.arange(1, len(counts) + 1))
    return shares.sort_values(ascending=False, kind="stable")


def summary(ds: Dataset) -> dict[str, Any]:
    """Size and shape of any data set: counts, label rate, history lengths, categories."""
    lengths = history_lengths(ds)
    visible = visible_lengths(ds)
    shares = category_shares(ds)
    return {
        "name": ds.name,
        "n_users": int(ds.n_users),
        "n_items": int(ds.items.n_items),
        "n_behaviours": int(ds.log.n_behaviours),
        "n_samples": int(len(ds.samples)),
        "label_rate": float(ds.samples.label.mean()),
        "median_history_len": float(np.median(lengths)),
        "p10_history_len": float(np.quantile(lengths, 0.1)),
        "p90_history_len": float(np.quantile(lengths, 0.9)),
        "median_visible_len": float(np.median(visible)),
        "n_categories": int((shares > 0).sum()),
        "top_category_share": float(shares.iloc[0]),
    }


def leakage(ds: Dataset) -> dict[str, int]:
    """Counts that must all be zero: a sample that sees a behaviour at or after its request,
    hides a behaviour from before it, or has a relevant behaviour outside what it sees."""
    s, log = ds.samples, ds.log
    start, stop = log.user_ptr[s.user], log.user_ptr[s.user + 1]
    has = s.hist_end > start
    last_time = log.time[np.maximum(s.hist_end - 1, 0)]
    more = s.hist_end < stop
    next_time = log.time[np.minimum(s.hist_end, len(log.time) - 1)]
    out = {
        "sees_at_or_after_request": int(np.sum(has & (last_time >= s.time))),
        "hides_earlier_behaviour": int(np.sum(more & (next_time < s.time))),
    }
    if ds.relevant_ptr is not None:
        owner = np.repeat(np.arange(len(s)), np.diff(ds.relevant_ptr))
        idx = ds.relevant_idx
        out["relevant_not_visible"] = int(np.sum((idx < start[owner]) | (idx >= s.hist_end[owner])))
    return out


# --- synthetic ground truth ----------------------------------------------------------------


def target_kind(ds: Dataset) -> np.ndarray:
    """(S,) the kind of each sample's target, one of ``KINDS``."""
    _need_truth(ds)
    from_interest = np.asarray(ds.meta["target_from_interest"], dtype=bool)
    dormant = np.asarray(ds.meta["target_dormant"], dtype=bool)
    code = np.where(dormant, 1, np.where(from_interest, 0, 2))
    return np.asarray(KINDS, dtype=object)[code]


def n_relevant(ds: Dataset) -> np.ndarray:
    """(S,) number of truly relevant behaviours each sample sees."""
    _need_truth(ds)
    return np.diff(ds.relevant_ptr)


def relevant_frame(ds: Dataset) -> pd.DataFrame:
    """One row per (sample, relevant behaviour): where it sits and what it looks like.

    Columns: ``sample``, ``kind``, ``log_idx``, ``rank`` (0 = most recent before the request),
    ``age_days`` (request time minus behaviour time), ``play_ratio``/``liked`` (the stored
    cross features), ``time_gap`` (the batch-time bucket), ``same_author`` (the behaviour's
    item is by the target's author — what a model can observe).
    """
    _need_truth(ds)
    s, log = ds.samples, ds.log
    owner = np.repeat(np.arange(len(s)), np.diff(ds.relevant_ptr))
    idx = ds.relevant_idx
    author = ds.items.features["author"]
    gap = s.time[owner] - log.time[idx]
    frame = {
        "sample": owner,
        "kind": target_kind(ds)[owner],
        "log_idx": idx,
        "rank": s.hist_end[owner] - 1 - idx,
        "age_days": gap / DAY,
        "time_gap": time_gap_bucket(gap),
        "same_author": author[log.item[idx]] == author[s.item[owner]],
    }
    for j, name in enumerate(log.cross_names):
        frame[name] = log.cross[idx, j].astype(np.int64)
    return pd.DataFrame(frame)


def cross_feature_frame(ds: Dataset, n_samples: int = 300, seed: int = 0) -> pd.DataFrame:
    """Cross features of relevant behaviours against the rest of the visible histories.

    Rows: every relevant behaviour of every sample (``group == "relevant"``), plus every other
    visible behaviour of ``n_samples`` samples drawn with ``seed`` (``group == "other"``; a
    subsample keeps this at ~n_samples x history length rows even at 10^4 behaviours).
    Columns: ``group``, the stored cross features and ``time_gap`` (batch-time bucket).
    """
    _need_truth(ds)
    s, log = ds.samples, ds.log
    rel = relevant_frame(ds)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(s), size=min(n_samples, len(s)), replace=False))
    start = log.user_ptr[s.user[pick]]
    counts = s.hist_end[pick] - start
    owner = np.repeat(pick, counts)
    idx = np.repeat(start - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    # (sample, log index) pairs as one int64 key: relevant ones are left out of "other".
    n_log = np.int64(log.n_behaviours)
    is_rel = np.isin(owner * n_log + idx, rel["sample"].to_numpy() * n_log + rel["log_idx"])
    owner, idx = owner[~is_rel], idx[~is_rel]
    other = {"time_gap": time_gap_bucket(s.time[owner] - log.time[idx])}
    for j, name in enumerate(log.cross_names):
        other[name] = log.cross[idx, j].astype(np.int64)
    cols = ["time_gap", *log.cross_names]
    return pd.concat(
        [rel[cols].assign(group="relevant"), pd.DataFrame(other)[cols].assign(group="other")],
        ignore_index=True,
    )


def relevant_count_table(ds: Dataset, edges: tuple[int, ...] = N_REL_EDGES) -> pd.DataFrame:
    """Samples bucketed by their number of relevant behaviours: count, label rate (with its
    standard error) and mean true click probability per bucket, in bucket order."""
    _need_truth(ds)
    n = n_relevant(ds)
    bucket = np.searchsorted(np.asarray(edges), n, side="right") - 1
    names = [
        str(lo) if hi == lo + 1 else (f"{lo}-{hi - 1}" if hi else f"{lo}+")
        for lo, hi in zip(edges, [*edges[1:], None], strict=True)
    ]
    frame = pd.DataFrame({"bucket": bucket, "label": ds.samples.label, "p_true": ds.p_true})
    table = frame.groupby("bucket").agg(
        n=("label", "size"), label_rate=("label", "mean"), p_true=("p_true", "mean")
    )
    table["stderr"] = np.sqrt(table.label_rate * (1 - table.label_rate) / table.n)
    table.insert(0, "n_relevant", [names[b] for b in table.index])
    return table.reset_index(drop=True)


def kind_table(ds: Dataset) -> pd.DataFrame:
    """Per target kind: samples, share with any relevant behaviour, median relevant count, label
    rate."""
    kind = target_kind(ds)
    n = n_relevant(ds)
    frame = pd.DataFrame({"kind": kind, "n_rel": n, "any": n > 0, "label": ds.samples.label})
    table = frame.groupby("kind").agg(
        samples=("label", "size"),
        share_with_relevant=("any", "mean"),
        median_relevant=("n_rel", "median"),
        mean_relevant=("n_rel", "mean"),
        label_rate=("label", "mean"),
    )
    return table.reindex([k for k in KINDS if k in table.index])


def window_coverage(
    ds: Dataset, windows: tuple[int, ...] = (SHORT_WINDOW, RECENT_WINDOW, 1000, 10_000)
) -> pd.DataFrame:
    """Per target kind and window W: the share of relevant behaviours among the W most recent,
    and the share of samples (with any relevant behaviour) that have at least one there.

    This is what a model restricted to the most recent W behaviours can possibly use."""
    rel = relevant_frame(ds)
    rows = []
    for kind, grp in rel.groupby("kind", sort=False):
        first = grp.groupby("sample")["rank"].min()
        for w in windows:
            rows.append(
                {
                    "kind": kind,
                    "window": w,
                    "behaviour_share": float((grp["rank"] < w).mean()),
                    "sample_share": float((first < w).mean()),
                }
            )
    table = pd.DataFrame(rows)
    table["kind"] = pd.Categorical(table["kind"], categories=KINDS, ordered=True)
    return table.sort_values(["kind", "window"]).reset_index(drop=True)


def dormant_recency(ds: Dataset, recent: int = RECENT_WINDOW) -> dict[str, float]:
    """How far back the dormant-interest targets' evidence lies.

    ``beyond_share``: of their relevant behaviours, the share older than the ``recent`` most
    recent ones; ``samples_only_beyond``: of dormant targets with any relevant behaviour, the
    share with none among the ``recent`` most recent; ``median_rank`` / ``median_age_days``."""
    rel = relevant_frame(ds)
    d = rel[rel["kind"] == KINDS[1]]
    n_dormant = int(np.sum(target_kind(ds) == KINDS[1]))
    if d.empty:
        return {"n_samples": n_dormant, "n_with_relevant": 0, "n_relevant": 0}
    first = d.groupby("sample")["rank"].min()
    return {
        "n_samples": n_dormant,
        "n_with_relevant": int(len(first)),
        "n_relevant": int(len(d)),
        "beyond_share": float((d["rank"] >= recent).mean()),
        "samples_only_beyond": float((first >= recent).mean()),
        "median_rank": float(d["rank"].median()),
        "median_age_days": float(d["age_days"].median()),
    }


def monotone_violations(table: pd.DataFrame, z: float = 3.0, min_n: int = 30) -> list[str]:
    """Adjacent buckets of ``relevant_count_table`` (each with >= ``min_n`` samples) whose label
    rate drops by more than ``z`` standard errors of the difference; empty = rises as claimed."""
    t = table[table.n >= min_n].reset_index(drop=True)
    bad = []
    for a, b in zip(t.index[:-1], t.index[1:], strict=True):
        drop = t.label_rate[a] - t.label_rate[b]
        se = float(np.hypot(t.stderr[a], t.stderr[b]))
        if drop > z * se:
            bad.append(f"{t.n_relevant[a]} -> {t.n_relevant[b]}: {drop:.3f} > {z} x {se:.3f}")
    return bad


def synthetic_summary(ds: Dataset, recent: int = RECENT_WINDOW) -> dict[str, Any]:
    """``summary`` plus the planted truth: Bayes AUC, relevant behaviours, dormant recency."""
    out = summary(ds)
    rel = relevant_frame(ds)
    kind = target_kind(ds)
    n = n_relevant(ds)
    out.update(
        bayes_auc=bayes_auc(ds, "test"),
        bayes_auc_all=bayes_auc_all(ds),
        share_targets_from_interest=float(np.mean(kind != KINDS[2])),
        share_targets_dormant=float(np.mean(kind == KINDS[1])),
        mean_relevant_per_sample=float(n.mean()),
        share_samples_with_relevant=float(np.mean(n > 0)),
        relevant_engaged_share=float((rel["play_ratio"] >= _engaged_bucket(ds)).mean())
        if len(rel)
        else 1.0,
        relevant_same_author_share=float(rel["same_author"].mean()) if len(rel) else 1.0,
    )
    d = dormant_recency(ds, recent)
    out.update({f"dormant_{k}": v for k, v in d.items()})
    return out


def bayes_auc_all(ds: Dataset) -> float:
    """Bayes-optimal AUC over every sample (all splits): a steadier number on small data."""
    from sklearn.metrics import roc_auc_score  # lazy: sklearn is heavy; only this needs it

    _need_truth(ds)
    return float(roc_auc_score(ds.samples.label, ds.p_true))


def load_optional(name: str, **params: Any) -> tuple[Dataset | None, str]:
    """``(dataset, "")``, or ``(None, note)`` when no loader is registered under ``name`` or
    its data cannot be obtained (offline, no local copy): for optional comparisons."""
    if name not in available():
        return None, f"{name}: no loader registered (available: {', '.join(available())}); skipped"
    try:
        return load_dataset(name, **params), ""
    except (OSError, RuntimeError) as exc:  # a loader's "could not obtain the data"
        return None, f"{name}: could not be loaded ({exc}); skipped"


def format_summary(values: dict[str, Any]) -> pd.DataFrame:
    """A summary dict as a one-column table of stable strings (3 decimals below 100, whole
    numbers with thousands separators above and for whole-valued floats)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return str(v)
        if isinstance(v, int | np.integer):
            return f"{int(v):,}"
        return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3f}"

    return pd.Series({k: fmt(v) for k, v in values.items()}, dtype=object).to_frame("value")
