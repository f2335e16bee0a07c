"""ETA (Table 4): SimHash signatures of the model's own item vectors (``hash_input``), top-k
by Hamming distance to the target's signature."""

from __future__ import annotations

from ..gsu import EtaGSU
from ..registry import BuildContext, LifelongModule, register


def build(ctx: BuildContext) -> EtaGSU:
    c = ctx.cfg
    return EtaGSU(ctx.emb, c.eta_bits, c.hash_seed, c.hash_input)


register(LifelongModule(
    name="eta", label="ETA",
    description="SimHash of the model's own item vectors (hash_input), Hamming-distance top-k",
    build=build, fields=("eta_bits", "hash_seed", "hash_input"),
))  # fmt: skip
