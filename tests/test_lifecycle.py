"""TWIN-V2's offline clustering (data/lifecycle.py): partitions, virtual items, leak-freedom.

Each test checks one promise of the module docstring on a small synthetic world (histories of a
few hundred behaviours, blocks of 50) or on hand-made arrays.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from twin_study.data import BehaviourLog, SampleBuilder, SyntheticConfig, generate
from twin_study.data.lifecycle import (
    ClusterConfig,
    LifecycleSampleBuilder,
    check_item_keys,
    cluster_points,
    compress_log,
    engagement_group,
)

BLOCK = 50
SHORT = 10


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=20, n_items=1500, n_authors=200, history_len=400,
                                    history_sigma=0.5, history_min=100, requests_per_user=3,
                                    seed=3))  # fmt: skip


@pytest.fixture(scope="module")
def keys(ds):
    """Item keys with some structure: a few well-separated directions plus noise."""
    rng = np.random.default_rng(0)
    topic = rng.integers(0, 12, ds.items.n_items + 1)
    return rng.normal(size=(12, 8))[topic] + 0.3 * rng.normal(size=(ds.items.n_items + 1, 8))


@pytest.fixture(scope="module")
def comp(ds, keys):
    return compress_log(ds, keys, ClusterConfig(cap=5, block=BLOCK), progress=False)


def block_and_group(ds, cfg: ClusterConfig) -> tuple[np.ndarray, np.ndarray]:
    """(N,) user-relative block index and engagement group of every behaviour."""
    log = ds.log
    user = np.repeat(np.arange(log.n_users), log.lengths())
    block = (np.arange(log.n_behaviours) - log.user_ptr[user]) // cfg.block
    return user * 10_000 + block, engagement_group(ds, cfg)


# ------------------------------------------------------------------------------ partitions


@pytest.mark.parametrize("cap", [1, 3, 20])
def test_every_behaviour_once_and_no_cluster_over_cap(ds, keys, cap):
    comp = compress_log(ds, keys, ClusterConfig(cap=cap, block=BLOCK), progress=False)
    log = ds.log
    complete = np.diff(log.user_ptr) // BLOCK * BLOCK  # clustered behaviours per user
    user = np.repeat(np.arange(log.n_users), log.lengths())
    clustered = np.arange(log.n_behaviours) - log.user_ptr[user] < complete[user]
    assert (comp.cluster_of[clustered] >= 0).all() and (comp.cluster_of[~clustered] == -1).all()
    counts = np.bincount(comp.cluster_of[clustered], minlength=comp.n_clusters)
    np.testing.assert_array_equal(counts, comp.size)  # each behaviour in exactly one cluster
    assert comp.size.min() >= 1 and comp.size.max() <= cap
    assert comp.ratio == pytest.approx(comp.n_clusters / clustered.sum())


def test_clusters_never_mix_blocks_or_groups(ds, comp):
    block, group = block_and_group(ds, comp.config)
    c = comp.cluster_of
    keep = c >= 0
    pairs = np.unique(np.stack([c[keep], block[keep], group[keep]]), axis=1)
    assert pairs.shape[1] == comp.n_clusters  # one (block, group) per cluster
    # The CSR: a block's clusters are exactly those of its behaviours.
    for u in range(ds.n_users):
        for i, b in enumerate(range(comp.block_ptr[u], comp.block_ptr[u + 1])):
            lo = ds.log.user_ptr[u] + i * BLOCK
            ids = np.unique(c[lo : lo + BLOCK])
            np.testing.assert_array_equal(ids, np.arange(comp.cluster_ptr[b],
                                                         comp.cluster_ptr[b + 1]))  # fmt: skip


def test_identical_keys_split_in_halves_and_groups_stay_apart():
    x = np.ones((100, 4), dtype=np.float32)  # k-means cannot separate anything
    group = np.repeat([0, 1], 50)
    cfg = ClusterConfig(cap=7, block=100)
    label = cluster_points(x, group, cfg, np.random.default_rng(0))
    sizes = np.bincount(label)
    assert len(label) == 100 and (label >= 0).all() and sizes.max() <= 7
    assert not np.intersect1d(label[:50], label[50:]).size
    # Halves by position: every cluster is a run of consecutive points.
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        assert idx[-1] - idx[0] == len(idx) - 1


def test_deterministic_for_a_seed(ds, keys, comp):
    again = compress_log(ds, keys, comp.config, progress=False)
    for f in ("cluster_of", "item", "size", "cross", "time", "rep", "cluster_ptr"):
        np.testing.assert_array_equal(getattr(again, f), getattr(comp, f))
    other = compress_log(ds, keys, dataclasses.replace(comp.config, seed=1), progress=False)
    assert not np.array_equal(other.cluster_of, comp.cluster_of)


def test_ratio_falls_as_cap_grows(ds, keys):
    ratios = [compress_log(ds, keys, ClusterConfig(cap=cap, block=BLOCK), progress=False).ratio
              for cap in (1, 2, 5, 20)]  # fmt: skip
    assert ratios[0] == 1.0 and all(a > b for a, b in zip(ratios, ratios[1:], strict=False))


# ------------------------------------------------------------------------------ virtual items


def test_virtual_items_follow_the_rule(ds, keys, comp):
    log = ds.log
    unit = check_item_keys(keys, ds.items.n_items, normalize=True).astype(np.float64)
    order = np.argsort(comp.cluster_of, kind="stable")
    order = order[comp.cluster_of[order] >= 0]
    bounds = np.r_[0, np.cumsum(comp.size)]
    for c in range(comp.n_clusters):
        members = order[bounds[c] : bounds[c + 1]]  # log order
        x = unit[log.item[members]]
        dist = ((x - x.mean(0)) ** 2).sum(1)
        nearest = members[np.flatnonzero(dist <= dist.min() + 1e-9)]
        assert comp.rep[c] == nearest.max()  # nearest the centroid, ties: the most recent
        assert comp.item[c] == log.item[comp.rep[c]]
        np.testing.assert_array_equal(comp.cross[c], log.cross[comp.rep[c]])
        assert comp.size[c] == len(members)
        assert comp.last[c] == members.max() and comp.time[c] == log.time[members.max()]
    for u in range(ds.n_users):  # a user's virtual items are in time order, oldest first
        lo, hi = comp.cluster_ptr[comp.block_ptr[u]], comp.cluster_ptr[comp.block_ptr[u + 1]]
        assert (np.diff(comp.last[lo:hi]) > 0).all()


def test_tied_representative_is_the_most_recent():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    cfg, rng = ClusterConfig(cap=4, block=4), np.random.default_rng(0)
    label = cluster_points(x, np.zeros(4, dtype=np.int64), cfg, rng)
    assert (label == 0).all()  # fits the cap: never split
    ds = generate(SyntheticConfig(n_users=2, n_items=60, n_authors=40, n_categories=4,
                                  interests=(1, 2), history_len=8, history_min=8,
                                  history_max=8, requests_per_user=1, seed=0))  # fmt: skip
    keys = np.zeros((61, 2))
    keys[:, 0] = 1.0  # every item has the same key: every member ties
    comp = compress_log(ds, keys, ClusterConfig(cap=8, block=8, engagement_feature=None),
                        progress=False)  # fmt: skip
    np.testing.assert_array_equal(comp.rep, ds.log.user_ptr[1:] - 1)


# ------------------------------------------------------------------------------ batches


def test_no_slot_sees_the_future_and_nothing_is_shown_twice(ds, comp):
    builder = LifecycleSampleBuilder(ds, comp, long_len=10_000, short_len=SHORT)  # no cut
    s = ds.samples
    every = np.arange(len(s))
    batch = builder.build(every)
    pos, cluster = builder.slot_sources(every)
    rows = every[np.unique(s.request, return_index=True)[1]]
    for r, i in enumerate(rows):
        start, end = ds.log.user_ptr[s.user[i]], s.hist_end[i]
        raw = pos[r][(pos[r] >= 0) & (cluster[r] < 0)]
        behind = np.concatenate([raw, *(comp.members(c) for c in cluster[r][cluster[r] >= 0])])
        assert behind.max(initial=-1) < end  # strictly before the request
        # Nothing twice, nothing missing: exactly the visible history.
        np.testing.assert_array_equal(np.sort(behind), np.arange(start, end))
        n_short = min(SHORT, end - start)  # the short window is the raw last behaviours
        np.testing.assert_array_equal(pos[r, :n_short], np.arange(end - n_short, end)[::-1])
        assert (cluster[r, :n_short] == -1).all()
        assert batch.hist_size[r].sum() == end - start
    np.testing.assert_array_equal(batch.hist_item.numpy() > 0, pos >= 0)


def test_cap_one_gives_the_raw_history(ds, keys):
    comp = compress_log(ds, keys, ClusterConfig(cap=1, block=BLOCK), progress=False)
    raw = SampleBuilder(ds, long_len=120, short_len=SHORT)
    life = LifecycleSampleBuilder(ds, comp, long_len=120, short_len=SHORT)
    idx = np.arange(len(ds.samples))
    a, b = raw.build(idx), life.build(idx)
    for f in ("hist_item", "hist_cross", "hist_len", "hist_end", "req", "target", "label"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert a.hist_size is None
    np.testing.assert_array_equal(b.hist_size.numpy(), a.mask().numpy().astype(np.int64))


def test_window_cut_keeps_the_most_recent(ds, comp):
    long_len = 30
    builder = LifecycleSampleBuilder(ds, comp, long_len=long_len, short_len=SHORT)
    full = LifecycleSampleBuilder(ds, comp, long_len=10_000, short_len=SHORT)
    idx = np.arange(len(ds.samples))
    a, b = builder.build(idx), full.build(idx)
    assert a.width == long_len
    assert torch.equal(a.hist_item, b.hist_item[:, :long_len])
    assert torch.equal(a.hist_size, b.hist_size[:, :long_len])
    assert torch.equal(a.hist_len, b.hist_len.clamp(max=long_len))


def test_batches_and_device_moves(ds, comp):
    builder = LifecycleSampleBuilder(ds, comp, long_len=40, short_len=SHORT)
    seen = [b.sample_idx for b in builder.batches(np.arange(len(ds.samples)), batch_size=16)]
    assert sorted(torch.cat(seen).tolist()) == list(range(len(ds.samples)))
    batch = builder.build(np.arange(5)).to("cpu")
    assert batch.hist_size is not None and batch.hist_size.dtype == torch.int64
    assert SampleBuilder(ds, long_len=40).build(np.arange(5)).to("cpu").hist_size is None
    with pytest.raises(ValueError, match="virtual items"):
        _ = batch.hist_pos


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cap": 0}, "cap"),
        ({"cap": 30, "block": 20}, "block"),
        ({"split_exponent": 1.0}, "split_exponent"),
        ({"kmeans_iters": 0}, "kmeans_iters"),
        ({"engagement_groups": 0}, "engagement_groups"),
    ],
)
def test_bad_config_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        ClusterConfig(**changes)


def test_bad_inputs_name_the_problem(ds, keys):
    cfg = ClusterConfig(cap=5, block=BLOCK)
    with pytest.raises(ValueError, match="n_items \\+ 1 = 1501 rows"):
        compress_log(ds, keys[1:], cfg, progress=False)
    bad = keys.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="row 7 holds a non-finite"):
        compress_log(ds, bad, cfg, progress=False)
    with pytest.raises(ValueError, match="known: play_ratio, liked"):
        compress_log(ds, keys, dataclasses.replace(cfg, engagement_feature="watch"),
                     progress=False)  # fmt: skip
    log = ds.log
    empty = BehaviourLog(user_ptr=np.zeros(log.n_users + 1, dtype=np.int64),
                         item=np.zeros(0, np.int32), time=np.zeros(0, np.int64),
                         cross=np.zeros((0, 2), np.int16), cross_names=log.cross_names,
                         cross_vocab=log.cross_vocab)  # fmt: skip
    with pytest.raises(ValueError, match="no behaviours"):
        compress_log(dataclasses.replace(ds, log=empty), keys, cfg, progress=False)
    other = generate(SyntheticConfig(n_users=3, n_items=100, n_authors=40, history_len=50,
                                     history_min=20, requests_per_user=1))  # fmt: skip
    comp = compress_log(ds, keys, cfg, progress=False)
    with pytest.raises(ValueError, match="does not belong"):
        LifecycleSampleBuilder(other, comp, long_len=20)
