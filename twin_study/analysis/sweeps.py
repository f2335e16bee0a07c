"""Sweeps over models x seeds x settings, and their tidy summaries.

Notebooks 03-05 call this module; nothing here trains by itself: every model goes through
``twin_study.training.run``, whose results cache is keyed by the full configuration, so a
sweep that is repeated or interrupted never retrains what it already has.

The pieces:

* the paper's Table 4 as a data frame (``PAPER_TABLE4``, from ``twin_study.paper``) and the
  models' labels;
* ``configs`` / ``model_config`` / ``train_config`` (from ``training.params``): validated
  configs from notebook parameters (the notebooks' data sets come from
  ``twin_study.data.load_datasets``);
* ``Setting``: a labelled ``ModelConfig`` plus tag columns (``{"long_len": 1000}``), and
  ``table4_settings`` for the nine models of the paper's Table 4;
* ``sweep``: one tidy row per (setting, seed) with AUC / GAUC / LogLoss and training facts;
* summaries: ``summarize`` (mean, std, n_seeds), ``relative_improvement`` (percent of a
  baseline's mean, as the paper reports it), ``lead_over``, ``check_table``, and inference
  ``timings``.

The paper's claims checked on these runs are in ``twin_study.claims``; markdown tables and the
records of results.json in ``tables``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import paper, runtime
from ..data import bayes_auc
from ..data.batching import SampleBuilder
from ..models import registry
from ..models.config import ModelConfig
from ..training import experiment, parallel
from ..training.params import configs as configs
from ..training.params import model_config as model_config
from ..training.params import train_config as train_config
from ..training.train import TrainConfig

METRICS = ("auc", "gauc", "logloss")
HIGHER_IS_BETTER = {"auc": True, "gauc": True, "logloss": False}

# --- the paper's numbers -------------------------------------------------------------------

# The paper's Table 4 (``twin_study.paper.TABLE4``: the PAPER'S reported values, not results of
# this study) as a data frame: model, long_module, auc, gauc; rows in the paper's order.
PAPER_TABLE4 = pd.DataFrame(list(paper.TABLE4), columns=list(paper.TABLE4_COLUMNS))

# --- configs from notebook parameters: ``configs``, ``model_config``, ``train_config`` ------
# (defined in ``training.params``, imported above: the notebooks call them from here).


def bayes_auc_or_none(ds) -> float | None:
    """The Bayes-optimal test AUC where the data has a planted truth, else None."""
    return bayes_auc(ds) if getattr(ds, "p_true", None) is not None else None


# --- settings and sweeps -------------------------------------------------------------------


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


def sweep(
    ds,
    settings: Sequence[Setting],
    seeds: Iterable[int],
    train,
    split: str = "test",
    progress: bool = True,
    runner: Callable | None = None,
    jobs: int | None = None,
    dask: str | None = None,
    on_run: Callable[[Setting, int, Any], Mapping[str, Any] | None] | None = None,
) -> pd.DataFrame:
    """Train (or load from the results cache) every setting with every seed.

    Returns one row per (setting, seed): ``dataset, model, long_module, <tags>, seed, auc,
    gauc, logloss, n, best_epoch, train_seconds, samples_per_second, cached, key``.
    ``train`` is a TrainConfig whose ``seed`` is replaced by each seed; ``runner`` (default
    ``twin_study.training.run``) is there for tests.

    ``jobs`` / ``dask``: runs missing from the results cache are first trained in ``jobs``
    worker processes or on a Dask cluster (``training.parallel``; default from
    ``$TWIN_STUDY_JOBS`` / ``$TWIN_STUDY_DASK``, else one after another in this process),
    then every row is read from the cache; ``cached`` is False for the runs trained here.

    ``on_run(setting, seed, result)`` is called in this process with each run's
    ``RunResult`` as soon as it is trained or loaded, before the next run replaces it; the
    columns it returns (a mapping, or None for none) join the run's row. A study that needs
    the trained model itself (02 measures each model's consistency) uses it, so the model is
    loaded once and the sweep still trains in parallel.
    """
    seeds = list(seeds)
    pairs = [(s, seed) for s in settings for seed in seeds]
    trained: set[str] = set()
    if runner is None:  # a custom runner (tests) always runs in this process
        runner = experiment.run
        runs = [(s.model, s.train_config(train, seed)) for s, seed in pairs]
        trained = parallel.train_missing(ds, runs, jobs=jobs, dask=dask, progress=progress)
    rows = []
    bar = tqdm(pairs, desc=f"sweep {ds.name}", disable=not progress)
    for setting, seed in bar:
        bar.set_postfix_str(f"{setting.label} seed {seed}")
        res = runner(ds, setting.model, setting.train_config(train, seed))
        m = res.metrics[split]
        extra = (on_run(setting, seed, res) or {}) if on_run is not None else {}
        rows.append(
            {
                "dataset": ds.name,
                "model": setting.label,
                "long_module": setting.model.long_module,
                **setting.tags,
                "seed": seed,
                **{k: m[k] for k in METRICS},
                "n": m.get("n"),
                "best_epoch": res.train.get("best_epoch"),
                "best_samples": res.train.get("best_samples"),
                "worse_than_constant": res.train.get("worse_than_constant"),
                "train_seconds": res.train.get("train_seconds"),
                "samples_per_second": res.train.get("samples_per_second"),
                "cached": res.cached and res.key not in trained,
                "key": res.key,
                **extra,
            }
        )
    return pd.DataFrame(rows)


def learning_curves(
    ds, settings: Sequence[Setting], seeds: Iterable[int], train, runner: Callable | None = None
) -> pd.DataFrame:
    """Every run's learning curve (``TrainResult.history``), long format: dataset, model,
    <tags>, seed, epoch, samples_seen, train_loss, valid_auc, valid_logloss, selected (the
    point the model was taken from), constant_logloss (the base-rate predictor's). The runs
    come from the results cache when ``sweep`` trained them already."""
    if runner is None:
        runner = experiment.run
    rows = []
    for setting in settings:
        for seed in seeds:
            res = runner(ds, setting.model, setting.train_config(train, seed))
            t = res.train
            for point in t.get("history", []):
                selected = (point.get("samples_seen") == t.get("best_samples")
                            and point.get("epoch") == t.get("best_epoch"))  # fmt: skip
                rows.append({"dataset": ds.name, "model": setting.label, **setting.tags,
                             "seed": seed, **point, "selected": selected,
                             "constant_logloss": t.get("constant_logloss")})  # fmt: skip
    return pd.DataFrame(rows)


def curve_status(
    curves: pd.DataFrame,
    by: Sequence[str] = ("dataset", "model", "seed"),
    tail: float = 0.25,
    tol: float = 0.002,
) -> pd.DataFrame:
    """Did each run's validation LogLoss flatten before its budget ran out?

    ``gain_in_tail``: how much the best validation LogLoss so far still fell during the last
    ``tail`` share of the samples seen, read from the curve point nearest the start of that
    share (``tail_from``). Checkpoints land a batch past each multiple of ``eval_every``, so
    "the last point <= the start" read one interval early: with points every 50,000 of
    400,000 samples it measured the last 3/8, not the last quarter (the off-by-one af1b46d
    fixed in 06's budget reading); ties go to the earlier point. Below ``tol`` the curve
    counts as flattened (the run reached its plateau); otherwise the budget stopped it while
    it was still learning, and a comparison with it understates what the model can do."""
    rows = []
    for key, g in curves.groupby(list(by), sort=False):
        g = g.sort_values(["epoch", "samples_seen"])
        seen = g["samples_seen"].to_numpy(float)
        loss = np.fmin.accumulate(g["valid_logloss"].to_numpy(float))  # best so far
        cut = seen[-1] * (1 - tail)
        # The nearest point among all but the last (the last cannot start its own tail).
        i = int(np.abs(seen[:-1] - cut).argmin()) if len(seen) > 1 else -1
        gain = float(loss[i] - loss[-1]) if i >= 0 else np.nan
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "points": len(g),
                "samples_seen": int(seen[-1]),
                "tail_from": int(seen[i]) if i >= 0 else -1,
                "best_logloss": float(loss[-1]),
                "gain_in_tail": gain,
                "flattened": bool(np.isfinite(gain) and gain < tol),
            }
        )
    return pd.DataFrame(rows)


def logloss_se(
    label: np.ndarray, prob: np.ndarray, groups: np.ndarray | None = None, n: int = 0
) -> float:
    """Standard error of the mean LogLoss of ``prob`` on ``label`` from sampling alone,
    scaled to a subset of ``n`` samples (0: all of them).

    ``groups`` (e.g. request ids) makes it cluster-robust: the validation subset of a
    learning curve is made of whole requests (``training.train.request_subset``), whose
    samples share a user and a history, so they are not independent. The subset's s.e. is
    the whole split's times sqrt(N / n) (a random share of the clusters). This is the noise
    of one reading of the curve; the flattening rule compares two readings on the same
    subset, whose difference is noisier than this only when their per-sample losses
    correlate below 0.5."""
    y = np.asarray(label, float)
    p = np.clip(np.asarray(prob, float), 1e-7, 1 - 1e-7)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    N = len(loss)
    if N < 2:
        return float("nan")
    dev = loss - loss.mean()
    if groups is None:
        se = float(dev.std(ddof=1) / np.sqrt(N))
    else:
        sums = pd.Series(dev).groupby(np.asarray(groups)).sum().to_numpy()
        g = len(sums)
        if g < 2:
            return float("nan")
        se = float(np.sqrt((sums**2).sum() * g / (g - 1)) / N)  # clustered (CR1) s.e.
    return se * float(np.sqrt(N / n)) if n and n < N else se


def eval_logloss_se(ds, n_samples: int, split: str = "valid") -> float:
    """The noise (s.e.) of a validation LogLoss read on a subset of whole requests holding
    about ``n_samples`` samples (a learning curve's ``eval_samples``; 0: the whole split).

    Measured with the best predictions the data offers: the planted truth ``p_true`` where
    there is one (a trained model's losses spread about as much), else the training split's
    click rate. Compare it with ``curve_status``'s ``tol``: a tolerance below the subset's
    noise cannot tell a flat curve from a noisy one."""
    idx = ds.split_indices(split)
    y = ds.samples.label[idx]
    if getattr(ds, "p_true", None) is not None:
        p = ds.p_true[idx]
    else:
        p = np.full(len(idx), float(ds.samples.label[ds.split_indices("train")].mean()))
    return logloss_se(y, p, ds.samples.request[idx], n_samples)


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
        Setting(s.label, dataclasses.replace(s.model, **{name: v}),
                {**s.tags, "param": name, "value": str(v)}, s.train)  # fmt: skip
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


def sweep_or_none(ds, *args, **kwargs) -> pd.DataFrame | None:
    """``sweep`` when the data set loaded; ``None`` otherwise (for optional data sets)."""
    return None if ds is None else sweep(ds, *args, **kwargs)


RUN_FACTS = ("train_seconds", "samples_per_second", "cached")  # vary between reruns


def stable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` without the columns that change between reruns (timings, cache hits), for
    committed CSV files that should not churn."""
    return runs.drop(columns=[c for c in RUN_FACTS if c in runs.columns])


# --- summaries ---------------------------------------------------------------------------


def summarize(
    runs: pd.DataFrame, by: Sequence[str] = ("dataset", "model"), metrics: Sequence[str] = METRICS
) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and seed count per group.

    Columns: ``by``, then ``<metric>_mean``, ``<metric>_std`` per metric, then ``n_seeds``.
    Groups keep the order in which they first appear in ``runs``.
    """
    by = list(by)
    g = runs.groupby(by, sort=False, dropna=False)
    out = g[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["n_seeds"] = g["seed"].nunique()
    return out.reset_index()


def relative_improvement(
    summary: pd.DataFrame,
    baseline: str,
    metric: str = "gauc",
    by: str = "model",
    within: Sequence[str] = ("dataset",),
) -> pd.Series:
    """Relative improvement in percent over the ``baseline`` row, ``100 * (x / base - 1)``,
    the way the paper reports "+0.29 % AUC". Compared within groups of ``within`` columns
    (one baseline row per group; e.g. per data set, or per sequence length). For LogLoss the
    sign is flipped so that positive is better."""
    col = f"{metric}_mean" if f"{metric}_mean" in summary else metric
    within = [c for c in within if c in summary.columns]
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0

    def one(group: pd.DataFrame) -> pd.Series:
        base = group.loc[group[by] == baseline, col]
        if len(base) != 1:
            raise ValueError(
                f"need exactly one {by} == {baseline!r} row per group, got {len(base)}"
            )
        return sign * 100.0 * (group[col] / float(base.iloc[0]) - 1.0)

    if not within:
        return one(summary).rename(f"{metric}_rel_pct")
    parts = [one(g) for _, g in summary.groupby(within, sort=False, dropna=False)]
    return pd.concat(parts).reindex(summary.index).rename(f"{metric}_rel_pct")


def with_relative(
    summary: pd.DataFrame,
    baseline: str,
    metrics: Sequence[str] = ("auc", "gauc"),
    by: str = "model",
    within: Sequence[str] = ("dataset",),
) -> pd.DataFrame:
    """``summary`` plus ``<metric>_rel_pct`` columns (see ``relative_improvement``)."""
    out = summary.copy()
    for m in metrics:
        out[f"{m}_rel_pct"] = relative_improvement(summary, baseline, m, by, within)
    return out


def gap_closure(
    runs: pd.DataFrame, baseline: str, ceiling: float, metric: str = "auc"
) -> pd.DataFrame:
    """How much of the gap from ``baseline`` to ``ceiling`` (the Bayes-optimal AUC on the same
    samples) each run closes, paired by seed with the same seed's baseline run:
    ``closure = (x - baseline) / (ceiling - baseline)``; 0: no better than the baseline, 1:
    optimal. ``runs`` plus a ``closure`` column, for the seeds that have a baseline run
    (``summarize(..., metrics=("closure",))`` gives mean and std per model)."""
    if metric not in runs:
        raise ValueError(f"gap_closure: no column {metric!r} in runs")
    base = runs.loc[runs["model"] == baseline].set_index("seed")[metric]
    if base.empty:
        raise ValueError(f"gap_closure: no {baseline!r} runs to measure the gap from")
    if not (base < ceiling).all():
        raise ValueError(f"gap_closure: {baseline} is not below the ceiling {ceiling:.4f}")
    out = runs[runs["seed"].isin(base.index)].copy()
    b = out["seed"].map(base)
    out["closure"] = (out[metric] - b) / (ceiling - b)
    return out


def lead_over(
    summary: pd.DataFrame,
    model: str = "TWIN",
    x: str = "long_len",
    metric: str = "gauc",
) -> pd.DataFrame:
    """``model``'s relative improvement (percent) over every other model at each ``x``,
    ``100 * (model / other - 1)`` (sign flipped for LogLoss): columns ``dataset, <x>, model``
    (the other model), ``lead_pct``."""
    col = f"{metric}_mean"
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    rows = []
    for (d, xv), g in summary.groupby(["dataset", x], sort=False):
        mine = g.loc[g["model"] == model, col]
        if len(mine) != 1:
            continue
        for _, r in g[g["model"] != model].iterrows():
            lead = sign * 100.0 * (float(mine.iloc[0]) / float(r[col]) - 1.0)
            rows.append({"dataset": d, x: xv, "model": r["model"], "lead_pct": lead})
    return pd.DataFrame(rows, columns=["dataset", x, "model", "lead_pct"])


def check_table(
    summary: pd.DataFrame,
    expected: Iterable[tuple],
    n_seeds: int,
    by: Sequence[str] = ("dataset", "model"),
) -> list[str]:
    """Problems with a summary table: a missing row (``expected`` holds one tuple of ``by``
    values per row that must exist), a wrong seed count, a mean AUC outside (0.5, 1) (a
    trained model beats chance over all samples), a GAUC outside [0, 1] (per-user ranking can
    sit at chance on real data, so only its range is checked) or a LogLoss that is not > 0.
    An empty list means the table is complete and plausible."""
    problems = []
    got = {tuple(r) for r in summary[list(by)].itertuples(index=False)}
    problems += [f"missing {' / '.join(map(str, e))}" for e in expected if tuple(e) not in got]
    for _, r in summary.iterrows():
        name = " / ".join(str(r[c]) for c in by)
        if int(r["n_seeds"]) != n_seeds:
            problems.append(f"{name}: {int(r['n_seeds'])} seeds, expected {n_seeds}")
        auc, gauc = r.get("auc_mean", np.nan), r.get("gauc_mean", np.nan)
        if not (0.5 < auc < 1.0):
            problems.append(f"{name}: auc {auc} not in (0.5, 1)")
        if not (0.0 <= gauc <= 1.0):
            problems.append(f"{name}: gauc {gauc} not in [0, 1]")
        if not (r.get("logloss_mean", 1.0) > 0):
            problems.append(f"{name}: logloss {r.get('logloss_mean')} not > 0")
    return problems


# --- inference time ------------------------------------------------------------------------


def inference_time(
    model, ds, n_samples: int = 512, batch_size: int = 256, repeats: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Wall-clock forward time of ``model`` on test samples, batches built beforehand.

    Returns one row per repeat: ``ms_per_1k`` (milliseconds per 1,000 samples). TWIN's item
    cache is built before timing (serving precomputes it, paper §3.4); batch construction is
    not timed (identical for every model). For figures only: never assert on it.
    """
    idx = ds.split_indices("test")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(idx, size=min(n_samples, len(idx)), replace=False))
    builder = SampleBuilder(ds, model.cfg.long_len, model.cfg.short_len)
    batches = list(builder.batches(idx, batch_size, shuffle=False))
    model.eval()
    model.prepare_eval()
    rows = []
    with torch.no_grad():
        model(batches[0])  # warm-up
        for r in range(repeats):
            t0 = time.perf_counter()
            for b in batches:
                model(b)
            dt = time.perf_counter() - t0
            rows.append({"repeat": r, "ms_per_1k": 1e6 * dt / len(idx), "n_samples": len(idx)})
    return pd.DataFrame(rows)


def timings(
    ds,
    settings: Sequence[Setting],
    seeds: Iterable[int],
    train,
    n_samples: int = 512,
    repeats: int = 5,
    runner: Callable | None = None,
) -> pd.DataFrame:
    """Inference time (``inference_time``) of each setting's trained model for every seed
    (the models come from the results cache). Rows: dataset, model, seed, repeat, ms_per_1k."""
    if runner is None:
        runner = experiment.run
    runtime.configure(train.threads)
    frames = []
    for setting in settings:
        for seed in seeds:
            res = runner(ds, setting.model, dataclasses.replace(train, seed=seed))
            t = inference_time(res.model, ds, n_samples, train.batch_size, repeats, seed)
            frames.append(t.assign(dataset=ds.name, model=setting.label, seed=seed))
    cols = ["dataset", "model", "seed", "repeat", "ms_per_1k", "n_samples"]
    return pd.concat(frames, ignore_index=True)[cols]
