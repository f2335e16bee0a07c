"""Figure layout of notebooks 03-05 (twin_study.plots.results) and the Bayes label of 00:
the paper's bars are not a colour of ours, legends stay off the data, no empty band."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from twin_study.analysis import sweeps, tables
from twin_study.plots import results as pr

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def runs_table(models, seeds=(0, 1), dataset="synthetic", **tags) -> pd.DataFrame:
    rows = []
    for i, m in enumerate(models):
        for s in seeds:
            v = 0.60 + 0.01 * i + 0.002 * s
            rows.append({"dataset": dataset, "model": m, **tags, "seed": s, "auc": v,
                         "gauc": v, "logloss": 1 - v})  # fmt: skip
    return pd.DataFrame(rows)


def _inside(fig, artist, ax) -> bool:
    """Whether ``artist``'s drawn box overlaps ``ax``'s data area."""
    renderer = fig.canvas.get_renderer()
    a, b = artist.get_window_extent(renderer), ax.get_window_extent(renderer)
    return a.overlaps(b)


def test_paper_bars_have_their_own_neutral_style_and_the_legend_is_off_the_data():
    summary = sweeps.summarize(runs_table(["Avg-Pooling", "SIM Soft", "TWIN"]))
    fig = pr.plot_relative_vs_paper(tables.beside_paper(summary), "gauc", baseline="Avg-Pooling")
    ax = fig.axes[0]
    ours, paper = ax.containers
    twin_colour = to_rgba("C1")  # TWIN's highlight in plot_model_metric
    for bar in paper:
        assert bar.get_facecolor() != twin_colour
        assert bar.get_facecolor() != ours[0].get_facecolor()
        assert bar.get_hatch()
    assert ax.get_legend().get_texts()[1].get_text().startswith("paper")
    fig.canvas.draw()
    assert not _inside(fig, ax.get_legend(), ax)


def test_ceiling_is_named_by_its_sample_set():
    summary = sweeps.summarize(runs_table(["DIN", "TWIN"]))
    fig = pr.plot_model_metric(summary, "auc", ceiling=0.846, ceiling_label="Bayes, test split")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Bayes, test split = 0.846"]
    fig.canvas.draw()
    assert not _inside(fig, ax.get_legend(), ax)


def test_legend_below_replaces_the_panels_legends():
    import matplotlib.pyplot as plt

    runs = pd.concat(
        [runs_table(["TWIN", "SIM Soft", "DIN"], long_len=L) for L in (100, 1000)],
        ignore_index=True,
    )
    summary = sweeps.summarize(runs, by=("dataset", "model", "long_len"))
    lead = sweeps.lead_over(summary)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    pr.plot_curves(summary, "long_len", "gauc", order=["TWIN", "SIM Soft", "DIN"], ax=axes[0])
    pr.plot_curves(lead, "long_len", value="lead_pct", order=["TWIN", "SIM Soft", "DIN"],
                   ax=axes[1])  # fmt: skip
    legend = pr.legend_below(fig, axes)
    fig.tight_layout()
    assert all(ax.get_legend() is None for ax in axes)
    assert [t.get_text() for t in legend.get_texts()] == ["TWIN", "SIM Soft", "DIN"]
    fig.canvas.draw()
    assert not any(_inside(fig, legend, ax) for ax in axes)


def test_ablation_figure_has_no_empty_band():
    """The inference-time panel's labels fit beside the GAUC panel: the saved (tight) figure
    is no taller than the figure itself plus its tick labels."""
    import matplotlib.pyplot as plt

    models = ["SIM Soft", "TWIN w/o Para-Con", "TWIN", "TWIN w/ Raw MHTA", "TWIN w/o Bias"]
    summary = sweeps.summarize(runs_table(models, seeds=(0, 1, 2)))
    timing = pd.DataFrame(
        [{"model": m, "ms_per_1k": 400.0 + 50 * i + r} for i, m in enumerate(models[2:])
         for r in range(5)]
    )  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [3, 2]})
    pr.plot_model_metric(summary, "gauc", order=models, ax=axes[0])
    pr.plot_inference_time(timing, order=models, ax=axes[1], title="inference time")
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert all(t.get_rotation() == 0 for t in axes[1].get_xticklabels())
    height = fig.get_tightbbox(renderer).height * fig.dpi  # inches -> pixels
    assert height <= 1.05 * fig.bbox.height
    ylabel = axes[1].yaxis.label.get_window_extent(renderer)
    assert ylabel.height <= axes[1].get_window_extent(renderer).height


def test_true_probability_title_names_the_samples():
    from twin_study.plots import data as plots_data

    rng = np.random.default_rng(0)
    p = rng.random(200)
    fig = plots_data.plot_true_probability(
        p, (rng.random(200) < p).astype(int), 0.829, samples="the test split (1,000 users)"
    )
    assert "0.829 on the test split (1,000 users)" in fig.axes[0].get_title()
