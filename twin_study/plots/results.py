"""Figures of notebooks 03-05: Table 4, sequence length (Fig. 5) and ablations (Fig. 6).

Every function takes ``ax=None`` and returns the figure; the notebooks save with
``twin_study.plots.base.savefig``. Inputs are the tidy tables of ``twin_study.analysis.sweeps``
(``summarize`` output: ``<metric>_mean``, ``<metric>_std``, ``n_seeds``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from twin_study.paper import TABLE4_ORDER
from twin_study.plots.base import figure_axes

METRIC_NAMES = {"auc": "AUC", "gauc": "GAUC", "logloss": "LogLoss"}
# The paper's numbers: a neutral grey with hatching, never a colour a model of ours wears.
PAPER_STYLE = {"color": "0.78", "hatch": "///", "edgecolor": "0.45", "linewidth": 0.0}
# A panel's legend beside it, outside the data.
OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small"}


def _std(frame: pd.DataFrame, metric: str) -> np.ndarray:
    return frame[f"{metric}_std"].fillna(0.0).to_numpy(dtype=float)


def _order(models: Sequence[str], order: Sequence[str]) -> list[str]:
    known = [m for m in order if m in set(models)]
    return known + [m for m in models if m not in known]


def plot_model_metric(
    summary: pd.DataFrame,
    metric: str = "gauc",
    *,
    order: Sequence[str] = TABLE4_ORDER,
    ceiling: float | None = None,
    ceiling_label: str = "Bayes-optimal",
    highlight: str = "TWIN",
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Mean ± std of ``metric`` per model as points with error bars (the axis does not start
    at zero, so no bars), ``order`` from top to bottom, ``highlight`` in another colour.

    ``ceiling``: a vertical line (e.g. the Bayes-optimal AUC on synthetic data), named in a
    legend beside the axes by ``ceiling_label`` (say on which samples it was measured)."""
    models = _order(list(summary["model"]), order)
    s = summary.set_index("model").loc[models].reset_index()
    fig, ax = figure_axes(ax, figsize=(6.0, 0.35 * len(models) + 1.5))
    y = np.arange(len(models))
    mean, sd = s[f"{metric}_mean"].to_numpy(dtype=float), _std(s, metric)
    for i, m in enumerate(models):
        color = "C1" if m == highlight else "C0"
        ax.errorbar(mean[i], y[i], xerr=sd[i], fmt="o", color=color, capsize=3, ms=6)
    ax.set_yticks(y, models)
    ax.set_ylim(len(models) - 0.5, -0.5)
    lo, hi = np.nanmin(mean - sd), np.nanmax(mean + sd)
    if ceiling is not None:
        ax.axvline(ceiling, color="k", ls=":", lw=1, label=f"{ceiling_label} = {ceiling:.3f}")
        hi = max(hi, ceiling)
        ax.legend(**OUTSIDE)
    pad = max(0.08 * (hi - lo), 0.002)
    ax.set_xlim(lo - pad, hi + pad)
    n = int(s["n_seeds"].min())
    ax.set_xlabel(f"{METRIC_NAMES.get(metric, metric)} (mean ± std over {n} seed(s))")
    ax.set_title(title)
    return fig


def plot_relative_vs_paper(
    table: pd.DataFrame,
    metric: str = "gauc",
    *,
    baseline: str = "",
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Relative improvement (percent) over the baseline, ours beside the paper's, per model;
    the paper's bars grey and hatched, the legend beside the axes.

    ``table`` is ``tables.beside_paper`` output (columns ``<metric> rel. % (ours|paper)``)."""
    fig, ax = figure_axes(ax, figsize=(6.0, 0.35 * len(table) + 1.5))
    y = np.arange(len(table))
    h = 0.4
    ax.barh(y - h / 2, table[f"{metric} rel. % (ours)"], h, label="ours", color="C0")
    if f"{metric} rel. % (paper)" in table:
        paper = table[f"{metric} rel. % (paper)"]
        ax.barh(y + h / 2, paper, h, label="paper (Kuaishou)", **PAPER_STYLE)
    ax.set_yticks(y, table["model"])
    ax.set_ylim(len(table) - 0.5, -0.5)  # first row on top (idempotent, unlike invert_yaxis)
    ax.axvline(0, color="k", lw=0.8)
    name = METRIC_NAMES.get(metric, metric)
    ax.set_xlabel(f"{name} relative improvement over {baseline or 'the baseline'} (%)")
    ax.legend(**OUTSIDE)
    ax.set_title(title)
    return fig


def plot_curves(
    summary: pd.DataFrame,
    x: str,
    metric: str = "gauc",
    *,
    value: str | None = None,
    xscale: str = "log",
    order: Sequence[str] = (),
    ylabel: str = "",
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """One line per model of ``value`` (default ``<metric>_mean``, band ± std) against ``x``.

    ``xscale``: ``"log"``, ``"linear"`` or ``"category"`` (evenly spaced, e.g. cache refresh
    0, 10, 50, 200). Ticks sit at the values run. A model keeps its colour across figures:
    colours follow its position in ``order``. The legend sits beside the axes (for several
    panels, ``legend_below`` makes one legend for all)."""
    col = value or f"{metric}_mean"
    fig, ax = figure_axes(ax, figsize=(6.0, 4.0))
    models = _order(list(dict.fromkeys(summary["model"])), order)
    palette = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys([*order, *models]))}
    values = sorted(summary[x].unique())
    pos = {v: i for i, v in enumerate(values)} if xscale == "category" else {v: v for v in values}
    for m in models:
        s = summary[summary["model"] == m].sort_values(x)
        xs = np.array([pos[v] for v in s[x]], dtype=float)
        ys = s[col].to_numpy(dtype=float)
        style = {"lw": 2.2, "zorder": 3} if m == "TWIN" else {"lw": 1.3}
        ax.plot(xs, ys, marker="o", ms=4, label=m, color=palette[m], **style)
        if value is None and f"{metric}_std" in s:
            sd = _std(s, metric)
            ax.fill_between(xs, ys - sd, ys + sd, color=palette[m], alpha=0.15, lw=0)
    if xscale == "log":
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks([pos[v] for v in values], [f"{v:,}" for v in values])
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel or METRIC_NAMES.get(metric, metric))
    ax.legend(**OUTSIDE)
    ax.set_title(title)
    return fig


def plot_inference_time(
    timing: pd.DataFrame, *, order: Sequence[str] = (), title: str = "", ax: Axes | None = None
) -> Figure:
    """Forward time per 1,000 samples per model: median bar, every repeat as a dot. Labels
    are wrapped, not rotated, and the axis label is short, so the panel is no taller than
    its neighbours."""
    models = _order(list(dict.fromkeys(timing["model"])), order)
    fig, ax = figure_axes(ax, figsize=(max(4.0, 1.2 * len(models) + 1), 4.0))
    for i, m in enumerate(models):
        t = timing.loc[timing["model"] == m, "ms_per_1k"].to_numpy(dtype=float)
        ax.bar(i, np.median(t), color=f"C{i % 10}", alpha=0.6)
        ax.plot(np.full(len(t), i), t, "k.", ms=4)
    ax.set_xticks(np.arange(len(models)), [textwrap.fill(m, 12) for m in models])
    ax.set_ylabel("ms per 1,000 samples")
    ax.set_xlabel("bar: median; dots: repeats", fontsize="small")
    ax.set_title(title)
    return fig


def legend_below(fig: Figure, axes: Axes | Sequence[Axes], ncol: int = 0) -> Legend:
    """One legend for the whole figure, centred below its panels, in place of the panels' own
    (each entry once, in the order the panels show them). Call before ``tight_layout``, so
    the space the panels' legends took is given back; the legend hangs below the figure and
    the tight bounding box of ``savefig`` takes it in."""
    entries: dict[str, Artist] = {}
    for ax in np.ravel(axes):
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    return fig.legend(
        list(entries.values()), list(entries), loc="upper center", bbox_to_anchor=(0.5, 0.0),
        ncol=ncol or max(len(entries), 1), frameon=False,
    )  # fmt: skip


def plot_learning_curves(
    curves: pd.DataFrame,
    *,
    order: Sequence[str] = TABLE4_ORDER,
    title: str = "",
) -> Figure:
    """Validation AUC and LogLoss against training samples seen, one line per model (the mean
    over seeds; each seed's selected point as a dot), the base-rate predictor's LogLoss as a
    dashed line. ``curves``: ``twin_study.analysis.sweeps.learning_curves`` for one data set."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    models = _order(list(dict.fromkeys(curves["model"])), order)
    for i, m in enumerate(models):
        g = curves[curves.model == m]
        color = "C1" if m == "TWIN" else f"C{(i + 2) % 10}"
        mean = g.groupby("samples_seen", sort=True)[["valid_auc", "valid_logloss"]].mean()
        for ax, col in zip(axes, ["valid_auc", "valid_logloss"], strict=True):
            ax.plot(mean.index, mean[col], marker=".", ms=4, color=color, label=m,
                    lw=2.2 if m == "TWIN" else 1.3)  # fmt: skip
            sel = g[g.selected]
            ax.scatter(sel.samples_seen, sel[col], color=color, s=18, zorder=3)
    const = curves["constant_logloss"].dropna()
    if len(const):
        axes[1].axhline(const.mean(), color="k", ls="--", lw=1, label="base-rate predictor")
    for ax in axes:  # 25k, 50k, ...: full numbers collide on the axis
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:g}k"))
    axes[0].set(xlabel="training samples seen", ylabel="validation AUC", title="AUC")
    axes[1].set(xlabel="training samples seen", ylabel="validation LogLoss", title="LogLoss")
    axes[1].legend(**OUTSIDE)
    fig.suptitle(title or "Learning curves (mean over seeds; dots: the selected point per seed)")
    return fig
