"""Aggregation, relative improvements and claim verdicts of twin_study.analysis (sweeps, tables)
and twin_study.claims, on hand-made tables whose answers are known."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from twin_study import paper
from twin_study.analysis import sweeps, tables
from twin_study.claims import ablations, core, main_results, sequence_length
from twin_study.models.config import ModelConfig
from twin_study.results import load_results, save_results
from twin_study.training.train import TrainConfig

R, P, N = core.REPRODUCED, core.PARTLY, core.NOT_REPRODUCED


def runs_table(values: dict[str, list[float]], dataset: str = "synthetic", **tags) -> pd.DataFrame:
    """One row per (model, seed); AUC = GAUC = the given value, LogLoss = 1 - value."""
    rows = []
    for model, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append({"dataset": dataset, "model": model, **tags, "seed": seed,
                         "auc": v, "gauc": v, "logloss": 1 - v})  # fmt: skip
    return pd.DataFrame(rows)


# --- aggregation -----------------------------------------------------------------------------


def test_summarize_mean_std_and_seed_count():
    runs = runs_table({"A": [0.6, 0.7, 0.8], "B": [0.5, 0.5, 0.5]})
    s = sweeps.summarize(runs).set_index("model")
    assert s.loc["A", "auc_mean"] == pytest.approx(0.7)
    assert s.loc["A", "auc_std"] == pytest.approx(0.1)  # sample std, ddof = 1
    assert s.loc["B", "gauc_std"] == pytest.approx(0.0)
    assert s.loc["A", "logloss_mean"] == pytest.approx(0.3)
    assert list(s["n_seeds"]) == [3, 3]
    assert list(s.index) == ["A", "B"]  # order of first appearance, not sorted


def test_summarize_one_seed_has_no_spread():
    s = sweeps.summarize(runs_table({"A": [0.6]}))
    assert math.isnan(s.loc[0, "auc_std"]) and s.loc[0, "n_seeds"] == 1


def test_relative_improvement_percent_of_baseline_per_group():
    runs = pd.concat([runs_table({"base": [0.5], "m": [0.55]}, "d1"),
                      runs_table({"base": [0.8], "m": [0.72]}, "d2")])  # fmt: skip
    s = sweeps.summarize(runs)
    rel = sweeps.relative_improvement(s, "base", "auc")
    got = dict(zip(s["dataset"] + "/" + s["model"], rel, strict=True))
    assert got == pytest.approx({"d1/base": 0, "d1/m": 10.0, "d2/base": 0, "d2/m": -10.0})


def test_relative_improvement_logloss_is_positive_when_lower():
    s = sweeps.summarize(runs_table({"base": [0.5], "m": [0.6]}))  # logloss 0.5 -> 0.4
    rel = sweeps.relative_improvement(s, "base", "logloss", within=())
    assert rel.iloc[1] == pytest.approx(20.0)


def test_relative_improvement_needs_the_baseline():
    s = sweeps.summarize(runs_table({"A": [0.6]}))
    with pytest.raises(ValueError, match="exactly one"):
        sweeps.relative_improvement(s, "missing", "auc")


def test_paper_table_reproduces_the_papers_own_relative_numbers():
    # The paper: TWIN vs SIM Soft +0.29 % AUC and +0.51 % GAUC (relative).
    rel = tables.paper_relative("SIM Soft").set_index("model")
    assert rel.loc["TWIN", "auc_rel_pct"] == pytest.approx(0.29, abs=0.005)
    assert rel.loc["TWIN", "gauc_rel_pct"] == pytest.approx(0.51, abs=0.005)
    assert paper.TWIN_OVER_SIM_SOFT_PCT == {"auc": 0.29, "gauc": 0.51}
    assert list(sweeps.PAPER_TABLE4["model"]) == list(paper.TABLE4_ORDER)
    # Table 4 is sorted weakest to strongest in both metrics.
    assert sweeps.PAPER_TABLE4["auc"].is_monotonic_increasing
    assert sweeps.PAPER_TABLE4["gauc"].is_monotonic_increasing


def test_beside_paper_formats_mean_std_and_paper_columns():
    runs = runs_table({"Avg-Pooling": [0.60, 0.62], "TWIN": [0.66, 0.68], "Other": [0.6, 0.6]})
    t = tables.beside_paper(sweeps.summarize(runs)).set_index("model")
    assert t.loc["TWIN", "auc (ours)"] == "0.6700 ± 0.0141"
    assert t.loc["TWIN", "auc rel. % (ours)"] == pytest.approx(100 * (0.67 / 0.61 - 1), abs=0.01)
    assert t.loc["TWIN", "gauc (paper)"] == "0.7336"
    assert pd.isna(t.loc["Other", "gauc (paper)"])  # not a Table 4 model
    assert "gauc (paper)" not in tables.beside_paper(sweeps.summarize(runs), paper=False)


def test_metric_records_are_json_ready():
    runs = runs_table({"A": [0.6, 0.7], "B": [0.5]})
    rec = tables.metric_records(sweeps.summarize(runs))
    want = {"mean": 0.65, "std": 0.0707, "n_seeds": 2}
    assert rec["synthetic"]["A"]["auc"] == pytest.approx(want, abs=1e-4)
    assert rec["synthetic"]["B"]["gauc"]["std"] is None  # one seed: no spread, not NaN
    json.dumps(rec, allow_nan=False)


def test_nested_keys_become_strings():
    frame = pd.DataFrame({"d": ["x", "x"], "L": [100, 1000], "v": [1.0, float("nan")]})
    assert tables.nested(frame, ["d", "L"], "v") == {"x": {"100": 1.0, "1000": None}}


def test_lead_over_is_relative_to_the_other_model():
    runs = runs_table({"TWIN": [0.66], "B": [0.6]}, long_len=100)
    s = sweeps.summarize(runs, by=("dataset", "model", "long_len"))
    lead = sweeps.lead_over(s, "TWIN", "long_len")
    assert lead.to_dict("records") == [
        {"dataset": "synthetic", "long_len": 100, "model": "B", "lead_pct": pytest.approx(10.0)}
    ]


# --- paired effects and verdicts ---------------------------------------------------------------


def test_gap_closure_is_paired_by_seed():
    # Seed 0: baseline 0.6, ceiling 0.8 -> A at 0.7 closes half; seed 1: baseline 0.7 -> A at
    # 0.7 closes nothing. The baseline closes 0, a model at the ceiling 1.
    runs = runs_table({"Avg": [0.6, 0.7], "A": [0.7, 0.7], "Best": [0.8, 0.8]})
    c = sweeps.gap_closure(runs, "Avg", 0.8).set_index(["model", "seed"])["closure"]
    assert c[("A", 0)] == pytest.approx(0.5) and c[("A", 1)] == pytest.approx(0.0)
    assert c[("Avg", 0)] == 0.0 and c[("Best", 1)] == pytest.approx(1.0)
    s = sweeps.summarize(c.reset_index(), by=("model",), metrics=("closure",)).set_index("model")
    assert s.loc["A", "closure_mean"] == pytest.approx(0.25)


def test_gap_closure_rejects_a_missing_or_unbeatable_baseline():
    runs = runs_table({"Avg": [0.6], "A": [0.7]})
    with pytest.raises(ValueError, match="no 'Other' runs"):
        sweeps.gap_closure(runs, "Other", 0.8)
    with pytest.raises(ValueError, match="not below the ceiling"):
        sweeps.gap_closure(runs, "Avg", 0.6)


@pytest.mark.parametrize(
    "values, verdict", [([0.70, 0.72, 0.71], R), ([0.55, 0.75, 0.66], P), ([0.5, 0.55, 0.6], N)]
)
def test_claim_at_least_threshold(values, verdict):
    runs = runs_table({"A": values}).rename(columns={"auc": "closure"})
    c = core.claim_at_least(runs, "A", "closure", 0.6)
    assert c.verdict == verdict
    assert c.effect == pytest.approx(np.mean(values) - 0.6)
    assert math.isnan(c.relative_pct)  # a threshold is not a baseline to be relative to


def test_gap_closed_claim_reads_twin_closure_against_the_bar():
    runs = sweeps.gap_closure(runs_table({"Avg": [0.6, 0.6, 0.6], "TWIN": [0.75, 0.74, 0.76]}),
                              "Avg", 0.8)  # fmt: skip
    c = main_results.claim_gap_closed(runs, "synthetic")
    assert c.claim == "TWIN closes >= 60 % of the Avg-Pooling -> Bayes AUC gap"
    assert c.verdict == R and c.dataset == "synthetic"
    assert c.effect == pytest.approx(0.75 - 0.6)  # closure 0.75 on average
    assert main_results.claim_gap_closed(runs, "synthetic", bar=0.8).verdict == N


def test_paired_effect_is_per_seed():
    runs = runs_table({"A": [0.70, 0.72, 0.74], "B": [0.60, 0.70, 0.80]})
    eff = core.paired(runs, [{"model": "A"}], [{"model": "B"}], "gauc")
    assert eff.values == pytest.approx([0.10, 0.02, -0.06])
    assert eff.seeds == [0, 1, 2] and eff.reference == pytest.approx(0.7)
    # LogLoss: lower is better, so the sign is flipped and positive still means "A better".
    ll = core.paired(runs_table({"A": [0.7], "B": [0.6]}), [{"model": "A"}], [{"model": "B"}],
                      "logloss")  # fmt: skip
    assert ll.values == pytest.approx([0.1])


def test_paired_rejects_ambiguous_or_empty_selections():
    runs = pd.concat([runs_table({"A": [0.7]}, long_len=100), runs_table({"A": [0.8]}, long_len=1)])
    with pytest.raises(ValueError, match="several runs per seed"):
        core.paired(runs, [{"model": "A"}], [{"model": "A", "long_len": 1}])
    with pytest.raises(KeyError, match="no runs match"):
        core.paired(runs, [{"model": "Z"}], [{"model": "A", "long_len": 1}])


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        ([0.70, 0.71, 0.72], [0.60, 0.61, 0.62], R),  # +0.10 every seed: far beyond the noise
        ([0.70, 0.60, 0.75], [0.65, 0.66, 0.64], P),  # right sign on average, within the noise
        ([0.60, 0.61, 0.62], [0.70, 0.71, 0.72], N),  # opposite sign
        ([0.70], [0.60], P),  # one seed: no spread to judge, at best "partly"
        ([0.70, 0.70], [0.70, 0.70], N),  # no effect
    ],
)
def test_claim_better_verdicts(a, b, verdict):
    c = core.claim_better(runs_table({"A": a, "B": b}), "A", "B", "gauc")
    assert c.verdict == verdict
    assert c.effect == pytest.approx(np.mean(a) - np.mean(b))
    assert c.n_seeds == len(a)


def test_claim_better_effect_size_spread_and_relative():
    c = core.claim_better(runs_table({"A": [0.66, 0.68], "B": [0.60, 0.60]}), "A", "B")
    assert c.effect == pytest.approx(0.07)
    assert c.spread == pytest.approx(np.std([0.06, 0.08], ddof=1))
    assert c.relative_pct == pytest.approx(100 * 0.07 / 0.60)
    assert "A > B" in c.sentence() and c.verdict.upper() in c.sentence()


def test_claim_better_min_effect():
    runs = runs_table({"A": [0.701, 0.701, 0.701], "B": [0.700, 0.700, 0.700]})
    assert core.claim_better(runs, "A", "B").verdict == R
    assert core.claim_better(runs, "A", "B", min_effect=0.005).verdict == P


@pytest.mark.parametrize(
    ("a", "verdict"),
    # the interval mean ± 2 s.e. inside ± 0.002 / reaching across it / wholly outside it
    [([0.701, 0.699, 0.700], R), ([0.702, 0.704, 0.703], P), ([0.72, 0.72, 0.72], N)],
)
def test_claim_similar_verdicts(a, verdict):
    runs = runs_table({"A": a, "B": [0.70, 0.70, 0.70]})
    assert core.claim_similar(runs, "A", "B", "gauc", tol=0.002).verdict == verdict


def ordered_summary(values: dict[str, float]) -> pd.DataFrame:
    return sweeps.summarize(runs_table({m: [v, v + 0.001] for m, v in values.items()}))


def test_claim_order_verdicts():
    order = ["H", "C", "S", "T"]
    good = core.claim_order(ordered_summary({"H": 0.6, "C": 0.61, "S": 0.62, "T": 0.63}), order)
    assert good.verdict == R and good.effect == pytest.approx(1.0)
    assert good.detail.startswith("3/3 adjacent pairs")
    swap = core.claim_order(ordered_summary({"H": 0.6, "C": 0.62, "S": 0.61, "T": 0.63}), order)
    # tau > 0, but C and S are swapped by 0.01, far beyond their noise: not partly
    assert swap.verdict == N and 0 < swap.effect < 1 and "C ≥ S" in swap.detail
    near = core.claim_order(ordered_summary({"H": 0.6, "C": 0.6105, "S": 0.61, "T": 0.63}),
                                order)  # fmt: skip
    assert near.verdict == P  # swapped within the noise
    rev = core.claim_order(ordered_summary({"H": 0.63, "C": 0.62, "S": 0.61, "T": 0.6}), order)
    assert rev.verdict == N and rev.effect == pytest.approx(-1.0)
    part = core.claim_order(ordered_summary({"H": 0.6, "T": 0.63}), order)
    assert part.verdict == R and "not run: C, S" in part.detail


def test_combine():
    def claim(v):
        return core.Claim("c", "", v, 0.01, 0.001, 3, "gauc")

    assert core.combine([claim(R), claim(R)], "all").verdict == R
    assert core.combine([claim(R), claim(P)], "all").verdict == P
    assert core.combine([claim(R), claim(N)], "all").verdict == N  # one counter-example
    assert core.combine([claim(N), claim(N)], "all").verdict == N
    with pytest.raises(ValueError):
        core.combine([], "none")


def test_claim_to_dict_survives_results_json(tmp_path):
    c = core.claim_better(runs_table({"A": [0.7], "B": [0.6]}), "A", "B")  # spread is NaN
    save_results(tmp_path, {"claims": [c.to_dict()]})
    (saved,) = load_results(tmp_path)["claims"]
    assert saved["spread"] is None and saved["verdict"] == P


# --- the paper's readings on hand-made tables -----------------------------------------------


def test_table4_claims_when_twin_clearly_wins():
    values = {m: [0.60 + 0.01 * i + d for d in (0.0, 0.001, 0.002)]
              for i, m in enumerate(paper.TABLE4_ORDER)}  # fmt: skip
    runs = runs_table(values)
    found = main_results.table4_claims(runs, sweeps.summarize(runs), "synthetic")
    claims = {c.claim: c for c in found}
    assert claims["TWIN > SIM Soft (GAUC)"].verdict == R
    assert claims["TWIN best (vs strongest baseline, SIM Soft)"].verdict == R
    assert claims["finer retrieval helps (GAUC)"].verdict == R
    assert claims["Table 4 order (GAUC)"].verdict == R
    assert claims["end-to-end hashing is not enough (ETA, SDIM < SIM Soft)"].verdict == R


def test_table4_claims_when_twin_loses():
    values = {m: [0.60 + 0.01 * i + d for d in (0.0, 0.001, 0.002)]
              for i, m in enumerate(reversed(paper.TABLE4_ORDER))}  # fmt: skip
    runs = runs_table(values)
    claims = main_results.table4_claims(runs, sweeps.summarize(runs), "synthetic")
    assert {c.verdict for c in claims} == {N}
    assert all(c.dataset == "synthetic" for c in claims)


def test_length_claims():
    rows = []
    for L, gain in ((100, 0.0), (1000, 0.02), (10000, 0.04)):
        values = {"TWIN": [0.70 + 2 * gain + d for d in (0, 0.001, 0.002)],
                  "SIM Hard": [0.69 + gain + d for d in (0, 0.002, 0.001)],
                  "DIN": [0.68 + d for d in (0, 0.001, 0.002)]}  # fmt: skip
        rows.append(runs_table(values, long_len=L))
    claims = {c.claim: c for c in sequence_length.length_claims(pd.concat(rows), "synthetic")}
    grows = claims["every model improves with long_len"]
    assert grows.verdict == R and "DIN" not in grows.detail  # DIN reads the same at every L
    assert claims["TWIN's lead widens with long_len"].verdict == R
    every = claims["TWIN leads at every long_len (vs the best other model at each)"]
    assert every.verdict == R and "long_len = 100 vs SIM Hard reproduced" in every.detail


def test_ablation_claims_with_timing():
    runs = runs_table({"TWIN": [0.70, 0.71, 0.72], "TWIN w/o Para-Con": [0.68, 0.69, 0.70],
                       "SIM Soft": [0.66, 0.67, 0.68], "TWIN w/ Raw MHTA": [0.7005, 0.7095, 0.72],
                       "TWIN w/o Bias": [0.71, 0.72, 0.73]})  # fmt: skip
    timing = pd.DataFrame([{"dataset": "synthetic", "model": m, "seed": s, "repeat": r,
                            "ms_per_1k": base * (1 + 0.01 * r)}
                           for m, base in (("TWIN", 10.0), ("TWIN w/ Raw MHTA", 30.0))
                           for s in range(3) for r in range(3)])  # fmt: skip
    claims = ablations.ablation_claims(runs, sweeps.summarize(runs), "synthetic", timing)
    got = {c.claim: c.verdict for c in claims}
    assert got["Para-Con helps (TWIN > w/o Para-Con)"] == R
    assert got["structure helps (w/o Para-Con > SIM Soft)"] == R
    assert got["SIM Soft < TWIN w/o Para-Con < TWIN"] == R
    assert got["Raw MHTA: GAUC about the same"] == R
    assert got["Raw MHTA: inference slower"] == R
    assert got["cross-feature bias helps (TWIN > w/o Bias)"] == N  # w/o Bias is better here


def test_check_table_finds_gaps_and_bad_values():
    s = sweeps.summarize(runs_table({"A": [0.6, 0.7], "B": [0.45, 0.5]}))
    problems = sweeps.check_table(s, [("synthetic", "A"), ("synthetic", "C")], n_seeds=3)
    assert "missing synthetic / C" in problems
    assert any("A: 2 seeds, expected 3" in p for p in problems)
    assert any("B: auc" in p for p in problems)
    assert not any("gauc" in p for p in problems)  # GAUC 0.475 is in range: at chance
    s.loc[0, "gauc_mean"] = float("nan")
    assert any("A: gauc nan" in p for p in sweeps.check_table(s, [], n_seeds=2))
    good = sweeps.summarize(runs_table({"A": [0.6, 0.7]}))
    assert sweeps.check_table(good, [("synthetic", "A")], n_seeds=2) == []


# --- settings, configs and the sweep ---------------------------------------------------------


def test_table4_settings():
    base = ModelConfig(long_len=1000)
    settings = sweeps.table4_settings(base, n_clusters=20, n_clusters_plus=200)
    assert [s.label for s in settings] == list(paper.TABLE4_ORDER)
    by = {s.label: s.model for s in settings}
    assert by["SIM Cluster"].n_clusters == 20 and by["SIM Cluster+"].n_clusters == 200
    assert by["TWIN"].long_module == "twin" and by["TWIN"].long_len == 1000
    # DIN keeps the base's n_clusters: it is also the run that pre-trains SIM Soft's vectors.
    assert by["DIN"] == ModelConfig(long_module="din", long_len=1000)
    picked = sweeps.table4_settings(base, 20, 200, ["twin", "sim_cluster", "DIN"])
    assert [s.label for s in picked] == ["DIN", "SIM Cluster", "SIM Cluster+", "TWIN"]
    with pytest.raises(ValueError, match="unknown Table 4 model"):
        sweeps.table4_settings(base, 20, 200, ["twin", "nope"])
    with pytest.raises(ValueError, match="more clusters"):
        sweeps.table4_settings(base, 200, 200)


def test_vary_and_module_settings_tag_their_rows():
    twin = sweeps.Setting("TWIN", ModelConfig(long_len=500))
    ks = sweeps.vary(twin, "k", [20, 100])
    assert [(s.model.k, dict(s.tags)) for s in ks] == [(20, {"k": 20}), (100, {"k": 100})]
    mods = sweeps.module_settings(ModelConfig(), ["twin_raw", "din"], long_len=10)
    assert [s.label for s in mods] == ["TWIN w/ Raw MHTA", "DIN"]
    assert all(s.tags == {"long_len": 10} for s in mods)


def test_configs_split_parameters_by_field():
    model, train = sweeps.configs({"long_len": 300, "mlp": [32, 16], "epochs": 2, "lr": 0.01},
                                 progress=False)  # fmt: skip
    assert model.long_len == 300 and model.mlp == (32, 16)  # YAML list -> dataclass tuple
    assert train.epochs == 2 and train.lr == 0.01 and train.progress is False
    with pytest.raises(ValueError, match="unknown model/training parameter"):
        sweeps.configs({"long_lenn": 3})
    with pytest.raises(ValueError, match="k = 500 > long_len"):
        sweeps.configs({"long_len": 300, "k": 500})


def test_dataset_names():
    from twin_study.data import dataset_names

    names = dataset_names(" synthetic, movielens-1m,synthetic ")
    assert names == ["synthetic", "movielens-1m"]
    with pytest.raises(ValueError):
        dataset_names(" , ")


def test_sweep_rows_with_a_fake_runner():
    calls = []

    def fake_run(ds, model, train):
        calls.append((model.long_module, model.k, train.seed))
        m = {"auc": 0.6 + train.seed / 100, "gauc": 0.55, "logloss": 0.5, "n": 10}
        info = {"best_epoch": 1, "train_seconds": 1.0, "samples_per_second": 5.0}
        return SimpleNamespace(metrics={"test": m}, train=info, cached=False, key="k")

    ds = SimpleNamespace(name="toy")
    settings = sweeps.vary(sweeps.Setting("TWIN", ModelConfig(long_len=200)), "k", [10, 100])
    runs = sweeps.sweep(ds, settings, [0, 1], TrainConfig(), progress=False, runner=fake_run)
    assert calls == [("twin", 10, 0), ("twin", 10, 1), ("twin", 100, 0), ("twin", 100, 1)]
    assert list(runs.columns[:6]) == ["dataset", "model", "long_module", "k", "seed", "auc"]
    assert runs["auc"].tolist() == pytest.approx([0.6, 0.61, 0.6, 0.61])
    assert "cached" not in sweeps.stable_runs(runs)
    s = sweeps.summarize(runs, by=("dataset", "model", "k"))
    assert s["n_seeds"].tolist() == [2, 2]


def test_to_markdown():
    df = pd.DataFrame({"model": ["a|b", "c"], "x": [0.12345, float("nan")], "n": [1, 2]})
    assert tables.to_markdown(df, ".3f") == (
        "| model | x | n |\n| --- | --- | --- |\n| a\\|b | 0.123 | 1 |\n| c |  | 2 |\n"
    )


def _curve_run(ds, model, train):
    """A fake run whose validation LogLoss falls like 1/(1 + samples) for TWIN (still learning
    at the end) and is flat after 2,000 samples for the others."""
    hist = []
    for seen in (1000, 2000, 3000, 4000):
        ll = 0.6 + 100 / seen if model.long_module == "twin" else 0.6 + (seen < 2000) * 0.05
        hist.append({"epoch": 1, "samples_seen": seen, "train_loss": ll, "valid_auc": 0.7,
                     "valid_logloss": ll})  # fmt: skip
    best = min(hist, key=lambda h: h["valid_logloss"])
    info = {"history": hist, "best_epoch": 1, "best_samples": best["samples_seen"],
            "constant_logloss": 0.65}  # fmt: skip
    return SimpleNamespace(train=info)


def test_learning_curves_and_which_curves_flattened():
    ds = SimpleNamespace(name="toy")
    settings = sweeps.module_settings(ModelConfig(long_len=200), ["twin", "din"])
    curves = sweeps.learning_curves(ds, settings, [0], TrainConfig(), runner=_curve_run)
    assert len(curves) == 8 and curves.selected.sum() == 2
    assert curves.loc[curves.selected, "samples_seen"].tolist() == [4000, 2000]
    status = sweeps.curve_status(curves, tail=0.25, tol=0.002)
    # TWIN's best LogLoss still fell by 100/3000 - 100/4000 = 0.0083 in its last quarter.
    assert status.set_index("model").loc["TWIN", "gain_in_tail"] == pytest.approx(
        100 / 3000 - 100 / 4000
    )
    assert status.set_index("model")["flattened"].to_dict() == {"TWIN": False, "DIN": True}


def test_tuning_settings_vary_one_parameter_at_a_time_and_choice_ranks_over_models():
    base, train = ModelConfig(long_len=200), TrainConfig()
    grid = {"beta_init": [0.0, 1.0], "emb_lr": [0.05, 0.2]}
    settings = sweeps.tuning_settings(base, ["twin", "din"], grid, train)
    tags = [(s.label, s.tags["param"], s.tags["value"]) for s in settings]
    # the default values (beta_init 0.0, emb_lr 0.2) are the base runs, not repeated
    assert tags == [("TWIN", "base", "base"), ("TWIN", "beta_init", "1.0"),
                    ("TWIN", "emb_lr", "0.05"), ("DIN", "base", "base"),
                    ("DIN", "beta_init", "1.0"), ("DIN", "emb_lr", "0.05")]  # fmt: skip
    assert settings[1].model.beta_init == 1.0 and settings[2].train == {"emb_lr": 0.05}
    assert settings[2].train_config(train, 3).emb_lr == 0.05
    with pytest.raises(ValueError, match="unknown tuning parameter"):
        sweeps.tuning_settings(base, ["twin"], {"beta": [0.0]})
    # beta_init 1 is better for both models, emb_lr 0.05 for one of two
    ll = {("TWIN", "base"): 0.60, ("TWIN", "beta_init"): 0.58, ("TWIN", "emb_lr"): 0.59,
          ("DIN", "base"): 0.62, ("DIN", "beta_init"): 0.61, ("DIN", "emb_lr"): 0.63}  # fmt: skip
    runs = pd.DataFrame([{"dataset": "toy", "model": m, "param": p, "value": v, "seed": 0,
                          "logloss": ll[m, p]} for m, p, v in tags])  # fmt: skip
    choice = sweeps.tuning_choice(runs, defaults={"beta_init": 0.0, "emb_lr": 0.2})
    chosen = choice[choice.best]
    assert chosen[chosen.param == "beta_init"]["value"].tolist() == ["1.0"]
    assert sorted(chosen[chosen.param == "emb_lr"]["value"]) == ["0.05", "0.2"]  # a tie
    emb = choice[choice.param == "emb_lr"].set_index("value")["mean_rank"].to_dict()
    assert emb == {"0.2": 1.5, "0.05": 1.5}


def test_select_per_setting_keeps_each_models_best_value_on_validation():
    """Per-setting choice: each model gets the value with its own lowest validation LogLoss
    (ties keep the current value); the candidate at the current value is the table's run."""
    import dataclasses as dc
    from types import SimpleNamespace

    from twin_study.analysis import sweeps
    from twin_study.models import ModelConfig
    from twin_study.training.train import TrainConfig

    loss = {("twin", 1.0): 0.50, ("twin", 3.0): 0.55, ("sim_soft", 1.0): 0.60,
            ("sim_soft", 3.0): 0.52, ("din", 1.0): 0.40, ("din", 3.0): 0.40}  # fmt: skip
    seen = []

    def run(ds, model, train):  # noqa: ARG001
        seen.append((model.long_module, model.qk_init_scale, train.seed))
        m = {"auc": 0.7, "gauc": 0.7, "logloss": loss[(model.long_module, model.qk_init_scale)],
             "n": 10}
        return SimpleNamespace(metrics={"valid": m, "test": m}, train={}, cached=True, key="k")

    base = ModelConfig(qk_init_scale=3.0)
    settings = sweeps.module_settings(base, ["twin", "sim_soft", "din"])
    ds = SimpleNamespace(name="toy")
    grid = {"qk_init_scale": [1, 3]}
    chosen, table = sweeps.select_per_setting(ds, settings, TrainConfig(), grid, runner=run)
    assert [c.model.qk_init_scale for c in chosen] == [1.0, 3.0, 3.0]  # din: a tie keeps 3
    assert [c.label for c in chosen] == ["TWIN", "SIM Soft", "DIN"]
    assert all(isinstance(v, float) for _, v, _ in seen) and {s for *_, s in seen} == {0}
    assert table.groupby("model").chosen.sum().eq(1).all() and table.current.sum() == 3
    assert dc.replace(chosen[1].model, qk_init_scale=3.0) == settings[1].model
    with pytest.raises(ValueError, match="unknown"):
        sweeps.select_per_setting(ds, settings, TrainConfig(), {"nope": [1]}, runner=run)
