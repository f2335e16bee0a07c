"""The separation report of item vectors (analysis/retrieval.py) on planted structure."""

from __future__ import annotations

import numpy as np
import pytest

from twin_study.analysis.retrieval import vector_separation
from twin_study.data import SyntheticConfig, generate
from twin_study.data.schema import ItemTable


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=20, n_items=2000, n_authors=200, n_categories=10,
                                    history_len=100, history_min=30, requests_per_user=2,
                                    seed=3))  # fmt: skip


def one_hot(codes: np.ndarray, scale: float, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    width = codes.max() + 1
    return np.eye(width)[codes] * scale + rng.normal(size=(len(codes), width)) * noise


def test_random_vectors_separate_nothing(ds):
    v = np.random.default_rng(1).normal(size=(ds.items.n_items + 1, 32))
    rep = vector_separation(v, ds, n_clusters=10, seed=0)
    assert list(rep.index) == ["author", "category"]
    assert (rep.cos_same - rep.cos_random).abs().max() < 0.03
    assert rep.cos_random.abs().max() < 0.03
    assert (rep.purity - rep.purity_chance).abs().max() < 0.03
    assert (rep.top_same - rep.top_chance).abs().max() < 0.03


def test_planted_author_structure_is_found(ds):
    v = one_hot(ds.items.features["author"], scale=1.0, noise=0.02)
    rep = vector_separation(v, ds, n_clusters=10, seed=0)
    a = rep.loc["author"]
    assert a.n_codes == 200
    assert a.cos_same > 0.85 and a.cos_random < 0.05
    # ~10 items per author: an item has ~9 same-author neighbours to fill its top 10 with.
    assert a.top_same > 0.7 and a.top_chance < 0.05


def test_planted_category_structure_gives_pure_clusters(ds):
    v = one_hot(ds.items.features["category"], scale=1.0, noise=0.05)
    rep = vector_separation(v, ds, n_clusters=10, seed=0)
    c = rep.loc["category"]
    assert c.purity > 0.9 and c.purity_chance < 0.3
    assert c.cos_same > 0.9
    # Categories group authors, so authors of one category share a cluster but are not told
    # apart: the author purity stays far below the category's.
    assert rep.loc["author", "purity"] < 0.3


def test_missing_feature_is_skipped_and_bad_shapes_are_clear_errors(ds):
    items = ItemTable(ds.items.n_items, {"category": ds.items.features["category"]},
                      {"category": ds.items.vocab["category"]})  # fmt: skip
    v = np.random.default_rng(1).normal(size=(items.n_items + 1, 8))
    assert list(vector_separation(v, items, n_clusters=5).index) == ["category"]
    with pytest.raises(ValueError, match="n_items \\+ 1"):
        vector_separation(v[1:], items)
    with pytest.raises(ValueError, match="n_clusters"):
        vector_separation(v, items, n_clusters=1)
