"""SIM Cluster (Table 4's "SIM Cluster" / "SIM Cluster+", two settings of ``n_clusters``): the
GSU keeps behaviours in the target's k-means cluster of pre-trained item vectors, most recent
first. k-means runs once per run, on the pre-trained DIN's vectors (``provide``), never in the
model's constructor."""

from __future__ import annotations

from typing import Any

from ..gsu import CodeMatchGSU
from ..pretrained import DIN_RESET, kmeans_codes, pretrained_vectors
from ..registry import BuildContext, LifelongModule, Prerequisite, register


def cluster_codes(cfg: Any, vectors: Any) -> dict[str, Any]:
    """The k-means cluster of every item (``n_clusters`` clusters seeded by ``hash_seed``)."""
    return {"cluster_codes": kmeans_codes(vectors, cfg.n_clusters, cfg.hash_seed)}


def provide(cfg: Any, din: Any) -> dict[str, Any]:
    return cluster_codes(cfg, pretrained_vectors(din, cfg.sim_vectors))


def build(ctx: BuildContext) -> CodeMatchGSU:
    return CodeMatchGSU(ctx.need(
        "cluster_codes",
        "the k-means cluster id of every item: models.pretrained.kmeans_codes(item_vectors, "
        "cfg.n_clusters, cfg.hash_seed)",
    ))  # fmt: skip


register(LifelongModule(
    name="sim_cluster", label="SIM Cluster",
    description="GSU keeps behaviours in the target's k-means cluster",
    build=build, fields=("n_clusters", "hash_seed", "sim_vectors"),
    prerequisite=Prerequisite(module="din", provide=provide, reset=DIN_RESET),
))  # fmt: skip
