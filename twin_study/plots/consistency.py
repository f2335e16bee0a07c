"""Figures of ``notebooks/02_consistency.ipynb``: does the GSU retrieve what the ESU wants?

Each function takes ``ax=None``, draws on it or on a new figure, and returns the figure; save
with ``twin_study.plots.base.savefig``. Inputs are tidy frames built in the notebook from
``twin_study.analysis.consistency.results_frame`` (one row per data set, model, seed and GSU
output size). Models are labelled by their label in ``models.registry``
(``claims.consistency.model_label``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# The verdict text, claims and table of notebook 02 live in claims.consistency;
# imported here as well, where the notebook calls them (``pc.fig4_verdict``, ...).
from twin_study.claims.consistency import consistency_claims as consistency_claims
from twin_study.claims.consistency import fig4_verdict as fig4_verdict
from twin_study.claims.consistency import markdown_table as markdown_table
from twin_study.claims.consistency import model_label
from twin_study.claims.consistency import recall_verdict as recall_verdict
from twin_study.claims.consistency import size_needed as size_needed
from twin_study.claims.consistency import staleness_verdict as staleness_verdict
from twin_study.paper import CACHE_DELAY_MINUTES, FIG4_HITS
from twin_study.plots.base import figure_axes

_COMMA = mticker.FuncFormatter(lambda v, _: f"{v:,.0f}")


def _colors(models: Sequence[str]) -> dict[str, str]:
    return {m: f"C{i % 10}" for i, m in enumerate(models)}


def _grouped_bars(
    ax: Axes,
    frame: pd.DataFrame,
    groups: Sequence[str],
    hue: str,
    hue_order: Sequence[str],
    hue_labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Bars of ``frame["mean"]`` (error bars ``frame["std"]``) at one x per model in ``groups``,
    one bar per ``hue`` value; returns the x positions."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(hue_order), 1)
    for j, h in enumerate(hue_order):
        sub = frame[frame[hue] == h].set_index("model").reindex(groups)
        std = sub["std"].fillna(0.0).to_numpy() if "std" in sub else np.zeros(len(sub))
        ax.bar(
            x + (j - (len(hue_order) - 1) / 2) * width,
            sub["mean"].to_numpy(),
            width=width,
            yerr=std if std.any() else None,  # no empty caps with a single seed
            capsize=3,
            color=(colors or {}).get(h, f"C{j}"),
            label=(hue_labels or {}).get(h, h),
        )
    ax.set_xticks(x, [model_label(m) for m in groups], rotation=30, ha="right")
    return x


def plot_hits_curve(
    curves: pd.DataFrame,
    oracle_k: int = 100,
    paper: Mapping[str, float] | None = FIG4_HITS,
    title: str = "",
    ax: Axes | None = None,
) -> Figure:
    """Paper Fig. 4: hits in the model's own real top-``oracle_k`` vs GSU output size (log x).

    ``curves`` has columns model, size, mean, std (over seeds); a band shows +- std. The dashed
    line is perfect consistency, min(size, oracle_k); crosses mark the paper's values at 100.
    """
    fig, ax = figure_axes(ax, figsize=(6.4, 4.4))
    models = list(dict.fromkeys(curves["model"]))
    colors = _colors(models)
    sizes = np.sort(curves["size"].unique())
    ax.plot(sizes, np.minimum(sizes, oracle_k), ls="--", color="0.5", lw=1,
            label="perfect consistency")  # fmt: skip
    for m in models:
        c = curves[curves["model"] == m].sort_values("size")
        ax.plot(c["size"], c["mean"], marker="o", ms=3.5, lw=1.6, color=colors[m],
                label=model_label(m))  # fmt: skip
        if (c["std"].fillna(0) > 0).any():
            lo, hi = c["mean"] - c["std"], c["mean"] + c["std"]
            ax.fill_between(c["size"], lo, hi, color=colors[m], alpha=0.15, lw=0)
    for m, v in (paper or {}).items():
        ax.plot([100], [v], marker="X", ms=9, color=colors.get(m, "k"), mec="k", ls="none")
    if paper:
        ax.plot([], [], marker="X", ms=8, color="w", mec="k", ls="none", label="paper, L = 10^4")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_COMMA)
    ax.set_ylim(0, oracle_k * 1.05)
    ax.set_xlabel("GSU output size (log scale)")
    ax.set_ylabel(f"GSU outputs in the real top-{oracle_k}")
    ax.set_title(title or "Consistency of GSU and ESU (paper Fig. 4)")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return fig


def plot_hits_bars(
    table: pd.DataFrame,
    models: Sequence[str],
    oracle_k: int = 100,
    paper: Mapping[str, float] | None = FIG4_HITS,
    ax: Axes | None = None,
) -> Figure:
    """Hits at GSU output size ``oracle_k`` per model, one bar per data set, error bars = std
    over seeds (``table``: dataset, model, mean, std). Black ticks: the paper's values."""
    fig, ax = figure_axes(ax, figsize=(6.8, 4.0))
    datasets = list(dict.fromkeys(table["dataset"]))
    x = _grouped_bars(ax, table, models, "dataset", datasets)
    for i, m in enumerate(models):
        if paper and m in paper:
            ax.plot([x[i] - 0.45, x[i] + 0.45], [paper[m]] * 2, color="k", lw=2)
    if paper:
        ax.plot([], [], color="k", lw=2, label="paper (L = 10^4)")
    ax.set_ylim(0, oracle_k * 1.08)
    ax.set_ylabel(f"hits in the real top-{oracle_k} at GSU output {oracle_k}")
    ax.set_title(f"Hits@{oracle_k} (mean +- std over seeds)")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return fig


def plot_staleness(
    stale: pd.DataFrame,
    oracle_k: int = 100,
    paper_value: float | None = FIG4_HITS["twin"],
    ax: Axes | None = None,
) -> Figure:
    """TWIN's hits at GSU output ``oracle_k`` vs the age of its item cache in training steps
    (``stale``: dataset, steps, hits); symlog x so that a fresh cache (0) is shown."""
    fig, ax = figure_axes(ax)
    for i, (name, grp) in enumerate(stale.groupby("dataset", sort=False)):
        g = grp.sort_values("steps")
        ax.plot(g["steps"], g["hits"], marker="o", lw=1.6, color=f"C{i}", label=name)
    if paper_value is not None:
        delay = f"{CACHE_DELAY_MINUTES}-min cache delay"
        ax.axhline(paper_value, color="k", ls=":", lw=1.2,
                   label=f"paper: {paper_value:.0f} ({delay})")  # fmt: skip
    ax.set_xscale("symlog", linthresh=1)
    ax.xaxis.set_major_formatter(_COMMA)
    ax.set_ylim(0, oracle_k * 1.05)
    ax.set_xlabel("training steps since the item cache was rebuilt (symlog)")
    ax.set_ylabel(f"TWIN hits in the real top-{oracle_k}")
    ax.set_title("Cache staleness vs consistency")
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    return fig


def plot_attention_mass(
    table: pd.DataFrame,
    models: Sequence[str],
    k: int = 100,
    flat: Mapping[str, float] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Share of the oracle's softmax attention mass (over all L behaviours) inside each GSU's
    ``k`` set, one bar per data set (``table``: dataset, model, mean, std). ``flat``: per data
    set, the share any ``k`` behaviours hold under uniform attention (dotted lines)."""
    fig, ax = figure_axes(ax, figsize=(6.8, 4.0))
    datasets = list(dict.fromkeys(table["dataset"]))
    _grouped_bars(ax, table, models, "dataset", datasets)
    for j, d in enumerate(datasets):
        if flat and d in flat:
            ax.axhline(flat[d], color=f"C{j}", ls=":", lw=1.2, label=f"{d}: uniform attention")
    ax.set_ylim(0, min(1.0, 1.25 * max(table["mean"].max(), *(flat or {0: 0}).values())) + 0.01)
    ax.set_ylabel(f"oracle attention mass in the GSU's {k}")
    ax.set_title("How much of what the ESU would attend to the GSU keeps")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return fig


def plot_relevance_recall(
    table: pd.DataFrame, models: Sequence[str], k: int = 100, ax: Axes | None = None
) -> Figure:
    """Recall of the planted relevant behaviours (synthetic data) by each GSU's ``k`` set and by
    the model's own oracle top-``k`` (``table``: model, set in {"gsu", "oracle"}, mean, std)."""
    fig, ax = figure_axes(ax, figsize=(6.8, 4.0))
    _grouped_bars(ax, table, models, "set", ["gsu", "oracle"],
                  hue_labels={"gsu": f"GSU's {k}", "oracle": f"oracle top-{k} (own ESU)"},
                  colors={"gsu": "C0", "oracle": "C7"})  # fmt: skip
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of planted relevant behaviours kept")
    ax.set_title("Recall of the truly relevant behaviours")
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return fig
