"""Notebook 09's figures: the arms on the life-cycle worlds (TWIN-V2 beyond TWIN's window)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from twin_study.plots.base import figure_axes


def plot_arms(
    runs: pd.DataFrame,
    metric: str,
    order: Sequence[str],
    ax: Axes | None = None,
    ylabel: str = "",
    title: str = "",
    zoom: bool = False,
) -> Figure:
    """One group of bars per arm (``order``), one bar per data set: the mean of ``metric``
    over seeds, each seed a dot on its bar (the spread itself, not only its summary). Arms or
    values that are missing (NaN) are left empty. ``zoom``: the y axis spans the values (AUCs
    differ in the third decimal), not zero to the top."""
    fig, ax = figure_axes(ax, figsize=(8.0, 4.0))
    worlds = list(dict.fromkeys(runs["dataset"]))
    arms = [a for a in order if a in set(runs["model"])]
    x = np.arange(len(arms))
    width = 0.8 / max(len(worlds), 1)
    for j, w in enumerate(worlds):
        pos = x + (j - (len(worlds) - 1) / 2) * width
        sub = runs[runs["dataset"] == w]
        means = [sub.loc[sub["model"] == a, metric].mean() for a in arms]
        ax.bar(pos, means, width=width * 0.95, color=f"C{j}", alpha=0.6, label=w)
        for p, a in zip(pos, arms, strict=True):
            vals = sub.loc[sub["model"] == a, metric].dropna().to_numpy()
            ax.plot(np.full(len(vals), p), vals, "o", color=f"C{j}", ms=4, mec="black", mew=0.5)
    vals = runs.loc[runs["model"].isin(arms), metric].dropna()
    if zoom and len(vals):
        pad = 0.1 * max(float(vals.max() - vals.min()), 0.01)
        ax.set_ylim(float(vals.min()) - pad, float(vals.max()) + pad)
    ax.set_xticks(x, arms, rotation=20, ha="right")
    ax.set_ylabel(ylabel or metric)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize="small")
    return fig
