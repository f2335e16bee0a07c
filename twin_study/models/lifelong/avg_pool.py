"""Avg-Pooling (Table 4's weakest baseline): the mean of the inherent features of all L
behaviours, projected to d_out. Single-stage: no GSU, no ESU."""

from __future__ import annotations

import torch
from torch import nn

from ..embedding import FeatureEmbedder
from ..gsu import GsuInput
from ..registry import BuildContext, LifelongModule, register


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


def build(ctx: BuildContext) -> AvgPooling:
    return AvgPooling(ctx.emb.H, ctx.cfg.d_out)


register(LifelongModule(
    name="avg_pool", label="Avg-Pooling",
    description="mean of the inherent features of all L behaviours",
    build=build, two_stage=False,
))  # fmt: skip
