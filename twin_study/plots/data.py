"""Figures of ``notebooks/00_data.ipynb``: what the data looks like.

Each function takes ``ax=None`` (``axes=None`` for a row of panels), draws on it or on a new
figure, and returns the figure; save with ``twin_study.plots.base.savefig``. Inputs are the
tables of ``twin_study.analysis.data_stats``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from twin_study.analysis.data_stats import KINDS, RECENT_WINDOW, SHORT_WINDOW
from twin_study.plots.base import figure_axes

_COMMA = mticker.FuncFormatter(lambda v, _: f"{v:,.0f}")
_KIND_STYLE = {
    KINDS[0]: {"color": "C0", "ls": "-"},
    KINDS[1]: {"color": "C3", "ls": "-"},
    KINDS[2]: {"color": "C7", "ls": "--"},
}


def _row(axes: Sequence[Axes] | None, n: int, width: float = 4.0) -> tuple[Figure, list[Axes]]:
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(width * n, 3.6), layout="constrained")
        return fig, list(np.atleast_1d(axes))
    if len(axes) != n:
        raise ValueError(f"expected {n} axes, got {len(axes)}")
    return axes[0].figure, list(axes)


def plot_history_lengths(lengths: Mapping[str, np.ndarray], ax: Axes | None = None) -> Figure:
    """Distribution of behaviours per user, one line per data set, log-scaled x; dashed lines
    mark the medians."""
    fig, ax = figure_axes(ax)
    hi = max(int(np.max(v)) for v in lengths.values())
    lo = max(1, min(int(np.min(v)) for v in lengths.values()))
    bins = np.geomspace(lo, hi + 1, 40)
    for i, (name, v) in enumerate(lengths.items()):
        ax.hist(
            v,
            bins=bins,
            histtype="step",
            lw=1.8,
            color=f"C{i}",
            label=name,
            density=False,
            weights=np.full(len(v), 1.0 / len(v)),
        )
        ax.axvline(np.median(v), color=f"C{i}", ls="--", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_COMMA)
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())
    ax.set_xlabel("behaviours per user (log scale; dashed: median)")
    ax.set_ylabel("share of users")
    ax.set_title("History length")
    ax.legend(frameon=False)
    return fig


def plot_category_shares(shares: Mapping[str, pd.Series], ax: Axes | None = None) -> Figure:
    """Share of behaviours per category, categories sorted by share (rank 1 = most common)."""
    fig, ax = figure_axes(ax)
    for i, (name, s) in enumerate(shares.items()):
        v = np.sort(np.asarray(s, dtype=float))[::-1]
        ax.plot(np.arange(1, len(v) + 1), v, marker="o", ms=3, lw=1.2, color=f"C{i}", label=name)
    ax.set_xlabel("category rank (by share of behaviours)")
    ax.set_ylabel("share of behaviours")
    ax.set_ylim(bottom=0)
    ax.set_title("Category distribution")
    ax.legend(frameon=False)
    return fig


def plot_cross_features(
    frame: pd.DataFrame,
    features: Sequence[str] = ("play_ratio", "liked", "time_gap"),
    engaged_bucket: int | None = None,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Per cross feature, the share of behaviours at each code, relevant vs. other behaviours
    (``frame`` from ``data_stats.cross_feature_frame``)."""
    fig, axes = _row(axes, len(features))
    groups = [g for g in ("relevant", "other") if g in set(frame["group"])]
    colors = {"relevant": "C3", "other": "C7"}
    for ax, feat in zip(axes, features, strict=True):
        codes = np.arange(int(frame[feat].max()) + 1)
        width = 0.8 / len(groups)
        for j, g in enumerate(groups):
            v = frame.loc[frame["group"] == g, feat].to_numpy()
            share = np.bincount(v, minlength=len(codes)) / max(len(v), 1)
            ax.bar(
                codes + (j - (len(groups) - 1) / 2) * width,
                share,
                width=width,
                color=colors[g],
                label=f"{g} ({len(v):,})",
            )
        if feat == "play_ratio" and engaged_bucket is not None:
            ax.axvline(engaged_bucket - 0.5, color="k", ls=":", lw=1)
        ax.set_xticks(codes if len(codes) <= 12 else codes[::2])
        ax.set_xlabel(
            {
                "time_gap": "time gap to request (log2 hours bucket)",
                "play_ratio": "play_ratio bucket (dotted: engaged from here)",
            }.get(feat, f"{feat} code")
        )
        ax.set_title(feat)
    axes[0].set_ylabel("share of behaviours")
    axes[min(1, len(axes) - 1)].legend(frameon=False, fontsize=8, loc="upper right")
    fig.suptitle("Cross features: relevant behaviours vs. the rest of the history")
    return fig


def plot_relevant_counts(
    n_rel: np.ndarray, kind: np.ndarray, clip: int = 30, ax: Axes | None = None
) -> Figure:
    """Distribution of the number of relevant behaviours per sample, one line per target kind
    (counts above ``clip`` are pooled in the last bin)."""
    fig, ax = figure_axes(ax)
    clip = max(1, min(clip, int(np.max(n_rel, initial=0))))
    bins = np.arange(clip + 2) - 0.5
    for k in KINDS:
        v = np.minimum(n_rel[kind == k], clip)
        if len(v) == 0:
            continue
        ax.hist(
            v,
            bins=bins,
            histtype="step",
            lw=1.8,
            label=f"{k} ({len(v):,})",
            weights=np.full(len(v), 1.0 / len(v)),
            **_KIND_STYLE[k],
        )
    ax.set_yscale("log")
    ax.set_xlabel(f"relevant behaviours visible before the request (last bin: >= {clip})")
    ax.set_ylabel("share of samples (log scale)")
    ax.set_title("How much evidence each sample has")
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_label_rate(table: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Observed click rate (+- 2 standard errors) and mean true click probability per bucket of
    relevant-behaviour counts (``data_stats.relevant_count_table``)."""
    fig, ax = figure_axes(ax)
    x = np.arange(len(table))
    ax.errorbar(
        x,
        table["label_rate"],
        yerr=2 * table["stderr"],
        fmt="o-",
        capsize=3,
        label="observed click rate",
    )
    ax.plot(x, table["p_true"], "s--", color="C1", label="mean true probability")
    for xi, n in zip(x, table["n"], strict=True):
        ax.annotate(
            f"n={n:,}",
            (xi, 0),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=7,
            color="0.4",
        )
    ax.set_xticks(x, table["n_relevant"])
    ax.set_ylim(0, 1)
    ax.set_xlabel("relevant behaviours visible before the request")
    ax.set_ylabel("click rate")
    ax.set_title("Click rate rises with the evidence")
    ax.legend(frameon=False, loc="upper left")
    return fig


def plot_relevant_recency(
    rel: pd.DataFrame,
    windows: Sequence[int] = (SHORT_WINDOW, RECENT_WINDOW),
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Where the relevant behaviours sit: (left) cumulative share by rank from the request (log
    scale; dotted lines at the short-term and DIN windows), (right) their age in days."""
    fig, (left, right) = _row(axes, 2, width=4.5)
    age_bins = np.linspace(0, max(float(rel["age_days"].max()), 1.0), 37)
    for k in KINDS:
        grp = rel[rel["kind"] == k]
        if grp.empty:
            continue
        r = np.sort(grp["rank"].to_numpy()) + 1
        left.step(
            r,
            np.arange(1, len(r) + 1) / len(r),
            where="post",
            label=f"{k} ({len(r):,})",
            **_KIND_STYLE[k],
        )
        right.hist(
            grp["age_days"],
            bins=age_bins,
            histtype="step",
            lw=1.8,
            weights=np.full(len(grp), 1.0 / len(grp)),
            **_KIND_STYLE[k],
        )
    for w in windows:
        left.axvline(w, color="k", ls=":", lw=1)
        left.text(w * 1.06, 0.75, f"last {w}", rotation=90, va="center", fontsize=8)
    left.set_xscale("log")
    left.xaxis.set_major_formatter(_COMMA)
    left.set_ylim(0, 1.02)
    left.set_xlabel("position from the request (1 = most recent, log scale)")
    left.set_ylabel("cumulative share of relevant behaviours")
    left.legend(frameon=False, fontsize=8, loc="center left")
    right.set_xlabel("age at request time (days)")
    right.set_ylabel("share of relevant behaviours")
    fig.suptitle("Where the relevant behaviours sit in the history")
    return fig


def plot_true_probability(
    p_true: np.ndarray,
    label: np.ndarray,
    auc: float | None = None,
    ax: Axes | None = None,
    *,
    samples: str = "",
) -> Figure:
    """True click probability of clicked vs. not clicked samples; their overlap is what bounds
    any model's AUC (the Bayes-optimal AUC, given in the title with ``samples``, the sample
    set it was measured on: it differs from one log and split to another)."""
    fig, ax = figure_axes(ax)
    bins = np.linspace(0, 1, 41)
    for lab, name, color in ((1, "clicked", "C2"), (0, "not clicked", "C7")):
        v = p_true[label == lab]
        ax.hist(
            v,
            bins=bins,
            histtype="stepfilled",
            alpha=0.45,
            color=color,
            label=f"{name} ({len(v):,})",
            weights=np.full(len(v), 1.0 / max(len(v), 1)),
        )
    ax.set_xlabel("true click probability p_true")
    ax.set_ylabel("share of samples")
    title = "True click probability by outcome"
    if auc is not None:
        title += f"\nBayes-optimal AUC {auc:.3f}" + (f" on {samples}" if samples else "")
    ax.set_title(title)
    ax.legend(frameon=False)
    return fig
