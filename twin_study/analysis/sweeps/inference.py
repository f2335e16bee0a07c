"""Inference time: the wall-clock forward time of a trained model on test samples
(``inference_time``) and of each setting's trained models, seed by seed (``timings``). For
figures only: nothing asserts on these numbers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ... import runtime
from ...data.batching import SampleBuilder
from ...training import experiment
from .settings import Setting


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
