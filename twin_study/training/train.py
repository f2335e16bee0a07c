"""Training and evaluation of any CTR model of the study.

Paper §4.3: binary cross-entropy; AdaGrad (lr 0.05) on embeddings and Adam on the rest. The
paper's Adam lr (5e-6) is for streaming training at batch 8192 over billions of samples; our
data sets are tiny by comparison, so the dense lr defaults to 1e-3 (a parameter). Early stopping
keeps the epoch with the best validation AUC.
"""

from __future__ import annotations

import copy
import resource
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.batching import SampleBuilder
from ..data.schema import Dataset
from ..models.ctr import CTRModel
from ..seed import seed_everything
from .metrics import all_metrics


@dataclass
class TrainConfig:
    epochs: int = 3  # maximum passes over the training split
    batch_size: int = 256  # samples per step (a request's candidates stay together)
    optimizer: str = "adagrad+adam"  # paper: AdaGrad on embeddings + Adam on the rest; or "adam"
    lr: float = 1e-3  # Adam learning rate of the dense parameters
    emb_lr: float = 0.05  # AdaGrad learning rate of the embeddings (paper: 0.05)
    patience: int = 1  # epochs without validation-AUC gain before stopping
    max_train_samples: int = 0  # 0 = all; else a seeded subset of the training split
    eval_batch_size: int = 512
    seed: int = 0
    device: str = "cpu"
    # torch intra-op threads of the training process. 1 by default: on a shared machine two
    # OpenMP threads stall whenever another process holds a core (runs 5-10x slower), and the
    # study scales out with processes instead (training.parallel). 0 = torch's default.
    threads: int = 1
    progress: bool = True  # tqdm bars

    def validate(self) -> TrainConfig:
        if self.optimizer not in ("adagrad+adam", "adam"):
            raise ValueError(f"TrainConfig: unknown optimizer {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("TrainConfig: epochs and batch_size must be >= 1")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # per epoch: loss, valid metrics
    best_epoch: int = 0
    train_seconds: float = 0.0
    samples_per_second: float = 0.0
    peak_rss_mb: float = 0.0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Reads VmHWM from /proc (reset at exec); ``ru_maxrss`` is the fallback elsewhere, but a
    forked child inherits its parent's value there, so it can overstate a subprocess's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_optimizers(model: CTRModel, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    emb = [p for n, p in params if n.startswith("emb.")]
    dense = [p for n, p in params if not n.startswith("emb.")]
    if cfg.optimizer == "adam":
        return [torch.optim.Adam(emb + dense, lr=cfg.lr)]
    return [torch.optim.Adagrad(emb, lr=cfg.emb_lr), torch.optim.Adam(dense, lr=cfg.lr)]


def train_step(model: CTRModel, batch, opts: list[torch.optim.Optimizer]) -> float:
    """One step of plain BCE (Eq. 2): advance the item cache, forward, backward, update."""
    model.cache_step()
    loss = F.binary_cross_entropy_with_logits(model(batch), batch.label)
    for o in opts:
        o.zero_grad(set_to_none=True)
    loss.backward()
    for o in opts:
        o.step()
    return loss.item()


def builder_for(model: CTRModel, ds: Dataset) -> SampleBuilder:
    return SampleBuilder(ds, model.cfg.long_len, model.cfg.short_len, impl=model.cfg.impl)


@torch.no_grad()
def predict(
    model: CTRModel, ds: Dataset, idx: np.ndarray, cfg: TrainConfig, desc: str = "eval"
) -> np.ndarray:
    """Click probabilities for samples ``idx`` (in that order); deterministic."""
    model.eval()
    model.prepare_eval()
    builder = builder_for(model, ds)
    out = np.empty(len(idx), dtype=np.float64)
    pos = {int(s): i for i, s in enumerate(idx)}
    bar = tqdm(total=len(idx), desc=desc, disable=not cfg.progress, leave=False)
    for batch in builder.batches(idx, cfg.eval_batch_size, shuffle=False):
        p = torch.sigmoid(model(batch.to(cfg.device))).cpu().numpy()
        out[[pos[int(s)] for s in batch.sample_idx]] = p
        bar.update(len(p))
    bar.close()
    return out


def evaluate(model: CTRModel, ds: Dataset, split: str, cfg: TrainConfig) -> dict[str, float]:
    idx = ds.split_indices(split)
    prob = predict(model, ds, idx, cfg, desc=f"eval {split}")
    s = ds.samples
    return all_metrics(s.user[idx], s.label[idx], prob)


def fit(
    model: CTRModel, ds: Dataset, cfg: TrainConfig, builder: SampleBuilder | None = None
) -> TrainResult:
    """Train with early stopping on validation AUC; the model ends at its best epoch.

    ``builder`` makes the training batches (default ``builder_for``); data-parallel training
    passes one that builds only its rank's shard of each batch (``training.distributed``)."""
    cfg = cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    model.to(cfg.device)
    train_idx = ds.split_indices("train")
    if cfg.max_train_samples and cfg.max_train_samples < len(train_idx):
        rng = np.random.default_rng(cfg.seed)
        train_idx = np.sort(rng.choice(train_idx, cfg.max_train_samples, replace=False))
    builder = builder or builder_for(model, ds)
    opts = make_optimizers(model, cfg)
    result = TrainResult()
    best_auc, best_state, bad = -1.0, None, 0
    t_train, n_seen = 0.0, 0
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        losses = []
        bar = tqdm(total=len(train_idx), desc=f"{model.cfg.long_module} epoch {epoch + 1}",
                   disable=not cfg.progress, leave=False)  # fmt: skip
        for batch in builder.batches(
            train_idx, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch
        ):
            batch = batch.to(cfg.device)
            losses.append(train_step(model, batch, opts))
            n_seen += len(batch.label)
            bar.update(len(batch.label))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        bar.close()
        t_train += time.perf_counter() - t0
        valid = evaluate(model, ds, "valid", cfg)
        result.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                               **{f"valid_{k}": v for k, v in valid.items()}})  # fmt: skip
        if valid["auc"] > best_auc:
            best_auc, best_state, bad = valid["auc"], copy.deepcopy(model.state_dict()), 0
            result.best_epoch = epoch + 1
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
        model.refresh_cache()  # the cache must match the weights just loaded
    result.train_seconds = t_train
    result.samples_per_second = n_seen / max(t_train, 1e-9)
    result.peak_rss_mb = peak_rss_mb()
    return result
