"""Tuning: the one-at-a-time grid around a base config that every module shares
(``tuning_settings``), the value of each parameter chosen the same way for every model by
average validation rank (``tuning_choice``), and ``select_per_setting``, which chooses some
ModelConfig fields per setting on the validation split at the setting's own L, data and budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from ...models import registry
from ...models.config import ModelConfig
from ...training.train import TrainConfig
from .run import sweep
from .settings import Setting


def tuning_settings(
    base: ModelConfig,
    modules: Iterable[str],
    grid: Mapping[str, Sequence[Any]],
    train: Any = None,
) -> list[Setting]:
    """One-at-a-time variations around ``base`` (and the TrainConfig ``train``) for every
    module: the base itself (tagged ``param = "base"``) and, for each ``grid`` entry (a
    ModelConfig or TrainConfig field), one setting per value other than the current one (the
    base run stands for that). Every module gets the same grid and the same budget."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(grid) - model_fields - train_fields)
    if unknown:
        raise ValueError(f"unknown tuning parameter(s) {unknown}")
    out = []
    for m in modules:
        cfg = dataclasses.replace(base, long_module=m)
        out.append(Setting(registry.label(m), cfg, {"param": "base", "value": "base"}))
        for name, values in grid.items():
            current = getattr(cfg if name in model_fields else train, name, None)
            for v in values:
                if v == current:
                    continue
                tags = {"param": name, "value": str(v)}
                if name in model_fields:
                    changed = dataclasses.replace(cfg, **{name: v})
                    out.append(Setting(registry.label(m), changed, tags))
                else:
                    out.append(Setting(registry.label(m), cfg, tags, {name: v}))
    return out


def tuning_choice(
    runs: pd.DataFrame, metric: str = "logloss", defaults: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Which value of each tuned parameter is best, the same way for every model: per model,
    rank the values of a parameter by their validation ``metric`` (LogLoss: lower is better;
    the base run counts as the base value), then average the ranks over models and seeds.
    Columns: param, value, mean_rank, mean_<metric>, best (the value chosen)."""
    lower = metric == "logloss"
    base = runs[runs.param == "base"]
    defaults = defaults or {}
    rows = []
    for param in [p for p in runs.param.unique() if p != "base"]:
        label = str(defaults[param]) if param in defaults else "base"  # the base run's value
        sub = pd.concat([runs[runs.param == param], base.assign(value=label)])
        ranks = sub.groupby(["dataset", "model", "seed"])[metric].rank(ascending=lower)
        sub = sub.assign(rank=ranks)
        agg = (
            sub.groupby("value", sort=False)
            .agg(mean_rank=("rank", "mean"), mean_metric=(metric, "mean"))
            .reset_index()
        )
        agg["param"] = param
        agg["best"] = agg["mean_rank"] == agg["mean_rank"].min()
        rows.append(agg)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return (
        out.rename(columns={"mean_metric": f"mean_{metric}"})[
            ["param", "value", "mean_rank", f"mean_{metric}", "best"]
        ]
        if len(out)
        else out
    )


def select_per_setting(
    ds,
    settings: Sequence[Setting],
    train,
    grid: Mapping[str, Sequence[Any]],
    seed: int = 0,
    progress: bool = False,
    runner: Callable | None = None,
) -> tuple[list[Setting], pd.DataFrame]:
    """Each setting's own value of some ModelConfig fields, chosen on the validation split at
    the setting's own L, data and budget (the tuning section chooses one value for every model
    at a smaller L; this keeps that rule -- lowest validation LogLoss, the same grid and budget
    for every model -- where it does not transfer). For each setting and each ``grid`` field,
    one run of seed ``seed`` per value (one field at a time, the others at the setting's
    value; the run at the current value is the table's own seed-``seed`` run, so it costs
    nothing extra); the value with the lowest validation LogLoss wins (ties: the current one).

    Returns the settings with their chosen values (labels and tags unchanged) and one row per
    (model, param, value): ``logloss``, ``auc`` (validation), ``current``, ``chosen``."""
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(grid) - fields)
    if unknown:
        raise ValueError(f"select_per_setting: unknown ModelConfig field(s) {unknown}")
    base = ModelConfig()

    def typed(name: str, v: Any) -> Any:  # 1 and 1.0 must name the same run (cache key)
        cur = getattr(base, name)
        return type(cur)(v) if isinstance(cur, (int, float)) and not isinstance(cur, bool) else v

    grid = {name: [typed(name, v) for v in values] for name, values in grid.items()}
    cands = [
        Setting(
            s.label,
            dataclasses.replace(s.model, **{name: v}),
            {**s.tags, "param": name, "value": str(v)},
            s.train,
        )
        for s in settings
        for name, values in grid.items()
        for v in values
    ]
    runs = sweep(ds, cands, [seed], train, split="valid", progress=progress, runner=runner)
    per = sum(len(v) for v in grid.values())  # candidate runs per setting, in ``cands`` order
    rows, chosen = [], []
    for i, s in enumerate(settings):
        mine = runs.iloc[i * per : (i + 1) * per]
        change = {}
        for name, vals in grid.items():
            g = mine[mine.param == name]
            current = str(getattr(s.model, name))
            best = str(g.loc[g["logloss"].idxmin(), "value"])
            if (g.value == current).any() and g.loc[g.value == current, "logloss"].min() <= g[
                "logloss"
            ].min():
                best = current  # a tie keeps the current value
            change[name] = {str(v): v for v in vals}.get(best, getattr(s.model, name))
            for r in g.itertuples():
                rows.append({"dataset": ds.name, "model": s.label, "param": name,
                             "value": r.value, "logloss": r.logloss, "auc": r.auc,
                             "current": r.value == current, "chosen": r.value == best})  # fmt: skip
        chosen.append(dataclasses.replace(s, model=dataclasses.replace(s.model, **change)))
    return chosen, pd.DataFrame(rows)
