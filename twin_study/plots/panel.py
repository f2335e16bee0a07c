"""Figures of notebook 08, the panel of worlds: TWIN minus each rival with its interval in
every world (a forest plot), and the share of the Avg-Pooling -> Bayes gap each model closes.

Inputs are the per-world records of ``twin_study.panel.run.analyse_world``, as plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .results import OUTSIDE

VERDICT_MARKER = {"win": "o", "tie": "s", "loss": "X"}


def plot_effects(worlds: Mapping[str, Mapping[str, Any]], metric: str = "auc") -> Figure:
    """One row per rival; per world a marker at the effect (TWIN minus rival) with its
    bootstrap interval; the marker's shape is the world's verdict (win / tie / loss)."""
    eff = pd.DataFrame(
        [
            {**e, "world": w}
            for w, r in worlds.items()
            for e in r["effects"]
            if e["metric"] == metric
        ]
    )
    rivals = list(dict.fromkeys(eff.rival))
    names = list(worlds)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 * len(rivals) + 1.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    step = 0.8 / max(len(names), 1)
    for j, w in enumerate(names):
        sub = eff[eff.world == w].set_index("rival")
        for i, r in enumerate(rivals):
            if r not in sub.index:
                continue
            e = sub.loc[r]
            y = i + (j - (len(names) - 1) / 2) * step
            colour = colours[j % len(colours)]
            ax.plot([e.lo, e.hi], [y, y], color=colour, lw=1.5)
            ax.plot(e.effect, y, VERDICT_MARKER.get(e.verdict, "o"), color=colour,
                    label=w if i == 0 else None, ms=6)  # fmt: skip
    ax.axvline(0.0, color="0.3", lw=0.8)
    ax.set_yticks(range(len(rivals)), [f"TWIN − {r}" for r in rivals])
    ax.invert_yaxis()
    ax.set_xlabel(f"test {metric.upper()} difference (95 % hierarchical bootstrap interval)")
    ax.set_title("TWIN minus each rival, per world (o win, ■ tie, X loss)")
    ax.legend(title="world", **OUTSIDE)
    fig.tight_layout()
    return fig


def plot_gap_closed(worlds: Mapping[str, Mapping[str, Any]], models: Sequence[str]) -> Figure:
    """Share of the Avg-Pooling -> Bayes-optimal test AUC gap each model closes, per world
    (worlds without a planted truth are left out)."""
    rows = [{**g, "world": w} for w, r in worlds.items() for g in (r.get("gap_closed") or [])]
    fig, ax = plt.subplots(figsize=(8.0, 3.8))
    if not rows:
        ax.text(0.5, 0.5, "no world with a planted truth", ha="center", transform=ax.transAxes)
        return fig
    gap = pd.DataFrame(rows)
    names = list(dict.fromkeys(gap.world))
    models = [m for m in models if m in set(gap.model)]
    width = 0.8 / len(models)
    x = np.arange(len(names))
    for i, m in enumerate(models):
        sub = gap[gap.model == m].set_index("world").reindex(names)
        err = np.vstack([sub.closure - sub.lo, sub.hi - sub.closure])
        ax.bar(x + (i - (len(models) - 1) / 2) * width, sub.closure, width, yerr=err, label=m,
               capsize=2)  # fmt: skip
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylabel("share of the gap closed")
    ax.set_title("Avg-Pooling → Bayes-optimal test AUC gap closed (95 % interval)")
    ax.legend(**OUTSIDE)
    fig.tight_layout()
    return fig
