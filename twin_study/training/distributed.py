"""Data-parallel training of one run with ``torch.distributed`` (DistributedDataParallel).

    torchrun --nproc_per_node 2 -m twin_study.training.distributed \\
        --data synthetic -d n_users=250 -d history_len=10000 \\
        --model twin -p long_len=1000 -p epochs=1 -p batch_size=64

(``twin-study train`` takes the same options and, started without ``torchrun``, trains in one
process.) Every rank loads the same data set (loaders are deterministic), builds the same
model from the same seed, and walks the same shuffled sequence of *global* batches of
``batch_size`` samples that a single-process run walks; each rank builds and trains on its
own 1/N slice of every global batch. Gradients are summed across ranks weighted by each
slice's share of the batch, which is exactly the gradient of the global batch's mean loss,
so a run with N processes follows the single-process run up to floating-point summation
order (the test checks it). Back-ends: gloo on CPU, NCCL when ``-p device=cuda`` (one GPU
per rank, ``cuda:LOCAL_RANK``).

Every rank runs the validation pass that drives early stopping (identical parameters give
identical numbers, so the ranks agree without talking); rank 0 alone evaluates the final
model on valid and test and writes the run into the results cache under the same key as a
single-process run of the same configuration: the process count is how a run is computed,
not what it is. Prerequisite runs (SIM Soft's DIN, the Para-Con ablation's auxiliary TWIN)
are trained first, data-parallel as well. In the stored training facts, ``samples_per_second``
counts all ranks and each epoch's ``train_loss`` is rank 0's (the mean over its slices).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..assignments import UsageError, parse_assignments
from ..data import load_dataset
from ..data.batching import SampleBuilder
from ..data.schema import Dataset
from ..models.config import ModelConfig
from ..models.ctr import CTRModel, build_model
from ..seed import seed_everything
from . import experiment
from .params import configs
from .train import TrainConfig, fit


class _BatchIndices(SampleBuilder):
    """The global batches as sample indices: ``SampleBuilder.batches``'s grouping and
    shuffling, without building tensors."""

    def build(self, sample_idx: np.ndarray) -> np.ndarray:  # type: ignore[override]
        return np.asarray(sample_idx, dtype=np.int64)


class ShardedBuilder(SampleBuilder):
    """Training batches of one rank: its slice of each global batch.

    ``weight`` is the slice's share of the current global batch, read by the gradient hook.
    A global batch smaller than the number of ranks leaves some ranks without a sample: they
    train on a stand-in sample with weight 0, because every rank must join every step."""

    def __init__(self, ds: Dataset, long_len: int, short_len: int, rank: int, world: int):
        super().__init__(ds, long_len, short_len)
        self.rank, self.world = rank, world
        self._order = _BatchIndices(ds, long_len, short_len)
        self.weight = 1.0

    def batches(self, sample_idx, batch_size, shuffle=False, seed=0, group_requests=True):
        for idx in self._order.batches(sample_idx, batch_size, shuffle, seed, group_requests):
            mine = np.array_split(idx, self.world)[self.rank]
            self.weight = len(mine) / len(idx)
            yield self.build(mine if len(mine) else idx[:1])


def _weighted_sum_hook(state: ShardedBuilder, bucket):  # -> Future[Tensor]; DDP checks a
    # real annotation by identity, which a string one (from __future__) fails
    """DDP communication hook: sum over ranks of ``weight_r * grad_r``.

    grad_r is the gradient of the mean loss over rank r's slice of n_r samples; with
    weight_r = n_r / n this sums to the gradient of the mean over the global batch, which DDP's
    default (a plain average) gives only when every slice has the same size."""
    buf = bucket.buffer()
    buf.mul_(state.weight)
    work = dist.all_reduce(buf, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class _DDPModel(DistributedDataParallel):
    """DDP with the CTRModel methods that ``fit`` and ``evaluate`` call passed through, so the
    shared training loop runs unchanged on the wrapped model."""

    @property
    def cfg(self) -> ModelConfig:
        return self.module.cfg

    def cache_step(self) -> None:
        self.module.cache_step()

    def refresh_cache(self) -> None:
        self.module.refresh_cache()

    def prepare_eval(self) -> None:
        self.module.prepare_eval()

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, torch.Tensor]]:
        # The module's own names ("emb.…"): make_optimizers puts the embeddings under AdaGrad
        # by name. DDP itself only ever asks self.module for its parameters.
        return self.module.named_parameters(*args, **kwargs)


# torch >= 2.13 renamed broadcast_buffers; older releases (pyproject allows 2.3) have only it.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


def _device(train: TrainConfig) -> str:
    if train.device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def init(train: TrainConfig) -> None:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPUs)."""
    if not dist.is_initialized():
        dist.init_process_group("nccl" if train.device.startswith("cuda") else "gloo")


def train_distributed(
    ds: Dataset, model: ModelConfig, train: TrainConfig, cache: bool = True
) -> experiment.RunResult | None:
    """Train one run data-parallel in the current process group; collective: every rank calls
    it. Rank 0 returns the RunResult (and has stored it when ``cache``); the others None.

    A run already in the results cache is loaded, not retrained."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model = model.validate()
    train = dataclasses.replace(train.validate(), device=_device(train))
    if not cache and experiment.prerequisites(model, train):
        raise ValueError(f"{model.long_module} needs the results cache for its prerequisite run")
    for pre_model, pre_train in experiment.prerequisites(model, train):
        train_distributed(ds, pre_model, pre_train, cache)
    key = experiment.run_key(ds, model, train)
    if cache and experiment.is_cached(key):
        return experiment.run(ds, model, train) if rank == 0 else None
    extras = experiment.prerequisite_extras(ds, model, train, cache)  # trained just above
    seed_everything(train.seed)
    net: CTRModel = build_model(model, ds, **extras).to(train.device)
    builder = ShardedBuilder(ds, model.long_len, model.short_len, rank, world)
    # Buffers (item codes, hash projections, TWIN's item cache) are equal on every rank or
    # rebuilt from the parameters, so they need no broadcast before each forward pass.
    ddp = _DDPModel(net, **_NO_BUFFER_SYNC)
    ddp.register_comm_hook(builder, _weighted_sum_hook)
    t0 = time.perf_counter()
    tr = fit(ddp, ds, dataclasses.replace(train, progress=train.progress and rank == 0), builder)
    tr.samples_per_second *= world  # each rank counted its own slices
    result = experiment.record(net, ds, model, train, tr, t0, cache) if rank == 0 else None
    dist.barrier()  # the others wait until the run is in the cache
    return result


# --- command line: python -m twin_study.training.distributed / twin-study train ------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="synthetic", help="data set name (default: synthetic)")
    parser.add_argument(
        "-d", "--data-param", action="append", default=[], metavar="NAME=VALUE",
        help="loader parameter, value parsed as YAML (n_users=250); repeatable",
    )  # fmt: skip
    parser.add_argument("--model", default="twin", help="long_module (default: twin)")
    parser.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE",
        help="ModelConfig or TrainConfig field (long_len=1000, batch_size=64, seed=1, "
        "device=cuda); repeatable",
    )  # fmt: skip
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    parser.add_argument("--json", metavar="PATH", help="also write the metrics here (rank 0)")


def main(args: argparse.Namespace) -> int:
    try:
        model, train = configs({"long_module": args.model, **parse_assignments(args.param)})
        ds = load_dataset(args.data, **parse_assignments(args.data_param))
    except (ValueError, TypeError, UsageError) as exc:
        print(f"twin-study train: error: {exc}", file=sys.stderr)
        return 2
    if "WORLD_SIZE" not in os.environ:  # not started by torchrun: one process
        res = experiment.run(ds, model, train, cache=not args.no_cache)
    else:
        init(train)
        try:
            res = train_distributed(ds, model, train, cache=not args.no_cache)
        finally:
            dist.destroy_process_group()
    if res is not None:
        world = int(os.environ.get("WORLD_SIZE", 1))
        out = {"key": res.key, "cached": res.cached, "processes": world, "metrics": res.metrics,
               "train": res.train}  # fmt: skip
        text = json.dumps(out, indent=2, default=float)
        print(text)
        if args.json:
            with open(args.json, "w") as fh:
                fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node N -m twin_study.training.distributed",
        description="Train one run data-parallel (DistributedDataParallel).",
    )
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
