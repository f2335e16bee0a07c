"""The one entry point the notebooks call: ``run(ds, ModelConfig(...), TrainConfig(...))``.

It trains (or reuses) a model, evaluates it on validation and test, and returns the model with
its numbers. Finished runs are kept in a results cache keyed by the full configuration (data
fingerprint, model and training config, code version), so an interrupted or repeated sweep
never retrains what it already has.

Models that need another model first are built here too:
* SIM Soft / SIM Cluster: item vectors (``ModelConfig.sim_vectors``) pre-trained by a DIN run
  (see ``pretrain``);
* TWIN w/o Para-Con: a separately trained TWIN (seed + ``AUX_SEED_OFFSET``) whose parameters,
  frozen, drive the GSU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.schema import Dataset
from ..models.config import ModelConfig
from ..models.ctr import CTRModel, build_model
from ..seed import seed_everything
from .metrics import all_metrics
from .pretrain import pretrained_vectors
from .train import TrainConfig, TrainResult, evaluate, fit, predict

# Bump when a change alters trained results (4: emb_init_std 0.3, emb_lr 0.2; 5: the learning
# curve evaluates whole validation requests, ``train.request_subset``).
CACHE_VERSION = 5
AUX_SEED_OFFSET = 1000
# Training options that do not change the result and so stay out of the cache key.
_NOT_IN_KEY = {"progress", "device", "threads", "eval_batch_size"}


@dataclass
class RunResult:
    model: CTRModel
    metrics: dict[str, dict[str, float]]  # split -> auc, gauc, logloss, n
    train: dict[str, Any]  # TrainResult as a dict
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    key: str
    cached: bool


def fingerprint(ds: Dataset) -> str:
    """A digest of the data set's content (cached on the object)."""
    if "_fingerprint" not in ds.meta:
        h = hashlib.sha1(ds.name.encode())
        arrays = [ds.log.user_ptr, ds.log.item, ds.log.time, ds.log.cross, ds.samples.item,
                  ds.samples.label, ds.samples.hist_end, ds.samples.split]  # fmt: skip
        # The item table and user features too: two worlds with the same log but different
        # item categories/authors (e.g. the off_category_items knob) must not share a key.
        for table in (ds.items.features, ds.user_features):
            for name in sorted(table):
                h.update(name.encode())
                arrays.append(table[name])
        for arr in arrays:
            h.update(np.ascontiguousarray(arr).tobytes())
        ds.meta["_fingerprint"] = h.hexdigest()[:16]
    return ds.meta["_fingerprint"]


def run_key(ds: Dataset, model: ModelConfig, train: TrainConfig) -> str:
    t = {k: v for k, v in train.to_dict().items() if k not in _NOT_IN_KEY}
    blob = json.dumps({"v": CACHE_VERSION, "data": fingerprint(ds), "model": model.to_dict(),
                       "train": t}, sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha1(blob.encode()).hexdigest()[:20]


def runs_dir() -> Path:
    from ..paths import cache_dir

    path = cache_dir() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def prerequisites(model: ModelConfig, train: TrainConfig) -> list[tuple[ModelConfig, TrainConfig]]:
    """The runs that ``run(ds, model, train)`` trains (or loads) first, in that order.

    Parallel sweeps (``training.parallel``) train these in an earlier wave, so that two
    workers never train the same prerequisite at the same time."""
    m = model.long_module
    if m in ("sim_soft", "sim_cluster"):
        # Fields DIN does not use are reset to their defaults, so that every SIM variant (and
        # the sweep's own DIN row) shares one pre-training run.
        din = dataclasses.replace(model, long_module="din", n_clusters=100,
                                  sim_vectors="inherent", hash_input="inherent")  # fmt: skip
        return [(din, train)]
    if m == "twin_no_paracon":
        aux_train = dataclasses.replace(train, seed=train.seed + AUX_SEED_OFFSET)
        return [(dataclasses.replace(model, long_module="twin"), aux_train)]
    return []


def _extras(ds: Dataset, model: ModelConfig, train: TrainConfig, cache: bool) -> dict[str, Any]:
    pre = [run(ds, m, t, cache=cache) for m, t in prerequisites(model, train)]
    if model.long_module in ("sim_soft", "sim_cluster"):
        return {"item_vectors": pretrained_vectors(pre[0].model, model.sim_vectors)}
    if model.long_module == "twin_no_paracon":
        return {"gsu_source": pre[0].model}
    return {}


def is_cached(key: str) -> bool:
    """Whether the results cache holds the finished run ``key`` (result.json marks it)."""
    folder = runs_dir() / key
    return (folder / "result.json").exists() and (folder / "model.pt").exists()


def store_run(key: str, files: dict[str, bytes]) -> None:
    """Write a finished run's files (``model.pt``, ``result.json``) as one atomic step.

    They go into a uniquely named temp folder next to it, which is renamed to ``folder``:
    readers see a whole entry or none, and when two processes finish the same key
    (parallel workers, a DDP run beside a sweep) the first rename wins and the other's copy
    is dropped, so model.pt and result.json always come from the same run. A folder left
    unfinished by an older version or a crash is replaced."""
    folder = runs_dir() / key
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache entry should not be
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        for _ in range(2):
            try:
                os.rename(tmp, folder)  # fails when folder exists and is not empty
                return
            except OSError:
                if is_cached(key):
                    return  # another process finished this key first
                shutil.rmtree(folder, ignore_errors=True)  # an unfinished leftover
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(
    ds: Dataset,
    model: ModelConfig,
    train: TrainConfig | None = None,
    cache: bool = True,
) -> RunResult:
    """Train and evaluate one model (or load the finished run from the results cache)."""
    model = model.validate()
    train = (train or TrainConfig()).validate()
    key = run_key(ds, model, train)
    folder = runs_dir() / key
    extras = _extras(ds, model, train, cache)
    seed_everything(train.seed)
    net = build_model(model, ds, **extras)
    if cache and is_cached(key):
        saved = json.loads((folder / "result.json").read_text())
        net.load_state_dict(torch.load(folder / "model.pt", map_location=train.device))
        net.to(train.device)
        net.refresh_cache()
        return RunResult(net, saved["metrics"], saved["train"], saved["model_config"],
                         saved["train_config"], key, cached=True)  # fmt: skip
    t0 = time.perf_counter()
    tr: TrainResult = fit(net, ds, train)
    return record(net, ds, model, train, tr, t0, cache)


def record(
    net: CTRModel,
    ds: Dataset,
    model: ModelConfig,
    train: TrainConfig,
    tr: TrainResult,
    started: float,
    cache: bool = True,
) -> RunResult:
    """Evaluate a freshly trained model on valid and test and store the run in the cache
    (also used by ``training.distributed``, whose rank 0 records what all ranks trained).
    ``started``: ``time.perf_counter()`` when training began."""
    key = run_key(ds, model, train)
    metrics = {"valid": evaluate(net, ds, "valid", train)}
    # The test predictions are kept beside the metrics (``predictions_on_test``): the panel's
    # intervals resample test users, which needs every run's per-sample scores.
    test_idx = ds.split_indices("test")
    test_pred = predict(net, ds, test_idx, train, desc="eval test")
    s = ds.samples
    metrics["test"] = all_metrics(s.user[test_idx], s.label[test_idx], test_pred)
    train_info = dataclasses.asdict(tr) | {"wall_seconds": time.perf_counter() - started}
    result = RunResult(net, metrics, train_info, model.to_dict(), train.to_dict(), key, False)
    if cache:
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        payload = {"metrics": metrics, "train": train_info, "model_config": model.to_dict(),
                   "train_config": train.to_dict()}  # fmt: skip
        result_json = json.dumps(payload, indent=2, default=float).encode()
        pred = io.BytesIO()
        np.save(pred, test_pred)
        store_run(key, {"model.pt": buf.getvalue(), "result.json": result_json,
                        PREDICTIONS: pred.getvalue()})  # fmt: skip
    return result


PREDICTIONS = "test_pred.npy"  # a run's test-split click probabilities, in split order


def predictions_on_test(ds: Dataset, res: RunResult, train: TrainConfig) -> np.ndarray:
    """(n_test,) click probabilities of run ``res`` on ``ds``'s test split, in the split's
    order: read from the results cache, or (an entry from before predictions were kept, or a
    run made with ``cache=False``) computed again from the model -- the same numbers, since
    evaluation is deterministic."""
    path = runs_dir() / res.key / PREDICTIONS
    if path.is_file():
        out = np.load(path)
        if len(out) == len(ds.split_indices("test")):
            return out
    return predict(res.model, ds, ds.split_indices("test"), train, desc="eval test")
