"""SDIM as its paper aggregates (the "original" SDIM of the study): behaviours whose hash
signature collides with the target's are summed per signature group, l2-normalised and
averaged over groups. Single-stage: no attention, no ESU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import native
from ..embedding import FeatureEmbedder
from ..gsu import GsuInput, SdimGSU, compact_items
from ..registry import BuildContext, LifelongModule, register


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


def build(ctx: BuildContext) -> SdimLinear:
    c = ctx.cfg
    return SdimLinear(SdimGSU(ctx.emb, c.sdim_bits, c.sdim_tau, c.hash_seed, c.hash_input),
                      ctx.emb.H, c.d_out)  # fmt: skip


register(LifelongModule(
    name="sdim_linear", label="SDIM (linear)",
    description="SDIM (original): colliding behaviours summed per signature, no attention",
    build=build, two_stage=False, fields=("sdim_bits", "sdim_tau", "hash_seed", "hash_input"),
))  # fmt: skip
