"""TWIN-V2 (Si et al., CIKM 2024, arXiv 2407.16357): TWIN over a compressed life cycle.

Offline, each user's behaviours are clustered (``data.lifecycle``: engagement groups, then
recursive k-means to at most ``cap`` members, in leak-free time blocks) and every cluster
becomes one virtual item: its representative's item id and cross codes, its size n. Online,
TWIN's CP-GSU and ESU run over the virtual items with **cluster-aware target attention**:
alpha' = alpha + ln n in every head, in both stages (``../shared/paper/TWIN_V2_NOTES.md`` §4:
the exact equation is unconfirmed; + ln n makes a cluster count like n copies of its
representative under the softmax, as the secondary accounts describe). TWIN's parameter
sharing is kept: one set of W^q, W^h, W^c, beta for both stages.

Choices where the paper is silent, each an option (``TwinV2Options``, given as
``ModelConfig(long_module="twin_v2", options={...})``):

* the vectors k-means runs on are the GSU's own keys K_h W^h of the current parameters (what
  TWIN's GSU compares); clusters are rebuilt every ``recluster_every`` training steps and
  whenever evaluation meets parameters they were not built from;
* ``size_bias=False`` is the ablation without cluster-aware attention (plain alpha over the
  same virtual items);
* a request sees a block as clusters only once it is complete and at least ``short_len``
  behaviours old; the rest of its history is raw (``LifecycleSampleBuilder``).

With clusters of size 1 (``cap=1``) the virtual items are the raw behaviours and ln 1 = 0:
TWIN-V2 scores and selects as TWIN does (tests/test_twin_v2.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...data.batching import Batch
from ...data.lifecycle import ClusterConfig, CompressedLog, LifecycleSampleBuilder, compress_log
from ...data.schema import Dataset
from ..gsu import CpGSU, GsuInput, ItemKeyCache, log_size, select_per_request, select_table
from ..registry import BuildContext, LifelongModule, register
from .twin import CP_GSU_FIELDS


@dataclass(frozen=True)
class TwinV2Options:
    cap: int = 20  # gamma: at most this many behaviours per cluster
    block: int = 256  # behaviours per leak-free clustering block (must stay below long_len)
    engagement_feature: str | None = "play_ratio"  # cross feature grouped on first (None: no)
    engagement_groups: int = 3  # M engagement groups
    split_exponent: float = 0.3  # k-means splits a set of s into max(2, s ** this) parts
    size_bias: bool = True  # cluster-aware attention (+ ln n); False: the ablation
    recluster_every: int = 500  # training steps between re-clusterings on the current keys
    seed: int = 0  # k-means seed

    def cluster_config(self) -> ClusterConfig:
        return ClusterConfig(cap=self.cap, block=self.block, split_exponent=self.split_exponent,
                             engagement_feature=self.engagement_feature,
                             engagement_groups=self.engagement_groups, seed=self.seed)  # fmt: skip


class ClusterGSU(CpGSU):
    """TWIN's CP-GSU over virtual items, + ln n per slot when ``size_bias``, and the owner of
    the clusters: ``clusters(ds)`` returns those of the current parameters."""

    def __init__(self, emb: Any, att: Any, refresh: int, opts: TwinV2Options):
        super().__init__(emb, att, refresh)
        self.opts = opts
        self._clusters: tuple[str, CompressedLog] | None = None  # (data set fingerprint, log)
        self._built_from: tuple[int, ...] | None = None
        self._steps = 0  # training steps since the last clustering

    # ------------------------------------------------------------------ the clusters
    def step(self) -> None:
        super().step()
        self._steps += 1

    def clusters(self, ds: Dataset) -> CompressedLog:
        """The compressed log of ``ds``, rebuilt on the current keys when due: first use, a
        new data set, every ``recluster_every`` training steps, and in evaluation whenever the
        parameters changed since the last clustering."""
        emb, att = self._src
        versions = ItemKeyCache.versions(emb, att)
        due = (
            self._clusters is None
            or self._clusters[0] != ds.name + str(ds.log.n_behaviours)
            or (att.training and self._steps >= self.opts.recluster_every)
            or (not att.training and self._built_from != versions)
        )
        if due:
            with torch.no_grad():
                keys = emb.project_items(att.W_h.weight).float().cpu().numpy()  # (V + 1, hd)
            comp = compress_log(ds, keys, self.opts.cluster_config(), progress=False)
            self._clusters = (ds.name + str(ds.log.n_behaviours), comp)
            self._built_from, self._steps = versions, 0
        return self._clusters[1]

    # ------------------------------------------------------------------ scoring
    def scores(self, x: GsuInput):
        s, valid = super().scores(x)  # (B, heads, L)
        if self.opts.size_bias and x.size is not None:
            s = s + log_size(x.size)[x.req][:, None, :]
        return s, valid

    def fast_select(self, x: GsuInput, k: int):
        if not self.opts.size_bias or x.size is None:
            return super().fast_select(x, k)
        emb, att = self._src
        self.last_side = side = self.keys_for(x)
        ln_n = log_size(x.size)  # (R, L)
        joint = att.joint_bias_table(emb)
        if side != "query" and joint is not None:
            # ln n as one more code of the joint cross-bias table, so the native kernel adds
            # it: table[c * S + s] = table[c] + ln s, sizes clamped to the cap (never above).
            S = self.opts.cap + 1
            sizes = torch.log(torch.arange(S, device=joint[0].device).clamp(min=1).float())
            table = (joint[0][:, :, None] + sizes[None, None, :]).flatten(1)
            if table.shape[1] <= 1 << 20:
                qh = att.query(emb.inherent(x.target))
                keys, xk = self.batch_keys(x) if side == "batch" else (self.cache.keys, x)
                codes = torch.cat([x.hist_cross, x.size.clamp(0, S - 1)[..., None]], dim=-1)
                strides = torch.cat([joint[1] * S, joint[1].new_ones(1)])

                def rows() -> Any:
                    return self._with_size(self.score_rows(xk, keys, qh), ln_n)

                return select_table(xk, k, keys, qh, rows, (table.contiguous(), codes, strides))
        if side == "query":
            rows = self.query_rows(x)
        else:
            qh = att.query(emb.inherent(x.target))
            keys, xk = self.batch_keys(x) if side == "batch" else (self.cache.keys, x)
            rows = self.score_rows(xk, keys, qh)
        return select_per_request(self._with_size(rows, ln_n), x.n_valid(), x.req, x.length, k,
                                  att.heads)  # fmt: skip

    @staticmethod
    def _with_size(rows: Any, ln_n: torch.Tensor) -> Any:
        def sized(r: int, n: int, samples: torch.Tensor) -> torch.Tensor:
            return rows(r, n, samples) + ln_n[r, :n]  # (heads, cnt, n)

        return sized


class ClusteredBuilder(LifecycleSampleBuilder):
    """Batches over the virtual items of the GSU's current clusters (re-clustered when due,
    see ``ClusterGSU.clusters``)."""

    def __init__(self, ds: Dataset, gsu: ClusterGSU, long_len: int, short_len: int):
        super().__init__(ds, gsu.clusters(ds), long_len, short_len)
        self.gsu = gsu

    def build(self, sample_idx: np.ndarray) -> Batch:
        self.compressed = self.gsu.clusters(self.ds)
        return super().build(sample_idx)


def build(ctx: BuildContext) -> ClusterGSU:
    opts = ctx.options
    opts.cluster_config()  # bad clustering options fail here, before training
    if opts.block >= ctx.cfg.long_len:
        raise ValueError(f"twin_v2: block ({opts.block}) must be below long_len "
                         f"({ctx.cfg.long_len}): a request's raw part takes up to a "
                         "block")  # fmt: skip
    names = ctx.ds.log.cross_names
    if opts.engagement_feature is not None and opts.engagement_feature not in names:
        raise ValueError(f"twin_v2: engagement_feature {opts.engagement_feature!r} is not a "
                         f"cross feature of {ctx.ds.name!r}: {names} (or None)")  # fmt: skip
    ctx.esu.size_bias = opts.size_bias  # the ESU adds ln n of its finalists too
    return ClusterGSU(ctx.emb, ctx.esu, ctx.cfg.cache_refresh, opts)


def sample_builder(model: Any, ds: Dataset) -> ClusteredBuilder:
    return ClusteredBuilder(ds, model.gsu, model.cfg.long_len, model.cfg.short_len)


register(LifelongModule(
    name="twin_v2", label="TWIN-V2",
    description="TWIN over size-capped clusters of the whole life cycle, + ln n attention",
    build=build, fields=CP_GSU_FIELDS, options=TwinV2Options, sample_builder=sample_builder,
))  # fmt: skip
