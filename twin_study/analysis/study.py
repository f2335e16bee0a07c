"""Sweeps over models x seeds x settings, tidy tables and the paper's claims as data.

Notebooks 03-05 call this module; nothing here trains by itself: every model goes through
``twin_study.training.run``, whose results cache is keyed by the full configuration, so a
sweep that is repeated or interrupted never retrains what it already has.

The pieces:

* ``Setting``: a labelled ``ModelConfig`` plus tag columns (``{"long_len": 1000}``), and
  ``table4_settings`` for the nine models of the paper's Table 4;
* ``sweep``: one tidy row per (setting, seed) with AUC / GAUC / LogLoss and training facts;
* ``summarize`` (mean, std, n_seeds), ``relative_improvement`` (percent of a baseline's mean,
  as the paper reports it) and ``paired`` (per-seed differences, so the spread of an effect
  is the spread of the difference, not of the two metrics);
* claims: ``claim_better``, ``claim_similar``, ``claim_order`` and ``combine`` return a
  ``Claim`` whose ``verdict`` is one of ``VERDICTS``; a claim that fails is a verdict, never
  an exception.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..models.config import ModelConfig

METRICS = ("auc", "gauc", "logloss")
HIGHER_IS_BETTER = {"auc": True, "gauc": True, "logloss": False}
REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED)

# --- the paper's numbers -------------------------------------------------------------------

# Chang et al., "TWIN: TWo-stage Interest Network for Lifelong User Behavior Modeling in CTR
# Prediction at Kuaishou", KDD 2023 (arXiv 2302.02352), Table 4: mean over 5 days of the
# Kuaishou offline data. These are the PAPER'S reported values, not results of this study.
# Columns: our label, long_module, Cluster/Cluster+ marker, AUC, GAUC; rows in the paper's order.
PAPER_TABLE4 = pd.DataFrame(
    [
        ("Avg-Pooling", "avg_pool", 0.7855, 0.7168),
        ("DIN", "din", 0.7873, 0.7191),
        ("SIM Hard", "sim_hard", 0.7901, 0.7224),
        ("ETA", "eta", 0.7910, 0.7243),
        ("SIM Cluster", "sim_cluster", 0.7915, 0.7253),
        ("SDIM", "sdim", 0.7919, 0.7267),
        ("SIM Cluster+", "sim_cluster", 0.7927, 0.7275),
        ("SIM Soft", "sim_soft", 0.7939, 0.7299),
        ("TWIN", "twin", 0.7962, 0.7336),
    ],
    columns=["model", "long_module", "auc", "gauc"],
)
TABLE4_ORDER = tuple(PAPER_TABLE4["model"])  # weakest to strongest, as the paper lists them
# The paper's reading of Table 4: finer retrieval helps monotonically.
FINER_RETRIEVAL = ("SIM Hard", "SIM Cluster", "SIM Cluster+", "SIM Soft", "TWIN")

# Labels of the other models the notebooks compare (sequence length, ablations).
LABELS = {
    "avg_pool": "Avg-Pooling",
    "din": "DIN",
    "sim_hard": "SIM Hard",
    "eta": "ETA",
    "sdim": "SDIM",
    "sdim_linear": "SDIM (linear)",
    "sim_soft": "SIM Soft",
    "sim_cluster": "SIM Cluster",
    "twin": "TWIN",
    "twin_no_paracon": "TWIN w/o Para-Con",
    "twin_raw": "TWIN w/ Raw MHTA",
    "twin_no_bias": "TWIN w/o Bias",
}


def label_of(long_module: str) -> str:
    return LABELS.get(long_module, long_module)


# --- configs and data from notebook parameters ----------------------------------------------


def _config(cls, kind: str, params: Mapping[str, Any]):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ValueError(f"unknown {kind} field(s) {unknown}; known: {', '.join(fields)}")
    values = {}
    for name, value in params.items():
        # YAML and papermill give lists where the dataclass holds tuples (e.g. ``mlp``).
        default = fields[name].default
        values[name] = (
            tuple(value) if isinstance(default, tuple) and isinstance(value, list) else value
        )
    return cls(**values).validate()


def model_config(**params: Any) -> ModelConfig:
    """A validated ModelConfig from notebook parameters; unknown names are errors."""
    return _config(ModelConfig, "ModelConfig", params)


def train_config(**params: Any):
    """A validated TrainConfig from notebook parameters; unknown names are errors."""
    from ..training.train import TrainConfig

    return _config(TrainConfig, "TrainConfig", params)


def configs(params: Mapping[str, Any], **train_defaults: Any):
    """Split flat notebook parameters into a (ModelConfig, TrainConfig) pair by field name.

    ``train_defaults`` (e.g. ``progress=False``) apply unless ``params`` sets them; a name
    that is neither a ModelConfig nor a TrainConfig field is an error.
    """
    from ..training.train import TrainConfig

    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(params) - model_fields - train_fields)
    if unknown:
        raise ValueError(
            f"unknown model/training parameter(s) {unknown}; ModelConfig: "
            f"{', '.join(sorted(model_fields))}; TrainConfig: {', '.join(sorted(train_fields))}"
        )
    model = model_config(**{k: v for k, v in params.items() if k in model_fields})
    train = {**train_defaults, **{k: v for k, v in params.items() if k in train_fields}}
    return model, train_config(**train)


def dataset_names(spec: str) -> list[str]:
    """``"synthetic, movielens-1m"`` -> ``["synthetic", "movielens-1m"]`` (order kept, no
    duplicates, at least one)."""
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if not names:
        raise ValueError(f"no data set named in {spec!r}")
    return names


def load_data(
    name: str,
    *,
    n_users: int,
    history_len: int,
    seed: int = 0,
    max_users: int = 0,
    synthetic: Mapping[str, Any] | None = None,
):
    """The notebooks' data: synthetic with ``n_users`` / ``history_len`` / ``seed`` and any
    further SyntheticConfig fields in ``synthetic``; any other source with its first
    ``max_users`` users (0 = all)."""
    from ..data import load_dataset

    if name == "synthetic":
        params = {"n_users": n_users, "history_len": history_len, "seed": seed}
        return load_dataset(name, **{**params, **dict(synthetic or {})})
    return load_dataset(name, max_users=max_users or None)


def load_all(spec: str, **params: Any) -> dict[str, Any]:
    """``{name: Dataset}`` for every name in ``spec`` (see ``dataset_names``); ``params`` as
    for ``load_data``."""
    return {name: load_data(name, **params) for name in dataset_names(spec)}


def bayes_auc_or_none(ds) -> float | None:
    """The Bayes-optimal test AUC where the data has a planted truth, else None."""
    from ..data import bayes_auc

    return bayes_auc(ds) if getattr(ds, "p_true", None) is not None else None


# --- settings and sweeps -------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One model to train: a label for tables, its config, and tag columns for the sweep."""

    label: str
    model: ModelConfig
    tags: Mapping[str, Any] = field(default_factory=dict)


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
        Setting(label_of(m), dataclasses.replace(base, long_module=m), dict(tags)) for m in modules
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
    """
    from tqdm.auto import tqdm

    seeds = list(seeds)
    pairs = [(s, seed) for s in settings for seed in seeds]
    trained: set[str] = set()
    if runner is None:  # a custom runner (tests) always runs in this process
        from ..training.experiment import run as runner
        from ..training.parallel import train_missing

        runs = [(s.model, dataclasses.replace(train, seed=seed)) for s, seed in pairs]
        trained = train_missing(ds, runs, jobs=jobs, dask=dask, progress=progress)
    rows = []
    bar = tqdm(pairs, desc=f"sweep {ds.name}", disable=not progress)
    for setting, seed in bar:
        bar.set_postfix_str(f"{setting.label} seed {seed}")
        res = runner(ds, setting.model, dataclasses.replace(train, seed=seed))
        m = res.metrics[split]
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
                "train_seconds": res.train.get("train_seconds"),
                "samples_per_second": res.train.get("samples_per_second"),
                "cached": res.cached and res.key not in trained,
                "key": res.key,
            }
        )
    return pd.DataFrame(rows)


def sweep_or_none(ds, *args, **kwargs) -> pd.DataFrame | None:
    """``sweep`` when the data set loaded; ``None`` otherwise (for optional data sets)."""
    return None if ds is None else sweep(ds, *args, **kwargs)


RUN_FACTS = ("train_seconds", "samples_per_second", "cached")  # vary between reruns


def stable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` without the columns that change between reruns (timings, cache hits), for
    committed CSV files that should not churn."""
    return runs.drop(columns=[c for c in RUN_FACTS if c in runs.columns])


# --- aggregation ---------------------------------------------------------------------------


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


def paper_relative(baseline: str, metrics: Sequence[str] = ("auc", "gauc")) -> pd.DataFrame:
    """The paper's Table 4 with relative improvements (percent) over ``baseline``."""
    paper = PAPER_TABLE4.rename(columns={m: f"{m}_mean" for m in metrics})
    return with_relative(paper, baseline, metrics, within=())


def beside_paper(
    summary: pd.DataFrame, baseline: str = "Avg-Pooling", paper: bool = True
) -> pd.DataFrame:
    """Our Table 4 beside the paper's, one row per model (in ``summary``'s order).

    Columns: model, ours ``auc``/``gauc`` as "mean ± std", our relative improvement over
    ``baseline`` (percent), and with ``paper`` the paper's value and relative improvement
    (for models in Table 4), then our LogLoss and the seed count.
    """
    ours = with_relative(summary, baseline, within=())
    theirs = paper_relative(baseline).set_index("model") if paper else None
    rows = []
    for _, r in ours.iterrows():
        row = {"model": r["model"]}
        for m in ("auc", "gauc"):
            row[f"{m} (ours)"] = fmt_mean_std(r[f"{m}_mean"], r[f"{m}_std"])
            row[f"{m} rel. % (ours)"] = round(float(r[f"{m}_rel_pct"]), 2)
            if theirs is not None and r["model"] in theirs.index:
                row[f"{m} (paper)"] = f"{theirs.loc[r['model'], f'{m}_mean']:.4f}"
                row[f"{m} rel. % (paper)"] = round(float(theirs.loc[r["model"], f"{m}_rel_pct"]), 2)
        row["logloss (ours)"] = fmt_mean_std(r["logloss_mean"], r["logloss_std"])
        row["n_seeds"] = int(r["n_seeds"])
        rows.append(row)
    return pd.DataFrame(rows)


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """``"0.7962 ± 0.0012"``; just the mean when the spread is unknown (one seed)."""
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric_records(
    summary: pd.DataFrame,
    keys: Sequence[str] = ("dataset", "model"),
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:
    """Nested ``{key1: {key2: ... {metric: {mean, std, n_seeds}}}}`` for results.json (keys
    as strings; std None for one seed), e.g. ``{"synthetic": {"TWIN": {"auc": {...}}}}``."""
    out: dict[str, Any] = {}
    for _, r in summary.iterrows():
        leaf = out
        for k in keys[:-1]:
            leaf = leaf.setdefault(str(r[k]), {})
        leaf[str(r[keys[-1]])] = {
            m: {
                "mean": float(r[f"{m}_mean"]),
                "std": finite_or_none(r[f"{m}_std"]),
                "n_seeds": int(r["n_seeds"]),
            }
            for m in metrics
        }
    return out


def nested(frame: pd.DataFrame, keys: Sequence[str], value: str) -> dict[str, Any]:
    """``{key1: {key2: ... value}}`` from a tidy frame (keys as strings), for results.json."""
    out: dict[str, Any] = {}
    for _, r in frame.iterrows():
        leaf = out
        for k in keys[:-1]:
            leaf = leaf.setdefault(str(r[k]), {})
        leaf[str(r[keys[-1]])] = finite_or_none(r[value])
    return out


def config_record(model: ModelConfig, train, **data: Any) -> dict[str, Any]:
    """The settings a notebook ran with, for results.json: model config, the training options
    that change results, and the data parameters given."""
    drop = {"progress", "device", "threads", "eval_batch_size"}
    t = {k: v for k, v in train.to_dict().items() if k not in drop}
    return {"model": model.to_dict(), "train": t, "data": data}


def finite_or_none(x: Any) -> float | None:
    """``float(x)``, or None for NaN / infinity (strict JSON has neither)."""
    x = float(x)
    return x if math.isfinite(x) else None


# --- paired effects and claims -------------------------------------------------------------


@dataclass
class Effect:
    """Per-seed paired effect: ``values`` are sum(plus) - sum(minus) per seed."""

    values: np.ndarray
    seeds: list[int]
    reference: float  # mean of the first ``minus`` selection (for relative effects)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.n else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else float("nan")

    @property
    def se(self) -> float:
        return self.std / math.sqrt(self.n) if self.n >= 2 else float("nan")

    @property
    def relative_pct(self) -> float:
        return 100.0 * self.mean / self.reference if self.reference else float("nan")


def _select(runs: pd.DataFrame, where: Mapping[str, Any], metric: str) -> pd.Series:
    mask = np.ones(len(runs), dtype=bool)
    for col, val in where.items():
        if col not in runs.columns:
            raise KeyError(f"no column {col!r} in the runs table (selection {dict(where)})")
        mask &= (runs[col] == val).to_numpy()
    sel = runs.loc[mask]
    if sel.empty:
        raise KeyError(f"no runs match {dict(where)}")
    if sel["seed"].duplicated().any():
        raise ValueError(f"selection {dict(where)} has several runs per seed; select more columns")
    return sel.set_index("seed")[metric]


def paired(
    runs: pd.DataFrame,
    plus: Sequence[Mapping[str, Any]],
    minus: Sequence[Mapping[str, Any]],
    metric: str = "gauc",
) -> Effect:
    """Per seed: sum of ``metric`` over the ``plus`` selections minus the ``minus`` ones.

    Each selection (``{"model": "TWIN", "long_len": 1000}``) must pick one run per seed; only
    seeds present in every selection are paired. For LogLoss the sign is flipped, so a
    positive effect always means "plus is better".
    """
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    cols = [_select(runs, w, metric) for w in plus] + [_select(runs, w, metric) for w in minus]
    seeds = sorted(set.intersection(*(set(c.index) for c in cols)))
    total = sum(c.loc[seeds].to_numpy() for c in cols[: len(plus)])
    total = total - sum(c.loc[seeds].to_numpy() for c in cols[len(plus) :])
    reference = float(cols[len(plus)].loc[seeds].mean()) if minus and seeds else float("nan")
    return Effect(sign * np.asarray(total, dtype=float), seeds, reference)


@dataclass
class Claim:
    """A claim of the paper checked on our runs; ``verdict`` is one of VERDICTS."""

    claim: str  # short name
    statement: str  # what the paper says
    verdict: str
    effect: float  # mean paired effect (metric units), or Kendall tau for orderings
    spread: float  # std over seeds of the effect (NaN with one seed)
    n_seeds: int
    metric: str
    detail: str = ""
    dataset: str = ""
    relative_pct: float = float("nan")  # effect in percent of the baseline's mean

    @classmethod
    def of(cls, eff: Effect, verdict: str, metric: str, **fields: Any) -> Claim:
        """A claim whose effect, spread, seed count and relative size come from ``eff``."""
        return cls(verdict=verdict, effect=eff.mean, spread=eff.std, n_seeds=eff.n,
                   metric=metric, relative_pct=eff.relative_pct, **fields)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("effect", "spread", "relative_pct"):
            d[k] = finite_or_none(d[k]) if d[k] is not None else None
        return d

    def sentence(self) -> str:
        """One line for the notebook: verdict, effect and spread in words."""
        spread = f" ± {self.spread:.4f}" if math.isfinite(self.spread) else ""
        rel = f" ({self.relative_pct:+.2f} %)" if math.isfinite(self.relative_pct) else ""
        where = f"[{self.dataset}] " if self.dataset else ""
        return (
            f"{where}{self.claim}: {self.verdict.upper()} — {self.metric} effect "
            f"{self.effect:+.4f}{spread}{rel} over {self.n_seeds} seed(s); {self.detail}"
        ).rstrip("; ")


def verdict_better(effect: Effect, z: float = 2.0, min_effect: float = 0.0) -> str:
    """``reproduced``: the effect is positive, above ``min_effect`` and more than ``z``
    standard errors from zero (needs >= 2 seeds); ``partly``: positive but within noise (or
    one seed: no spread to judge); ``not reproduced``: zero or negative."""
    mean = effect.mean
    if not math.isfinite(mean) or mean <= 0:
        return NOT_REPRODUCED
    if effect.n >= 2 and mean > z * effect.se and mean > min_effect:
        return REPRODUCED
    return PARTLY


def claim_better(
    runs: pd.DataFrame,
    a: Mapping[str, Any] | str,
    b: Mapping[str, Any] | str,
    metric: str = "gauc",
    *,
    claim: str = "",
    statement: str = "",
    z: float = 2.0,
    min_effect: float = 0.0,
    dataset: str = "",
) -> Claim:
    """Claim "a beats b" on ``metric``, paired by seed (strings mean ``{"model": name}``)."""
    a, b = _where(a), _where(b)
    eff = paired(runs, [a], [b], metric)
    return Claim.of(
        eff, verdict_better(eff, z, min_effect), metric,
        claim=claim or f"{_name(a)} > {_name(b)}", statement=statement,
        detail=f"{_name(a)} − {_name(b)}, {z:g} s.e. rule", dataset=dataset,
    )  # fmt: skip


def claim_similar(
    runs: pd.DataFrame,
    a: Mapping[str, Any] | str,
    b: Mapping[str, Any] | str,
    metric: str = "gauc",
    tol: float = 0.002,
    *,
    claim: str = "",
    statement: str = "",
    z: float = 2.0,
    dataset: str = "",
) -> Claim:
    """Claim "a is about the same as b": ``reproduced`` when |effect| <= ``tol`` (metric
    units); ``partly`` when it is within ``2 * tol`` or within ``z`` standard errors of zero;
    ``not reproduced`` otherwise."""
    a, b = _where(a), _where(b)
    eff = paired(runs, [a], [b], metric)
    d = abs(eff.mean)
    noise = z * eff.se if eff.n >= 2 else 0.0
    if d <= tol:
        verdict = REPRODUCED
    elif d <= 2 * tol or d <= noise:
        verdict = PARTLY
    else:
        verdict = NOT_REPRODUCED
    return Claim.of(
        eff, verdict, metric, claim=claim or f"{_name(a)} ≈ {_name(b)}", statement=statement,
        detail=f"|{_name(a)} − {_name(b)}| vs tolerance {tol:g}", dataset=dataset,
    )  # fmt: skip


def kendall_tau(expected: Sequence[str], values: Mapping[str, float]) -> float:
    """Kendall's tau between the expected order (weakest first) and the measured values."""
    from scipy.stats import kendalltau

    names = [n for n in expected if n in values]
    if len(names) < 2:
        return float("nan")
    return float(kendalltau(np.arange(len(names)), [values[n] for n in names]).statistic)


def claim_order(
    summary: pd.DataFrame,
    order: Sequence[str],
    metric: str = "gauc",
    *,
    by: str = "model",
    claim: str = "",
    statement: str = "",
    dataset: str = "",
) -> Claim:
    """Claim "the models rank as ``order`` (weakest first)" on the mean ``metric``.

    ``reproduced``: every adjacent pair in order; ``partly``: Kendall's tau > 0 (more pairs
    agree than disagree); ``not reproduced`` otherwise. The effect is tau; the spread is the
    median seed-to-seed std of the models (compare it with the gaps between means).
    """
    col = f"{metric}_mean"
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    present = summary[summary[by].isin(order)]
    values = {str(r[by]): sign * float(r[col]) for _, r in present.iterrows()}
    names = [n for n in order if n in values]
    missing = [n for n in order if n not in values]
    broken = [
        f"{a} ≥ {b}" for a, b in zip(names, names[1:], strict=False) if values[a] >= values[b]
    ]
    tau = kendall_tau(names, values)
    if len(names) < 2:
        verdict = NOT_REPRODUCED
    elif not broken:
        verdict = REPRODUCED
    elif tau > 0:
        verdict = PARTLY
    else:
        verdict = NOT_REPRODUCED
    n_pairs = max(len(names) - 1, 0)
    detail = f"{n_pairs - len(broken)}/{n_pairs} adjacent pairs in order"
    if broken:
        detail += "; out of order: " + ", ".join(broken)
    if missing:
        detail += "; not run: " + ", ".join(missing)
    std_col = f"{metric}_std"
    spread = float(present[std_col].median()) if std_col in present and len(present) else math.nan
    n_seeds = int(present["n_seeds"].min()) if "n_seeds" in present and len(present) else 0
    return Claim(
        claim=claim or " < ".join(order),
        statement=statement,
        verdict=verdict,
        effect=tau,
        spread=spread,
        n_seeds=n_seeds,
        metric=f"{metric} (Kendall tau)",
        detail=detail,
        dataset=dataset,
    )


def combine(parts: Sequence[Claim], claim: str, statement: str = "", dataset: str = "") -> Claim:
    """A claim made of several (e.g. "every model improves with L"): ``reproduced`` when all
    parts are, ``not reproduced`` when none is reproduced and none has a positive effect,
    ``partly`` otherwise. Effect and spread are the parts' means."""
    if not parts:
        raise ValueError("combine needs at least one claim")
    verdicts = [p.verdict for p in parts]
    if all(v == REPRODUCED for v in verdicts):
        verdict = REPRODUCED
    elif all(v == NOT_REPRODUCED for v in verdicts):
        verdict = NOT_REPRODUCED
    else:
        verdict = PARTLY
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts)
    return Claim(
        claim=claim,
        statement=statement,
        verdict=verdict,
        effect=float(np.nanmean([p.effect for p in parts])),
        spread=float(np.nanmean([p.spread for p in parts]))
        if any(math.isfinite(p.spread) for p in parts)
        else float("nan"),
        n_seeds=min(p.n_seeds for p in parts),
        metric=parts[0].metric,
        detail=f"{counts}: " + "; ".join(f"{p.claim} {p.verdict}" for p in parts),
        dataset=dataset,
    )


def claim_trend(runs: pd.DataFrame, model: str, x: str, lo: Any, hi: Any, **kw: Any) -> Claim:
    """Claim "``model`` is better at ``x = hi`` than at ``x = lo``" (paired by seed);
    ``kw`` as for ``claim_better`` (metric, z, dataset)."""
    c = claim_better(runs, {"model": model, x: hi}, {"model": model, x: lo}, **kw)
    c.claim = f"{model}: {x} {lo} → {hi}"
    return c


def claim_gap_widens(
    runs: pd.DataFrame, model: str, other: str, x: str, lo: Any, hi: Any, **kw: Any
) -> Claim:
    """Claim "``model``'s lead over ``other`` is larger at ``x = hi`` than at ``lo``": the
    per-seed difference in differences; ``kw``: metric, z, dataset."""
    metric, z = kw.get("metric", "gauc"), kw.get("z", 2.0)
    eff = paired(
        runs,
        plus=[{"model": model, x: hi}, {"model": other, x: lo}],
        minus=[{"model": other, x: hi}, {"model": model, x: lo}],
        metric=metric,
    )
    eff.reference = float("nan")  # a difference of differences has no baseline to divide by
    return Claim.of(
        eff, verdict_better(eff, z), metric, claim=f"{model} − {other} widens {x} {lo} → {hi}",
        statement="", detail="difference in differences", dataset=kw.get("dataset", ""),
    )  # fmt: skip


def claims_frame(claims: Iterable[Claim]) -> pd.DataFrame:
    cols = [f.name for f in dataclasses.fields(Claim)]
    return pd.DataFrame([dataclasses.asdict(c) for c in claims], columns=cols)


def _where(x: Mapping[str, Any] | str) -> dict[str, Any]:
    return {"model": x} if isinstance(x, str) else dict(x)


def _name(where: Mapping[str, Any]) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in where.items() if k != "model")
    name = str(where.get("model", ""))
    return f"{name} ({rest})" if rest and name else name or rest


# --- Table 4 checks and claims ---------------------------------------------------------------


def table4_claims(
    runs: pd.DataFrame, summary: pd.DataFrame, dataset: str, z: float = 2.0
) -> list[Claim]:
    """The paper's readings of Table 4, checked on one data set's runs."""
    runs = runs[runs["dataset"] == dataset]
    summary = summary[summary["dataset"] == dataset]
    have = set(summary["model"])
    out = []
    if {"TWIN", "SIM Soft"} <= have:
        for m in ("auc", "gauc"):
            out.append(claim_better(
                runs, "TWIN", "SIM Soft", m, z=z, dataset=dataset,
                claim=f"TWIN > SIM Soft ({m.upper()})",
                statement="TWIN beats SIM Soft: +0.29 % AUC, +0.51 % GAUC (relative)",
            ))  # fmt: skip
    baselines = summary[summary["model"] != "TWIN"]
    if "TWIN" in have and len(baselines):
        best = str(baselines.sort_values("gauc_mean").iloc[-1]["model"])
        out.append(claim_better(
            runs, "TWIN", best, "gauc", z=z, dataset=dataset,
            claim=f"TWIN best (vs strongest baseline, {best})",
            statement="TWIN has the best AUC and GAUC of all nine models",
        ))  # fmt: skip
    if "TWIN" in have and "DIN" in have:
        out.append(claim_better(
            runs, "TWIN", "DIN", "gauc", z=z, dataset=dataset,
            claim="TWIN > DIN (lifelong search beats the recent 100)",
            statement="every two-stage lifelong model beats DIN over the most recent 100",
        ))  # fmt: skip
    finer = [m for m in FINER_RETRIEVAL if m in have]
    if len(finer) >= 3:
        out.append(claim_order(
            summary, finer, "gauc", dataset=dataset, claim="finer retrieval helps (GAUC)",
            statement="Hard < Cluster < Cluster+ < Soft < TWIN, monotonically",
        ))  # fmt: skip
    if len(have & set(TABLE4_ORDER)) >= 3:
        out.append(claim_order(
            summary, list(TABLE4_ORDER), "gauc", dataset=dataset,
            claim="Table 4 order (GAUC)", statement="the nine models rank as in Table 4",
        ))  # fmt: skip
    e2e = [m for m in ("ETA", "SDIM") if m in have]
    if e2e and "SIM Soft" in have:
        parts = [claim_better(runs, "SIM Soft", m, "gauc", z=z, dataset=dataset) for m in e2e]
        out.append(combine(
            parts, "end-to-end hashing is not enough (ETA, SDIM < SIM Soft)",
            "ETA and SDIM, trained end to end, trail SIM Soft", dataset,
        ))  # fmt: skip
    return out


# --- sequence length (Fig. 5) and ablations (Fig. 6) ---------------------------------------


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


def length_claims(
    runs: pd.DataFrame,
    dataset: str,
    x: str = "long_len",
    metric: str = "gauc",
    fixed: Iterable[str] = ("DIN",),
    z: float = 2.0,
) -> list[Claim]:
    """The paper's Fig. 5 readings on one data set: every model improves from the shortest
    to the longest ``x`` (models in ``fixed`` read the same behaviours at every length and
    are left out), TWIN's lead widens, and TWIN is best at the longest length."""
    runs = runs[runs["dataset"] == dataset]
    lo, hi = runs[x].min(), runs[x].max()
    models = list(dict.fromkeys(runs["model"]))
    out = []
    growing = [m for m in models if m not in set(fixed)]
    if growing and lo != hi:
        kw = {"metric": metric, "z": z, "dataset": dataset}
        parts = [claim_trend(runs, m, x, lo, hi, **kw) for m in growing]
        out.append(
            combine(
                parts,
                f"every model improves with {x}",
                "all models improve as the GSU input grows (output fixed)",
                dataset,
            )
        )
    others = [m for m in models if m != "TWIN"]
    if "TWIN" in models and others and lo != hi:
        parts = [
            claim_gap_widens(runs, "TWIN", m, x, lo, hi, metric=metric, z=z, dataset=dataset)
            for m in others
        ]
        out.append(
            combine(
                parts,
                f"TWIN's lead widens with {x}",
                "TWIN's advantage grows with the sequence length",
                dataset,
            )
        )
    if "TWIN" in models and others:
        at_hi = runs[runs[x] == hi].groupby("model")[metric].mean().drop("TWIN")
        best = str(at_hi.idxmax())
        out.append(
            claim_better(
                runs,
                {"model": "TWIN", x: hi},
                {"model": best, x: hi},
                metric,
                z=z,
                dataset=dataset,
                claim=f"TWIN best at {x} = {hi} (vs {best})",
                statement="TWIN leads at every length, most at the longest",
            )
        )
    return out


# Fig. 6 readings: (better, worse, short name, what the paper says).
ABLATION_BETTER = (
    ("TWIN", "TWIN w/o Para-Con", "Para-Con helps (TWIN > w/o Para-Con)",
     "sharing the ESU's parameters with the GSU helps"),
    ("TWIN w/o Para-Con", "SIM Soft", "structure helps (w/o Para-Con > SIM Soft)",
     "the GSU's structure matters more than shared parameters"),
    ("TWIN", "TWIN w/o Bias", "cross-feature bias helps (TWIN > w/o Bias)",
     "removing the cross features: clear GAUC drop"),
)  # fmt: skip


def ablation_claims(
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    dataset: str,
    timing: pd.DataFrame | None = None,
    similar_tol: float = 0.002,
    z: float = 2.0,
) -> list[Claim]:
    """The paper's Fig. 6 readings on one data set, for the models that were run."""
    runs = runs[runs["dataset"] == dataset]
    summary = summary[summary["dataset"] == dataset]
    have = set(summary["model"])
    kw = {"z": z, "dataset": dataset}
    out = [
        claim_better(runs, a, b, claim=name, statement=said, **kw)
        for a, b, name, said in ABLATION_BETTER
        if {a, b} <= have
    ]
    order = ["SIM Soft", "TWIN w/o Para-Con", "TWIN"]
    if set(order) <= have:
        out.append(claim_order(summary, order, claim=" < ".join(order), statement="Fig. 6(a)",
                               dataset=dataset))  # fmt: skip
    raw = "TWIN w/ Raw MHTA"
    if {"TWIN", raw} <= have:
        said = "full projection of [K_h, K_c]: GAUC about the same"
        out.append(claim_similar(runs, raw, "TWIN", "gauc", similar_tol, **kw,
                                 claim="Raw MHTA: GAUC about the same",
                                 statement=said))  # fmt: skip
    if timing is not None and {"TWIN", raw} <= set(timing["model"]):
        t = timing[timing["dataset"] == dataset] if "dataset" in timing else timing
        t = t.groupby(["model", "seed"], as_index=False)["ms_per_1k"].median()
        said = "full projection: inference time much higher"
        out.append(claim_better(t, raw, "TWIN", "ms_per_1k", **kw,
                                claim="Raw MHTA: inference slower", statement=said))  # fmt: skip
    return out


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
        from ..training.experiment import run as runner
    if train.threads:
        import torch

        torch.set_num_threads(train.threads)
    frames = []
    for setting in settings:
        for seed in seeds:
            res = runner(ds, setting.model, dataclasses.replace(train, seed=seed))
            t = inference_time(res.model, ds, n_samples, train.batch_size, repeats, seed)
            frames.append(t.assign(dataset=ds.name, model=setting.label, seed=seed))
    cols = ["dataset", "model", "seed", "repeat", "ms_per_1k", "n_samples"]
    return pd.concat(frames, ignore_index=True)[cols]


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
    import torch

    from ..data.batching import SampleBuilder

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


# --- markdown tables (no tabulate dependency) -----------------------------------------------


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub markdown table; floats formatted with ``floatfmt``, NaN/None as empty (so
    columns that need other precision are best given as strings)."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return ""
        if isinstance(v, float | np.floating):
            return format(float(v), floatfmt)
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    sep = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def write_table(path, df: pd.DataFrame, caption: str = "", floatfmt: str = ".2f"):
    """Write ``df`` as a markdown table (with a caption line) for the README report; the file
    is left untouched when its content is unchanged."""
    from ..results import atomic_write_bytes

    text = (f"{caption}\n\n" if caption else "") + to_markdown(df, floatfmt)
    return atomic_write_bytes(path, text.encode())
