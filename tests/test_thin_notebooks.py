"""What notebooks 02 and 03 moved into the package (issue 25, thin notebooks): 02's data plans,
settings and measuring sweep (``analysis.consistency_study``), 03's per-data-set plan and
results record (``analysis.table4``), the SIM vectors' separation (``analysis.retrieval``) and
the sweep's ``on_run`` hook. Fast: no model is trained."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from twin_study.analysis import consistency_study as study
from twin_study.analysis import retrieval, sweeps, table4
from twin_study.claims import core
from twin_study.data.synthetic import SyntheticConfig, generate
from twin_study.models import ModelConfig, build_model
from twin_study.training import TrainConfig, experiment

PLAN_PARAMS = dict(
    k=100, n_users=60, history_len=1000, synthetic_params={"n_items": 2000}, long_len=1000,
    min_history=150, ml_seeds=[], ml_max_users=1000, ml_min_history=500, ml_long_len=2000,
    userlog_path="log.csv", userlog_spec="spec.yaml", userlog_params={"split": "per_user"},
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny():
    return generate(SyntheticConfig(n_users=20, n_items=60, n_authors=12, n_categories=8,
                                    history_len=300, history_min=100, requests_per_user=2,
                                    seed=0))  # fmt: skip


# --- 02: consistency_study ----------------------------------------------------------------


def test_data_plans_per_source():
    plans = study.data_plans(["synthetic", "movielens-1m", "userlog"], ["twin"], [0, 1],
                             **PLAN_PARAMS)  # fmt: skip
    syn, ml, log = plans["synthetic"], plans["movielens-1m"], plans["userlog"]
    assert syn.params == {"n_users": 60, "history_len": 1000, "seed": 0, "n_items": 2000}
    assert (syn.long_len, syn.min_history, syn.seeds) == (1000, 150, [0, 1])
    assert ml.params == {"max_users": 1000, "min_history": 500}
    assert (ml.long_len, ml.min_history, ml.seeds) == (2000, 500, [0, 1])  # ml_seeds empty
    assert log.params == {"path": "log.csv", "spec": "spec.yaml", "split": "per_user"}
    assert (log.long_len, log.min_history) == (1000, 100)  # a real top-k must exist
    only_ml = study.data_plans(
        ["movielens-1m"], ["twin"], [0, 1], **PLAN_PARAMS | {"ml_seeds": [7]}
    )
    assert list(only_ml) == ["movielens-1m"] and only_ml["movielens-1m"].seeds == [7]


@pytest.mark.parametrize(
    "datasets, models, seeds",
    [
        (["imagenet"], ["twin"], [0]),
        (["synthetic"], ["avg_pool"], [0]),
        (["synthetic"], ["twin"], []),
    ],
)
def test_data_plans_refuse_unknown_names_and_no_seed(datasets, models, seeds):
    with pytest.raises(ValueError, match="unsupported data set"):
        study.data_plans(datasets, models, seeds, **PLAN_PARAMS)


def test_x_grid():
    assert study.x_grid(1000, 100) == [10, 20, 50, 100, 200, 500, 1000]
    assert study.x_grid(300, 100) == [10, 20, 50, 100, 200, 300]
    assert study.x_grid(300, 100, [5, 50, 5000]) == [5, 50, 100, 300]  # capped at L, k added


def test_study_settings_and_train_keep_03s_keys():
    sets = study.study_settings(["sim_hard", "sim_cluster", "twin"], 1000, 100, 50, {"d_k": 32})
    assert [s.label for s in sets] == ["sim_hard", "sim_cluster", "twin"]
    assert [s.model.n_clusters for s in sets] == [
        ModelConfig().n_clusters,
        50,
        ModelConfig().n_clusters,
    ]
    assert sets[2].model == ModelConfig(long_module="twin", long_len=1000, k=100, d_k=32)
    train = study.study_train(epochs=1, batch_size=256, lr=0.001, max_train_samples=800,
                              threads=1, train_params={"eval_every": 500})  # fmt: skip
    assert train == TrainConfig(epochs=1, batch_size=256, lr=0.001, max_train_samples=800,
                                threads=1, progress=False, eval_every=500)  # fmt: skip


def test_uniform_share_and_eval_line(tiny):
    idx = tiny.split_indices("test")[:5]
    seen = study.seen_behaviours(tiny, idx)
    expected = np.mean(np.minimum(10, np.minimum(seen, 50)) / np.minimum(seen, 50))
    assert study.uniform_share(tiny, idx, 50, 10) == pytest.approx(expected)
    assert study.uniform_share(tiny, idx, 50, 10_000) == pytest.approx(1.0)
    assert study.describe_eval_set("userlog", tiny, idx, 50).startswith("userlog: 20 users")


def test_measure_goes_through_the_sweep_in_plot_order(monkeypatch, tiny):
    calls = []

    def fake_sweep(ds, settings, seeds, train, progress, jobs, dask, on_run):
        calls.append((jobs, dask, progress))
        rows = []
        for s in settings:  # the sweep's own order: setting by setting
            for seed in seeds:
                res = SimpleNamespace(model=f"{s.label}/{seed}")
                extra = on_run(s, seed, res)
                row = {"dataset": "log", "model": s.label, "seed": seed, "auc": 0.6,
                       "gauc": 0.55, "cached": True, "train_seconds": 1.0}  # fmt: skip
                rows.append(row | extra)
        return pd.DataFrame(rows)

    def fake_consistency(model, ds, idx, sizes, oracle_k, progress):
        return SimpleNamespace(model=model, sizes=sizes, oracle_k=oracle_k)

    monkeypatch.setattr(study.sweeps, "sweep", fake_sweep)
    monkeypatch.setattr(study, "consistency", fake_consistency)
    plans = {"synthetic": study.DataPlan({}, 300, 100, [0, 1])}
    got = study.measure({"synthetic": tiny}, plans, {"synthetic": np.arange(3)},
                        ["sim_hard", "twin"], TrainConfig(), k=100, n_clusters=50,
                        model_params={}, jobs=2, dask="local")  # fmt: skip
    assert calls == [(2, "local", False)]
    order = [("synthetic", "sim_hard", 0), ("synthetic", "twin", 0),
             ("synthetic", "sim_hard", 1), ("synthetic", "twin", 1)]  # fmt: skip
    assert list(got.results) == order  # seed by seed, as the notebook always had them
    assert got.results[("synthetic", "twin", 1)].model == "twin/1"
    assert got.results[("synthetic", "twin", 1)].sizes == [10, 20, 50, 100, 200, 300]
    assert list(got.runs.columns) == study.RUN_COLUMNS
    assert set(got.runs.dataset) == {"synthetic"}  # keyed by the source, as results are
    assert list(zip(got.runs.model, got.runs.seed, strict=True)) == [o[1:] for o in order]
    assert got.twin_models == {"synthetic": "twin/0"}  # the first seed's TWIN


# --- the sweep's on_run hook ------------------------------------------------------------------


def test_sweep_on_run_sees_each_result_and_adds_columns(tiny):
    def runner(ds, model, train):
        metrics = {"test": {"auc": 0.6, "gauc": 0.6, "logloss": 0.6, "n": 1}}
        return SimpleNamespace(metrics=metrics, train={}, cached=True, key=f"k{train.seed}",
                               model=model.long_module)  # fmt: skip

    seen = []

    def on_run(setting, seed, res):
        seen.append((setting.label, seed, res.model))
        return {"extra": seed * 10} if seed else None

    sets = [sweeps.Setting("TWIN", ModelConfig(long_module="twin"))]
    df = sweeps.sweep(tiny, sets, [0, 1], TrainConfig(), progress=False, runner=runner,
                      on_run=on_run)  # fmt: skip
    assert seen == [("TWIN", 0, "twin"), ("TWIN", 1, "twin")]
    assert df["extra"].tolist()[1] == 10 and np.isnan(df["extra"].tolist()[0])


# --- 03: table4 -------------------------------------------------------------------------------


def test_table4_plan_per_data_set():
    base, train = ModelConfig(long_len=1000), TrainConfig(max_train_samples=400)
    plan = table4.Table4Plan(base, train, 20, 200, ["din", "sim_cluster", "twin"])
    assert [s.label for s in plan.settings] == ["DIN", "SIM Cluster", "SIM Cluster+", "TWIN"]
    assert plan.train_for("movielens-1m") is train  # no ml_train_params: the same budget
    assert plan.table_settings("movielens-1m") == plan.settings  # no ml_long_len: the same L
    ml = dataclasses.replace(plan, ml_long_len=2000, ml_train_params={"max_train_samples": 200})
    assert ml.train_for("synthetic") is train
    assert ml.train_for("movielens-1m") == dataclasses.replace(train, max_train_samples=200)
    assert {s.model.long_len for s in ml.table_settings("movielens-1m")} == {2000}
    assert {s.model.long_len for s in ml.settings_for("synthetic")} == {1000}
    chosen = [sweeps.Setting("TWIN", dataclasses.replace(base, qk_init_scale=1.0))]
    sel = ml.with_selection({"synthetic": chosen})
    assert sel.settings_for("synthetic") == chosen
    assert sel.settings_for("movielens-1m") == ml.table_settings("movielens-1m")


def test_results_record_schema(tmp_path):
    runs = pd.DataFrame({"dataset": "synthetic", "model": ["Avg-Pooling", "TWIN"] * 2,
                         "seed": [0, 0, 1, 1], "auc": [0.6, 0.7, 0.61, 0.72],
                         "gauc": [0.6, 0.7, 0.6, 0.7], "logloss": [0.6, 0.5, 0.6, 0.5],
                         "worse_than_constant": [True, None, False, False]})  # fmt: skip
    summary = sweeps.summarize(runs)
    status = pd.DataFrame({"dataset": "synthetic", "model": ["Avg-Pooling", "TWIN"],
                           "seed": 0, "flattened": [True, False]})  # fmt: skip
    claim = core.Claim(
        "Table 4 order (x)", "", core.PARTLY, 0.5, 0.1, 2, "auc", dataset="synthetic"
    )
    sep = pd.DataFrame({"feature": ["author"], "purity": [0.5]})
    rec = table4.results_record(
        datasets={"synthetic": None}, labels=["Avg-Pooling", "TWIN"], seeds=2,
        baseline="Avg-Pooling", summary=summary, runs=runs, claims=[claim],
        bayes={"synthetic": 0.8, "movielens-1m": None}, closure={}, status=status,
        curve_tail=0.25, curve_tol=0.002, eval_se={"synthetic": 0.001},
        separation={"synthetic": sep},
        tune_grid={"lr": [0.003]}, tune_models=["twin"], choice=pd.DataFrame({"param": ["lr"]}),
        defaults_agree={"lr": True}, select_grid={}, selection={}, config={"model": {}},
    )  # fmt: skip
    assert list(rec) == ["datasets", "models", "n_seeds", "baseline", "table", "relative_pct",
                         "bayes_auc", "gap_closed", "ordering_holds", "claims", "curves",
                         "worse_than_constant", "sim_vector_separation", "tuning", "selection",
                         "config"]  # fmt: skip
    assert rec["datasets"] == ["synthetic"] and rec["bayes_auc"] == {"synthetic": 0.8}
    assert rec["ordering_holds"] == {"synthetic": False}
    assert rec["curves"]["flattened"] == {"synthetic": {"Avg-Pooling": 1.0, "TWIN": 0.0}}
    assert rec["worse_than_constant"] == ["synthetic/Avg-Pooling/seed 0"]
    assert rec["relative_pct"]["auc"]["synthetic"]["Avg-Pooling"] == 0.0
    assert rec["tuning"] == {"grid": {"lr": [0.003]}, "models": ["twin"],
                             "choice": [{"param": "lr"}],
                             "defaults_agree": {"lr": True}}  # fmt: skip
    assert rec["selection"] == {"grid": {}, "runs": {}}
    json.dumps(rec)  # plain JSON


# --- 03: the SIM vectors' separation ------------------------------------------------------------


def test_sim_vector_separation_trained_and_untrained_din(monkeypatch, tiny):
    asked = []

    def fake_run(ds, model, train):
        asked.append((model, train))
        return SimpleNamespace(model=build_model(model, ds))

    monkeypatch.setattr(retrieval.experiment, "run", fake_run)
    sim = ModelConfig(long_module="sim_soft", long_len=100, k=10)
    sep = retrieval.sim_vector_separation(tiny, sim, TrainConfig(seed=3), n_clusters=4)
    assert asked == experiment.prerequisites(sim, TrainConfig(seed=0))  # its DIN, seed 0
    assert sep["vectors"].tolist() == ["trained DIN"] * 2 + ["untrained DIN"] * 2
    assert set(sep["dataset"]) == {tiny.name}
    assert {"n_codes", "cos_same", "purity"} <= set(sep.columns)
