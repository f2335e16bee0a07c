"""Figures of ``notebooks/06_retrieval.ipynb``: when does learned retrieval win?

Each function takes ``ax=None`` and returns the figure; save with
``twin_study.plots.base.savefig``. Inputs come from ``twin_study.analysis.retrieval_wins``
(``grid`` rows summarised with ``sweeps.summarize``, ``gap``, ``rule_recall``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from twin_study.analysis.retrieval_wins import KNOB
from twin_study.plots.base import figure_axes
from twin_study.plots.results import OUTSIDE, plot_curves

ORDER = ("TWIN", "SIM Soft", "SIM Cluster", "ETA", "SDIM", "SIM Hard", "DIN")  # colour order


def plot_recall_vs_L(
    summary: pd.DataFrame,
    rule: pd.DataFrame | None = None,
    *,
    order: Sequence[str] = ORDER,
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Planted-relevance recall of each model's GSU against L (``summary``: one world's
    ``recall_gsu_mean`` / ``_std`` per model and ``long_len``), with SIM Hard's rule applied
    without a model and the most any k behaviours can hold (``rule``: ``long_len, recall,
    ceiling``, means over the samples) as dashed and dotted black lines."""
    fig = plot_curves(summary, "long_len", "recall_gsu", order=order, ax=ax, title=title,
                      ylabel="recall of the planted relevant behaviours")  # fmt: skip
    ax = fig.axes[0] if ax is None else ax
    if rule is not None and len(rule):
        r = rule.sort_values("long_len")
        ax.plot(r["long_len"], r["recall"], "k--", lw=1, label="category rule, no model")
        ax.plot(r["long_len"], r["ceiling"], "k:", lw=1, label="any k (ceiling)")
        ax.legend(**OUTSIDE)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("GSU input length L")
    return fig


def plot_gap_vs_knob(
    gap: pd.DataFrame,
    overlap: Mapping[float, float] | None = None,
    *,
    ylabel: str = "TWIN − SIM Hard, test AUC",
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """The paired per-seed difference (``gap`` from ``retrieval_wins.gap``) against the knob,
    one line per L: mean ± std over seeds, each seed a dot. ``overlap`` (knob -> share of
    relevant behaviours in the target's category) is written under the knob's ticks, so the
    axis reads both as the knob and as how well category predicts relevance."""
    fig, ax = figure_axes(ax, figsize=(6.5, 4.2))
    Ls = sorted(gap["long_len"].unique())
    knobs = sorted(gap[KNOB].unique())
    width = (knobs[-1] - knobs[0]) or 1.0
    for i, L in enumerate(Ls):
        g = gap[gap["long_len"] == L].sort_values(KNOB)
        x = g[KNOB].to_numpy(dtype=float) + (i - (len(Ls) - 1) / 2) * 0.015 * width  # dodge
        color = f"C{i % 10}"
        ax.errorbar(x, g["mean"], yerr=g["std"].fillna(0.0), color=color, marker="o", ms=5,
                    capsize=3, lw=1.5, label=f"L = {L:,}")  # fmt: skip
        for xi, vals in zip(x, g["values"], strict=True):
            ax.plot(np.full(len(vals), xi), vals, ".", color=color, alpha=0.5, ms=4)
    ax.axhline(0.0, color="k", lw=0.8)
    labels = [f"{v:g}" for v in knobs]
    if overlap is not None:
        labels = [f"{v:g}\n({overlap[v]:.2f})" for v in knobs]
        ax.set_xlabel(f"{KNOB}  (share of relevant behaviours in the target's category)")
    else:
        ax.set_xlabel(KNOB)
    ax.set_xticks(knobs, labels)
    n = int(gap["n_seeds"].min()) if len(gap) else 0
    ax.set_ylabel(f"{ylabel}\n(mean ± std over {n} seed(s); dots: seeds)")
    ax.legend(**OUTSIDE)
    ax.set_title(title)
    return fig
