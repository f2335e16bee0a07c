"""The one entry point the notebooks call: ``run(ds, ModelConfig(...), TrainConfig(...))``.

It trains (or reuses) a model, evaluates it on validation and test, and returns the model with
its numbers. Finished runs are kept in a results cache keyed by the full configuration (data
fingerprint, model and training config, code version), so an interrupted or repeated sweep
never retrains what it already has.

Models that need another model first are built here too:
* SIM Soft / SIM Cluster: item vectors pre-trained by a DIN run (see ``pretrain``);
* TWIN w/o Para-Con: a separately trained TWIN (seed + ``AUX_SEED_OFFSET``) whose parameters,
  frozen, drive the GSU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from .train import TrainConfig, TrainResult, evaluate, fit

CACHE_VERSION = 2  # bump when a change alters trained results
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
        for arr in (ds.log.user_ptr, ds.log.item, ds.log.time, ds.log.cross, ds.samples.item,
                    ds.samples.label, ds.samples.hist_end, ds.samples.split):  # fmt: skip
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


def _extras(ds: Dataset, model: ModelConfig, train: TrainConfig, cache: bool) -> dict[str, Any]:
    m = model.long_module
    if m in ("sim_soft", "sim_cluster"):
        din = dataclasses.replace(model, long_module="din", n_clusters=100)
        pre = run(ds, din, train, cache=cache)
        return {"item_vectors": pre.model.emb.item_emb["item"].weight.detach().cpu().numpy()}
    if m == "twin_no_paracon":
        aux_cfg = dataclasses.replace(model, long_module="twin")
        aux_train = dataclasses.replace(train, seed=train.seed + AUX_SEED_OFFSET)
        return {"gsu_source": run(ds, aux_cfg, aux_train, cache=cache).model}
    return {}


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
    if cache and (folder / "result.json").exists() and (folder / "model.pt").exists():
        saved = json.loads((folder / "result.json").read_text())
        net.load_state_dict(torch.load(folder / "model.pt", map_location=train.device))
        net.to(train.device)
        net.refresh_cache()
        return RunResult(net, saved["metrics"], saved["train"], saved["model_config"],
                         saved["train_config"], key, cached=True)  # fmt: skip
    t0 = time.perf_counter()
    tr: TrainResult = fit(net, ds, train)
    metrics = {s: evaluate(net, ds, s, train) for s in ("valid", "test")}
    train_info = dataclasses.asdict(tr) | {"wall_seconds": time.perf_counter() - t0}
    result = RunResult(net, metrics, train_info, model.to_dict(), train.to_dict(), key, False)
    if cache:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "model.pt.tmp"
        torch.save(net.state_dict(), tmp)
        tmp.replace(folder / "model.pt")
        payload = {"metrics": metrics, "train": train_info, "model_config": model.to_dict(),
                   "train_config": train.to_dict()}  # fmt: skip
        tmp = folder / "result.json.tmp"
        tmp.write_text(json.dumps(payload, indent=2, default=float))
        tmp.replace(folder / "result.json")  # written last: its presence marks a finished run
    return result
