"""How well a table of item vectors separates authors and categories (issue 10, fair baselines).

SIM Soft ranks behaviours by the inner product of pre-trained item vectors and SIM Cluster keeps
the target's k-means cluster of them, so their retrieval is only as good as the structure in
those vectors. ``vector_separation`` measures that structure against the item table's own
codes, each number beside its chance level, for any (n_items + 1, D) table: a pre-trained DIN's
vectors (``models.pretrained.pretrained_vectors``), a trained SIM Soft's table
(``run.model.gsu.table[:, 0]``), or what ETA / SDIM hash (``model.emb.item_vectors()``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from ..data.schema import Dataset, ItemTable
from ..models.config import ModelConfig
from ..models.ctr import build_model
from ..models.pretrained import kmeans_codes, pretrained_vectors
from ..seed import seed_everything
from ..training import experiment
from ..training.train import TrainConfig

TOP_N = 10  # neighbours per query item in the inner-product neighbour precision


def vector_separation(
    vectors: np.ndarray | torch.Tensor,
    ds: Dataset | ItemTable,
    n_clusters: int = 50,
    seed: int = 0,
    features: Sequence[str] = ("author", "category"),
    n_pairs: int = 20_000,
    n_queries: int = 500,
) -> pd.DataFrame:
    """Separation of item features by ``vectors``: one row per feature of ``features`` that the
    item table holds (others are skipped: MovieLens has no author).

    vectors: (n_items + 1, D), row i = item id i; row 0 (padding) is ignored.
    n_clusters, seed: k-means as SIM Cluster runs it (``models.pretrained.kmeans_codes``).
    n_pairs: sampled item pairs per cosine; n_queries: sampled query items for ``top_same``.

    Columns (all on items 1..n_items; chance = what vectors without that structure give):
      n_codes        distinct codes of the feature among the items
      cos_same       mean cosine of two distinct items with the same code
      cos_random     mean cosine of two distinct random items (the chance level of cos_same)
      top_same       share of an item's TOP_N largest-inner-product neighbours (SIM Soft's
                     ranking) that share its code
      top_chance     the same share for random neighbours: P(two distinct items share a code)
      purity         k-means purity: share of items whose cluster's majority code is their own
      purity_chance  the purity of the same cluster sizes with the codes shuffled (mean of 5)
    """
    items = ds.items if isinstance(ds, Dataset) else ds
    full = torch.as_tensor(vectors).detach().cpu().numpy().astype(np.float32)
    if full.ndim != 2 or len(full) != items.n_items + 1:
        raise ValueError(
            f"vectors: expected shape (n_items + 1, D) = ({items.n_items + 1}, D), got {full.shape}"
        )
    if n_clusters < 2:
        raise ValueError(f"n_clusters must be >= 2, got {n_clusters}")
    v = full[1:]  # drop the padding row: item id i is row i - 1 from here on
    n = len(v)
    unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, n_pairs)
    b = (a + rng.integers(1, n, n_pairs)) % n  # a distinct random partner
    cos_random = float((unit[a] * unit[b]).sum(1).mean())
    clusters = kmeans_codes(full, n_clusters, seed)[1:]
    queries = rng.choice(n, min(n_queries, n), replace=False)
    ip = v[queries] @ v.T  # (Q, n) SIM Soft's scores (n_queries bounds the memory)
    ip[np.arange(len(queries)), queries] = -np.inf  # an item is not its own neighbour
    top = np.argpartition(-ip, min(TOP_N, n - 1) - 1, axis=1)[:, :TOP_N]  # (Q, TOP_N)
    rows = {}
    for name in features:
        if name not in items.features:
            continue
        code = np.asarray(items.features[name][1:])
        sizes = np.bincount(code)
        rows[name] = {
            "n_codes": int((sizes > 0).sum()),
            "cos_same": _same_code_cosine(unit, code, n_pairs, rng),
            "cos_random": cos_random,
            "top_same": float((code[top] == code[queries, None]).mean()),
            "top_chance": float((sizes * (sizes - 1.0)).sum() / (n * (n - 1.0))),
            "purity": _purity(clusters, code),
            "purity_chance": float(
                np.mean([_purity(clusters, rng.permutation(code)) for _ in range(5)])
            ),  # fmt: skip
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("feature")


def sim_vector_separation(
    ds: Dataset, sim: ModelConfig, train: TrainConfig, n_clusters: int = 50, seed: int = 0
) -> pd.DataFrame:
    """``vector_separation`` of the item vectors SIM Soft / SIM Cluster config ``sim``
    retrieves with (``sim.sim_vectors`` of its pre-training DIN, ``experiment.prerequisites``),
    beside the same vectors of an untrained DIN (the structure ``K_h``'s construction gives
    alone: items of one author share its author and category rows). The DIN is trained with
    ``train`` (or loaded from the results cache: with the table's own settings it is the
    table's DIN run). Rows of both, with columns ``vectors`` ("trained DIN" / "untrained
    DIN") and ``dataset``. ``seed`` is the DIN's training seed (seed 0: the table's first
    run), the untrained DIN's init and the k-means' seed, as SIM Cluster runs it with
    ``n_clusters``."""
    din_cfg, din_train = experiment.prerequisites(sim, dataclasses.replace(train, seed=seed))[0]
    trained = experiment.run(ds, din_cfg, din_train).model
    seed_everything(seed)
    untrained = build_model(din_cfg, ds)
    rows = []
    for which, m in (("trained DIN", trained), ("untrained DIN", untrained)):
        vecs = pretrained_vectors(m, sim.sim_vectors)
        sep = vector_separation(vecs, ds, n_clusters=n_clusters, seed=seed)
        rows.append(sep.assign(vectors=which, dataset=ds.name))
    return pd.concat(rows, ignore_index=True)


def _same_code_cosine(
    unit: np.ndarray, code: np.ndarray, n_pairs: int, rng: np.random.Generator
) -> float:
    """Mean cosine of random pairs of distinct items with the same code (NaN: no such pair)."""
    order = np.argsort(code, kind="stable")
    sizes = np.bincount(code)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.empty(len(code), dtype=np.int64)
    pos[order] = np.arange(len(code))  # each item's place in ``order``
    eligible = np.flatnonzero(sizes[code] >= 2)
    if len(eligible) == 0:
        return float("nan")
    a = rng.choice(eligible, n_pairs)
    c = code[a]
    r = rng.integers(0, sizes[c] - 1)  # one of the code's other items
    j = start[c] + r
    j = j + (j >= pos[a])  # skip the item itself
    b = order[j]
    return float((unit[a] * unit[b]).sum(1).mean())


def _purity(clusters: np.ndarray, code: np.ndarray) -> float:
    """Share of items whose cluster's most frequent code is their own."""
    table = np.zeros((clusters.max() + 1, code.max() + 1))
    np.add.at(table, (clusters, code), 1)
    return float(table.max(axis=1).sum() / len(code))
