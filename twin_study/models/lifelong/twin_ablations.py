"""TWIN's ablations (paper Fig. 6): without Para-Con, with raw MHTA, without the bias."""

from __future__ import annotations

import copy
from typing import Any

from ..gsu import CpGSU, LiveGSU
from ..registry import BuildContext, LifelongModule, Prerequisite, register
from .twin import CP_GSU_FIELDS

# w/o Para-Con's GSU comes from a separately trained TWIN: same settings, this seed plus this
# offset (a different initialisation and batch order; the paper's "separately trained").
AUX_SEED_OFFSET = 1000


def build_no_paracon(ctx: BuildContext) -> CpGSU:
    source = ctx.need("gsu_source", "a separately trained TWIN")
    if source.cfg.long_module != "twin":
        raise ValueError(f"twin_no_paracon needs a trained TWIN as gsu_source, got "
                         f"{source.cfg.long_module!r}")  # fmt: skip
    # A frozen copy, registered on the model being built: its parameters drive the GSU, move
    # with the model, and never see this model's gradient.
    ctx.owner.gsu_source = copy.deepcopy(source).requires_grad_(False)
    return CpGSU(ctx.owner.gsu_source.emb, ctx.owner.gsu_source.esu, ctx.cfg.cache_refresh)


def provide_source(cfg: Any, twin: Any) -> dict[str, Any]:
    return {"gsu_source": twin}


register(LifelongModule(
    name="twin_no_paracon", label="TWIN w/o Para-Con",
    description="GSU parameters from a separately trained TWIN",
    build=build_no_paracon, fields=CP_GSU_FIELDS,
    prerequisite=Prerequisite(module="twin", provide=provide_source,
                              seed_offset=AUX_SEED_OFFSET),
))  # fmt: skip

register(LifelongModule(
    name="twin_raw", label="TWIN w/ Raw MHTA",
    description="full projection of [K_h, K_c] in both stages, no cache",
    build=lambda ctx: LiveGSU(ctx.emb, ctx.esu), esu_mode="raw", fields=("gsu_chunk",),
))  # fmt: skip

register(LifelongModule(
    name="twin_no_bias", label="TWIN w/o Bias",
    description="cross features removed from scores and values",
    build=lambda ctx: CpGSU(ctx.emb, ctx.esu, ctx.cfg.cache_refresh), esu_mode="nobias",
    fields=CP_GSU_FIELDS,
))  # fmt: skip
