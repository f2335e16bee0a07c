"""Notebook 02's runs: which data sets at which L, which models, and their consistency.

``analysis.consistency`` measures one trained model; this module decides what 02 trains and
measures, so the notebook only tells the story:

* ``data_plans``: per data set the loader parameters, L, the history an eligible test sample
  must see and the training seeds (synthetic and user logs at ``long_len``; MovieLens-1M at
  its own L, history and seeds, since its histories are shorter);
* ``study_settings`` / ``study_train``: one ``sweeps.Setting`` per two-stage module and the
  TrainConfig, built so that with 03's settings (the paper profile) the runs are 03's runs
  and come from the results cache;
* ``measure``: trains every (data set, model, seed) through ``sweeps.sweep`` (so ``--jobs`` /
  ``--dask`` train the missing runs in parallel, prerequisites first) and measures each
  model's consistency as the sweep loads it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..data.schema import Dataset
from ..models import registry
from ..models.ctr import CTRModel
from ..training.params import model_config, train_config
from ..training.train import TrainConfig
from . import sweeps
from .consistency import ConsistencyResult, consistency


@dataclass(frozen=True)
class DataPlan:
    """How 02 loads and reads one data set."""

    params: Mapping[str, Any]  # load_dataset parameters
    long_len: int  # L: the most recent behaviours the GSU reads
    min_history: int  # an eligible test sample sees at least this many behaviours
    seeds: list[int]  # training seeds


def data_plans(
    datasets: Sequence[str],
    models: Sequence[str],
    seeds: Sequence[int],
    *,
    k: int,
    n_users: int,
    history_len: int,
    synthetic_params: Mapping[str, Any],
    long_len: int,
    min_history: int,
    ml_seeds: Sequence[int],
    ml_max_users: int,
    ml_min_history: int,
    ml_long_len: int,
    userlog_path: str,
    userlog_spec: str,
    userlog_params: Mapping[str, Any],
) -> dict[str, DataPlan]:
    """The plan of every data set in ``datasets`` (02's parameters, by the same names).

    The synthetic log is generated with data seed 0, whatever the training seeds. MovieLens-1M
    keeps only ratings preceded by ``ml_min_history`` others, so its eligible samples need that
    history too. A user log is read at ``long_len``, and its eligible samples see at least ``k``
    behaviours, so that a real top-k exists. An unknown data set or a module that is not
    two-stage (``registry.two_stage()``) is an error, as is an empty ``seeds``."""
    known = {
        "synthetic": lambda: DataPlan(
            {"n_users": n_users, "history_len": history_len, "seed": 0} | dict(synthetic_params),
            long_len,
            min_history,
            list(seeds),
        ),
        "movielens-1m": lambda: DataPlan(
            {"max_users": ml_max_users, "min_history": ml_min_history},
            ml_long_len,
            ml_min_history,
            list(ml_seeds or seeds),
        ),
        "userlog": lambda: DataPlan(
            dict(path=userlog_path, spec=userlog_spec, **userlog_params),
            long_len,
            k,
            list(seeds),
        ),
    }
    two_stage = registry.two_stage()
    bad = [d for d in datasets if d not in known] + [m for m in models if m not in two_stage]
    if bad or not seeds:
        raise ValueError(
            f"unsupported data set(s) or model(s) {bad} (data sets: {sorted(known)}; two-stage "
            f"models: {sorted(two_stage)}), or no seed: {list(seeds)}"
        )
    return {d: known[d]() for d in datasets}


def x_grid(long_len: int, k: int, gsu_sizes: Sequence[int] = ()) -> list[int]:
    """GSU output sizes: ``gsu_sizes`` (capped at L) plus k, or, when empty, 10, 20, 50, 100,
    ... below L, plus L and k (the x axis of Fig. 4)."""
    if gsu_sizes:
        return sorted({min(int(x), long_len) for x in gsu_sizes} | {k})
    nice = [m * 10**e for e in range(1, 8) for m in (1, 2, 5)]
    return sorted({x for x in nice if x < long_len} | {long_len, k})


def uniform_share(ds: Dataset, idx: np.ndarray, long_len: int, k: int) -> float:
    """The attention mass any k behaviours keep when the attention is uniform over the
    window the GSU reads (min(seen, L) per sample), averaged over the samples ``idx``: the
    chance level of section 5's attention mass."""
    window = np.minimum(seen_behaviours(ds, idx), long_len)
    return float(np.mean(np.minimum(k, window) / window))


def seen_behaviours(ds: Dataset, idx: np.ndarray) -> np.ndarray:
    """How many behaviours each sample of ``idx`` sees (its user's history before it)."""
    return ds.samples.hist_end[idx] - ds.log.user_ptr[ds.samples.user[idx]]


def describe_eval_set(name: str, ds: Dataset, idx: np.ndarray, long_len: int) -> str:
    """One line on data set ``name`` and its eligible test samples, for the notebook."""
    seen = seen_behaviours(ds, idx)
    return (
        f"{name}: {ds.n_users:,} users, {ds.log.n_behaviours:,} behaviours, "
        f"{len(ds.samples):,} samples ({len(ds.split_indices('train')):,} train); "
        f"L = {long_len:,}; {len(idx)} eligible test samples seeing {seen.min():,}..{seen.max():,} "
        f"behaviours (median {np.median(seen):,.0f})"
    )


def study_settings(
    models: Sequence[str],
    long_len: int,
    k: int,
    n_clusters: int,
    model_params: Mapping[str, Any],
) -> list[sweeps.Setting]:
    """One setting per two-stage module, labelled by the module's name (02's tables and
    figures key on it). ``n_clusters`` is set on SIM Cluster only, so that every other model's
    config, and with it its results-cache key, is 03's."""
    out = []
    for m in models:
        own = {"n_clusters": n_clusters} if m == "sim_cluster" else {}
        cfg = model_config(long_module=m, long_len=long_len, k=k, **(dict(model_params) | own))
        out.append(sweeps.Setting(m, cfg))
    return out


def study_train(
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    max_train_samples: int,
    threads: int,
    train_params: Mapping[str, Any],
) -> TrainConfig:
    """02's TrainConfig (the sweep sets each seed); ``train_params`` override the named ones.
    With 03's settings in the paper profile, the models are 03's runs (results cache)."""
    return train_config(
        **{
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "max_train_samples": max_train_samples,
            "threads": threads,
            "progress": False,
        }
        | dict(train_params)
    )


@dataclass
class Measured:
    """What ``measure`` returns."""

    # (dataset, module, seed) -> the model's consistency, in data set, seed, module order
    results: dict[tuple[str, str, int], ConsistencyResult]
    # one row per run: dataset, model (module), seed, test_auc, test_gauc, cached (False when
    # trained here), train_seconds, seconds (measuring its consistency)
    runs: pd.DataFrame
    twin_models: dict[str, CTRModel]  # per data set, TWIN at its first seed (staleness study)


RUN_COLUMNS = ["dataset", "model", "seed", "test_auc", "test_gauc", "cached", "train_seconds",
               "seconds"]  # fmt: skip


def measure(
    data: Mapping[str, Dataset],
    plans: Mapping[str, DataPlan],
    eval_idx: Mapping[str, np.ndarray],
    models: Sequence[str],
    train: TrainConfig,
    *,
    k: int,
    n_clusters: int,
    model_params: Mapping[str, Any],
    gsu_sizes: Sequence[int] = (),
    jobs: int | None = None,
    dask: str | None = None,
    progress: bool = False,
) -> Measured:
    """Train (or load from the results cache) every model with every seed of each data set,
    and measure its consistency on that data set's eligible samples ``eval_idx`` at every GSU
    output size of ``x_grid`` (the real top-k with k = ``k``).

    Training goes through ``sweeps.sweep``: runs the cache lacks are trained first in
    ``jobs`` processes or on Dask (default ``$TWIN_STUDY_JOBS`` / ``$TWIN_STUDY_DASK``; SIM
    Soft's / Cluster's DIN and the auxiliary TWIN of w/o Para-Con in an earlier wave), then
    each model is loaded once and measured."""
    results: dict[tuple[str, str, int], ConsistencyResult] = {}
    frames, twin_models = [], {}
    for name, ds in data.items():
        plan = plans[name]
        sizes = x_grid(plan.long_len, k, gsu_sizes)
        got: dict[tuple[str, int], ConsistencyResult] = {}

        def on_run(setting: sweeps.Setting, seed: int, res: Any, ds=ds, name=name, plan=plan,
                   sizes=sizes, got=got) -> dict[str, float]:  # fmt: skip
            t0 = time.perf_counter()
            m = setting.model.long_module
            got[(m, seed)] = consistency(res.model, ds, eval_idx[name], sizes, oracle_k=k,
                                         progress=False)  # fmt: skip
            if m == "twin" and seed == plan.seeds[0]:
                twin_models[name] = res.model
            return {"seconds": time.perf_counter() - t0}

        settings = study_settings(models, plan.long_len, k, n_clusters, model_params)
        frame = sweeps.sweep(ds, settings, plan.seeds, train, progress=progress, jobs=jobs,
                             dask=dask, on_run=on_run)  # fmt: skip
        order = [(m, s) for s in plan.seeds for m in models]  # seed by seed, as plotted
        results |= {(name, m, s): got[(m, s)] for m, s in order}
        frame = frame.set_index(["model", "seed"]).loc[order].reset_index()
        frame["dataset"] = name  # the source's name (a user log's Dataset is named by its file)
        frames.append(frame.rename(columns={"auc": "test_auc", "gauc": "test_gauc"}))
    runs = pd.concat(frames, ignore_index=True)[RUN_COLUMNS]
    return Measured(results, runs, twin_models)
