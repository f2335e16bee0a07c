"""The sweep: every setting with every seed, trained through ``twin_study.training.run`` (or
loaded from its results cache; runs missing from the cache first train in parallel through
``training.parallel``), one tidy row per (setting, seed) with AUC / GAUC / LogLoss and training
facts. Also ``sweep_or_none`` for optional data sets and ``stable_runs``, which drops the
columns that change between reruns (``RUN_FACTS``) for committed CSV files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ...training import experiment, parallel
from .settings import Setting
from .stats import METRICS


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


def sweep_or_none(ds, *args, **kwargs) -> pd.DataFrame | None:
    """``sweep`` when the data set loaded; ``None`` otherwise (for optional data sets)."""
    return None if ds is None else sweep(ds, *args, **kwargs)


RUN_FACTS = ("train_seconds", "samples_per_second", "cached")  # vary between reruns


def stable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` without the columns that change between reruns (timings, cache hits), for
    committed CSV files that should not churn."""
    return runs.drop(columns=[c for c in RUN_FACTS if c in runs.columns])
