"""The CTR model around every lifelong module (paper §3.2, Eq. 1-2).

    logit = MLP([lifelong(target, L behaviours), short-term(target, last 50), user, target])

All models share embeddings, the short-term branch, the other features and the MLP; only the
lifelong branch differs (paper §4.3). Two-stage lifelong branches share TWIN's ESU too and
differ only in their GSU. Each lifelong module is declared in its own file under
``models/lifelong/`` (``models.registry``); this file is the trunk around them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..data.batching import Batch, cross_schema
from ..data.schema import Dataset
from . import registry
from .attention import TwinAttention
from .config import ModelConfig
from .embedding import FeatureEmbedder
from .gsu import GSU, CpGSU, GsuInput, live_scores, log_size


class CTRModel(nn.Module):
    def __init__(self, cfg: ModelConfig, ds: Dataset, **extras: Any):
        """``extras``: what the lifelong module's prerequisite provides (SIM Soft's
        ``item_vectors``, SIM Cluster's ``cluster_codes``, w/o Para-Con's ``gsu_source``; see
        ``models/lifelong/``), passed to its ``build``."""
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
        spec = registry.get(cfg.long_module)
        self.esu: TwinAttention | None = None
        self.gsu: GSU | None = None
        self.pool: nn.Module | None = None
        if spec.two_stage:  # a GSU, then the ESU every two-stage module shares
            self.esu = TwinAttention(H, J, cd, mode=spec.esu_mode, **att)
        ctx = registry.BuildContext(cfg, ds, self.emb, self.esu, dict(extras), owner=self)
        branch = spec.build(ctx)
        if spec.two_stage:
            self.gsu = branch
        else:  # the branch returns the interest vector itself: (emb, GsuInput) -> (B, d_out)
            self.pool = branch
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
            size=None if batch.hist_size is None else batch.hist_size[:, :L],
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
        # TWIN-V2's cluster-aware attention: + ln n of each finalist's cluster, every head.
        sizes = batch.hist_size if att.size_bias else None
        if not self.fast:
            r = batch.req[:, None]
            items, codes = batch.hist_item[r, idx], batch.hist_cross[r, idx]  # (B, n), (B, n, J)
            k_h = self.emb.inherent(items)  # (B, n, H), with gradients
            extra = None if sizes is None else log_size(sizes[r, idx])
            return att(qh, k_h, self.emb.cross(codes), valid, fast=False, extra=extra)
        grouped = self._attend_grouped(att, qh, batch, idx, valid, sizes)
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
        bias = att.code_bias(self.emb, codes)  # (B, n, heads)
        if sizes is not None:
            size = sizes.reshape(-1).index_select(0, flat).view(idx.shape)  # (B, n)
            bias = bias + log_size(size)[..., None]
        return att.attend(qh, K, bias, valid)

    def _attend_grouped(
        self,
        att: TwinAttention,
        qh: torch.Tensor,
        batch: Batch,
        idx: torch.Tensor,
        valid: torch.Tensor,
        sizes: torch.Tensor | None = None,
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
        bias = att.code_bias(self.emb, codes)  # (R, S, heads)
        if sizes is not None:  # TWIN-V2: + ln n of each member's cluster
            size = torch.zeros(R, S, dtype=sizes.dtype, device=idx.device)
            size[u_req, pos] = sizes[u_req, u_slot]
            bias = bias + log_size(size)[..., None]
        out, w = att.forward_grouped(qh, batch.req, K, bias, member)
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
    """The one constructor the study uses (extras: what the module's prerequisite provides,
    ``registry.Prerequisite.provide``; ``training.experiment.prerequisite_extras`` runs it)."""
    return CTRModel(cfg, ds, **extras)
