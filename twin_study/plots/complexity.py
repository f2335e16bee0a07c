"""Figures of notebooks/01_complexity.ipynb: cost vs L, speed-up, roofline, stage shares.

Each function takes ``ax=None`` and returns the figure; inputs are the data frames of
``twin_study.analysis.complexity``. Raw MHTA is drawn in one colour and TWIN in another
throughout; line style or marker tells the candidate count B.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

COLORS = {"raw": "#d55e00", "twin": "#0072b2"}
LABELS = {"raw": "raw MHTA", "twin": "TWIN"}
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v"]


def _ax(ax: Axes | None, figsize=(6.0, 4.0)) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def _loglog(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)


def _setting_name(setting: str, B: int) -> str:
    return f"B = {B:,}" if setting == "request" else f"train batch {B}"


def _method_lines(ax: Axes, df: pd.DataFrame, y: str) -> None:
    """One line per (setting, B) and method: colour = method, line style = setting/B."""
    if "setting" not in df:
        df = df.assign(setting="request")
    keys = list(dict.fromkeys(zip(df.setting, df.B, strict=True)))
    for i, (setting, B) in enumerate(keys):
        g = df[(df.setting == setting) & (df.B == B)]
        for m, gm in g.groupby("method"):
            ax.plot(gm.L, gm[y], STYLES[i % len(STYLES)], color=COLORS[m], marker="o", ms=3,
                    label=f"{LABELS[m]}, {_setting_name(setting, B)}")  # fmt: skip
    ax.legend(fontsize="x-small", ncol=2)


def plot_flops_vs_L(costs: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Analytic FLOPs of scoring one request vs L, raw vs TWIN, one line style per B."""
    fig, ax = _ax(ax)
    _method_lines(ax, costs, "flops")
    _loglog(ax, "history length L", "FLOPs per request", "Analytic cost of CP-GSU scoring")
    return fig


def plot_time_vs_L(scoring: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Measured seconds per scoring call vs L, raw vs TWIN, one line style per setting/B."""
    fig, ax = _ax(ax)
    _method_lines(ax, scoring, "time_s")
    _loglog(ax, "history length L", "seconds per call (median)", "Measured CP-GSU scoring time")
    return fig


def plot_speedup(side: pd.DataFrame, costs: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Raw time / TWIN time vs L per setting (solid, markers) next to the analytic FLOP ratio
    (dashed), with 1 (no gain) marked."""
    fig, ax = _ax(ax)
    keys = list(dict.fromkeys(zip(side.setting, side.B, strict=True)))
    for i, (setting, B) in enumerate(keys):
        g = side[(side.setting == setting) & (side.B == B)]
        name = _setting_name(setting, B)
        line = ax.plot(g.L, g.speedup, "-", marker=MARKERS[i % len(MARKERS)], label=f"time, {name}")
        c = costs[(costs.B == B)].pivot(index="L", columns="method", values="flops")
        if setting == "request" and len(c):
            ax.plot(c.index, c.raw / c.twin, "--", color=line[0].get_color(), alpha=0.6,
                    label=f"FLOPs, {name}")  # fmt: skip
    ax.axhline(1.0, color="0.4", lw=0.8)
    _loglog(ax, "history length L", "raw / TWIN", "TWIN's speed-up over raw MHTA")
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def plot_roofline(roof: pd.DataFrame, peaks: dict, ax: Axes | None = None) -> Figure:
    """Attained FLOP/s vs arithmetic intensity of every scoring call, under this machine's
    roofs: fp32 matmul rate, copy bandwidth x intensity (solid) and gather bandwidth (dotted).
    Marker = method, size grows with L, colour = setting/B."""
    fig, ax = _ax(ax)
    x = np.logspace(np.log10(roof.intensity.min() / 2), np.log10(roof.intensity.max() * 4), 100)
    peak = peaks["matmul_flops_per_s"]
    ax.plot(x, np.minimum(peak, x * peaks["copy_bytes_per_s"]), "k-", lw=1, label="roof (copy)")
    ax.plot(x, np.minimum(peak, x * peaks["gather_bytes_per_s"]), "k:", lw=1,
            label="roof (row gather)")  # fmt: skip
    keys = list(dict.fromkeys(zip(roof.setting, roof.B, strict=True)))
    sizes = {L: 12 + 14 * i for i, L in enumerate(sorted(roof.L.unique()))}
    for i, (setting, B) in enumerate(keys):
        g = roof[(roof.setting == setting) & (roof.B == B)]
        color = f"C{i}"
        for m, marker in (("raw", "s"), ("twin", "o")):
            gm = g[g.method == m]
            ax.scatter(gm.intensity, gm.flops_per_s, s=gm.L.map(sizes), marker=marker,
                       color=color, alpha=0.8, edgecolors="k", linewidths=0.4)  # fmt: skip
        ax.scatter([], [], marker="o", color=color, label=_setting_name(setting, B))
    ax.scatter([], [], marker="s", color="w", edgecolors="k", label="raw MHTA")
    ax.scatter([], [], marker="o", color="w", edgecolors="k", label="TWIN")
    _loglog(ax, "arithmetic intensity (FLOP / byte)", "attained FLOP/s",
            "Roofline of CP-GSU scoring (marker size ~ L)")  # fmt: skip
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def plot_stage_shares(stages: pd.DataFrame, stage_names, ax: Axes | None = None) -> Figure:
    """Stacked horizontal bars: the share of each stage in one forward, per method and L, with
    the forward's median time written after each bar."""
    fig, ax = _ax(ax, figsize=(7.0, 3.6))
    labels = [f"{LABELS[m]}, L = {L:,}" for m, L in zip(stages.method, stages.L, strict=True)]
    left = np.zeros(len(stages))
    for i, s in enumerate(stage_names):
        share = stages[f"share {s}"].to_numpy()
        ax.barh(labels, share, left=left, color=f"C{i}", label=s)
        left += share
    for y, total in enumerate(stages["total"]):
        ax.text(1.01, y, f"{1e3 * total:.1f} ms", va="center", fontsize="x-small")
    ax.set(xlabel="share of the forward's time", xlim=(0, 1.15),
           title="Where a forward (one request) spends its time")  # fmt: skip
    ax.invert_yaxis()
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    return fig


def plot_train_throughput(wide: pd.DataFrame, bar: float = 2000.0) -> Figure:
    """Training samples/s of every module, fast path beside the reference path, one panel per
    L, with the speed-up written on each pair and the project's bar as a line.
    ``wide``: ``twin_study.analysis.throughput.side_by_side``."""
    Ls = sorted(wide.L.unique())
    fig, axes = plt.subplots(1, len(Ls), figsize=(4.6 * len(Ls), 4.2), layout="constrained",
                             squeeze=False)  # fmt: skip
    for ax, L in zip(axes[0], Ls, strict=True):
        g = wide[wide.L == L].reset_index(drop=True)
        y = np.arange(len(g))
        for dy, impl, color in ((-0.2, "reference", "#999999"), (0.2, "fast", COLORS["twin"])):
            col = f"{impl}_samples_per_s"
            if col in g:
                ax.barh(y + dy, g[col], height=0.4, color=color, label=f"{impl} path")
        if "speedup" in g:
            for yi, (v, s) in enumerate(zip(g["fast_samples_per_s"], g["speedup"], strict=True)):
                ax.text(v, yi + 0.2, f" {s:.1f}×", va="center", fontsize="x-small")
        ax.axvline(bar, color="k", ls=":", lw=1, label=f"{bar:,.0f} samples/s")
        top = max(bar, np.nanmax(g.filter(like="samples_per_s").to_numpy()))
        ax.set(xlim=(0, 1.2 * top), yticks=y, yticklabels=g.long_module,
               xlabel="training samples/s", title=f"L = {L:,}")  # fmt: skip
        ax.invert_yaxis()
    axes[0][0].legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    fig.suptitle("Training throughput, one thread, batch 256 (speed-up = fast / reference)")
    return fig


def plot_catalogue(wide: pd.DataFrame, bar: float = 0.75) -> Figure:
    """Training cost per step against the catalogue size (issue 27): samples/s of every
    module's fast path (left) and its ratio to the same module at the smallest catalogue
    (right, with the 0.75 bar), one line per module, a line style per L; log x.
    ``wide``: ``twin_study.analysis.throughput.catalogue_side_by_side``."""
    fig, (ax, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    styles = ["-", "--", ":", "-."]
    modules = list(dict.fromkeys(wide.long_module))
    cmap = plt.get_cmap("tab10")
    for j, L in enumerate(sorted(wide.L.unique())):
        for i, m in enumerate(modules):
            g = wide[(wide.L == L) & (wide.long_module == m)].sort_values("n_items")
            kw = dict(color=cmap(i % 10), ls=styles[j % len(styles)], marker="o", ms=3)
            ax.plot(g.n_items, g.samples_per_s, label=f"{m}, L = {L:,}", **kw)
            ax_r.plot(g.n_items, g.vs_smallest, **kw)
    ax_r.axhline(bar, color="k", ls=":", lw=1)
    ax_r.text(wide.n_items.min(), bar, f" {bar:g}x bar", va="bottom", fontsize="x-small")
    ax.set(xscale="log", yscale="log", xlabel="catalogue (items)", ylabel="training samples/s",
           title="cost per step against catalogue size")  # fmt: skip
    ax_r.set(xscale="log", xlabel="catalogue (items)", ylim=(0, None),
             ylabel="samples/s / samples/s at the smallest catalogue",
             title="relative to the smallest catalogue")  # fmt: skip
    ax.legend(fontsize="xx-small", ncol=2)
    return fig
