"""SIM Soft (Table 4): the GSU ranks behaviours by the inner product of pre-trained item
vectors with the target's. The vectors come from a DIN trained first (``models.pretrained``:
the study's documented choice, ``ModelConfig.sim_vectors`` says which of its tables)."""

from __future__ import annotations

from typing import Any

from ..gsu import SoftGSU
from ..pretrained import DIN_RESET, pretrained_vectors
from ..registry import BuildContext, LifelongModule, Prerequisite, register


def provide(cfg: Any, din: Any) -> dict[str, Any]:
    return {"item_vectors": pretrained_vectors(din, cfg.sim_vectors)}


def build(ctx: BuildContext) -> SoftGSU:
    return SoftGSU(ctx.need("item_vectors", "pre-trained item vectors, one row per item"))


register(LifelongModule(
    name="sim_soft", label="SIM Soft",
    description="GSU ranks by inner product of pre-trained item vectors (sim_vectors)",
    build=build, fields=("sim_vectors",),
    prerequisite=Prerequisite(module="din", provide=provide, reset=DIN_RESET),
))  # fmt: skip
