"""Notebook 06's analysis (twin_study.analysis.retrieval_wins) and figures
(twin_study.plots.retrieval) on small synthetic worlds and hand-made run tables."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib
import numpy as np
import pandas as pd
import pytest

from twin_study.analysis import retrieval_wins as rw
from twin_study.analysis import sweeps
from twin_study.analysis.consistency import consistency, eligible_samples
from twin_study.claims import core
from twin_study.models import registry
from twin_study.models.config import ModelConfig
from twin_study.models.ctr import build_model
from twin_study.seed import seed_everything
from twin_study.training.train import TrainConfig

matplotlib.use("Agg")
KNOB = rw.KNOB
R, P, N = core.REPRODUCED, core.PARTLY, core.NOT_REPRODUCED
PARAMS = dict(n_users=40, history_len=400, n_items=1500, n_authors=150, seed=3)


@pytest.fixture(scope="module")
def worlds():
    return rw.make_worlds(PARAMS, [1.0, 0.0, 0.0])  # sorted and unique


@pytest.fixture(scope="module")
def idx(worlds):
    return eligible_samples(worlds[0.0], "test", 300, 60, seed=0)


@pytest.fixture(autouse=True)
def _close():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


# --- worlds and the category rule ------------------------------------------------------------


def test_make_worlds_keys_names_and_errors(worlds):
    assert list(worlds) == [0.0, 1.0]
    assert [d.name for d in worlds.values()] == ["synthetic", "synthetic-offcat1"]
    with pytest.raises(ValueError, match="at least one"):
        rw.make_worlds(PARAMS, [])
    with pytest.raises(ValueError, match="set per world"):
        rw.make_worlds(PARAMS | {KNOB: 0.5}, [0.0])


def test_category_overlap_is_one_by_default_and_falls_with_the_knob(worlds):
    assert rw.category_overlap(worlds[0.0]) == 1.0
    assert rw.category_overlap(worlds[0.0], "train") == 1.0
    assert rw.category_overlap(worlds[1.0]) < 0.5


def test_category_overlap_needs_a_planted_truth(worlds):
    ds = worlds[0.0]
    bare = SimpleNamespace(name="real", relevant_ptr=None, relevant_idx=None)
    with pytest.raises(ValueError, match="no planted truth"):
        rw.category_overlap(bare)
    with pytest.raises(ValueError, match="L >= 1"):
        rw.rule_recall(ds, np.array([0]), 0, 10)


def test_rule_recall_bounds_and_nan_without_relevance(worlds, idx):
    r = rw.rule_recall(worlds[0.0], idx, 300, 10)
    assert list(r["sample"]) == list(idx)
    has = r["n_relevant"] > 0
    assert r.loc[~has, "recall"].isna().all() and r.loc[has, "recall"].notna().all()
    ok = r[has]
    assert ok["recall"].between(0, 1).all()
    assert (ok["recall"] <= ok["ceiling"] + 1e-12).all()


def test_rule_keeps_every_relevant_behaviour_when_k_holds_the_whole_category(worlds, idx):
    # Default world: relevant behaviours all have the target's category, so a k larger than the
    # window drops none of them; with the knob at 1 most are filed elsewhere.
    r0 = rw.rule_recall(worlds[0.0], idx, 300, 10**6)
    assert r0["recall"].dropna().eq(1.0).all()
    r1 = rw.rule_recall(worlds[1.0], idx, 300, 10**6)
    assert r1["recall"].mean() < 0.6


def test_rule_recall_falls_with_L_at_fixed_k(worlds, idx):
    short = rw.rule_recall(worlds[0.0], idx, 50, 5)["recall"].mean()
    long = rw.rule_recall(worlds[0.0], idx, 400, 5)["recall"].mean()
    assert long < short


@pytest.mark.parametrize("x", [0.0, 1.0])
def test_rule_is_what_sim_hards_gsu_selects(worlds, idx, x):
    ds, L, k = worlds[x], 300, 10
    seed_everything(0)
    model = build_model(ModelConfig(long_module="sim_hard", long_len=L, k=k), ds)
    got = consistency(model, ds, idx, [k], oracle_k=k, progress=False).relevant_recall_gsu
    want = rw.rule_recall(ds, idx, L, k)["recall"].to_numpy()
    np.testing.assert_allclose(np.sort(got), np.sort(want), equal_nan=True, atol=1e-6)


# --- the grid with a fake runner --------------------------------------------------------------


def test_grid_joins_metrics_and_recall_per_world_L_model_seed(worlds, idx):
    built = {}

    def fake_run(ds, model, train):
        key = (ds.name, model.long_module, model.long_len, train.seed)
        if key not in built:
            seed_everything(train.seed)
            built[key] = build_model(model, ds)
        auc = 0.6 + 0.01 * train.seed + (0.02 if model.long_module == "twin" else 0.0)
        m = {"auc": auc, "gauc": auc, "logloss": 0.5, "n": 10}
        info = {"best_epoch": 1, "train_seconds": 1.0, "samples_per_second": 5.0}
        return SimpleNamespace(model=built[key], metrics={"test": m}, train=info, cached=True,
                               key="k")  # fmt: skip

    base = ModelConfig(k=10)
    runs = rw.grid(worlds, ["twin", "sim_hard"], [100, 300], base, TrainConfig(), [0, 1],
                   {x: idx for x in worlds}, runner=fake_run)  # fmt: skip
    assert len(runs) == 2 * 2 * 2 * 2
    assert set(runs["dataset"]) == {"synthetic", "synthetic-offcat1"}
    assert {KNOB, "long_len", "model", "seed", "auc", "recall_gsu", "recall_oracle"} <= set(runs)
    assert runs[["recall_gsu", "recall_oracle"]].stack().between(0, 1).all()
    hard = runs[(runs.model == "SIM Hard") & (runs[KNOB] == 0.0) & (runs.long_len == 300)]
    rule = rw.rule_recall(worlds[0.0], idx, 300, 10)["recall"].mean()
    assert hard["recall_gsu"].to_numpy() == pytest.approx([rule, rule])
    g = rw.gap(runs)
    assert g["mean"].to_numpy() == pytest.approx(np.full(4, 0.02))


# --- gaps, claims and the verdict text on hand-made runs ------------------------------------


def table(gaps: dict[tuple[float, int], list[float]], hard_recall=(0.9, 0.4)) -> pd.DataFrame:
    """SIM Hard at AUC 0.6 (+ seed noise), TWIN that much higher per (knob, L) and seed;
    recall: SIM Hard's falls from the short L to the long, TWIN's stays at 0.8."""
    rows = []
    Ls = sorted({L for _, L in gaps})
    for (x, L), per_seed in gaps.items():
        for seed, d in enumerate(per_seed):
            base = 0.6 + 0.001 * seed
            hard_rec = hard_recall[Ls.index(L)] * (1 - x)
            name = "synthetic" if x == 0 else f"synthetic-offcat{x:g}"
            common = {"dataset": name, KNOB: x, "long_len": L, "seed": seed, "logloss": 0.5}
            rows.append(common | {"model": "SIM Hard", "auc": base, "gauc": base,
                                  "recall_gsu": hard_rec, "recall_oracle": hard_rec})  # fmt: skip
            rows.append(common | {"model": "TWIN", "auc": base + d, "gauc": base + d,
                                  "recall_gsu": 0.8, "recall_oracle": 0.8})  # fmt: skip
    return pd.DataFrame(rows)


GROWING = {
    (0.0, 1000): [-0.010, -0.008, -0.009],
    (1.0, 1000): [0.010, 0.012, 0.011],
    (0.0, 10000): [0.004, 0.006, 0.005],
    (1.0, 10000): [0.020, 0.022, 0.021],
}


def test_gap_is_paired_by_seed():
    g = rw.gap(table(GROWING)).set_index([KNOB, "long_len"])
    assert g.loc[(0.0, 1000), "mean"] == pytest.approx(-0.009)
    assert g.loc[(0.0, 1000), "values"] == pytest.approx([-0.010, -0.008, -0.009])
    assert g.loc[(1.0, 10000), "std"] == pytest.approx(0.001)
    assert (g["n_seeds"] == 3).all()


def test_claims_when_learned_retrieval_wins_more_without_category():
    cs = {c.claim: c for c in rw.claims(table(GROWING))}
    assert len(cs) == 5
    widen = [c for name, c in cs.items() if "grows" in name]
    assert [c.verdict for c in widen] == [R, R]
    assert widen[0].effect == pytest.approx(0.020)  # 0.011 - (-0.009)
    beats = cs["TWIN > SIM Hard (AUC) at L = 10,000"]
    assert beats.verdict == R and beats.effect == pytest.approx(0.005)
    assert beats.dataset == "synthetic"
    assert cs["TWIN's GSU keeps more planted relevance than SIM Hard's at L = 10,000"].verdict == R
    falls = cs["SIM Hard's GSU recall falls from L = 1,000 to 10,000"]
    assert falls.effect == pytest.approx(0.5)
    for c in cs.values():
        assert c.to_dict()["verdict"] in core.VERDICTS


def test_claims_when_the_gap_shrinks_and_sim_hard_wins():
    shrinking = {key: [-v for v in vals] for key, vals in GROWING.items()}
    cs = rw.claims(table(shrinking))
    assert [c.verdict for c in cs if "grows" in c.claim] == [N, N]
    assert next(c for c in cs if c.claim.startswith("TWIN > SIM Hard")).verdict == N


def test_claims_need_both_models_and_skip_what_was_not_run():
    runs = table(GROWING)
    assert rw.claims(runs[runs.model == "TWIN"]) == []
    one_world = runs[runs[KNOB] == 0.0]
    names = [c.claim for c in rw.claims(one_world)]
    assert not any("grows" in n for n in names) and len(names) == 3


def test_verdict_markdown_reports_the_numbers():
    runs = table(GROWING)
    metrics = ("auc", "gauc", "logloss", "recall_gsu")
    summary = sweeps.summarize(runs, by=(KNOB, "long_len", "model"), metrics=metrics)
    text = rw.verdict_markdown(summary, rw.gap(runs), {0.0: 1.0, 1.0: 0.2}, rw.claims(runs))
    assert "SIM Hard 0.90 → 0.40" in text and "TWIN 0.80 → 0.80" in text
    assert "0 (1.00): -0.0090 ± 0.0010" in text
    assert "*reproduced*" in text


# --- figures ----------------------------------------------------------------------------------


def test_figures_draw_every_model_and_L():
    from twin_study.plots import retrieval as prt

    runs = table(GROWING)
    summary = sweeps.summarize(runs, by=(KNOB, "long_len", "model"), metrics=("recall_gsu",))
    rule = pd.DataFrame({"long_len": [1000, 10000], "recall": [0.9, 0.4], "ceiling": [1, 1]})
    fig = prt.plot_recall_vs_L(summary[summary[KNOB] == 0.0], rule)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert {"TWIN", "SIM Hard", "category rule, no model", "any k (ceiling)"} <= set(labels)
    fig = prt.plot_gap_vs_knob(rw.gap(runs), {0.0: 1.0, 1.0: 0.2})
    ax = fig.axes[0]
    assert ax.get_legend_handles_labels()[1] == ["L = 1,000", "L = 10,000"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0\n(1.00)", "1\n(0.20)"]


# --- the data budget, with a fake runner ----------------------------------------------------


def _budget_runner(curves: dict[str, list[float]], test_auc: dict[str, float]):
    """A runner whose runs have the given validation-AUC curves (one point every 100 samples)
    and test AUCs (seed s adds 0.001 * s to both)."""

    def run(ds, model, train):  # noqa: ARG001
        label = registry.label(model.long_module)
        hist = [{"epoch": 1, "samples_seen": 100 * (i + 1), "train_loss": 0.6,
                 "valid_auc": v + 0.001 * train.seed, "valid_logloss": 0.6}
                for i, v in enumerate(curves[label])]  # fmt: skip
        auc = test_auc[label] + 0.001 * train.seed
        info = {"best_epoch": 1, "best_samples": hist[-1]["samples_seen"], "history": hist,
                "constant_logloss": 0.69, "train_seconds": 1.0, "samples_per_second": 5.0}
        m = {"auc": auc, "gauc": auc, "logloss": 0.5, "n": 10}
        return SimpleNamespace(model=None, metrics={"test": m}, train=info, cached=True, key="k")

    return run


def test_budget_reads_each_run_at_the_grids_budget_and_at_its_end(worlds):
    run = _budget_runner({"TWIN": [0.60, 0.62, 0.66, 0.70], "SIM Soft": [0.64, 0.66, 0.67, 0.68]},
                         {"TWIN": 0.71, "SIM Soft": 0.69})  # fmt: skip
    runs, curves = rw.budget_grid(worlds[0.0], ["twin", "sim_soft"], 300, ModelConfig(k=10),
                                  TrainConfig(), [0, 1], at=250, runner=run)  # fmt: skip
    assert len(runs) == 4 and len(curves) == 16
    twin = runs[(runs.model == "TWIN") & (runs.seed == 0)].iloc[0]
    assert (twin.samples_at, twin.samples_end) == (200, 400)  # nearest 250 (a tie: earlier)
    assert twin.valid_auc_at == pytest.approx(0.62) and twin.valid_auc_gain == pytest.approx(0.08)
    found = {c.claim.split(" (")[0].split(" from")[0]: c for c in rw.budget_claims(runs)}
    gains, beats = found["TWIN gains more than SIM Soft"], found["TWIN > SIM Soft"]
    assert gains.effect == pytest.approx(0.08 - 0.02) and gains.verdict == R
    assert beats.effect == pytest.approx(0.02) and beats.verdict == R
    # Before any curve point reaches the budget, the nearest (first) point stands in for it.
    early, _ = rw.budget_grid(worlds[0.0], ["twin"], 300, ModelConfig(k=10), TrainConfig(),
                              [0], at=50, runner=run)  # fmt: skip
    assert early.samples_at.iloc[0] == 100
    assert rw.budget_claims(early) == []  # no rival was run


def test_budget_claims_when_the_rival_keeps_its_lead(worlds):
    run = _budget_runner({"TWIN": [0.60, 0.61, 0.62, 0.63], "SIM Soft": [0.64, 0.66, 0.68, 0.70]},
                         {"TWIN": 0.63, "SIM Soft": 0.70})  # fmt: skip
    runs, _ = rw.budget_grid(worlds[0.0], ["twin", "sim_soft"], 300, ModelConfig(k=10),
                             TrainConfig(), [0, 1, 2], at=190, runner=run)  # fmt: skip
    assert (runs.samples_at == 200).all()  # a point a little past the budget is its reading
    assert {c.verdict for c in rw.budget_claims(runs)} == {N}


def test_budget_needs_learning_curves(worlds):
    def run(ds, model, train):  # noqa: ARG001
        m = {"auc": 0.6, "gauc": 0.6, "logloss": 0.5, "n": 10}
        return SimpleNamespace(model=None, metrics={"test": m}, train={}, cached=True, key="k")

    with pytest.raises(ValueError, match="eval_every"):
        rw.budget_grid(worlds[0.0], ["twin"], 300, ModelConfig(k=10), TrainConfig(), [0], 100,
                       runner=run)  # fmt: skip
