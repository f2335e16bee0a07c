"""SIM Hard (Table 4): the GSU keeps the behaviours of the target's category, most recent
first."""

from __future__ import annotations

from ..gsu import CodeMatchGSU
from ..registry import BuildContext, LifelongModule, register


def build(ctx: BuildContext) -> CodeMatchGSU:
    if "category" not in ctx.ds.items.features:
        raise ValueError("sim_hard needs a 'category' item feature; this data set has "
                         f"{sorted(ctx.ds.items.features)}")  # fmt: skip
    return CodeMatchGSU(ctx.ds.items.features["category"])


register(LifelongModule(
    name="sim_hard", label="SIM Hard",
    description="GSU keeps behaviours of the target's category (most recent first)",
    build=build,
))  # fmt: skip
