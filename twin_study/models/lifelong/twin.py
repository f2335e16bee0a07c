"""TWIN (paper §4): the CP-GSU scores every behaviour with the ESU's own multi-head target
attention (same parameters), made cheap by the split of behaviour features: item-inherent
keys come from the item cache K_h W^h, cross features become one scalar bias per head."""

from __future__ import annotations

from ..gsu import CpGSU
from ..registry import BuildContext, LifelongModule, register

# The flat ModelConfig fields every CP-GSU reads (TWIN and its ablations).
CP_GSU_FIELDS = ("merge", "cache_refresh", "gsu_chunk")


def build(ctx: BuildContext) -> CpGSU:
    return CpGSU(ctx.emb, ctx.esu, ctx.cfg.cache_refresh)


register(LifelongModule(
    name="twin", label="TWIN",
    description="CP-GSU with the ESU's own multi-head attention and the item cache",
    build=build, fields=CP_GSU_FIELDS,
))  # fmt: skip
