"""Settings: what a sweep trains. ``Setting`` is a labelled ``ModelConfig`` plus tag columns
(``{"long_len": 1000}``) and TrainConfig overrides; ``table4_settings`` builds the nine models
of the paper's Table 4 from one base config (``PAPER_TABLE4``, the paper's reported numbers as
a data frame, gives their labels and order), ``module_settings`` one setting per lifelong
module, and ``vary`` one per value of a ModelConfig field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ... import paper
from ...models import registry
from ...models.config import ModelConfig

# --- the paper's numbers -------------------------------------------------------------------

# The paper's Table 4 (``twin_study.paper.TABLE4``: the PAPER'S reported values, not results of
# this study) as a data frame: model, long_module, auc, gauc; rows in the paper's order.
PAPER_TABLE4 = pd.DataFrame(list(paper.TABLE4), columns=list(paper.TABLE4_COLUMNS))


# --- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One model to train: a label for tables, its config, and tag columns for the sweep."""

    label: str
    model: ModelConfig
    tags: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields to override

    def train_config(self, train, seed: int):
        """The sweep's TrainConfig with this setting's overrides and ``seed``."""
        return dataclasses.replace(train, seed=seed, **dict(self.train))


def table4_settings(
    base: ModelConfig,
    n_clusters: int,
    n_clusters_plus: int,
    models: Iterable[str] | None = None,
) -> list[Setting]:
    """The models of Table 4 from one shared ``base`` config (only the lifelong module differs,
    paper §4.3). ``models`` selects labels (``"TWIN"``) or modules (``"twin"``; ``"sim_cluster"``
    means both Cluster and Cluster+); default all nine, in the paper's order.

    Every model but the two SIM Cluster ones keeps ``base.n_clusters``, so the DIN that
    pre-trains SIM Soft's / SIM Cluster's item vectors is the table's own DIN run when
    ``base.n_clusters`` equals the pre-training default (a results-cache hit, no extra run).
    """
    if n_clusters_plus <= n_clusters:
        raise ValueError(
            f"SIM Cluster+ must have more clusters than SIM Cluster: {n_clusters_plus} <= "
            f"{n_clusters}"
        )
    wanted = None if models is None else set(models)
    out = []
    for label, module in zip(PAPER_TABLE4["model"], PAPER_TABLE4["long_module"], strict=True):
        if wanted is not None and label not in wanted and module not in wanted:
            continue
        cfg = dataclasses.replace(base, long_module=module)
        if label == "SIM Cluster":
            cfg = dataclasses.replace(cfg, n_clusters=n_clusters)
        elif label == "SIM Cluster+":
            cfg = dataclasses.replace(cfg, n_clusters=n_clusters_plus)
        out.append(Setting(label, cfg))
    if wanted is not None:
        known = set(PAPER_TABLE4["model"]) | set(PAPER_TABLE4["long_module"])
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(f"unknown Table 4 model(s) {unknown}; known: {sorted(known)}")
    return out


def module_settings(base: ModelConfig, modules: Iterable[str], **tags: Any) -> list[Setting]:
    """One setting per lifelong module, labelled as in the paper, with the same ``tags``."""
    return [
        Setting(registry.label(m), dataclasses.replace(base, long_module=m), dict(tags))
        for m in modules
    ]


def vary(setting: Setting, name: str, values: Iterable[Any]) -> list[Setting]:
    """``setting`` with ModelConfig field ``name`` set to each value; the value is a tag."""
    return [
        Setting(
            setting.label,
            dataclasses.replace(setting.model, **{name: v}),
            {**setting.tags, name: v},
        )
        for v in values
    ]
