"""Training and evaluation of any CTR model of the study.

Paper §4.3: binary cross-entropy; AdaGrad (lr 0.05) on embeddings and Adam on the rest. The
paper's Adam lr (5e-6) is for streaming training at batch 8192 over billions of samples; our
data sets are tiny by comparison, so the dense lr defaults to 1e-3 (a parameter).

Model selection: the validation split is evaluated every ``eval_every`` training samples (and
at the end of every epoch); those points are the run's learning curve, and the model ends at
the point with the best validation ``select_on`` metric (LogLoss by default: a model picked
by AUC alone can be badly calibrated -- worse than predicting the base rate). A selected model
whose validation LogLoss is no better than the constant predictor's is flagged
(``TrainResult.worse_than_constant``) and warned about, never returned silently.
"""

from __future__ import annotations

import copy
import resource
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .. import runtime
from ..data.batching import SampleBuilder
from ..data.schema import Dataset
from ..models import registry
from ..models.ctr import CTRModel
from ..seed import seed_everything
from .metrics import all_metrics, logloss
from .optim import RowSparseAdagrad


@dataclass
class TrainConfig:
    epochs: int = 3  # maximum passes over the training split
    batch_size: int = 256  # samples per step (a request's candidates stay together)
    optimizer: str = "adagrad+adam"  # paper: AdaGrad on embeddings + Adam on the rest; or "adam"
    lr: float = 1e-3  # Adam learning rate of the dense parameters
    # AdaGrad learning rate of the embeddings. The paper uses 0.05 at batch 8,192; at our batch
    # of 256 notebook 03's tuning section (same budget for every model) preferred 0.2 to 0.05.
    emb_lr: float = 0.2
    patience: int = 1  # epochs without a validation gain (``select_on``) before stopping
    select_on: str = "logloss"  # validation metric that picks the model: logloss or auc
    # Learning curve: evaluate every this many training samples (0 = only at epoch ends), on a
    # seeded subset of whole validation requests holding about ``eval_samples`` samples (0 =
    # the whole split); see ``request_subset``.
    eval_every: int = 0
    eval_samples: int = 0
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
        if self.select_on not in ("logloss", "auc"):
            raise ValueError(f"TrainConfig: select_on must be 'logloss' or 'auc', not "
                             f"{self.select_on!r}")  # fmt: skip
        if self.eval_every < 0 or self.eval_samples < 0 or self.max_train_samples < 0:
            raise ValueError("TrainConfig: eval_every, eval_samples, max_train_samples >= 0")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    # The learning curve: one point per evaluation (every ``eval_every`` samples and at each
    # epoch's end): epoch, samples_seen, train_loss (mean since the previous point), valid_*.
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_samples: int = 0  # samples seen at the selected point
    constant_logloss: float = 0.0  # validation LogLoss of predicting the training base rate
    worse_than_constant: bool = False  # the selected model is no better than that
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
    """AdaGrad on the embedding tables, Adam on the rest (or Adam on everything).

    Under AdaGrad the tables get row-sparse gradients (``FeatureEmbedder.sparse_grads``), so
    a step touches only the rows its batch read (issue 27). With no weight decay that is the
    same update as a dense AdaGrad's: an untouched row has a zero gradient, and AdaGrad leaves
    both it and its accumulator as they are (tests/test_catalogue.py). Adam would not: its
    moments decay every row every step, so it keeps dense gradients. So does DDP, whose
    all-reduce of the gradient buckets is dense."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    emb = [p for n, p in params if n.startswith("emb.")]
    dense = [p for n, p in params if not n.startswith("emb.")]
    core = model.module if isinstance(model, DistributedDataParallel) else model
    core.emb.sparse_grads = cfg.optimizer == "adagrad+adam" and core is model
    if cfg.optimizer == "adam":
        return [torch.optim.Adam(emb + dense, lr=cfg.lr)]
    return [RowSparseAdagrad(emb, lr=cfg.emb_lr), torch.optim.Adam(dense, lr=cfg.lr)]


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
    """The batches a model reads: its lifelong module's own builder if it declares one
    (``LifelongModule.sample_builder``: TWIN-V2's virtual items), else the raw log's."""
    spec = registry.get(model.cfg.long_module)
    if spec.sample_builder is not None:
        return spec.sample_builder(model, ds)
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


def request_subset(ds: Dataset, idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded subset of samples ``idx`` made of whole requests, the first that reach ``n``
    samples in a random order of the requests (sorted, as ``idx`` is).

    Whole requests rather than single samples: the GSU reads a request's L behaviours once for
    all its candidates, so a sample-level subset (about one sample per request) costs nearly a
    GSU pass per sample -- at L = 10^4 the learning curve then cost as much as the training --
    and it leaves GAUC few users with both labels."""
    req = ds.samples.request[idx]
    uniq, inverse = np.unique(req, return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    counts = np.bincount(inverse, minlength=len(uniq))[order]
    n_req = int(np.searchsorted(np.cumsum(counts), n)) + 1  # first prefix with >= n samples
    keep = np.zeros(len(uniq), dtype=bool)
    keep[order[:n_req]] = True
    return np.sort(idx[keep[inverse]])


def constant_logloss(ds: Dataset, idx: np.ndarray) -> float:
    """LogLoss on samples ``idx`` of the constant predictor: the training split's click rate."""
    rate = float(ds.samples.label[ds.split_indices("train")].mean())
    return logloss(ds.samples.label[idx], np.full(len(idx), rate))


def fit(
    model: CTRModel, ds: Dataset, cfg: TrainConfig, builder: SampleBuilder | None = None
) -> TrainResult:
    """Train, evaluating the validation split along the way; the model ends at its best point
    (``select_on``), and ``history`` holds the learning curve.

    ``builder`` makes the training batches (default ``builder_for``); data-parallel training
    passes one that builds only its rank's shard of each batch (``training.distributed``)."""
    cfg = cfg.validate()
    runtime.configure(cfg.threads)
    seed_everything(cfg.seed)
    model.to(cfg.device)
    train_idx = ds.split_indices("train")
    if cfg.max_train_samples and cfg.max_train_samples < len(train_idx):
        rng = np.random.default_rng(cfg.seed)
        train_idx = np.sort(rng.choice(train_idx, cfg.max_train_samples, replace=False))
    valid_idx = ds.split_indices("valid")
    if cfg.eval_samples and cfg.eval_samples < len(valid_idx):
        valid_idx = request_subset(ds, valid_idx, cfg.eval_samples, cfg.seed + 1)
    builder = builder or builder_for(model, ds)
    opts = make_optimizers(model, cfg)
    result = TrainResult(constant_logloss=constant_logloss(ds, valid_idx))
    sign = -1.0 if cfg.select_on == "logloss" else 1.0  # larger sign * metric = better
    best, best_state, bad = -np.inf, None, 0
    t_train, n_seen, losses = 0.0, 0, []

    def checkpoint(epoch: int) -> bool:
        """Evaluate, record a curve point, keep the best state; True if it improved."""
        nonlocal best, best_state, losses
        model.eval()
        prob = predict(model, ds, valid_idx, cfg, desc="eval valid")
        valid = all_metrics(ds.samples.user[valid_idx], ds.samples.label[valid_idx], prob)
        model.train()
        result.history.append({"epoch": epoch, "samples_seen": n_seen,
                               "train_loss": float(np.mean(losses)) if losses else float("nan"),
                               **{f"valid_{k}": v for k, v in valid.items()}})  # fmt: skip
        losses = []
        score = sign * valid[cfg.select_on]
        if not score > best:  # NaN (a split without both labels) never wins
            return False
        best, best_state = score, copy.deepcopy(model.state_dict())
        result.best_epoch, result.best_samples = epoch, n_seen
        return True

    next_eval = cfg.eval_every or None
    for epoch in range(1, cfg.epochs + 1):
        improved = False
        model.train()
        t0 = time.perf_counter()
        bar = tqdm(total=len(train_idx), desc=f"{model.cfg.long_module} epoch {epoch}",
                   disable=not cfg.progress, leave=False)  # fmt: skip
        for batch in builder.batches(
            train_idx, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch - 1
        ):
            batch = batch.to(cfg.device)
            losses.append(train_step(model, batch, opts))
            n_seen += len(batch.label)
            bar.update(len(batch.label))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if next_eval is not None and n_seen >= next_eval:
                t_train += time.perf_counter() - t0
                improved |= checkpoint(epoch)
                t0 = time.perf_counter()
                next_eval += cfg.eval_every
        bar.close()
        t_train += time.perf_counter() - t0
        if losses or not result.history:  # not evaluated right at the epoch's last batch
            improved |= checkpoint(epoch)
        bad = 0 if improved else bad + 1
        if bad >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        model.refresh_cache()  # the cache must match the weights just loaded
    # Sparse gradients were for this fit's AdaGrad; the model leaves with dense ones, so an
    # optimizer a caller builds later (Adam in 02's cache-staleness runs) can take them.
    (model.module if isinstance(model, DistributedDataParallel) else model).emb.sparse_grads = False
    chosen = next(h for h in result.history if h["samples_seen"] == result.best_samples
                  and h["epoch"] == result.best_epoch)  # fmt: skip
    result.worse_than_constant = not chosen["valid_logloss"] < result.constant_logloss
    if result.worse_than_constant:
        warnings.warn(
            f"{model.cfg.long_module}: the selected model's validation LogLoss "
            f"{chosen['valid_logloss']:.4f} is no better than predicting the base rate "
            f"({result.constant_logloss:.4f}); it has not learned a calibrated model",
            stacklevel=2,
        )
    result.train_seconds = t_train
    result.samples_per_second = n_seen / max(t_train, 1e-9)
    result.peak_rss_mb = peak_rss_mb()
    return result
