"""SDIM with attention (Table 4's SDIM in this study): (m, tau) multi-round hashing, top-k by
colliding signatures, then the shared ESU. ``sdim_linear`` is SDIM's own aggregation."""

from __future__ import annotations

from ..gsu import SdimGSU
from ..registry import BuildContext, LifelongModule, register


def build(ctx: BuildContext) -> SdimGSU:
    c = ctx.cfg
    return SdimGSU(ctx.emb, c.sdim_bits, c.sdim_tau, c.hash_seed, c.hash_input)


register(LifelongModule(
    name="sdim", label="SDIM",
    description="SDIM (attention): (m, tau) multi-round hashing, top-k by colliding signatures",
    build=build, fields=("sdim_bits", "sdim_tau", "hash_seed", "hash_input"),
))  # fmt: skip
