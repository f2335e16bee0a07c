"""The CTR model around every lifelong module (paper §3.2, Eq. 1-2).

    logit = MLP([lifelong(target, L behaviours), short-term(target, last 50), user, target])

All models share embeddings, the short-term branch, the other features and the MLP; only the
lifelong branch differs (paper §4.3). Two-stage lifelong branches share TWIN's ESU too and
differ only in their GSU.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.batching import Batch, cross_schema
from ..data.schema import Dataset
from . import native
from .attention import TwinAttention
from .config import TWO_STAGE, ModelConfig
from .embedding import FeatureEmbedder
from .gsu import (
    GSU,
    CodeMatchGSU,
    CpGSU,
    EtaGSU,
    GsuInput,
    LiveGSU,
    RecentGSU,
    SdimGSU,
    SoftGSU,
    compact_items,
    live_scores,
)


class AvgPooling(nn.Module):
    """Mean of the inherent features of all valid behaviours (EmbeddingBag-style: no (R, L, H)
    tensor is kept for backward beyond one chunk's gather)."""

    def __init__(self, H: int, d_out: int):
        super().__init__()
        self.proj = nn.Linear(H, d_out)

    def forward(self, emb: FeatureEmbedder, x: GsuInput) -> torch.Tensor:
        if x.fast:
            return self.proj(emb.inherent_mean(x.hist_item, x.n_valid()))[x.req]
        total = None
        for lo in range(0, x.length, x.chunk):
            k_h = emb.inherent(x.hist_item[:, lo : lo + x.chunk])  # (R, c, H)
            part = (k_h * x.valid[:, lo : lo + x.chunk, None]).sum(1)
            total = part if total is None else total + part
        mean = total / x.valid.sum(1, keepdim=True).clamp(min=1)  # (R, H)
        return self.proj(mean)[x.req]


class _SdimPool(torch.autograd.Function):
    """SdimLinear's bucket sums of the targets' buckets, (B, G, H), from K_h of every item
    (V, H), by the native kernel (``sdim_pool.cpp``) forward and backward. The same sums as the
    torch loop below; the gradient reaches the embedding tables through ``inherent``."""

    @staticmethod
    def forward(ctx, Kall, lib, inp):  # noqa: ANN001 -- autograd's signature
        ctx.lib, ctx.inp, ctx.V = lib, inp, Kall.shape[0]
        return native.sdim_pool_forward(lib, Kall, inp)

    @staticmethod
    def backward(ctx, d_v):  # noqa: ANN001
        return native.sdim_pool_backward(ctx.lib, d_v, ctx.V, ctx.inp), None, None


class SdimLinear(nn.Module):
    """Original SDIM aggregation: per signature group, sum the inherent features of behaviours
    whose signature collides with the target's, l2-normalise, average over groups. No ESU."""

    def __init__(self, gsu: SdimGSU, H: int, d_out: int):
        super().__init__()
        self.gsu = gsu
        self.proj = nn.Linear(H, d_out)

    def forward(self, emb: FeatureEmbedder, x: GsuInput) -> torch.Tensor:
        # Only the items the batch reads, renumbered, once the catalogue outgrows the batch.
        items, x = compact_items(x, emb.n_items) if x.fast else (None, x)
        table = self.gsu.buckets(items)  # (n_items + 1, G), or (U, G)
        n_b, G = 2**self.gsu.tau, self.gsu.groups
        lib = native.sdim_pool_lib(table, x.hist_item) if x.fast else None
        if lib is not None:  # the kernel: each behaviour's row added where a target collides
            ids = torch.arange(table.shape[0], device=table.device) if items is None else items
            inp = native.SdimPoolInput(table, n_b, x.hist_item, x.n_valid(), x.target, x.req)
            v = _SdimPool.apply(emb.inherent(ids), lib, inp)  # (B, G, H)
            return self.proj(F.normalize(v, dim=-1).sum(1) / G)
        tgt = table[x.target]  # (B, G)
        offset = n_b * torch.arange(x.n_req, device=tgt.device)[:, None]  # (R, 1)
        # Bucket sums per request and group: (G, R * 2^tau, H). Each chunk's K_h is gathered
        # once and added into all G groups' buckets (every behaviour lands in one bucket per
        # group: the O(L G H) cost of the original SDIM aggregation).
        sums: list[torch.Tensor | None] = [None] * G
        for lo in range(0, x.length, x.chunk):
            rows = x.hist_item[:, lo : lo + x.chunk]  # rows of ``table``
            ids = rows if items is None else items[rows]  # item ids
            k_h = (emb.inherent(ids) * x.valid[:, lo : lo + x.chunk, None]).flatten(0, 1)
            bucket = table[rows] + offset[..., None]  # (R, c, G)
            for g in range(G):
                part = k_h.new_zeros(x.n_req * n_b, k_h.shape[-1])
                part = part.index_add(0, bucket[..., g].flatten(), k_h)
                sums[g] = part if sums[g] is None else sums[g] + part
        out = 0.0
        for g in range(G):
            v = sums[g][x.req * n_b + tgt[:, g]]  # (B, H): the target's colliding bucket
            out = out + F.normalize(v, dim=-1)
        return self.proj(out / G)


class CTRModel(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        ds: Dataset,
        item_vectors: np.ndarray | None = None,
        gsu_source: CTRModel | None = None,
        cluster_codes: np.ndarray | None = None,
    ):
        super().__init__()
        self.cfg = cfg = cfg.validate()
        cross_names, cross_vocab = cross_schema(ds)
        self.cross_names = cross_names
        self.emb = FeatureEmbedder(
            ds.items, cross_vocab, ds.user_features, ds.user_vocab,
            cfg.id_dim, cfg.small_dim, cfg.large_vocab, cfg.emb_init_std,
        )  # fmt: skip
        H, J, cd = self.emb.H, self.emb.J, self.emb.cross_dim
        att = dict(heads=cfg.heads, d_k=cfg.d_k, d_v=cfg.d_v, d_out=cfg.d_out,
                   shared_qk_init=cfg.shared_qk_init, qk_init_scale=cfg.qk_init_scale,
                   beta_init=cfg.beta_init)  # fmt: skip
        mode = {"twin_raw": "raw", "twin_no_bias": "nobias"}.get(cfg.long_module, "split")
        m = cfg.long_module
        self.esu: TwinAttention | None = None
        self.gsu: GSU | None = None
        self.pool: nn.Module | None = None
        if m in TWO_STAGE:
            self.esu = TwinAttention(H, J, cd, mode=mode, **att)
        if m == "din":
            self.gsu = RecentGSU()
        elif m == "sim_hard":
            self.gsu = CodeMatchGSU(ds.items.features["category"])
        elif m == "sim_soft":
            if item_vectors is None:
                raise ValueError(f"{m} needs pre-trained item vectors (item_vectors=...)")
            self.gsu = SoftGSU(item_vectors)
        elif m == "sim_cluster":
            # The codes are computed beside the pre-trained vectors (training.pretrain.sim_extras:
            # k-means with n_clusters and hash_seed); a model constructor runs no k-means.
            if cluster_codes is None:
                raise ValueError(
                    "sim_cluster needs the k-means cluster id of every item (cluster_codes=...: "
                    "training.pretrain.kmeans_codes(item_vectors, cfg.n_clusters, cfg.hash_seed))"
                )
            self.gsu = CodeMatchGSU(cluster_codes)
        elif m == "eta":
            self.gsu = EtaGSU(self.emb, cfg.eta_bits, cfg.hash_seed, cfg.hash_input)
        elif m == "sdim":
            self.gsu = SdimGSU(self.emb, cfg.sdim_bits, cfg.sdim_tau, cfg.hash_seed, cfg.hash_input)
        elif m in ("twin", "twin_no_bias"):
            self.gsu = CpGSU(self.emb, self.esu, cfg.cache_refresh)
        elif m == "twin_raw":
            self.gsu = LiveGSU(self.emb, self.esu)
        elif m == "twin_no_paracon":
            if gsu_source is None or gsu_source.cfg.long_module != "twin":
                raise ValueError("twin_no_paracon needs a separately trained TWIN (gsu_source=...)")
            # A frozen copy: its parameters drive the GSU and never see this model's gradient.
            self.gsu_source = copy.deepcopy(gsu_source).requires_grad_(False)
            self.gsu = CpGSU(self.gsu_source.emb, self.gsu_source.esu, cfg.cache_refresh)
        elif m == "avg_pool":
            self.pool = AvgPooling(H, cfg.d_out)
        elif m == "sdim_linear":
            sdim = SdimGSU(self.emb, cfg.sdim_bits, cfg.sdim_tau, cfg.hash_seed, cfg.hash_input)
            self.pool = SdimLinear(sdim, H, cfg.d_out)
        self.short = TwinAttention(H, J, cd, mode="split", **att)  # own parameters
        width = cfg.d_out * 2 + self.emb.U + H
        if cfg.mlp_interaction:
            self.target_proj = nn.Linear(H, cfg.d_out)
            width += cfg.d_out * 2
        layers: list[nn.Module] = []
        for h in cfg.mlp:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    # ------------------------------------------------------------------ helpers
    @property
    def fast(self) -> bool:
        return self.cfg.impl == "fast"

    def gsu_input(self, batch: Batch) -> GsuInput:
        L = min(self.cfg.long_len, batch.width)
        return GsuInput(
            target=batch.target, req=batch.req,
            hist_item=batch.hist_item[:, :L], hist_cross=batch.hist_cross[:, :L],
            valid=batch.mask(L), chunk=self.cfg.gsu_chunk, fast=self.fast,
        )  # fmt: skip

    def _attend(
        self,
        att: TwinAttention,
        qh: torch.Tensor,
        batch: Batch,
        idx: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention of ``att`` over slots ``idx`` (B, n) of each sample's history ->
        output (B, d_out) and weights (B, n, heads)."""
        if not self.fast:
            r = batch.req[:, None]
            items, codes = batch.hist_item[r, idx], batch.hist_cross[r, idx]  # (B, n), (B, n, J)
            k_h = self.emb.inherent(items)  # (B, n, H), with gradients
            return att(qh, k_h, self.emb.cross(codes), valid, fast=False)
        grouped = self._attend_grouped(att, qh, batch, idx, valid)
        if grouped is not None:
            return grouped
        # Rows of the flattened (R * W) history: one index_select each, several times faster
        # than advanced indexing with a (request, slot) pair.
        R, W = batch.hist_item.shape
        flat = (batch.req[:, None] * W + idx).flatten()
        items = batch.hist_item.reshape(-1).index_select(0, flat).view(idx.shape)  # (B, n)
        codes = batch.hist_cross.reshape(R * W, -1).index_select(0, flat)
        codes = codes.view(*idx.shape, -1)  # (B, n, J)
        K = self.emb.behaviours(items, codes)  # (B, n, H + C)
        return att.attend(qh, K, att.code_bias(self.emb, codes), valid)

    def _attend_grouped(
        self,
        att: TwinAttention,
        qh: torch.Tensor,
        batch: Batch,
        idx: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``_attend`` reading each request's behaviours once: the candidates of a request
        share its history, so their finalists overlap (and the short-term window is the same
        for all of them). Embeds the union of each request's slots, (R, S, ...), and lets
        every sample attend to its own members of it (``TwinAttention.forward_grouped``).
        None when that would cost more than the per-sample path: the union product scores
        every candidate against all S behaviours of its request, so it pays only while
        R * S * (candidates per request) stays below ~2 * B * n."""
        B, n = idx.shape
        R, W = batch.hist_item.shape
        key = (batch.req[:, None] * W + idx).flatten()  # (B * n,) one id per (request, slot)
        uniq, inv = torch.unique(key, return_inverse=True)  # sorted: grouped by request
        u_req, u_slot = uniq // W, uniq % W
        counts = torch.bincount(u_req, minlength=R)
        S = int(counts.max())
        cmax = int(torch.bincount(batch.req, minlength=R).max())
        if R * S * cmax > 2 * B * n:
            return None
        pos = torch.arange(len(uniq), device=idx.device) - (torch.cumsum(counts, 0) - counts)[u_req]
        items = torch.zeros(R, S, dtype=torch.long, device=idx.device)
        items[u_req, pos] = batch.hist_item[u_req, u_slot]
        codes = torch.zeros(R, S, batch.hist_cross.shape[-1], dtype=torch.long, device=idx.device)
        codes[u_req, pos] = batch.hist_cross[u_req, u_slot]
        where = pos[inv].view(B, n)  # (B, n) position of each finalist in its request's set
        member = torch.zeros(B, S, dtype=torch.bool, device=idx.device)
        member.scatter_(1, where, valid)  # a slot selected twice is valid both times or never
        K = self.emb.behaviours(items, codes)  # (R, S, H + C)
        out, w = att.forward_grouped(qh, batch.req, K, att.code_bias(self.emb, codes), member)
        return out, w.gather(1, where[..., None].expand(B, n, w.shape[-1]))  # (B, n, heads)

    def cache_step(self) -> None:
        """Advance the item-cache clock by one training step (rebuilds when due)."""
        if isinstance(self.gsu, CpGSU):
            self.gsu.step()

    def refresh_cache(self) -> None:
        """Rebuild the item cache now (e.g. after loading weights, as serving would)."""
        if isinstance(self.gsu, CpGSU):
            self.gsu.cache.rebuild(*self.gsu._src)

    def prepare_eval(self) -> None:
        """Before evaluation: a stale cache that was never built is built; a fresh one
        (refresh = 0) is rebuilt when read, if that pays (``CpGSU.keys_for``)."""
        if isinstance(self.gsu, CpGSU):
            self.gsu.prepare_eval()

    # ------------------------------------------------------------------ forward
    def long_term(self, batch: Batch, q: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        x = self.gsu_input(batch)
        if self.pool is not None:
            return self.pool(self.emb, x), {}
        idx, valid = self.gsu.select(x, self.cfg.k)
        out, w = self._attend(self.esu, self.esu.query(q), batch, idx, valid)
        return out, {"gsu_idx": idx, "gsu_valid": valid, "esu_weights": w}

    def forward(self, batch: Batch, return_aux: bool = False):
        q = self.emb.inherent(batch.target)  # (B, H) target's inherent features
        long_out, aux = self.long_term(batch, q)
        S = min(self.cfg.short_len, batch.width)
        B = len(batch.target)
        idx = torch.arange(S, device=q.device).expand(B, S)
        short_valid = batch.mask(S)[batch.req]
        short_out, _ = self._attend(self.short, self.short.query(q), batch, idx, short_valid)
        parts = [long_out, short_out, self.emb.user(batch.user), q]
        if self.cfg.mlp_interaction:
            t = self.target_proj(q)  # (B, d_out)
            parts += [long_out * t, short_out * t]
        x = torch.cat(parts, dim=-1)
        logit = self.mlp(x).squeeze(-1)
        return (logit, aux) if return_aux else logit

    # ------------------------------------------------------------------ analysis
    @torch.no_grad()
    def oracle_scores(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The ESU's live alpha over ALL L behaviours (paper Fig. 4's "real" ranking):
        (B, heads, L) scores and (B, L) validity."""
        if self.esu is None:
            raise ValueError(f"{self.cfg.long_module} has no ESU")
        x = self.gsu_input(batch)
        return live_scores(self.emb, self.esu, x), x.sample_valid()

    @torch.no_grad()
    def gsu_scores(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if self.gsu is None:
            raise ValueError(f"{self.cfg.long_module} has no GSU")
        return self.gsu.scores(self.gsu_input(batch))

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def build_model(cfg: ModelConfig, ds: Dataset, **extras: Any) -> CTRModel:
    """The one constructor the study uses (extras: ``item_vectors``, ``gsu_source``,
    ``cluster_codes``; ``training.experiment.prerequisite_extras`` makes them)."""
    return CTRModel(cfg, ds, **extras)
