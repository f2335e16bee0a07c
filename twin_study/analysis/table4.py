"""Notebook 03's Table 4: what each data set trains, and the record results.json keeps.

``sweeps`` trains and summarises any list of settings; this module holds 03's own decisions,
so the notebook only tells the story:

* ``Table4Plan``: the table's settings and budget per data set. Synthetic data trains at the
  base L and budget; MovieLens-1M and user logs (short histories, another size) may get their
  own L (``ml_long_len``) and TrainConfig fields (``ml_train_params``); a per-setting choice
  (``sweeps.select_per_setting``), when made, replaces a data set's settings.
* ``results_record``: the results.json schema of 03 (07 and ``twin-study report`` read it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..claims import core
from ..models.config import ModelConfig
from ..training.train import TrainConfig
from . import sweeps, tables

SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class Table4Plan:
    """The table's settings and TrainConfig on each data set."""

    base: ModelConfig  # every model's config but the lifelong module (and SIM Cluster's k)
    train: TrainConfig
    n_clusters: int  # SIM Cluster
    n_clusters_plus: int  # SIM Cluster+
    models: Sequence[str] | None = None  # labels or modules; None: all nine
    ml_long_len: int = 0  # L on MovieLens-1M and user logs; 0: base.long_len
    ml_train_params: Mapping[str, Any] = field(default_factory=dict)  # their TrainConfig fields
    # per data set, the settings a per-setting choice made (``with_selection``)
    selected: Mapping[str, list[sweeps.Setting]] = field(default_factory=dict)

    @property
    def settings(self) -> list[sweeps.Setting]:
        """The table's settings at the base L (synthetic data's)."""
        return sweeps.table4_settings(self.base, self.n_clusters, self.n_clusters_plus, self.models)

    def train_for(self, name: str) -> TrainConfig:
        """The training config of data set ``name``: real logs may get their own budget."""
        if name == SYNTHETIC or not self.ml_train_params:
            return self.train
        return dataclasses.replace(self.train, **self.ml_train_params).validate()

    def table_settings(self, name: str) -> list[sweeps.Setting]:
        """Synthetic data at the base L; MovieLens-1M and user logs at ``ml_long_len`` (when
        set), before any per-setting choice."""
        if name == SYNTHETIC or not self.ml_long_len:
            return self.settings
        base = dataclasses.replace(self.base, long_len=self.ml_long_len)
        return sweeps.table4_settings(base, self.n_clusters, self.n_clusters_plus, self.models)

    def settings_for(self, name: str) -> list[sweeps.Setting]:
        """The table's settings on data set ``name``: per-setting choices when made."""
        return list(self.selected.get(name) or self.table_settings(name))

    def with_selection(self, selected: Mapping[str, list[sweeps.Setting]]) -> Table4Plan:
        """This plan with the settings chosen per data set (``sweeps.select_per_setting``)."""
        return dataclasses.replace(self, selected=dict(selected))


def worse_than_constant(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose selected model is no better than predicting the base rate."""
    return runs[runs.worse_than_constant.fillna(False).astype(bool)]


def results_record(
    *,
    datasets: Iterable[str],
    labels: Sequence[str],
    seeds: int,
    baseline: str,
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    claims: Sequence[core.Claim],
    bayes: Mapping[str, float | None],
    closure: Mapping[str, pd.DataFrame],
    status: pd.DataFrame,
    curve_tail: float,
    curve_tol: float,
    eval_se: Mapping[str, float],
    separation: Mapping[str, pd.DataFrame],
    tune_grid: Mapping[str, Any],
    tune_models: Sequence[str],
    choice: pd.DataFrame,
    defaults_agree: Mapping[str, bool],
    select_grid: Mapping[str, Any],
    selection: Mapping[str, pd.DataFrame],
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """03's results.json: per data set and model ``{auc, gauc, logloss: {mean, std,
    n_seeds}}`` (``table``), the relative improvements over ``baseline``, the Bayes-optimal
    AUC where known, the gap each model closes, whether the Table 4 order holds, every claim,
    the learning curves' flattening, the runs no better than the base rate, the SIM vectors'
    separation, the tuning and the per-setting selection (as records), and ``config``
    (``tables.config_record``).

    Keys and their order are the schema ``twin-study report`` and notebook 07 read."""
    rel = sweeps.with_relative(summary, baseline)  # within each data set
    flattened = status.groupby(["dataset", "model"], sort=False)["flattened"].mean()
    return {
        "datasets": list(datasets),
        "models": list(labels),
        "n_seeds": seeds,
        "baseline": baseline,
        "table": tables.metric_records(summary),
        "relative_pct": {
            m: tables.nested(rel, ["dataset", "model"], f"{m}_rel_pct") for m in ("auc", "gauc")
        },
        "bayes_auc": {n: b for n, b in bayes.items() if b is not None},
        "gap_closed": {
            name: tables.metric_records(c, ["model"], ("closure",)) for name, c in closure.items()
        },
        "ordering_holds": {
            c.dataset: c.verdict == core.REPRODUCED
            for c in claims
            if c.claim.startswith("Table 4 order")
        },
        "claims": [c.to_dict() for c in claims],
        "curves": {
            "flattened": tables.nested(flattened.reset_index(), ["dataset", "model"], "flattened"),
            "tail": curve_tail,
            "tol": curve_tol,
            "eval_logloss_se": dict(eval_se),
        },
        "worse_than_constant": [
            f"{r.dataset}/{r.model}/seed {r.seed}" for r in worse_than_constant(runs).itertuples()
        ],
        "sim_vector_separation": {name: sep.to_dict("records") for name, sep in separation.items()},
        "tuning": {
            "grid": tune_grid,
            "models": tune_models,
            "choice": choice.to_dict("records"),
            "defaults_agree": defaults_agree,
        },
        "selection": {
            "grid": select_grid,
            "runs": {name: sel.to_dict("records") for name, sel in selection.items()},
        },
        "config": config,
    }
