"""A user's own world in the panel: a log whose impressions carry a known click probability
(``spec.p_true``) gets a Bayes-optimal AUC, and goes through the panel's plan unchanged."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from logs import write_click_log

from twin_study.data import bayes_auc, load_dataset
from twin_study.data.userlog import UserLogError
from twin_study.panel import run as panel_run
from twin_study.panel.spec import World, load_panel


def test_p_true_column_becomes_the_planted_truth(tmp_path: Path) -> None:
    log, spec = write_click_log(tmp_path, p_true=True)
    ds = load_dataset("userlog", path=log, spec=spec)
    assert ds.p_true is not None and len(ds.p_true) == len(ds.samples)
    assert set(np.unique(ds.p_true)) <= {0.15, 0.85}
    # The truth is aligned with the samples: clicks are far likelier where it says 0.85.
    hi = ds.p_true == 0.85
    assert ds.samples.label[hi].mean() > ds.samples.label[~hi].mean() + 0.3
    assert bayes_auc(ds) > 0.7
    plain = load_dataset("userlog", path=write_click_log(tmp_path / "plain")[0],
                         spec=write_click_log(tmp_path / "plain")[1])  # fmt: skip
    assert plain.p_true is None


@pytest.mark.parametrize("value", [1.5, -0.1, "high"])
def test_bad_p_true_names_the_column_and_row(tmp_path: Path, value) -> None:
    log, spec = write_click_log(tmp_path, p_true=True)
    imp = pd.read_csv(tmp_path / "impressions.csv")
    imp["p_click"] = imp["p_click"].astype(object)
    imp.loc[3, "p_click"] = value
    imp.to_csv(tmp_path / "impressions.csv", index=False)
    with pytest.raises(UserLogError, match=r"impressions.csv: column 'p_click', row 3"):
        load_dataset("userlog", path=log, spec=spec)


def test_missing_p_true_column_is_named(tmp_path: Path) -> None:
    log, spec = write_click_log(tmp_path)
    with pytest.raises(UserLogError, match="no column 'p_click'"):
        load_dataset("userlog", path=log, spec={**_spec(spec), "p_true": "p_click"})


def _spec(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def test_a_users_log_is_one_more_panel_world(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TWIN_STUDY_CACHE", str(tmp_path / "cache"))
    log, spec_path = write_click_log(tmp_path / "log", n_users=30, p_true=True)
    spec = load_panel().at("quick")
    spec = dataclasses.replace(spec, worlds=(), analysis=dataclasses.replace(
        spec.analysis, bootstrap=20))  # fmt: skip
    spec = spec.with_world(World("mylog", "a user's own log", source="userlog", long_len=20,
                                 load={"path": str(log), "spec": str(spec_path)}))  # fmt: skip
    w = spec.world("mylog")
    assert spec.seeds_of(w) == (0,)  # real data: one draw
    rec = panel_run.analyse_world(spec, panel_run.run_world(spec, w, progress=False))
    assert rec["bayes_auc"] is not None and rec["gap_closed"] is not None
    assert {e["rival"] for e in rec["effects"]} == set(spec.models) - {"TWIN"}
    assert all(np.isnan(e["t"]) for e in rec["effects"])  # one draw: no t over draws
