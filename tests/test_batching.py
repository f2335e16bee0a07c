"""The sample builder: slot order, padding, windows, request grouping, batch iteration.

``tests/test_models.py`` checks that a batch's rows line up with the log for the models; these
tests check the builder's own contract sample by sample, including histories shorter than the
window, empty histories and the time-gap feature.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from twin_study.data import SampleBuilder, SyntheticConfig, cross_schema, generate
from twin_study.data.batching import TIME_GAP_BUCKETS, time_gap_bucket

L = 200  # long window; history_len 150 makes histories both shorter and longer than L


@pytest.fixture(scope="module")
def ds():
    return generate(SyntheticConfig(n_users=25, n_items=1500, n_authors=200, history_len=150,
                                    history_sigma=0.6, history_min=40, requests_per_user=3,
                                    seed=11))  # fmt: skip


@pytest.fixture(scope="module")
def builder(ds):
    return SampleBuilder(ds, long_len=L, short_len=50)


def visible(ds, i: int) -> np.ndarray:
    """Log indices sample ``i`` may see, most recent first."""
    s = ds.samples
    return np.arange(ds.log.user_ptr[s.user[i]], s.hist_end[i])[::-1]


def check_row(ds, batch, b: int, width: int) -> None:
    """Sample ``b`` of ``batch`` carries exactly its visible history, most recent first."""
    i = int(batch.sample_idx[b])
    r = int(batch.req[b])
    want = visible(ds, i)[:width]
    n = len(want)
    assert int(batch.hist_len[r]) == n
    pos = batch.hist_pos[r].numpy()
    np.testing.assert_array_equal(pos[:n], want)
    assert (pos[n:] == -1).all()
    np.testing.assert_array_equal(batch.hist_item[r, :n].numpy(), ds.log.item[want])
    assert (batch.hist_item[r, n:] == 0).all()
    j0 = ds.log.cross.shape[1]
    cross = batch.hist_cross[r].numpy()
    np.testing.assert_array_equal(cross[:n, :j0], ds.log.cross[want])
    gap = ds.samples.time[i] - ds.log.time[want]
    assert (gap > 0).all()  # no leakage: every slot happened before the request
    np.testing.assert_array_equal(cross[:n, j0], time_gap_bucket(gap))
    assert (cross[n:] == 0).all()
    # scalar fields of the sample
    assert int(batch.user[b]) == ds.samples.user[i]
    assert int(batch.target[b]) == ds.samples.item[i]
    assert float(batch.label[b]) == ds.samples.label[i]


def test_every_slot_matches_the_log(ds, builder):
    lens = ds.samples.hist_end - ds.log.user_ptr[ds.samples.user]
    idx = np.flatnonzero(ds.samples.split == 0)
    assert (lens[idx] < L).any() and (lens[idx] > L).any()  # padded and truncated rows
    batch = builder.build(idx)
    assert batch.hist_item.shape == (len(np.unique(ds.samples.request[idx])), L)
    assert batch.hist_cross.shape[2] == len(cross_schema(ds)[0])
    for b in range(len(idx)):
        check_row(ds, batch, b, L)


def test_masks_are_a_prefix_and_the_short_window_is_the_first_50_slots(ds, builder):
    batch = builder.build(np.arange(0, len(ds.samples), 3))
    valid = batch.hist_pos >= 0
    assert torch.equal(batch.mask(), valid)
    assert torch.equal(batch.mask(50), valid[:, :50])
    # valid slots form a prefix: once padding starts, it never stops
    assert (valid[:, 1:] <= valid[:, :-1]).all()
    # the short window holds the 50 most recent behaviours, the last one first
    for r in range(batch.hist_item.shape[0]):
        b = int((batch.req == r).nonzero()[0, 0])
        want = visible(ds, int(batch.sample_idx[b]))[:50]
        np.testing.assert_array_equal(batch.hist_pos[r, : len(want)].numpy(), want)
        assert int(batch.mask(50)[r].sum()) == len(want)
    # positions strictly decrease along the valid slots (most recent first, no repeats)
    step = batch.hist_pos[:, 1:] - batch.hist_pos[:, :-1]
    assert (step[valid[:, 1:]] == -1).all()


def test_short_window_longer_than_long_window_sets_the_width(ds):
    b = SampleBuilder(ds, long_len=20, short_len=50)
    batch = b.build(np.arange(10))
    assert batch.width == 50
    for i in range(10):
        check_row(ds, batch, i, 50)


def test_empty_history_is_all_padding(ds):
    s = ds.samples
    hist_end = s.hist_end.copy()
    hist_end[0] = ds.log.user_ptr[s.user[0]]  # sample 0 sees nothing (still valid)
    empty = dataclasses.replace(ds, samples=dataclasses.replace(s, hist_end=hist_end))
    batch = SampleBuilder(empty, long_len=L).build(np.array([0]))
    assert int(batch.hist_len[0]) == 0
    assert (batch.hist_pos == -1).all() and (batch.hist_item == 0).all()
    assert (batch.hist_cross == 0).all() and not batch.mask().any()


def test_no_time_gap_column_when_disabled(ds):
    batch = SampleBuilder(ds, long_len=L, time_gap=False).build(np.arange(5))
    assert batch.hist_cross.shape[2] == ds.log.cross.shape[1]
    names, vocab = cross_schema(ds)
    assert names[-1] == "time_gap" and vocab[-1] == TIME_GAP_BUCKETS


# --- request grouping ------------------------------------------------------------------------


def test_samples_of_one_request_share_one_row(ds, builder):
    s = ds.samples
    rng = np.random.default_rng(0)
    idx = rng.permutation(np.flatnonzero(np.isin(s.request, [3, 4, 9])))  # 3 requests, mixed
    batch = builder.build(idx)
    np.testing.assert_array_equal(batch.sample_idx.numpy(), idx)  # order kept
    assert batch.hist_item.shape[0] == 3
    req = batch.req.numpy()
    for a in range(len(idx)):
        for b in range(len(idx)):
            assert (req[a] == req[b]) == (s.request[idx[a]] == s.request[idx[b]])
    # each sample's row is the one it gets when built alone
    for b, i in enumerate(idx):
        alone = builder.build(np.array([i]))
        assert torch.equal(batch.hist_pos[req[b]], alone.hist_pos[0])
        assert torch.equal(batch.hist_cross[req[b]], alone.hist_cross[0])


@pytest.mark.parametrize("group", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_sample_once(ds, builder, group, shuffle):
    idx = np.flatnonzero(ds.samples.split == 0)
    batches = list(builder.batches(idx, 16, shuffle=shuffle, seed=1, group_requests=group))
    seen = np.concatenate([b.sample_idx.numpy() for b in batches])
    np.testing.assert_array_equal(np.sort(seen), np.sort(idx))
    sizes = [len(b.sample_idx) for b in batches]
    c = ds.meta["config"]["candidates_per_request"]
    assert max(sizes) <= (16 + c - 1 if group else 16)
    if group:  # a request never straddles two batches
        req_of = [set(ds.samples.request[b.sample_idx.numpy()].tolist()) for b in batches]
        assert sum(len(r) for r in req_of) == len(set().union(*req_of))
    if shuffle:
        again = [b.sample_idx for b in builder.batches(idx, 16, True, 1, group)]
        other = [b.sample_idx for b in builder.batches(idx, 16, True, 2, group)]
        assert torch.equal(torch.cat(again), torch.from_numpy(seen))  # same seed, same order
        assert not torch.equal(torch.cat(other), torch.from_numpy(seen))


def test_builder_errors(ds, builder):
    with pytest.raises(ValueError, match="zero samples"):
        builder.build(np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="batch_size"):
        next(builder.batches(np.arange(5), 0))
    with pytest.raises(ValueError, match="long_len"):
        SampleBuilder(ds, long_len=0)


# --- time gap ------------------------------------------------------------------------------


def test_time_gap_bucket_is_monotone_and_bounded():
    gaps = np.concatenate([[-5, 0], np.unique(np.geomspace(1, 10**10, 500).astype(np.int64))])
    buckets = time_gap_bucket(gaps)
    assert (np.diff(buckets) >= 0).all()
    assert buckets.min() == 0 and buckets.max() == TIME_GAP_BUCKETS - 1
    hour = 3600
    assert time_gap_bucket(np.array([0, hour - 1, hour, 3 * hour, 7 * hour])).tolist() == [
        0, 0, 1, 2, 3,
    ]  # fmt: skip
