"""Statistics of the runs: the metrics (``METRICS``, ``HIGHER_IS_BETTER``), the sampling noise
of a LogLoss (``logloss_se``, ``eval_logloss_se``), and the summaries of a sweep's rows:
``summarize`` (mean, std, n_seeds), ``relative_improvement`` / ``with_relative`` (percent of a
baseline's mean, as the paper reports it), ``gap_closure`` towards the Bayes-optimal AUC
(``bayes_auc_or_none``), ``lead_over`` and ``check_table``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ...data import bayes_auc

METRICS = ("auc", "gauc", "logloss")
HIGHER_IS_BETTER = {"auc": True, "gauc": True, "logloss": False}


def bayes_auc_or_none(ds) -> float | None:
    """The Bayes-optimal test AUC where the data has a planted truth, else None."""
    return bayes_auc(ds) if getattr(ds, "p_true", None) is not None else None


# --- the noise of a LogLoss ----------------------------------------------------------------


def logloss_se(
    label: np.ndarray, prob: np.ndarray, groups: np.ndarray | None = None, n: int = 0
) -> float:
    """Standard error of the mean LogLoss of ``prob`` on ``label`` from sampling alone,
    scaled to a subset of ``n`` samples (0: all of them).

    ``groups`` (e.g. request ids) makes it cluster-robust: the validation subset of a
    learning curve is made of whole requests (``training.train.request_subset``), whose
    samples share a user and a history, so they are not independent. The subset's s.e. is
    the whole split's times sqrt(N / n) (a random share of the clusters). This is the noise
    of one reading of the curve; the flattening rule compares two readings on the same
    subset, whose difference is noisier than this only when their per-sample losses
    correlate below 0.5."""
    y = np.asarray(label, float)
    p = np.clip(np.asarray(prob, float), 1e-7, 1 - 1e-7)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    N = len(loss)
    if N < 2:
        return float("nan")
    dev = loss - loss.mean()
    if groups is None:
        se = float(dev.std(ddof=1) / np.sqrt(N))
    else:
        sums = pd.Series(dev).groupby(np.asarray(groups)).sum().to_numpy()
        g = len(sums)
        if g < 2:
            return float("nan")
        se = float(np.sqrt((sums**2).sum() * g / (g - 1)) / N)  # clustered (CR1) s.e.
    return se * float(np.sqrt(N / n)) if n and n < N else se


def eval_logloss_se(ds, n_samples: int, split: str = "valid") -> float:
    """The noise (s.e.) of a validation LogLoss read on a subset of whole requests holding
    about ``n_samples`` samples (a learning curve's ``eval_samples``; 0: the whole split).

    Measured with the best predictions the data offers: the planted truth ``p_true`` where
    there is one (a trained model's losses spread about as much), else the training split's
    click rate. Compare it with ``curve_status``'s ``tol``: a tolerance below the subset's
    noise cannot tell a flat curve from a noisy one."""
    idx = ds.split_indices(split)
    y = ds.samples.label[idx]
    if getattr(ds, "p_true", None) is not None:
        p = ds.p_true[idx]
    else:
        p = np.full(len(idx), float(ds.samples.label[ds.split_indices("train")].mean()))
    return logloss_se(y, p, ds.samples.request[idx], n_samples)


# --- summaries ---------------------------------------------------------------------------


def summarize(
    runs: pd.DataFrame, by: Sequence[str] = ("dataset", "model"), metrics: Sequence[str] = METRICS
) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and seed count per group.

    Columns: ``by``, then ``<metric>_mean``, ``<metric>_std`` per metric, then ``n_seeds``.
    Groups keep the order in which they first appear in ``runs``.
    """
    by = list(by)
    g = runs.groupby(by, sort=False, dropna=False)
    out = g[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n_seeds"] = g["seed"].nunique()
    return out.reset_index()


def relative_improvement(
    summary: pd.DataFrame,
    baseline: str,
    metric: str = "gauc",
    by: str = "model",
    within: Sequence[str] = ("dataset",),
) -> pd.Series:
    """Relative improvement in percent over the ``baseline`` row, ``100 * (x / base - 1)``,
    the way the paper reports "+0.29 % AUC". Compared within groups of ``within`` columns
    (one baseline row per group; e.g. per data set, or per sequence length). For LogLoss the
    sign is flipped so that positive is better."""
    col = f"{metric}_mean" if f"{metric}_mean" in summary else metric
    within = [c for c in within if c in summary.columns]
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0

    def one(group: pd.DataFrame) -> pd.Series:
        base = group.loc[group[by] == baseline, col]
        if len(base) != 1:
            raise ValueError(
                f"need exactly one {by} == {baseline!r} row per group, got {len(base)}"
            )
        return sign * 100.0 * (group[col] / float(base.iloc[0]) - 1.0)

    if not within:
        return one(summary).rename(f"{metric}_rel_pct")
    parts = [one(g) for _, g in summary.groupby(within, sort=False, dropna=False)]
    return pd.concat(parts).reindex(summary.index).rename(f"{metric}_rel_pct")


def with_relative(
    summary: pd.DataFrame,
    baseline: str,
    metrics: Sequence[str] = ("auc", "gauc"),
    by: str = "model",
    within: Sequence[str] = ("dataset",),
) -> pd.DataFrame:
    """``summary`` plus ``<metric>_rel_pct`` columns (see ``relative_improvement``)."""
    out = summary.copy()
    for m in metrics:
        out[f"{m}_rel_pct"] = relative_improvement(summary, baseline, m, by, within)
    return out


def gap_closure(
    runs: pd.DataFrame, baseline: str, ceiling: float, metric: str = "auc"
) -> pd.DataFrame:
    """How much of the gap from ``baseline`` to ``ceiling`` (the Bayes-optimal AUC on the same
    samples) each run closes, paired by seed with the same seed's baseline run:
    ``closure = (x - baseline) / (ceiling - baseline)``; 0: no better than the baseline, 1:
    optimal. ``runs`` plus a ``closure`` column, for the seeds that have a baseline run
    (``summarize(..., metrics=("closure",))`` gives mean and std per model)."""
    if metric not in runs:
        raise ValueError(f"gap_closure: no column {metric!r} in runs")
    base = runs.loc[runs["model"] == baseline].set_index("seed")[metric]
    if base.empty:
        raise ValueError(f"gap_closure: no {baseline!r} runs to measure the gap from")
    if not (base < ceiling).all():
        raise ValueError(f"gap_closure: {baseline} is not below the ceiling {ceiling:.4f}")
    out = runs[runs["seed"].isin(base.index)].copy()
    b = out["seed"].map(base)
    out["closure"] = (out[metric] - b) / (ceiling - b)
    return out


def lead_over(
    summary: pd.DataFrame,
    model: str = "TWIN",
    x: str = "long_len",
    metric: str = "gauc",
) -> pd.DataFrame:
    """``model``'s relative improvement (percent) over every other model at each ``x``,
    ``100 * (model / other - 1)`` (sign flipped for LogLoss): columns ``dataset, <x>, model``
    (the other model), ``lead_pct``."""
    col = f"{metric}_mean"
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    rows = []
    for (d, xv), g in summary.groupby(["dataset", x], sort=False):
        mine = g.loc[g["model"] == model, col]
        if len(mine) != 1:
            continue
        for _, r in g[g["model"] != model].iterrows():
            lead = sign * 100.0 * (float(mine.iloc[0]) / float(r[col]) - 1.0)
            rows.append({"dataset": d, x: xv, "model": r["model"], "lead_pct": lead})
    return pd.DataFrame(rows, columns=["dataset", x, "model", "lead_pct"])


def check_table(
    summary: pd.DataFrame,
    expected: Iterable[tuple],
    n_seeds: int,
    by: Sequence[str] = ("dataset", "model"),
) -> list[str]:
    """Problems with a summary table: a missing row (``expected`` holds one tuple of ``by``
    values per row that must exist), a wrong seed count, a mean AUC outside (0.5, 1) (a
    trained model beats chance over all samples), a GAUC outside [0, 1] (per-user ranking can
    sit at chance on real data, so only its range is checked) or a LogLoss that is not > 0.
    An empty list means the table is complete and plausible."""
    problems = []
    got = {tuple(r) for r in summary[list(by)].itertuples(index=False)}
    problems += [f"missing {' / '.join(map(str, e))}" for e in expected if tuple(e) not in got]
    for _, r in summary.iterrows():
        name = " / ".join(str(r[c]) for c in by)
        if int(r["n_seeds"]) != n_seeds:
            problems.append(f"{name}: {int(r['n_seeds'])} seeds, expected {n_seeds}")
        auc, gauc = r.get("auc_mean", np.nan), r.get("gauc_mean", np.nan)
        if not (0.5 < auc < 1.0):
            problems.append(f"{name}: auc {auc} not in (0.5, 1)")
        if not (0.0 <= gauc <= 1.0):
            problems.append(f"{name}: gauc {gauc} not in [0, 1]")
        if not (r.get("logloss_mean", 1.0) > 0):
            problems.append(f"{name}: logloss {r.get('logloss_mean')} not > 0")
    return problems
